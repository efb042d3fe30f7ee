// The library panel: uploads with their progress until each is indexed (or refused, or failed with
// the reason ingestion gave), the indexing counters, the failures, and the recently added images.

import * as api from './api.js';
import { acceptDrops } from './search.js';
import { $, el, formatBytes, formatCount, renderTiles, splitPath } from './ui.js';

const KEY_STORAGE = 'imagesearch.apiKey';
const RECENT_COUNT = 24;
const PARALLEL_UPLOADS = 2;

export class LibraryPanel {
  constructor({ onOpen, onSimilar, onActivity }) {
    this.onOpen = onOpen;
    this.onSimilar = onSimilar;
    this.onActivity = onActivity;
    this.uploads = [];
    this.queue = [];
    this.active = 0;
    this.upload = null;
    this.recentKey = '';
    this.polling = false;
    this.failuresKey = '';

    this.list = $('uploads');
    this.input = $('upload-file');
    this.keyField = $('api-key-field');
    this.key = $('api-key');
    this.key.value = localStorage.getItem(KEY_STORAGE) || '';
    this.key.addEventListener('change', () => localStorage.setItem(KEY_STORAGE, this.key.value.trim()));

    this.input.addEventListener('change', () => {
      this.add([...this.input.files]);
      this.input.value = '';
    });
    acceptDrops($('panel-library'), null, (files) => this.add(files));
  }

  /** True while an upload is being sent or waits to be indexed: status is then polled faster. */
  get busy() {
    return this.uploads.some((u) => u.state === 'queued' || u.state === 'uploading' || u.state === 'pending');
  }

  /** Queues files for upload; each gets a row that follows it until it is indexed. */
  add(files) {
    if (this.upload && !this.upload.enabled) return;
    for (const file of files) {
      const item = { file, state: 'queued', path: null, id: null, progress: 0, message: 'Waiting…' };
      item.preview = file.type.startsWith('image/') ? URL.createObjectURL(file) : null;
      item.row = this.#row(item);
      this.uploads.unshift(item);
      this.list.prepend(item.row.root);
      this.queue.push(item);
    }
    this.#pump();
    this.onActivity();
  }

