// The search region: a box drawn over the query image with the mouse, a finger or a pen (Pointer
// Events), moved and resized by its body, corners and edges, or entirely from the keyboard.
// Coordinates are kept in the image's own pixels (naturalWidth/Height, after EXIF orientation, as
// the server sees them), so the box sent is independent of how large the image is shown.

const EDGES = ['nw', 'n', 'ne', 'e', 'se', 's', 'sw', 'w'];
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

export class RegionEditor {
  /**
   * @param {HTMLElement} surface the element the image fills (pointer events land on it)
   * @param {HTMLImageElement} image
   * @param {HTMLElement} region the box element
   * @param {{onChange?: Function, onCommit?: Function}} callbacks onChange on every movement,
   *   onCommit when a gesture ends (pointer released, or a pause after keys)
   */
  constructor(surface, image, region, { onChange, onCommit } = {}) {
    this.surface = surface;
    this.image = image;
    this.region = region;
    this.onChange = onChange || (() => {});
    this.onCommit = onCommit || (() => {});
    this.rect = null;
    this.gesture = null;
    this.keyTimer = 0;
    for (const edge of EDGES) {
      const handle = document.createElement('span');
      handle.className = 'handle';
      handle.dataset.edge = edge;
      handle.setAttribute('aria-hidden', 'true');
      region.append(handle);
    }
    surface.addEventListener('pointerdown', (e) => this.#down(e));
    surface.addEventListener('pointermove', (e) => this.#move(e));
    surface.addEventListener('pointerup', (e) => this.#up(e));
    surface.addEventListener('pointercancel', (e) => this.#up(e));
    region.addEventListener('keydown', (e) => this.#key(e));
  }

  get width() { return this.image.naturalWidth || 1; }

  get height() { return this.image.naturalHeight || 1; }

  /** Smallest side of a box, in image pixels. */
  get minSide() { return Math.max(8, Math.round(Math.min(this.width, this.height) * 0.03)); }

  /** The box in whole image pixels {x, y, w, h}, inside the image, or null for the whole image. */
  get box() {
    if (!this.rect) return null;
    const x = clamp(Math.round(this.rect.x), 0, this.width - 1);
    const y = clamp(Math.round(this.rect.y), 0, this.height - 1);
    const w = clamp(Math.round(this.rect.w), 1, this.width - x);
    const h = clamp(Math.round(this.rect.h), 1, this.height - y);
    return { x, y, w, h };
  }

  /** Sets the box (image pixels) or clears it (null), without committing. */
  set(rect) {
    this.rect = rect ? { ...rect } : null;
    this.#render();
  }

  clear() {
    this.set(null);
    this.onCommit(this.box);
  }

  /** A box over the middle half of the image, focused for the keyboard. */
  centre() {
    this.set({ x: this.width / 4, y: this.height / 4, w: this.width / 2, h: this.height / 2 });
    this.region.focus();
    this.onCommit(this.box);
  }

  #toImage(e) {
    const r = this.image.getBoundingClientRect();
    return {
      x: clamp(((e.clientX - r.left) / r.width) * this.width, 0, this.width),
      y: clamp(((e.clientY - r.top) / r.height) * this.height, 0, this.height),
    };
  }

  #down(e) {
    if (e.button !== 0 || !this.image.naturalWidth) return;
    const p = this.#toImage(e);
    const edge = e.target.dataset?.edge;
    const onRegion = this.rect && this.region.contains(e.target);
    this.gesture = {
      id: e.pointerId,
      before: this.rect && { ...this.rect },
      start: this.rect && { ...this.rect },
      origin: p,
      mode: edge ? 'resize' : onRegion ? 'move' : 'draw',
      edge,
      moved: false,
    };
    this.surface.setPointerCapture(e.pointerId);
    e.preventDefault();
  }

  #move(e) {
    const g = this.gesture;
    if (!g || e.pointerId !== g.id) return;
    const p = this.#toImage(e);
    const dx = p.x - g.origin.x;
    const dy = p.y - g.origin.y;
    const r = this.image.getBoundingClientRect();
    // Ignore the jitter of a click: a gesture starts after 4 screen pixels.
    if (!g.moved && Math.hypot((dx / this.width) * r.width, (dy / this.height) * r.height) < 4) return;
    g.moved = true;
    if (g.mode === 'draw') {
      this.rect = {
        x: Math.min(g.origin.x, p.x),
        y: Math.min(g.origin.y, p.y),
        w: Math.abs(p.x - g.origin.x),
        h: Math.abs(p.y - g.origin.y),
      };
    } else if (g.mode === 'move') {
      this.rect = {
        ...g.start,
        x: clamp(g.start.x + dx, 0, this.width - g.start.w),
        y: clamp(g.start.y + dy, 0, this.height - g.start.h),
      };
    } else {
      this.rect = this.#resized(g.start, g.edge, p);
    }
    this.#render();
    this.onChange(this.box);
  }

  #up(e) {
    const g = this.gesture;
    if (!g || e.pointerId !== g.id) return;
    this.gesture = null;
    if (this.surface.hasPointerCapture(e.pointerId)) this.surface.releasePointerCapture(e.pointerId);
    if (!g.moved) return;
    if (g.mode === 'draw' && (this.rect.w < this.minSide || this.rect.h < this.minSide)) {
      // Too small to mean anything: a slip, keep what was there.
      this.set(g.before);
      return;
    }
    this.onCommit(this.box);
  }

  /** The start box with the dragged edges moved to p, never smaller than minSide nor outside the image. */
  #resized(start, edge, p) {
    let left = start.x;
    let top = start.y;
    let right = start.x + start.w;
    let bottom = start.y + start.h;
    const min = this.minSide;
    if (edge.includes('w')) left = clamp(p.x, 0, right - min);
    if (edge.includes('e')) right = clamp(p.x, left + min, this.width);
    if (edge.includes('n')) top = clamp(p.y, 0, bottom - min);
    if (edge.includes('s')) bottom = clamp(p.y, top + min, this.height);
    return { x: left, y: top, w: right - left, h: bottom - top };
  }

