// The HTTP API, as the page uses it. Every error the server sends is RFC 7807 problem+json:
// it becomes an ApiError carrying its title and detail, which the page shows as they are.

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

async function problemOf(response) {
  let title = `HTTP ${response.status}`;
  let detail = '';
  try {
    const problem = await response.json();
    title = problem.title || title;
    detail = problem.detail || '';
  } catch {
    // Not JSON (a proxy's error page, say): the status is all there is.
  }
  return new ApiError(response.status, title, detail);
}

async function send(url, init = {}) {
  let response;
  try {
    response = await fetch(url, { ...init, headers: { Accept: 'application/json', ...(init.headers || {}) } });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'Server unreachable', 'The ImageSearch server did not answer. Is it running?');
  }
  if (!response.ok) throw await problemOf(response);
  return response.json();
}

export const status = (signal) => send('/api/status', { signal });

export const recent = (count, signal) => send(`/api/images?recent=${count}`, { signal });

export const fileStates = (paths, signal) =>
  send('/api/files?' + paths.map((p) => 'path=' + encodeURIComponent(p)).join('&'), { signal });

/** Search by an image file, optionally a box {x, y, w, h} in its pixels. */
export function search(file, { box, top, signal }) {
  const form = new FormData();
  form.append('image', file, file.name || 'query');
  if (box) form.append('box', `${box.x},${box.y},${box.w},${box.h}`);
  form.append('top', String(top));
  return send('/api/search', { method: 'POST', body: form, signal });
}

/** Images similar to an indexed one (itself left out). */
export const searchById = (id, top, signal) =>
  send(`/api/search/by-id/${encodeURIComponent(id)}?top=${top}`, { method: 'POST', signal });

/**
 * Uploads one file into the library. XMLHttpRequest rather than fetch: it reports upload progress.
 * Resolves with the server's 202 answer ({images: [{name, path, id, ...}], statusUrl}).
 */
export function upload(file, { apiKey, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/images');
    xhr.responseType = 'json';
    xhr.setRequestHeader('Accept', 'application/json');
    if (apiKey) xhr.setRequestHeader('X-Api-Key', apiKey);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      if (xhr.status === 202) {
        resolve(xhr.response);
        return;
      }
      const problem = xhr.response || {};
      reject(new ApiError(xhr.status, problem.title || `HTTP ${xhr.status}`, problem.detail || ''));
    };
    xhr.onerror = () => reject(new ApiError(0, 'Upload failed', 'The connection to the server was lost.'));
    const form = new FormData();
    form.append('image', file, file.name || 'image');
    xhr.send(form);
  });
}
