// The Coffer console: a hash-routed page that talks only to its own origin.
// S3 calls go to /api/s3/<bucket>/<key>?<query>, which the server signs as
// the logged-in key; writes carry the session's CSRF token.
'use strict';

const PART_SIZE = 5 * 1024 * 1024;
const MULTIPART_THRESHOLD = 8 * 1024 * 1024;
const state = { session: null, timers: [], uploads: [], buckets: {} };

// ---------- small helpers ----------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function fmtBytes(n) {
  n = Number(n) || 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return '';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(code + ': ' + message);
    this.status = status; this.code = code; this.detail = message;
  }
}

function xmlDoc(text) {
  return new DOMParser().parseFromString(text, 'application/xml');
}

function tagText(node, name) {
  const el = node.getElementsByTagName(name)[0];
  return el ? el.textContent : '';
}

async function errorOf(response) {
  const text = await response.text().catch(() => '');
  if (text.trim().startsWith('{')) {
    try {
      const j = JSON.parse(text);
      return new ApiError(response.status, j.code || 'Error', j.message || '');
    } catch (_) { /* fall through */ }
  }
  if (text.includes('<Error>')) {
    const d = xmlDoc(text);
    return new ApiError(response.status, tagText(d, 'Code') || 'Error', tagText(d, 'Message'));
  }
  return new ApiError(response.status, 'HTTP' + response.status, response.statusText || 'request failed');
}

function writeHeaders(method, extra) {
  const headers = Object.assign({}, extra || {});
  if (method !== 'GET' && method !== 'HEAD' && state.session) headers['x-csrf-token'] = state.session.csrf;
  return headers;
}

async function call(method, url, options) {
  options = options || {};
  const response = await fetch(url, {
    method,
    headers: writeHeaders(method, options.headers),
    body: options.body,
    credentials: 'same-origin',
  });
  if (response.status === 401 && !options.anonymous) {
    state.session = null;
    showError(await errorOf(response));
    render();
    throw new ApiError(401, 'NotLoggedIn', 'session ended');
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function callJson(method, url, body) {
  const response = await call(method, url, body === undefined ? {} : {
    body: JSON.stringify(body), headers: { 'content-type': 'application/json' },
  });
  return response.json();
}

function encodeKey(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

function s3url(bucket, key, query) {
  let url = '/api/s3/' + encodeURIComponent(bucket);
  if (key !== undefined && key !== null) url += '/' + encodeKey(key);
  if (query) {
    const q = new URLSearchParams(query).toString();
    if (q) url += '?' + q;
  }
  return url;
}

async function s3xml(method, bucket, key, query, body, headers) {
  const response = await call(method, s3url(bucket, key, query), { body, headers });
  const text = await response.text();
  return text ? xmlDoc(text) : null;
}

function showError(err) {
  const box = document.getElementById('error');
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.textContent = err instanceof ApiError ? err.code + ': ' + err.detail : String(err);
}

function notice(text) {
  const box = document.getElementById('error');
  box.hidden = false;
  box.classList.add('ok');
  box.textContent = text;
  setTimeout(() => box.classList.remove('ok'), 100);
}

function guard(fn) {
  return async (event) => {
    if (event && event.preventDefault) event.preventDefault();
    showError(null);
    try { await fn(event); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) showError(e); }
  };
}

function main(...kids) {
  const m = document.getElementById('main');
  m.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
  return m;
}

function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

// ---------- routing ----------

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const view = parts[0] || 'buckets';
  const arg = (i) => decodeURIComponent(parts[i] || '');
  return { view, bucket: arg(1), rest: parts.slice(2).map(decodeURIComponent).join('/') };
}

function go(hash) {
  if (location.hash === hash) render(); else location.hash = hash;
}

async function render() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  const top = document.getElementById('top');
  if (!state.session) {
    top.hidden = true;
    return renderLogin();
  }
  top.hidden = false;
  document.getElementById('who').textContent = state.session.keyId + (state.session.root ? ' (root)' : '');
  const may = state.session.admin || {};
  document.getElementById('nav-keys').hidden = !may.keys;
  document.getElementById('nav-cluster').hidden = !may.cluster;
  const r = route();
  try {
    if (r.view === 'b') await renderBrowser(r.bucket, r.rest);
    else if (r.view === 'o') await renderObject(r.bucket, r.rest);
    else if (r.view === 's') await renderSettings(r.bucket);
    else if (r.view === 'keys') await renderKeys();
    else if (r.view === 'cluster') await renderCluster();
    else await renderBuckets();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      showError(e);
      main(h('h1', {}, 'Error'), h('p', { class: 's3error', id: 'page-error' }, e instanceof ApiError ? e.code + ': ' + e.detail : String(e)));
    }
  }
  document.body.dataset.ready = location.hash || '#/';
}

// ---------- login ----------

function renderLogin() {
  const id = h('input', { id: 'login-id', name: 'accessKeyId', autocomplete: 'username', required: true });
  const secret = h('input', { id: 'login-secret', name: 'secretAccessKey', type: 'password', autocomplete: 'current-password', required: true });
  main(h('form', { id: 'login', class: 'card narrow', onsubmit: guard(async () => {
    const s = await callJson('POST', '/api/login', { accessKeyId: id.value, secretAccessKey: secret.value });
    state.session = s;
    secret.value = '';
    if (!location.hash || location.hash === '#/login') location.hash = '#/buckets';
    render();
  }) },
  h('h1', {}, 'Log in to Coffer'),
  field('Access key id', id),
  field('Secret access key', secret),
  h('button', { type: 'submit', id: 'login-submit' }, 'Log in')));
  document.body.dataset.ready = 'login';
  id.focus();
}

