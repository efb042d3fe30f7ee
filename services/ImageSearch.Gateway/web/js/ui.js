// Small DOM helpers shared by the page's parts. Text always goes in as text (never HTML).

/** Creates an element: el('a', {href: '#', class: 'x'}, 'text', child). on* attributes become listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    // Through the CSSOM: the content security policy refuses style attributes.
    else if (key === 'style') Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

const numberFormat = new Intl.NumberFormat('en');
export const formatCount = (n) => numberFormat.format(n);

export function formatBytes(bytes) {
  const mb = bytes / (1024 * 1024);
  if (bytes >= 1024 * 1024) return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

export function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatAgo(iso) {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!(seconds >= 0)) return '';
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return formatDate(iso);
}

/** "a/b/c.jpg" -> ["a/b/", "c.jpg"]. */
export function splitPath(path) {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? ['', path] : [path.slice(0, slash + 1), path.slice(slash + 1)];
}

/**
 * Fills a grid with image tiles. Items are search hits ({score}) or library images. Each tile is a
 * button that calls onOpen(item); its accessible name is the path (and the score).
 */
export function renderTiles(list, items, { onOpen, ranked = false } = {}) {
  const tiles = items.map((item, i) => {
    const [folder, name] = splitPath(item.path);
    const hasScore = typeof item.score === 'number';
    const score = hasScore ? item.score.toFixed(3) : null;
    // Verified: the same scene or object, confirmed by geometrically consistent local-feature matches.
    const verified = item.verified === true;
    const label = (hasScore ? `${item.path}, score ${score}` : item.path) + (verified ? `, verified match (${item.inliers} matching points)` : '');
    return el('li', { class: 'tile' },
      el('button', { type: 'button', class: 'tile-button', 'aria-label': label, onclick: () => onOpen(item) },
        el('div', { class: 'tile-thumb' },
          // The first rows at once; the rest as they scroll into view.
          el('img', { src: item.thumbnailUrl, alt: '', loading: i < 12 ? 'eager' : 'lazy', decoding: 'async', width: item.width, height: item.height }),
          ranked ? el('span', { class: 'tile-rank', 'aria-hidden': 'true' }, `#${i + 1}`) : null,
          hasScore ? el('span', { class: 'tile-score', 'aria-hidden': 'true' }, score) : null,
          verified ? el('span', { class: 'tile-verified', 'aria-hidden': 'true', title: `${item.inliers} matching points agree on one geometric transform` }, `✓ ${item.inliers}`) : null),
        el('div', { class: 'tile-body' },
          el('span', { class: 'tile-name', title: item.path }, folder ? el('span', { class: 'tile-folder' }, folder) : null, name),
          hasScore
            ? el('div', { class: 'tile-bar', 'aria-hidden': 'true' }, el('span', { style: { width: `${Math.max(0, Math.min(1, item.score)) * 100}%` } }))
            : el('span', { class: 'tile-sub' }, `${item.width}×${item.height} · ${formatAgo(item.addedAt)}`))));
  });
  list.replaceChildren(...tiles);
}
