// Entry point: tabs, the status poll that keeps the page live, the image viewer, and paste.

import * as api from './api.js';
import { LibraryPanel } from './library.js';
import { SearchPanel } from './search.js';
import { $, el, formatBytes, formatCount, formatDate, splitPath } from './ui.js';

const tabs = [
  { tab: $('tab-search'), panel: $('panel-search'), hash: '#search' },
  { tab: $('tab-library'), panel: $('panel-library'), hash: '#library' },
];

function selectTab(index, { focus = false, updateHash = true } = {}) {
  tabs.forEach((t, i) => {
    const selected = i === index;
    t.tab.setAttribute('aria-selected', String(selected));
    t.tab.tabIndex = selected ? 0 : -1;
    t.panel.hidden = !selected;
  });
  if (focus) tabs[index].tab.focus();
  if (updateHash && location.hash !== tabs[index].hash) history.replaceState(null, '', tabs[index].hash);
}

tabs.forEach((t, i) => {
  t.tab.addEventListener('click', () => selectTab(i));
  t.tab.addEventListener('keydown', (e) => {
    const keys = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
    if (!(e.key in keys)) return;
    e.preventDefault();
    selectTab((keys[e.key] + tabs.length) % tabs.length, { focus: true });
  });
});
const showTabOfHash = () => selectTab(Math.max(0, tabs.findIndex((t) => t.hash === location.hash)), { updateHash: false });
window.addEventListener('hashchange', showTabOfHash);
showTabOfHash();

// The viewer: a modal dialog (focus stays inside, Escape closes, focus returns to the tile).
const viewer = $('viewer');
let viewed = null;

function openViewer(item) {
  viewed = item;
  const [, name] = splitPath(item.path);
  $('viewer-title').textContent = name;
  const image = $('viewer-image');
  image.removeAttribute('src');
  image.alt = name;
  image.src = `${item.thumbnailUrl}?size=1024`;
  $('viewer-open').href = item.imageUrl;
  const rows = [['Path', item.path]];
  if (typeof item.score === 'number') rows.push(['Score', item.score.toFixed(4)]);
  if (typeof item.inliers === 'number') {
    rows.push(['Local features', item.verified
      ? `verified: ${item.inliers} matching points agree on one geometric transform`
      : `not verified (${item.inliers} consistent matches)`]);
  }
  if (item.width) rows.push(['Size', `${item.width} × ${item.height} px`]);
  if (item.sizeBytes) rows.push(['File', formatBytes(item.sizeBytes)]);
  if (item.addedAt) rows.push(['Added', formatDate(item.addedAt)]);
  $('viewer-details').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  if (!viewer.open) viewer.showModal();
  $('viewer-similar').focus();
}

viewer.addEventListener('click', (e) => { if (e.target === viewer) viewer.close(); });

const search = new SearchPanel({ onOpen: openViewer });

function findSimilar(item) {
  if (viewer.open) viewer.close();
  selectTab(0);
  search.findSimilar(item);
  $('results-title').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

$('viewer-similar').addEventListener('click', () => findSimilar(viewed));
$('viewer-query').addEventListener('click', () => {
  viewer.close();
  selectTab(0);
  search.useAsQuery(viewed);
});

const library = new LibraryPanel({ onOpen: openViewer, onSimilar: findSimilar, onActivity: () => schedule(0) });

// Paste an image anywhere: on the Library tab it is uploaded, elsewhere it is searched.
document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith('image/'));
  if (!files.length) return;
  e.preventDefault();
  if (!$('panel-library').hidden) library.add(files);
  else search.setQuery(files[0]);
});

// Status: polled every 2 s (every second while something of ours is in flight), paused while the
// page is hidden. The pill says at a glance whether the library is ready, busy, or unreachable.
let timer = 0;
let inFlight = false;

function schedule(delay) {
  clearTimeout(timer);
  timer = setTimeout(poll, delay);
}

async function poll() {
  if (document.hidden || inFlight) return;
  inFlight = true;
  const pill = $('status-pill');
  try {
    const status = await api.status();
    const pending = status.pending;
    pill.className = `status-pill ${pending ? 'busy' : 'ready'}`;
    const text = pending
      ? `${formatCount(status.indexed)} images · indexing ${formatCount(pending)}`
      : `${formatCount(status.indexed)} images${status.failed ? ` · ${formatCount(status.failed)} failed` : ''}`;
    // Only on change: a live region announces every write.
    if ($('status-text').textContent !== text) $('status-text').textContent = text;
    library.showStatus(status);
    await library.pollUploads();
    schedule(pending || library.busy ? 1000 : 2000);
  } catch (error) {
    pill.className = 'status-pill down';
    $('status-text').textContent = error.status ? `Status unavailable (${error.title})` : 'Server unreachable';
    schedule(3000);
  } finally {
    inFlight = false;
  }
}

document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(0); });
poll();