async function logout() {
  try { await call('POST', '/api/logout'); } catch (_) { /* the session may be gone */ }
  state.session = null;
  location.hash = '#/login';
  render();
}

// ---------- buckets ----------

async function loadBuckets() {
  const j = await callJson('GET', '/api/buckets');
  state.buckets = {};
  for (const b of j.buckets) state.buckets[b.name] = b;
  return j.buckets;
}

function quotaBar(used, max, label) {
  if (!max) return h('span', { class: 'muted' }, 'no quota');
  const pct = Math.min(100, Math.round(100 * used / max));
  return h('span', { class: 'quota' }, h('meter', { min: 0, max: 100, value: pct, 'aria-label': label + ' ' + pct + '%' }), ' ' + pct + '%');
}

async function renderBuckets() {
  const list = await loadBuckets();
  const name = h('input', { id: 'new-bucket', name: 'bucket', pattern: '[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]', required: true });
  const rows = list.map((b) => h('tr', {},
    h('td', {}, h('a', { href: '#/b/' + encodeURIComponent(b.name) + '/', class: 'bucket-link' }, b.name),
      b.managedBy ? h('span', { class: 'badge', title: 'managed by Kubernetes' }, 'k8s ' + b.managedBy) : null),
    h('td', { class: 'num' }, b.objects),
    h('td', { class: 'num' }, fmtBytes(b.bytes)),
    h('td', {}, b.quotaBytes ? quotaBar(b.bytes, b.quotaBytes, 'bytes quota used') : quotaBar(b.objects, b.quotaObjects, 'object quota used')),
    h('td', {}, h('a', { href: '#/s/' + encodeURIComponent(b.name) }, 'Settings'))));
  main(
    h('h1', {}, 'Buckets'),
    h('form', { class: 'inline', id: 'create-bucket', onsubmit: guard(async () => {
      await call('PUT', s3url(name.value));
      go('#/b/' + encodeURIComponent(name.value) + '/');
    }) }, field('New bucket name', name), h('button', { type: 'submit', id: 'create-bucket-submit' }, 'Create bucket')),
    list.length === 0 ? h('p', { class: 'muted', id: 'no-buckets' }, 'No buckets visible to this key.') :
      h('table', { id: 'buckets' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Bucket'), h('th', {}, 'Objects'), h('th', {}, 'Size'), h('th', {}, 'Quota'), h('th', {}, ''))),
        h('tbody', {}, rows)));
}

// ---------- object browser ----------

function crumbs(bucket, prefix) {
  const parts = prefix.split('/').filter(Boolean);
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
    h('a', { href: '#/buckets' }, 'Buckets'), ' / ',
    h('a', { href: '#/b/' + encodeURIComponent(bucket) + '/' }, bucket));
  let acc = '';
  for (const p of parts) {
    acc += p + '/';
    nav.append(' / ', h('a', { href: '#/b/' + encodeURIComponent(bucket) + '/' + encodeKey(acc) }, p));
  }
  return nav;
}

function confirmBox(text, action) {
  const box = h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm' },
    h('p', {}, text));
  const yes = h('button', { type: 'button', class: 'danger', id: 'confirm-yes', onclick: guard(async () => { box.remove(); await action(); }) }, 'Confirm delete');
  const no = h('button', { type: 'button', onclick: () => box.remove() }, 'Cancel');
  box.append(yes, ' ', no);
  document.querySelectorAll('.confirm').forEach((b) => b.remove());
  document.getElementById('main').prepend(box);
  yes.focus();
}

async function shareBox(bucket, key, versionId) {
  const expiry = h('select', { id: 'share-expiry' },
    h('option', { value: '3600' }, '1 hour'),
    h('option', { value: '86400' }, '1 day'),
    h('option', { value: '604800' }, '7 days'));
  const out = h('input', { id: 'share-url', readonly: true, size: 60, 'aria-label': 'Shared link' });
  const box = h('div', { class: 'confirm', id: 'share', role: 'dialog', 'aria-label': 'Share ' + key },
    h('p', {}, 'Share ' + key + ': anyone with the link can download it until it expires.'),
    field('Expires after', expiry),
    h('button', { type: 'button', id: 'share-create', onclick: guard(async () => {
      const j = await callJson('POST', '/api/presign', { bucket, key, expiresSeconds: Number(expiry.value), versionId: versionId || null });
      out.value = j.url;
      out.select();
      try { await navigator.clipboard.writeText(j.url); notice('Link copied.'); } catch (_) { /* not allowed: the field is selected */ }
    }) }, 'Create link'), ' ',
    out, ' ',
    h('button', { type: 'button', onclick: () => box.remove() }, 'Close'));
  document.querySelectorAll('.confirm').forEach((b) => b.remove());
  document.getElementById('main').prepend(box);
  expiry.focus();
}

function downloadUrl(bucket, key, versionId) {
  const name = key.split('/').pop() || 'download';
  const q = { 'response-content-disposition': "attachment; filename*=UTF-8''" + encodeURIComponent(name) };
  if (versionId) q.versionId = versionId;
  return s3url(bucket, key, q);
}

async function deleteKeys(bucket, prefix) {
  let token = null;
  let n = 0;
  do {
    const q = { 'list-type': '2', prefix, 'max-keys': '1000' };
    if (token) q['continuation-token'] = token;
    const d = await s3xml('GET', bucket, null, q);
    for (const c of d.getElementsByTagName('Contents')) {
      await call('DELETE', s3url(bucket, tagText(c, 'Key')));
      n++;
    }
    token = tagText(d, 'IsTruncated') === 'true' ? tagText(d, 'NextContinuationToken') : null;
  } while (token);
  return n;
}