  #key(e) {
    if (!this.rect) return;
    if (e.key === 'Delete' || e.key === 'Backspace') {
      e.preventDefault();
      this.clear();
      return;
    }
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const step = arrows[e.key];
    if (!step) return;
    e.preventDefault();
    const fraction = e.shiftKey ? 0.1 : 0.01;
    const sx = Math.max(1, this.width * fraction) * step[0];
    const sy = Math.max(1, this.height * fraction) * step[1];
    const r = this.rect;
    if (e.altKey) {
      // Resize from the top-left corner: right/down grow, left/up shrink.
      const w = clamp(r.w + sx, this.minSide, this.width - r.x);
      const h = clamp(r.h + sy, this.minSide, this.height - r.y);
      this.rect = { ...r, w, h };
    } else {
      this.rect = { ...r, x: clamp(r.x + sx, 0, this.width - r.w), y: clamp(r.y + sy, 0, this.height - r.h) };
    }
    this.#render();
    this.onChange(this.box);
    clearTimeout(this.keyTimer);
    this.keyTimer = setTimeout(() => this.onCommit(this.box), 450);
  }

  #render() {
    const box = this.box;
    this.region.hidden = !box;
    if (!box) return;
    const s = this.region.style;
    s.left = `${(box.x / this.width) * 100}%`;
    s.top = `${(box.y / this.height) * 100}%`;
    s.width = `${(box.w / this.width) * 100}%`;
    s.height = `${(box.h / this.height) * 100}%`;
    this.region.setAttribute('aria-label', `Search region: ${box.w} by ${box.h} pixels at ${box.x}, ${box.y}`);
  }
}