  #pump() {
    while (this.active < PARALLEL_UPLOADS && this.queue.length) {
      const item = this.queue.shift();
      this.active++;
      this.#send(item).finally(() => {
        this.active--;
        this.#pump();
      });
    }
  }

  async #send(item) {
    const limit = this.upload?.maxFileBytes;
    if (limit && item.file.size > limit) {
      this.#set(item, 'failed', `Too large: ${formatBytes(item.file.size)}; the limit is ${formatBytes(limit)}.`);
      return;
    }
    this.#set(item, 'uploading', 'Uploading…');
    try {
      const answer = await api.upload(item.file, {
        apiKey: this.key.value.trim(),
        onProgress: (fraction) => { item.row.bar.style.width = `${Math.round(fraction * 100)}%`; },
      });
      const stored = answer.images[0];
      item.path = stored.path;
      item.id = stored.id;
      item.row.bar.style.width = '100%';
      this.#set(item, 'pending', `Saved as ${stored.path}, waiting to be indexed…`);
      this.onActivity();
    } catch (error) {
      if (error.status === 401) {
        this.keyField.hidden = false;
        this.key.focus();
      }
      // The row already names the file: drop the server's "'name': " prefix.
      const detail = (error.detail || '').replace(/^'[^']*': /, '');
      this.#set(item, 'failed', detail ? `${error.title}: ${detail}` : error.title);
    }
  }

  /** Asks the server what became of the uploads waiting to be indexed. */
  async pollUploads() {
    const waiting = this.uploads.filter((u) => u.state === 'pending');
    if (!waiting.length || this.polling) return;
    this.polling = true;
    try {
      const answer = await api.fileStates(waiting.map((u) => u.path));
      let settled = false;
      answer.files.forEach((f, i) => {
        const item = waiting[i];
        if (f.state === 'indexed') {
          item.image = { id: f.id, path: f.path, imageUrl: f.imageUrl, thumbnailUrl: f.thumbnailUrl };
          this.#set(item, 'indexed', `Indexed as ${f.path}`);
          settled = true;
        } else if (f.state === 'failed') {
          this.#set(item, 'failed', `Could not be indexed: ${f.reason || 'no reason given'}`);
          settled = true;
        } else if (f.state === 'missing') {
          this.#set(item, 'failed', `${f.path} is no longer in the library.`);
          settled = true;
        }
      });
      if (settled) this.refreshRecent(true);
    } catch {
      // The next status poll will try again; the status pill already says when the server is away.
    } finally {
      this.polling = false;
    }
  }

  /** Shows the server's counters, failures and upload settings. */
  showStatus(status) {
    $('stat-indexed').textContent = formatCount(status.indexed);
    $('stat-files').textContent = formatCount(status.files);
    $('stat-pending').textContent = formatCount(status.pending);
    $('stat-failed').textContent = formatCount(status.failed);

    const settled = status.files;
    const total = settled + status.pending;
    const percent = total === 0 ? 100 : Math.round((settled / total) * 100);
    const progress = $('progress');
    progress.setAttribute('aria-valuenow', String(percent));
    progress.setAttribute('aria-valuetext', status.pending ? `${percent}%, ${status.pending} pending` : 'Up to date');
    progress.classList.toggle('busy', status.pending > 0);
    $('progress-bar').style.width = `${percent}%`;
    $('progress-text').textContent = status.pending
      ? `Indexing: ${formatCount(status.pending)} ${status.pending === 1 ? 'file' : 'files'} to go${status.workers ? ` on ${status.workers} workers` : ''}.`
      : `Up to date: ${formatCount(status.indexed)} images from ${formatCount(status.files)} files.`;
    $('model-text').textContent = `Model ${status.model} on ${status.device}.`;

    const failures = $('failures');
    failures.hidden = status.failed === 0;
    $('failures-summary').textContent = `${formatCount(status.failed)} ${status.failed === 1 ? 'file' : 'files'} could not be indexed`;
    const failuresKey = JSON.stringify(status.failures);
    if (failuresKey !== this.failuresKey) {
      // Rebuilt only on change, so a list being read or scrolled stays put between polls.
      this.failuresKey = failuresKey;
      $('failures-list').replaceChildren(...status.failures.map((f) =>
        el('li', {}, el('strong', {}, f.path), f.reason || 'No reason recorded')));
    }

    this.#showUploadSettings(status.upload);
    const key = `${status.indexed}/${status.files}`;
    if (key !== this.recentKey) {
      this.recentKey = key;
      this.refreshRecent();
    }
  }

  async refreshRecent(force) {
    if (force) this.recentKey = '';
    try {
      const answer = await api.recent(RECENT_COUNT);
      renderTiles($('recent'), answer.images, { onOpen: this.onOpen });
      $('recent-meta').textContent = answer.images.length ? '' : 'Nothing indexed yet.';
    } catch (error) {
      $('recent-meta').textContent = error.message;
    }
  }

  #showUploadSettings(upload) {
    this.upload = upload || { enabled: false };
    const off = $('upload-off');
    const enabled = Boolean(upload && upload.enabled && !upload.problem);
    $('upload-area').hidden = !enabled;
    off.hidden = enabled;
    if (!upload || !upload.enabled) {
      off.textContent = 'Uploads are turned off on this server. Add images by copying them into the watched folder.';
    } else if (upload.problem) {
      off.textContent = `Uploads are unavailable: ${upload.problem}.`;
    } else {
      const types = upload.extensions.map((e) => e.slice(1).toUpperCase()).join(', ');
      $('upload-hint').textContent =
        `${types}; up to ${formatBytes(upload.maxFileBytes)} each. Saved to ${upload.folder ? `${upload.folder}/ in` : ''} the watched folder, then indexed.`;
      if (upload.apiKeyRequired) this.keyField.hidden = false;
    }
  }

  #row(item) {
    const bar = el('span');
    const state = el('span', { class: 'upload-state' }, item.message);
    const actions = el('div', { class: 'upload-actions' });
    const root = el('li', { class: 'upload-item', dataset: { state: item.state } },
      item.preview
        ? el('img', { src: item.preview, alt: '', onerror: (e) => e.target.replaceWith(el('span', { class: 'upload-placeholder' })) })
        : el('span', { class: 'upload-placeholder' }),
      el('span', { class: 'upload-name', title: item.file.name }, item.file.name),
      actions,
      el('div', {}, state, el('div', { class: 'mini-progress', 'aria-hidden': 'true' }, bar)));
    return { root, bar, state, actions };
  }

  #set(item, state, message) {
    item.state = state;
    item.message = message;
    item.row.root.dataset.state = state;
    item.row.state.textContent = message;
    if (state === 'failed') item.row.bar.parentElement.hidden = true;
    if (state === 'indexed') {
      item.row.bar.parentElement.hidden = true;
      const [, name] = splitPath(item.image.path);
      item.row.actions.replaceChildren(
        el('button', { type: 'button', class: 'button small', 'aria-label': `Find images similar to ${name}`, onclick: () => this.onSimilar(item.image) }, 'Find similar'),
        el('button', { type: 'button', class: 'button small', 'aria-label': `View ${name}`, onclick: () => this.onOpen(item.image) }, 'View'));
    }
  }
}