async function renderBrowser(bucket, prefix) {
  if (!state.buckets[bucket]) { try { await loadBuckets(); } catch (_) { /* listing still works */ } }
  const pageSize = Number(sessionStorage.getItem('pageSize')) || 1000;
  const tokens = (state.pageTokens && state.pageTokens.where === bucket + '/' + prefix) ? state.pageTokens : { where: bucket + '/' + prefix, list: [null], at: 0 };
  state.pageTokens = tokens;
  const q = { 'list-type': '2', delimiter: '/', prefix, 'max-keys': String(pageSize) };
  if (tokens.list[tokens.at]) q['continuation-token'] = tokens.list[tokens.at];
  const started = performance.now();
  const d = await s3xml('GET', bucket, null, q);
  const fileInput = h('input', { type: 'file', id: 'file-input', multiple: true, onchange: (e) => { uploadFiles(bucket, prefix, [...e.target.files]); e.target.value = ''; } });
  const drop = h('div', { class: 'drop', id: 'drop', tabindex: '0', 'aria-label': 'Drop files here to upload' }, 'Drop files here, or ', h('label', { class: 'button' }, 'choose files', fileInput));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); uploadFiles(bucket, prefix, [...e.dataTransfer.files]); });
  // A page has up to 1,000 rows: they are written as one HTML string (every
  // value escaped) and their buttons share one delegated listener — a node
  // tree and three closures per row cost most of the first paint.
  const rows = [];
  for (const p of d.getElementsByTagName('CommonPrefixes')) {
    const full = tagText(p, 'Prefix');
    rows.push('<tr class="folder"><td><a class="folder-link" href="' + escapeHtml('#/b/' + encodeURIComponent(bucket) + '/' + encodeKey(full)) + '">' +
      escapeHtml(full.slice(prefix.length)) + '</a></td><td></td><td></td><td><button type="button" class="danger" data-prefix="' +
      escapeHtml(full) + '">Delete</button></td></tr>');
  }
  for (const c of d.getElementsByTagName('Contents')) {
    const key = tagText(c, 'Key');
    const name = key.slice(prefix.length);
    rows.push('<tr data-key="' + escapeHtml(key) + '"><td><a class="object-link" href="' +
      escapeHtml('#/o/' + encodeURIComponent(bucket) + '/' + encodeKey(key)) + '">' + escapeHtml(name) + '</a></td><td class="num">' +
      escapeHtml(fmtBytes(tagText(c, 'Size'))) + '</td><td>' + escapeHtml(tagText(c, 'LastModified').replace('T', ' ').replace(/\.\d+Z$/, 'Z')) +
      '</td><td class="actions"><a class="download" href="' + escapeHtml(downloadUrl(bucket, key)) + '" download="' + escapeHtml(name) +
      '">Download</a> <button type="button" class="share">Share</button> <button type="button" class="danger delete">Delete</button></td></tr>');
  }
  // The first screenful is painted before the rest of the page's rows are laid
  // out: style and layout of 1,000 rows cost more than everything else here.
  const FIRST = 50;
  const body = h('tbody', {});
  body.innerHTML = rows.slice(0, FIRST).join('');
  body.addEventListener('click', (e) => {
    const button = e.target.closest('button');
    if (!button) return;
    const folder = button.getAttribute('data-prefix');
    if (folder !== null) {
      confirmBox('Delete everything under ' + folder + '?', async () => {
        const n = await deleteKeys(bucket, folder); notice('Deleted ' + n + ' objects.'); render();
      });
      return;
    }
    const key = button.closest('tr').getAttribute('data-key');
    if (button.classList.contains('share')) shareBox(bucket, key);
    else if (button.classList.contains('delete')) {
      confirmBox('Delete ' + key + '?', async () => { await call('DELETE', s3url(bucket, key)); render(); });
    }
  });
  const truncated = tagText(d, 'IsTruncated') === 'true';
  const nav = h('div', { class: 'pager' });
  if (tokens.at > 0) nav.append(h('button', { type: 'button', id: 'prev-page', onclick: () => { tokens.at--; render(); } }, '← Previous page'), ' ');
  if (truncated) nav.append(h('button', { type: 'button', id: 'next-page', onclick: () => { tokens.list[tokens.at + 1] = tagText(d, 'NextContinuationToken'); tokens.at++; render(); } }, 'Next page →'));
  const info = state.buckets[bucket];
  main(
    crumbs(bucket, prefix),
    h('div', { class: 'toolbar' },
      h('h1', {}, prefix ? prefix : bucket),
      info && info.managedBy ? h('span', { class: 'badge' }, 'managed by Kubernetes: ' + info.managedBy) : null,
      h('a', { href: '#/s/' + encodeURIComponent(bucket), class: 'button' }, 'Bucket settings')),
    drop,
    h('ul', { id: 'uploads', 'aria-live': 'polite' }, state.uploads.filter((u) => u.bucket === bucket).map((u) => u.row)),
    h('table', { id: 'objects' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Size'), h('th', {}, 'Modified'), h('th', {}, 'Actions'))),
      body),
    body.children.length === 0 ? h('p', { class: 'muted', id: 'empty' }, 'Nothing here yet.') : null,
    nav,
    h('p', { class: 'muted', id: 'listing-time' }, 'Page ' + (tokens.at + 1) + ', listed in ' + Math.round(performance.now() - started) + ' ms'));
  if (rows.length > FIRST) {
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    body.insertAdjacentHTML('beforeend', rows.slice(FIRST).join(''));
  }
}

// ---------- uploads ----------

function xhr(method, url, body, headers, onProgress) {
  const req = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    req.open(method, url);
    for (const [k, v] of Object.entries(writeHeaders(method, headers))) req.setRequestHeader(k, v);
    req.upload.onprogress = (e) => onProgress && onProgress(e.loaded);
    req.onload = () => {
      if (req.status >= 200 && req.status < 300) resolve(req);
      else errorOf(new Response(req.responseText, { status: req.status })).then(reject);
    };
    req.onerror = () => reject(new ApiError(0, 'NetworkError', 'the upload failed'));
    req.onabort = () => reject(new ApiError(0, 'Cancelled', 'the upload was cancelled'));
    req.send(body);
  });
  return { promise, abort: () => req.abort() };
}

