// The search panel: the query image (picked, dropped or pasted), its region, top-k, and the results.
// A search runs as soon as there is something to search (an image chosen, a box drawn, top-k
// changed); a newer search cancels the one in flight, so the results always match the query shown.

import * as api from './api.js';
import { RegionEditor } from './region.js';
import { $, el, renderTiles, splitPath } from './ui.js';

export class SearchPanel {
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.file = null;
    this.objectUrl = null;
    this.controller = null;
    this.similarTo = null;

    this.input = $('query-file');
    this.drop = $('query-drop');
    this.editor = $('query-editor');
    this.image = $('query-image');
    this.readout = $('region-readout');
    this.top = $('top');
    this.button = $('search-button');
    this.results = $('results');
    this.title = $('results-title');
    this.meta = $('results-meta');
    this.error = $('search-error');
    this.empty = $('results-empty');

    this.region = new RegionEditor($('stage-inner'), this.image, $('region'), {
      onChange: (box) => this.#showBox(box),
      onCommit: (box) => { this.#showBox(box); this.similarTo = null; this.run(); },
    });

    this.input.addEventListener('change', () => {
      if (this.input.files.length) this.setQuery(this.input.files[0]);
      this.input.value = '';
    });
    $('query-another').addEventListener('click', () => this.input.click());
    $('box-whole').addEventListener('click', () => this.region.clear());
    $('box-centre').addEventListener('click', () => this.region.centre());
    this.top.addEventListener('change', () => this.run());
    this.back = $('back-to-query');
    this.back.addEventListener('click', () => { this.similarTo = null; this.run(); });
    $('search-form').addEventListener('submit', (e) => { e.preventDefault(); this.similarTo = null; this.run(); });
    acceptDrops($('panel-search'), (file) => this.setQuery(file));
  }

  /** Makes a file the query: shows it, clears the box, searches. */
  setQuery(file) {
    if (file.type && !file.type.startsWith('image/')) {
      this.#fail(`“${file.name}” is not an image.`);
      return;
    }
    this.file = file;
    this.similarTo = null;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = URL.createObjectURL(file);
    this.region.set(null);
    this.#showBox(null);
    this.drop.hidden = true;
    this.editor.hidden = false;
    this.button.disabled = false;
    this.image.onload = () => this.run();
    this.image.onerror = () => this.#fail('This browser cannot show that image; searching with it anyway.', () => this.run());
    this.image.src = this.objectUrl;
  }

  /** Images similar to an indexed one (by its id). */
  async findSimilar(item) {
    this.similarTo = item;
    const [, name] = splitPath(item.path);
    this.title.replaceChildren(el('img', { class: 'similar-thumb', src: item.thumbnailUrl, alt: '' }), `Similar to ${name}`);
    this.back.hidden = !this.file;
    await this.#request((signal) => api.searchById(item.id, Number(this.top.value), signal), `similar ${item.id}`);
  }

  /** Runs the current query (the similar-images one if that is what is shown). */
  async run() {
    if (this.similarTo) {
      await this.findSimilar(this.similarTo);
      return;
    }
    if (!this.file) return;
    this.title.textContent = 'Results';
    this.back.hidden = true;
    const box = this.region.box;
    const query = box ? `image box=${box.x},${box.y},${box.w},${box.h}` : 'image';
    await this.#request((signal) => api.search(this.file, { box, top: Number(this.top.value), signal }), query);
  }

  /** Runs a search; the results list then says which query it answers (data-query), for tests and tools. */
  async #request(call, query) {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.error.hidden = true;
    this.results.setAttribute('aria-busy', 'true');
    const slow = setTimeout(() => { this.meta.textContent = 'Searching…'; }, 150);
    try {
      const answer = await call(controller.signal);
      if (controller.signal.aborted) return;
      this.empty.hidden = true;
      renderTiles(this.results, answer.hits, { onOpen: this.onOpen, ranked: true });
      this.results.dataset.query = query;
      const n = answer.hits.length;
      const timing = answer.embedMs !== undefined ? ` in ${Math.round(answer.embedMs + answer.searchMs)} ms` : '';
      this.meta.textContent = `${n} ${n === 1 ? 'image' : 'images'}${timing}${answer.partial ? ' (some servers did not answer)' : ''}`;
      if (n === 0) this.meta.textContent = 'Nothing indexed yet. Add images in the Library.';
    } catch (error) {
      if (error.name === 'AbortError') return;
      this.#fail(error.message);
    } finally {
      clearTimeout(slow);
      if (this.controller === controller) {
        this.results.removeAttribute('aria-busy');
        this.controller = null;
      }
    }
  }

  /** Loads an indexed image as the query, so a region of it can be searched. */
  async useAsQuery(item) {
    try {
      const response = await fetch(item.imageUrl);
      if (!response.ok) throw new Error(`The original could not be loaded (HTTP ${response.status}).`);
      const blob = await response.blob();
      this.setQuery(new File([blob], splitPath(item.path)[1], { type: blob.type || 'image/jpeg' }));
    } catch (error) {
      this.#fail(error.message);
    }
  }

  #showBox(box) {
    this.readout.textContent = box
      ? `Searching a region: ${box.w} × ${box.h} px at ${box.x}, ${box.y}`
      : 'Searching the whole image';
  }

  #fail(message, then) {
    this.error.textContent = message;
    this.error.hidden = false;
    this.meta.textContent = '';
    then?.();
  }
}

/** Makes an element accept dropped files; calls onFile for the first (or onFiles for all). */
export function acceptDrops(target, onFile, onFiles) {
  let depth = 0;
  target.addEventListener('dragenter', (e) => {
    if (![...e.dataTransfer.types].includes('Files')) return;
    depth++;
    target.classList.add('dragging');
  });
  target.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) target.classList.remove('dragging');
  });
  target.addEventListener('dragover', (e) => {
    if ([...e.dataTransfer.types].includes('Files')) e.preventDefault();
  });
  target.addEventListener('drop', (e) => {
    depth = 0;
    target.classList.remove('dragging');
    const files = [...e.dataTransfer.files];
    if (!files.length) return;
    e.preventDefault();
    if (onFiles) onFiles(files);
    else onFile(files[0]);
  });
}