function uploadFiles(bucket, prefix, files) {
  const jobs = files.map((file) => startUpload(bucket, prefix + file.name, file));
  Promise.allSettled(jobs).then(() => { if (route().view === 'b') render(); });
}

async function startUpload(bucket, key, file) {
  const bar = h('progress', { max: file.size || 1, value: 0, 'aria-label': 'Upload progress of ' + key });
  const status = h('span', { class: 'status' }, 'starting');
  const u = { bucket, key, cancelled: false, current: null, uploadId: null };
  const cancel = h('button', { type: 'button', class: 'cancel', onclick: () => {
    u.cancelled = true; if (u.current) u.current.abort();
  } }, 'Cancel');
  u.row = h('li', { class: 'upload', 'data-key': key }, h('span', { class: 'name' }, key), ' ', bar, ' ', status, ' ', cancel);
  state.uploads.push(u);
  const list = document.getElementById('uploads');
  if (list) list.append(u.row);
  const headers = { 'content-type': file.type || 'application/octet-stream' };
  try {
    if (file.size <= MULTIPART_THRESHOLD) {
      status.textContent = 'uploading';
      u.current = xhr('PUT', s3url(bucket, key), file, headers, (n) => { bar.value = n; });
      await u.current.promise;
    } else {
      const init = await s3xml('POST', bucket, key, { uploads: '' }, null, headers);
      u.uploadId = tagText(init, 'UploadId');
      const parts = [];
      const count = Math.ceil(file.size / PART_SIZE);
      for (let i = 0; i < count; i++) {
        if (u.cancelled) throw new ApiError(0, 'Cancelled', 'the upload was cancelled');
        const start = i * PART_SIZE;
        status.textContent = 'part ' + (i + 1) + ' of ' + count;
        u.current = xhr('PUT', s3url(bucket, key, { partNumber: String(i + 1), uploadId: u.uploadId }),
          file.slice(start, start + PART_SIZE), {}, (n) => { bar.value = start + n; });
        const done = await u.current.promise;
        parts.push('<Part><PartNumber>' + (i + 1) + '</PartNumber><ETag>' + done.getResponseHeader('ETag') + '</ETag></Part>');
      }
      status.textContent = 'completing';
      await s3xml('POST', bucket, key, { uploadId: u.uploadId },
        '<CompleteMultipartUpload>' + parts.join('') + '</CompleteMultipartUpload>', { 'content-type': 'application/xml' });
    }
    bar.value = file.size || 1;
    status.textContent = 'done';
    u.row.classList.add('done');
  } catch (e) {
    u.row.classList.add('failed');
    status.textContent = e instanceof ApiError ? e.code + ': ' + e.detail : String(e);
    if (u.uploadId) {
      try { await call('DELETE', s3url(bucket, key, { uploadId: u.uploadId })); } catch (_) { /* best effort */ }
    }
  } finally {
    cancel.remove();
    state.uploads = state.uploads.filter((x) => x !== u || !u.row.classList.contains('done'));
  }
}

// ---------- object details ----------

function dl(pairs) {
  return h('dl', { class: 'props' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

async function renderObject(bucket, key) {
  const head = await call('HEAD', s3url(bucket, key));
  const hd = head.headers;
  const meta = [];
  const checks = [];
  hd.forEach((v, k) => {
    if (k.startsWith('x-amz-meta-')) meta.push([k.slice(11), v]);
    if (k.startsWith('x-amz-checksum-')) checks.push([k.slice(15).toUpperCase(), v]);
  });
  let tags = [];
  try {
    const t = await s3xml('GET', bucket, key, { tagging: '' });
    tags = [...t.getElementsByTagName('Tag')].map((x) => [tagText(x, 'Key'), tagText(x, 'Value')]);
  } catch (_) { /* no permission or none */ }
  let hold = '';
  try { hold = tagText(await s3xml('GET', bucket, key, { 'legal-hold': '' }), 'Status'); } catch (_) { /* none */ }
  let retention = '';
  try {
    const r = await s3xml('GET', bucket, key, { retention: '' });
    retention = tagText(r, 'Mode') + ' until ' + tagText(r, 'RetainUntilDate');
  } catch (_) { /* none */ }
  const versions = h('tbody', {});
  try {
    const v = await s3xml('GET', bucket, null, { versions: '', prefix: key });
    for (const el of [...v.getElementsByTagName('Version'), ...v.getElementsByTagName('DeleteMarker')]) {
      if (tagText(el, 'Key') !== key) continue;
      const id = tagText(el, 'VersionId');
      const marker = el.tagName === 'DeleteMarker';
      versions.append(h('tr', { 'data-version': id },
        h('td', {}, id, tagText(el, 'IsLatest') === 'true' ? h('span', { class: 'badge' }, 'latest') : null, marker ? h('span', { class: 'badge' }, 'delete marker') : null),
        h('td', {}, tagText(el, 'LastModified')),
        h('td', { class: 'num' }, marker ? '' : fmtBytes(tagText(el, 'Size'))),
        h('td', { class: 'actions' },
          marker ? null : h('a', { href: downloadUrl(bucket, key, id) }, 'Download'), ' ',
          marker || id === 'null' ? null : h('button', { type: 'button', class: 'restore', onclick: guard(async () => {
            await call('PUT', s3url(bucket, key), { headers: { 'x-amz-copy-source': '/' + encodeURIComponent(bucket) + '/' + encodeKey(key) + '?versionId=' + encodeURIComponent(id) } });
            render();
          }) }, 'Restore'), ' ',
          h('button', { type: 'button', class: 'danger', onclick: () => confirmBox('Delete version ' + id + ' of ' + key + '? This cannot be undone.', async () => {
            await call('DELETE', s3url(bucket, key, { versionId: id })); render();
          }) }, 'Delete version'))));
    }
  } catch (_) { /* no ListBucketVersions */ }
  const parent = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
  main(
    crumbs(bucket, parent),
    h('h1', { id: 'object-key' }, key.slice(parent.length)),
    h('div', { class: 'toolbar' },
      h('a', { class: 'button', href: downloadUrl(bucket, key) }, 'Download'),
      h('button', { type: 'button', onclick: () => shareBox(bucket, key) }, 'Share')),
    dl([
      ['Key', key],
      ['Size', fmtBytes(hd.get('content-length')) + ' (' + hd.get('content-length') + ' bytes)'],
      ['ETag', hd.get('etag')],
      ['Content type', hd.get('content-type')],
      ['Last modified', hd.get('last-modified')],
      ['Version', hd.get('x-amz-version-id')],
      ['Encryption', hd.get('x-amz-server-side-encryption')],
      ['Storage class', hd.get('x-amz-storage-class')],
      ['Legal hold', hold],
      ['Retention', retention],
      ...checks.map(([k, v]) => ['Checksum ' + k, v]),
    ]),
    h('h2', {}, 'Metadata'), meta.length ? dl(meta) : h('p', { class: 'muted' }, 'none'),
    h('h2', {}, 'Tags'), tags.length ? dl(tags) : h('p', { class: 'muted' }, 'none'),
    h('h2', {}, 'Versions'),
    h('table', { id: 'versions' }, h('thead', {}, h('tr', {}, h('th', {}, 'Version'), h('th', {}, 'Modified'), h('th', {}, 'Size'), h('th', {}, ''))), versions));
}

// ---------- bucket settings ----------

const NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';

async function getXml(bucket, sub) {
  try {
    const response = await call('GET', s3url(bucket, null, { [sub]: '' }));
    return await response.text();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return '';
    if (e instanceof ApiError && e.status === 401) throw e;
    return null;
  }
}

function section(title, id, readOnly, ...kids) {
  const fs = h('fieldset', { id, disabled: readOnly }, h('legend', {}, title), ...kids);
  return h('section', { class: 'card' }, fs);
}

function escapeHtml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function escapeXml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

async function renderSettings(bucket) {
  if (!state.buckets[bucket]) await loadBuckets();
  const info = state.buckets[bucket] || {};
  const ro = !!info.managedBy;
  const [ver, lc, cors, policy, enc, tags, lock] = await Promise.all(
    ['versioning', 'lifecycle', 'cors', 'policy', 'encryption', 'tagging', 'object-lock'].map((s) => getXml(bucket, s)));
  const saved = (what) => async () => { notice(what + ' saved.'); await render(); };

  const status = ver ? tagText(xmlDoc(ver), 'Status') || 'Off' : 'Off';
  const verSel = h('select', { id: 'versioning' },
    ['Enabled', 'Suspended'].map((s) => h('option', { value: s, selected: s === status }, s)));

  const rules = lc ? [...xmlDoc(lc).getElementsByTagName('Rule')] : [];
  const ruleRows = rules.map((r) => h('li', {}, (tagText(r, 'ID') || '(no id)') + ': prefix "' + tagText(r, 'Prefix') + '", ' +
    (tagText(r, 'Days') ? 'expire after ' + tagText(r, 'Days') + ' days' : 'other actions') + ', ' + tagText(r, 'Status')));
  const lcId = h('input', { id: 'lc-id', value: 'rule-' + (rules.length + 1) });
  const lcPrefix = h('input', { id: 'lc-prefix' });
  const lcDays = h('input', { id: 'lc-days', type: 'number', min: '1', value: '30' });

  const corsText = h('textarea', { id: 'cors', rows: 6, 'aria-label': 'CORS configuration XML' }, cors || '');
  const policyText = h('textarea', { id: 'policy', rows: 10, 'aria-label': 'Bucket policy JSON', spellcheck: 'false' }, policy || '');
  const policyErr = h('p', { class: 's3error', id: 'policy-error', role: 'status' });
  policyText.addEventListener('input', () => {
    if (!policyText.value.trim()) { policyErr.textContent = ''; return; }
    try { JSON.parse(policyText.value); policyErr.textContent = ''; } catch (e) { policyErr.textContent = 'JSON: ' + e.message; }
  });
  const algo = enc ? tagText(xmlDoc(enc), 'SSEAlgorithm') : '';
  const encSel = h('select', { id: 'encryption' },
    h('option', { value: '', selected: !algo }, 'none'),
    h('option', { value: 'AES256', selected: algo === 'AES256' }, 'SSE-S3 (AES256)'),
    h('option', { value: 'aws:kms', selected: algo === 'aws:kms' }, 'SSE-KMS'));
  const tagList = tags ? [...xmlDoc(tags).getElementsByTagName('Tag')].map((t) => tagText(t, 'Key') + '=' + tagText(t, 'Value')).join('\n') : '';
  const tagText_ = h('textarea', { id: 'bucket-tags', rows: 4, 'aria-label': 'Tags, one key=value per line' }, tagList);

  main(
    crumbs(bucket, ''),
    h('h1', {}, 'Settings of ' + bucket),
    ro ? h('p', { class: 'badge big', id: 'managed' }, 'managed by Kubernetes: ' + info.managedBy + ' — settings are read-only here; change them in git.') : null,
    h('p', {}, 'Usage: ', info.objects + ' objects, ' + fmtBytes(info.bytes),
      info.quotaBytes ? ' of a ' + fmtBytes(info.quotaBytes) + ' quota' : '',
      info.quotaObjects ? ', at most ' + info.quotaObjects + ' objects' : ''),
    quotaSection(bucket, info, ro),
    section('Versioning', 'set-versioning', ro, h('p', {}, 'Now: ', h('strong', { id: 'versioning-status' }, status)),
      field('Versioning', verSel),
      h('button', { type: 'button', id: 'save-versioning', onclick: guard(async () => {
        await call('PUT', s3url(bucket, null, { versioning: '' }), { body: '<VersioningConfiguration' + NS + '><Status>' + verSel.value + '</Status></VersioningConfiguration>' });
        await saved('Versioning')();
      }) }, 'Save versioning')),
    section('Lifecycle rules', 'set-lifecycle', ro,
      h('ul', { id: 'lifecycle-rules' }, ruleRows.length ? ruleRows : h('li', { class: 'muted' }, 'no rules')),
      field('Rule id', lcId), field('Key prefix', lcPrefix), field('Expire objects after (days)', lcDays),
      h('button', { type: 'button', id: 'lc-add', onclick: guard(async () => {
        const ser = new XMLSerializer();
        const kept = rules.map((r) => ser.serializeToString(r)).join('');
        const rule = '<Rule><ID>' + escapeXml(lcId.value) + '</ID><Filter><Prefix>' + escapeXml(lcPrefix.value) + '</Prefix></Filter><Status>Enabled</Status><Expiration><Days>' + Number(lcDays.value) + '</Days></Expiration></Rule>';
        await call('PUT', s3url(bucket, null, { lifecycle: '' }), { body: '<LifecycleConfiguration' + NS + '>' + kept + rule + '</LifecycleConfiguration>' });
        await saved('Lifecycle')();
      }) }, 'Add rule'), ' ',
      h('button', { type: 'button', class: 'danger', onclick: guard(async () => { await call('DELETE', s3url(bucket, null, { lifecycle: '' })); await saved('Lifecycle')(); }) }, 'Remove all rules')),
    section('CORS rules (XML)', 'set-cors', ro, corsText,
      h('button', { type: 'button', id: 'save-cors', onclick: guard(async () => {
        if (corsText.value.trim()) await call('PUT', s3url(bucket, null, { cors: '' }), { body: corsText.value });
        else await call('DELETE', s3url(bucket, null, { cors: '' }));
        await saved('CORS')();
      }) }, 'Save CORS')),
    section('Bucket policy (JSON)', 'set-policy', ro, policyText, policyErr,
      h('button', { type: 'button', id: 'save-policy', onclick: guard(async () => {
        if (policyText.value.trim()) {
          try { JSON.parse(policyText.value); } catch (e) { policyErr.textContent = 'JSON: ' + e.message; return; }
          try { await call('PUT', s3url(bucket, null, { policy: '' }), { body: policyText.value, headers: { 'content-type': 'application/json' } }); } catch (e) { policyErr.textContent = e.message; throw e; }
        } else await call('DELETE', s3url(bucket, null, { policy: '' }));
        await saved('Policy')();
      }) }, 'Save policy')),
    section('Default encryption', 'set-encryption', ro, field('Algorithm', encSel),
      h('button', { type: 'button', id: 'save-encryption', onclick: guard(async () => {
        if (encSel.value) await call('PUT', s3url(bucket, null, { encryption: '' }), { body: '<ServerSideEncryptionConfiguration' + NS + '><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>' + encSel.value + '</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>' });
        else await call('DELETE', s3url(bucket, null, { encryption: '' }));
        await saved('Encryption')();
      }) }, 'Save encryption')),
    section('Tags', 'set-tags', ro, tagText_,
      h('button', { type: 'button', id: 'save-tags', onclick: guard(async () => {
        const pairs = tagText_.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => { const i = l.indexOf('='); return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 1)]; });
        if (pairs.length) await call('PUT', s3url(bucket, null, { tagging: '' }), { body: '<Tagging' + NS + '><TagSet>' + pairs.map(([k, v]) => '<Tag><Key>' + escapeXml(k) + '</Key><Value>' + escapeXml(v) + '</Value></Tag>').join('') + '</TagSet></Tagging>' });
        else await call('DELETE', s3url(bucket, null, { tagging: '' }));
        await saved('Tags')();
      }) }, 'Save tags')),
    lockSection(bucket, lock, ro, saved),
    section('Delete bucket', 'delete-bucket', ro, h('button', { type: 'button', class: 'danger', onclick: () => confirmBox('Delete the bucket ' + bucket + '? It must be empty.', async () => {
      await call('DELETE', s3url(bucket)); go('#/buckets');
    }) }, 'Delete bucket')));
}

// Quota: root, or a key allowed coffer:PutBucketQuota on the bucket, sets or
// removes it (a Kubernetes-managed bucket's comes from its spec).
function quotaSection(bucket, info, ro) {
  if (!info.quotaEditable) return null;
  const GIB = 1024 * 1024 * 1024;
  const size = h('input', { id: 'quota-gib', type: 'number', min: '0', step: 'any', value: info.quotaBytes ? String(info.quotaBytes / GIB) : '' });
  const objects = h('input', { id: 'quota-objects', type: 'number', min: '1', step: '1', value: info.quotaObjects ? String(info.quotaObjects) : '' });
  return section('Quota', 'set-quota', ro,
    h('p', { class: 'muted' }, 'Empty: no limit. Writes beyond it get 403 QuotaExceeded.'),
    field('Maximum size (GiB)', size), field('Maximum objects', objects),
    h('button', { type: 'button', id: 'save-quota', onclick: guard(async () => {
      const bytes = size.value.trim() ? Math.round(Number(size.value) * GIB) : null;
      const count = objects.value.trim() ? Number(objects.value) : null;
      await callJson('PUT', '/api/admin/buckets/' + encodeURIComponent(bucket) + '/quota', { maxSizeBytes: bytes, maxObjects: count });
      await loadBuckets();
      notice('Quota saved.');
      await render();
    }) }, 'Save quota'));
}

// Object Lock: shown always; the default retention (mode and period) can be
// set or removed when the bucket has Object Lock, which only CreateBucket turns on.
function lockSection(bucket, lock, ro, saved) {
  if (!lock) return section('Object Lock', 'set-lock', true, h('p', { id: 'lock-status' }, 'Not enabled (it can only be chosen when the bucket is created).'));
  const d = xmlDoc(lock);
  const mode = tagText(d, 'Mode');
  const years = tagText(d, 'Years');
  const period = years || tagText(d, 'Days');
  const unit = years ? 'Years' : 'Days';
  const now = mode ? 'default retention ' + mode + ', ' + period + ' ' + unit.toLowerCase() : 'no default retention';
  const modeSel = h('select', { id: 'lock-mode' },
    h('option', { value: '', selected: !mode }, 'none'),
    h('option', { value: 'GOVERNANCE', selected: mode === 'GOVERNANCE' }, 'GOVERNANCE'),
    h('option', { value: 'COMPLIANCE', selected: mode === 'COMPLIANCE' }, 'COMPLIANCE'));
  const periodIn = h('input', { id: 'lock-period', type: 'number', min: '1', value: period || '1' });
  const unitSel = h('select', { id: 'lock-unit' },
    ['Days', 'Years'].map((u) => h('option', { value: u, selected: u === unit }, u.toLowerCase())));
  return section('Object Lock', 'set-lock', ro,
    h('p', {}, 'Enabled: ', h('strong', { id: 'lock-status' }, now)),
    field('Default retention mode', modeSel), field('Retention period', periodIn), field('Unit', unitSel),
    h('button', { type: 'button', id: 'save-lock', onclick: guard(async () => {
      const rule = modeSel.value
        ? '<Rule><DefaultRetention><Mode>' + modeSel.value + '</Mode><' + unitSel.value + '>' + Number(periodIn.value) + '</' + unitSel.value + '></DefaultRetention></Rule>'
        : '';
      await call('PUT', s3url(bucket, null, { 'object-lock': '' }), { body: '<ObjectLockConfiguration' + NS + '><ObjectLockEnabled>Enabled</ObjectLockEnabled>' + rule + '</ObjectLockConfiguration>' });
      await saved('Object Lock')();
    }) }, 'Save Object Lock'));
}

// ---------- administration ----------

async function renderKeys() {
  const j = await callJson('GET', '/api/admin/keys');
  const name = h('input', { id: 'key-name', required: true });
  const template = h('select', { id: 'key-template' },
    h('option', { value: 'read-only' }, 'read-only on buckets'),
    h('option', { value: 'read-write' }, 'read-write on buckets'),
    h('option', { value: 'admin' }, 'admin of buckets'),
    state.session.root ? h('option', { value: 'json' }, 'policy JSON') : null);
  const buckets = h('input', { id: 'key-buckets', placeholder: 'bucket-a, bucket-b' });
  const prefix = h('input', { id: 'key-prefix', placeholder: 'optional, e.g. reports/' });
  const policy = h('textarea', { id: 'key-policy', rows: 8, 'aria-label': 'Policy JSON', hidden: true });
  const result = h('div', { id: 'key-result', role: 'status' });
  template.addEventListener('change', () => { policy.hidden = template.value !== 'json'; });
  const rows = j.keys.map((k) => h('tr', { 'data-key-id': k.id },
    h('td', {}, h('code', {}, k.id)), h('td', {}, k.name),
    h('td', {}, k.root ? 'root' : k.managedBy ? h('span', { class: 'badge' }, 'managed by Kubernetes: ' + k.managedBy) : k.owner),
    h('td', {}, fmtTime(k.created)),
    h('td', { class: 'last-used' }, k.lastUsed ? fmtTime(k.lastUsed) : h('span', { class: 'muted' }, 'never')),
    h('td', {}, k.policy ? h('details', {}, h('summary', {}, 'policy'), h('pre', {}, k.policy)) : (k.root ? 'everything' : 'none')),
    h('td', {}, k.root || k.managedBy ? '' : h('button', { type: 'button', class: 'danger', onclick: () => confirmBox('Delete the key ' + k.id + ' (' + k.name + ')?', async () => {
      await call('DELETE', '/api/admin/keys/' + encodeURIComponent(k.id)); render();
    }) }, 'Delete'))));
  main(
    h('h1', {}, 'Access keys'),
    h('form', { class: 'card', id: 'new-key', onsubmit: guard(async () => {
      const k = await callJson('POST', '/api/admin/keys', {
        name: name.value, template: template.value,
        buckets: buckets.value.split(',').map((s) => s.trim()).filter(Boolean),
        prefix: prefix.value, policy: policy.value,
      });
      await render();
      document.getElementById('key-result').replaceChildren(h('div', { class: 'secret' },
        h('p', {}, 'The secret is shown this once: copy it now.'),
        dl([['AccessKeyId', h('code', { id: 'created-key-id' }, k.id)], ['SecretAccessKey', h('code', { id: 'created-key-secret' }, k.secret)]])));
    }) },
    h('h2', {}, 'Create a key'),
    field('Name', name), field('Template', template), field('Buckets (comma-separated)', buckets), field('Key prefix', prefix), policy,
    h('button', { type: 'submit', id: 'key-create' }, 'Create key')),
    result,
    h('table', { id: 'keys' }, h('thead', {}, h('tr', {}, h('th', {}, 'Key id'), h('th', {}, 'Name'), h('th', {}, 'Owner'), h('th', {}, 'Created'), h('th', {}, 'Last used'), h('th', {}, 'Policy'), h('th', {}, ''))), h('tbody', {}, rows)));
}

function parseMetrics(text) {
  const m = { requests: 0, errors: 0, durSum: 0, durCount: 0, inFlight: 0, received: 0, sent: 0 };
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line) continue;
    const sp = line.lastIndexOf(' ');
    const name = line.slice(0, sp);
    const value = Number(line.slice(sp + 1));
    if (name.startsWith('coffer_http_requests_total')) {
      m.requests += value;
      const st = /status="(\d+)"/.exec(name);
      if (st && Number(st[1]) >= 500) m.errors += value;
    } else if (name.startsWith('coffer_http_request_duration_seconds_sum')) m.durSum += value;
    else if (name.startsWith('coffer_http_request_duration_seconds_count')) m.durCount += value;
    else if (name.startsWith('coffer_http_requests_in_flight')) m.inFlight = value;
    else if (name === 'coffer_network_received_bytes_total') m.received = value;
    else if (name === 'coffer_network_sent_bytes_total') m.sent = value;
  }
  return m;
}

function sparkline(id, label, unit) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 120 40');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  svg.append(line);
  const now = h('span', { class: 'now' }, '–');
  const box = h('figure', { class: 'chart', id }, h('figcaption', {}, label, ': ', now), svg);
  const points = [];
  box.push = (v) => {
    points.push(v);
    if (points.length > 60) points.shift();
    const max = Math.max(...points, 1e-9);
    line.setAttribute('points', points.map((p, i) => (i * 2) + ',' + (38 - 36 * p / max).toFixed(1)).join(' '));
    now.textContent = (Math.round(v * 100) / 100) + ' ' + unit;
  };
  return box;
}

// A node's data volume: free of total, with a bar of what is used (any data).
function volumeCell(p) {
  if (!p.volumeBytes) return h('span', { class: 'muted' }, 'not reported');
  const used = p.volumeBytes - p.volumeAvailableBytes;
  return [quotaBar(used, p.volumeBytes, 'volume used'), h('div', {}, fmtBytes(p.volumeAvailableBytes) + ' free of ' + fmtBytes(p.volumeBytes))];
}

async function renderCluster() {
  const c = await callJson('GET', '/api/admin/cluster');
  const rows = c.nodes.map((n) => h('tr', {},
    h('td', {}, n.id, n.id === c.self ? h('span', { class: 'badge' }, 'this node') : null),
    h('td', {}, n.zone || '–'),
    h('td', {}, h('span', { class: n.live ? 'live' : 'dead' }, n.live ? 'live' : 'dead'), ' ', n.state),
    h('td', { class: 'num' }, (n.heartbeatAgeMs / 1000).toFixed(1) + ' s'),
    h('td', { class: 'num' }, n.replicas + ' (' + fmtBytes(n.replicaBytes) + ')'),
    h('td', { class: 'num' }, fmtBytes(n.progress.localBytes)),
    h('td', { class: 'num volume' }, volumeCell(n.progress)),
    h('td', { class: 'num' }, n.progress.underReplicated + ' under-replicated, ' + fmtBytes(n.progress.bytesToMove) + ' to move, ' + n.progress.healedBlobs + ' healed'),
    h('td', { class: 'num' }, n.progress.scrubbedBlobs + ' scrubbed, ' + n.progress.corruptFound + ' corrupt')));
  const rps = sparkline('chart-rps', 'Requests per second', '/s');
  const err = sparkline('chart-errors', 'Server errors', '%');
  const lat = sparkline('chart-latency', 'Mean latency', 'ms');
  const inflight = sparkline('chart-inflight', 'In flight', '');
  const bytesIn = sparkline('chart-in', 'Bytes in', 'KiB/s');
  const bytesOut = sparkline('chart-out', 'Bytes out', 'KiB/s');
  main(
    h('h1', {}, 'Cluster'),
    h('p', {}, c.nodes.length + ' node(s), ' + c.replicasWanted + ' replica(s) per object.'),
    h('table', { id: 'nodes' }, h('thead', {}, h('tr', {}, ['Node', 'Zone', 'Liveness', 'Heartbeat age', 'Replicas held', 'Used', 'Volume', 'Healing', 'Scrub'].map((t) => h('th', {}, t)))), h('tbody', {}, rows)),
    h('h2', {}, 'This server, live'),
    h('div', { class: 'charts' }, rps, err, lat, inflight, bytesIn, bytesOut));
  let last = null;
  const tick = async () => {
    try {
      const m = parseMetrics(await (await call('GET', '/api/admin/metrics')).text());
      const t = performance.now();
      if (last) {
        const dt = (t - last.t) / 1000;
        const dr = m.requests - last.m.requests;
        rps.push(dr / dt);
        err.push(dr > 0 ? 100 * (m.errors - last.m.errors) / dr : 0);
        const dc = m.durCount - last.m.durCount;
        lat.push(dc > 0 ? 1000 * (m.durSum - last.m.durSum) / dc : 0);
        inflight.push(m.inFlight);
        bytesIn.push((m.received - last.m.received) / dt / 1024);
        bytesOut.push((m.sent - last.m.sent) / dt / 1024);
      }
      last = { m, t };
    } catch (_) { /* shown by the next page load */ }
  };
  await tick();
  state.timers.push(setInterval(tick, 2000));
}

// ---------- start ----------

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', () => { showError(null); render(); });
  try {
    const r = await fetch('/api/session', { credentials: 'same-origin' });
    state.session = r.ok ? await r.json() : null;
  } catch (_) { state.session = null; }
  render();
}

start();
