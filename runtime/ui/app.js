// oscar-wasm dashboard: one page, hash routes, everything through the public API with the
// credentials the user logged in with (kept for this browser tab only).
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element: h('a', {href: '#', onclick: f}, 'text', child...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let auth = sessionStorage.getItem('oscar-wasm-auth');
let timers = [];

function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

function banner(message) {
  const el = $('#banner');
  el.hidden = !message;
  el.textContent = message || '';
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API; throws ApiError with the server's own message. A 401 ends the login. */
async function api(method, path, { json, body, headers = {} } = {}) {
  const init = { method, headers: { 'X-Requested-With': 'XMLHttpRequest', ...headers } };
  if (auth) init.headers.Authorization = auth;
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['Content-Type'] = 'application/json';
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    banner('The server cannot be reached. It may have stopped or the network is down; retrying.');
    throw new ApiError(0, 'The server cannot be reached.');
  }
  banner('');
  if (response.status === 401 && auth) {
    const text = (await response.text()).trim();
    logout(`Your login is no longer accepted (${text}). Log in again.`);
    throw new ApiError(401, text);
  }
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new ApiError(response.status, text || response.statusText);
  }
  return response;
}

const getJson = async (path) => (await api('GET', path)).json();

/** Uploads with a progress bar (fetch has no upload progress). */
function upload(method, path, blob, bar, extraHeaders = {}, withAuth = true) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    if (withAuth && auth) {
      xhr.setRequestHeader('Authorization', auth);
      xhr.setRequestHeader('X-Requested-With', 'XMLHttpRequest');
    }
    for (const [k, v] of Object.entries(extraHeaders)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (bar && e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300)
      ? resolve(xhr.responseText)
      : reject(new ApiError(xhr.status, xhr.responseText.trim() || `HTTP ${xhr.status}`));
    xhr.onerror = () => reject(new ApiError(0, 'The upload could not reach the server.'));
    xhr.send(blob);
  });
}

function logout(message) {
  auth = null;
  sessionStorage.removeItem('oscar-wasm-auth');
  sessionStorage.setItem('oscar-wasm-message', message || '');
  location.hash = '#/login';
  render();
}

function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(ms).toLocaleString();
}

function bytesToBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function base64ToBytes(text) {
  const binary = atob(text.replace(/\s+/g, ''));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const startsWith = (bytes, ...sig) => sig.every((b, i) => bytes[i] === b);

function imageType(bytes) {
  if (startsWith(bytes, 0x89, 0x50, 0x4e, 0x47)) return 'image/png';
  if (startsWith(bytes, 0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (startsWith(bytes, 0x47, 0x49, 0x46)) return 'image/gif';
  if (startsWith(bytes, 0x52, 0x49, 0x46, 0x46) && startsWith(bytes.subarray(8), 0x57, 0x45, 0x42, 0x50)) return 'image/webp';
  return null;
}

function asText(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** The entries of a zip (central directory), each with a function giving its bytes. */
function zipEntries(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = bytes.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) return [];
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  const entries = [];
  for (let i = 0; i < count && at + 46 <= bytes.length; i++) {
    const method = view.getUint16(at + 10, true);
    const size = view.getUint32(at + 20, true);
    const compressed = view.getUint32(at + 20 - 4, true);
    const nameLength = view.getUint16(at + 28, true);
    const extra = view.getUint16(at + 30, true);
    const comment = view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    const data = async () => {
      const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
      const raw = bytes.subarray(start, start + compressed);
      if (method === 0) return raw;
      const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
      return new Uint8Array(await new Response(stream).arrayBuffer());
    };
    entries.push({ name, size, data });
    at += 46 + nameLength + extra + comment;
  }
  return entries;
}

function download(name, blob) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name.split('/').pop() });
  document.body.append(a);
  a.click();
  a.remove();
}

/** Shows bytes the way a person wants to see them: an image, text, or a zip's files. */
async function showBytes(target, bytes, name) {
  target.replaceChildren();
  const image = imageType(bytes);
  if (image) {
    target.append(h('img', { src: URL.createObjectURL(new Blob([bytes], { type: image })), alt: name || 'result' }));
  } else if (startsWith(bytes, 0x50, 0x4b, 0x03, 0x04)) {
    const list = h('ul', { class: 'zip' });
    for (const entry of zipEntries(bytes)) {
      list.append(h('li', {}, `${entry.name} (${entry.size} bytes) `,
        h('button', { class: 'secondary', type: 'button', onclick: async () => download(entry.name, new Blob([await entry.data()])) }, 'Download')));
    }
    target.append(h('p', {}, 'A zip of several files:'), list);
  } else if (bytes.length === 0) {
    target.append(h('p', { class: 'muted' }, 'No output.'));
  } else {
    const text = asText(bytes);
    if (text !== null) target.append(h('pre', {}, text));
    else target.append(h('p', {}, `${bytes.length} bytes `, h('button', { type: 'button', class: 'secondary', onclick: () => download(name || 'output', new Blob([bytes])) }, 'Download')));
  }
}

function dropZone(label, onFiles, accept) {
  const input = h('input', { type: 'file', multiple: true, accept, 'aria-label': label, onchange: () => onFiles([...input.files]) });
  const zone = h('div', { class: 'drop' }, h('p', {}, label), input);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => { e.preventDefault(); zone.classList.remove('over'); onFiles([...e.dataTransfer.files]); });
  return zone;
}

// ---- pages ----

function loginPage(main) {
  const message = sessionStorage.getItem('oscar-wasm-message') || '';
  sessionStorage.removeItem('oscar-wasm-message');
  const error = h('p', { class: 'error', id: 'login-error' }, message);
  const user = h('input', { type: 'text', id: 'user', name: 'user', value: 'oscar', autocomplete: 'username' });
  const password = h('input', { type: 'password', id: 'password', name: 'password', autocomplete: 'current-password' });
  const token = h('input', { type: 'password', id: 'token', name: 'token', placeholder: 'OIDC access token (EGI Check-in, Keycloak)' });
  const form = h('form', { class: 'card login', onsubmit: async (e) => {
    e.preventDefault();
    auth = token.value.trim() ? `Bearer ${token.value.trim()}` : `Basic ${btoa(`${user.value}:${password.value}`)}`;
    try {
      const r = await fetch('/system/info', { headers: { Authorization: auth, 'X-Requested-With': 'XMLHttpRequest' } });
      if (r.status === 401 || r.status === 403) {
        auth = null;
        error.textContent = r.status === 401
          ? `Wrong user name, password or token: ${(await r.text()).trim()}`
          : (await r.text()).trim();
        return;
      }
      if (!r.ok) throw new Error(`the server answered ${r.status}`);
      sessionStorage.setItem('oscar-wasm-auth', auth);
      location.hash = '#/services';
    } catch (err) {
      auth = null;
      error.textContent = `The server cannot be reached: ${err.message}`;
    }
  } },
  h('h1', {}, 'Log in'),
  h('label', { for: 'user' }, 'User'), user,
  h('label', { for: 'password' }, 'Password'), password,
  h('label', { for: 'token' }, 'or a bearer token'), token,
  h('div', { class: 'row' }, h('button', { type: 'submit', id: 'login' }, 'Log in')),
  error);
  main.append(form);
  user.focus();
  // An open server (no password: the default on loopback) admits any login; say so, since
  // a newcomer has no password to type.
  fetch('/system/info', { headers: { 'X-Requested-With': 'XMLHttpRequest' } })
    .then((r) => {
      if (r.ok) form.insertBefore(h('p', { class: 'muted', id: 'open-server' }, 'This server has no password (an open server, reachable from this machine only): any user name and password log in.'), error);
    })
    .catch(() => {});
}

/** Turns dropped files into definitions: FDL (functions.oscar[].CLUSTER) or one JSON/YAML. */
async function definitionsFrom(files) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const definitions = [];
  for (const file of files.filter((f) => /\.(ya?ml|json)$/i.test(f.name))) {
    const doc = jsyaml.load(await file.text());
    const list = doc && doc.functions && Array.isArray(doc.functions.oscar)
      ? doc.functions.oscar.flatMap((entry) => Object.values(entry))
      : [doc];
    for (const def of list) {
      if (typeof def.script === 'string' && byName.has(def.script)) def.script = await byName.get(def.script).text();
      definitions.push(def);
    }
  }
  return definitions;
}

async function deployFiles(files, status, bar) {
  const wasm = files.filter((f) => /\.wasm$/i.test(f.name));
  const definitions = await definitionsFrom(files);
  if (!definitions.length) throw new Error('Drop an FDL, YAML or JSON definition (and its .wasm files).');
  for (const def of definitions) {
    const named = typeof def.module === 'string' && !def.module.startsWith('sha256:') ? def.module.split('/').pop() : null;
    const file = wasm.find((f) => f.name === named) || wasm.find((f) => f.name === `${def.name}.wasm`)
      || (wasm.length === 1 && !def.image ? wasm[0] : null);
    if (file) {
      status.textContent = `Uploading ${file.name}…`;
      const stored = JSON.parse(await upload('POST', '/system/modules', file, bar));
      def.module = stored.digest;
    }
    status.textContent = `Creating ${def.name}…`;
    await api('POST', '/system/services', { json: def });
  }
  status.textContent = `Deployed ${definitions.map((d) => d.name).join(', ')}.`;
}

async function servicesPage(main) {
  main.append(h('h1', {}, 'Services'));
  const body = h('tbody', { id: 'services' });
  main.append(h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, ...['Name', 'Kind', 'Module or image', 'Memory', 'Timeout', 'Calls (1 h)', 'Failures (1 h)', 'Last call'].map((t) => h('th', {}, t)))),
    body)));
  const status = h('p', { id: 'deploy-status', role: 'status' });
  const bar = h('progress', { value: 0, max: 1 });
  const template = 'name: my-service\nmemory: 128Mi\n# module: sha256:... (or drop the .wasm with the file)\n';
  const editor = h('textarea', { id: 'new-definition', 'aria-label': 'New service definition (YAML or JSON)' }, template);
  main.append(h('section', { class: 'card' },
    h('h2', {}, 'New service'),
    dropZone('Drop an FDL or definition file with its .wasm module (or choose them)', async (files) => {
      status.className = '';
      try { await deployFiles(files, status, bar); await refresh(); } catch (e) { status.className = 'error'; status.textContent = e.message; }
    }, '.yaml,.yml,.json,.wasm,.sh'),
    bar,
    h('p', {}, 'Or write one:'), editor,
    h('div', { class: 'row' }, h('button', { type: 'button', id: 'create', onclick: async () => {
      status.className = '';
      try {
        const def = jsyaml.load(editor.value);
        await api('POST', '/system/services', { json: def });
        status.textContent = `Created ${def.name}.`;
        await refresh();
      } catch (e) { status.className = 'error'; status.textContent = e.message; }
    } }, 'Create')),
    status));
  async function refresh() {
    const services = await getJson('/system/services?include=stats');
    body.replaceChildren(...services.map((s) => h('tr', {},
      h('td', {}, h('a', { href: `#/service/${encodeURIComponent(s.name)}` }, s.name)),
      h('td', {}, s.module ? 'wasm' : 'image'),
      h('td', {}, h('code', {}, s.module ? s.module.slice(0, 19) + '…' : (s.image || ''))),
      h('td', {}, s.memory || ''),
      h('td', {}, s.timeout ? `${s.timeout} s` : 'default'),
      h('td', {}, s.stats ? s.stats.invocations_1h : ''),
      h('td', {}, s.stats ? s.stats.failures_1h : ''),
      h('td', {}, s.stats ? ago(s.stats.last_invocation_ms) : ''))));
    if (!services.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No services yet.')));
  }
  every(3000, () => refresh().catch(() => {}));
}

async function servicePage(main, name) {
  let def;
  try { def = await getJson(`/system/services/${encodeURIComponent(name)}`); } catch (e) {
    main.append(h('p', { class: 'error' }, e.message));
    return;
  }
  const path = encodeURIComponent(name);
  main.append(h('h1', {}, `Service ${name}`));

  // Invoke.
  const result = h('div', { class: 'result', id: 'result' });
  const outcome = h('p', { id: 'outcome', role: 'status' });
  let input = null;
  const chosen = h('span', { class: 'muted' }, 'no file chosen');
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Invoke'),
    dropZone('Drop the input file here (or choose it)', (files) => { input = files[0]; chosen.textContent = input ? input.name : 'no file chosen'; }),
    h('div', { class: 'row' }, chosen,
      h('button', { type: 'button', id: 'run', onclick: async () => {
        if (!input) { outcome.textContent = 'Choose an input file first.'; return; }
        outcome.className = ''; outcome.textContent = 'Running…'; result.replaceChildren();
        const started = performance.now();
        try {
          const body = bytesToBase64(new Uint8Array(await input.arrayBuffer()));
          const r = await fetch(`/run/${path}`, { method: 'POST', headers: { Authorization: auth, 'X-Requested-With': 'XMLHttpRequest' }, body });
          const text = await r.text();
          const ms = Math.round(performance.now() - started);
          const how = r.headers.get('x-oscar-wasm-outcome') || (r.ok ? 'success' : 'failed');
          outcome.textContent = `${how}, HTTP ${r.status}, ${ms} ms`;
          outcome.className = r.ok ? 'ok' : 'error';
          let bytes = null;
          if (r.ok) { try { bytes = base64ToBytes(text); } catch { bytes = null; } }
          if (bytes) await showBytes(result, bytes, input.name);
          else result.replaceChildren(h('pre', {}, text));
        } catch (e) { outcome.className = 'error'; outcome.textContent = `The call failed: ${e.message}`; }
      } }, 'Run'),
      h('button', { type: 'button', class: 'secondary', id: 'submit-job', onclick: async () => {
        if (!input) { outcome.textContent = 'Choose an input file first.'; return; }
        try {
          const body = bytesToBase64(new Uint8Array(await input.arrayBuffer()));
          const created = await (await api('POST', `/job/${path}`, { body })).json();
          outcome.className = 'ok'; outcome.textContent = `Job ${created.job_name} submitted.`;
          refreshJobs();
        } catch (e) { outcome.className = 'error'; outcome.textContent = e.message; }
      } }, 'Submit as job')),
    outcome, result));

  // Jobs, live.
  const jobsBody = h('tbody', { id: 'jobs' });
  const jobView = h('div', { id: 'job-view' });
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Jobs'),
    h('div', { class: 'row' }, h('button', { type: 'button', class: 'secondary', id: 'delete-finished', onclick: async () => {
      if (!confirm('Delete every finished job (succeeded and failed)?')) return;
      try {
        // The API removes succeeded jobs in one call (as OSCAR); failed ones one by one.
        await api('DELETE', `/system/logs/${path}`);
        const listed = await getJson(`/system/logs/${path}`);
        for (const [job, j] of Object.entries(listed.jobs || {})) {
          if (j.status === 'Failed') await api('DELETE', `/system/logs/${path}/${job}`);
        }
      } catch (e) { alert(e.message); }
      refreshJobs();
    } }, 'Delete finished jobs')),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ...['Job', 'Status', 'Created', 'Finished', ''].map((t) => h('th', {}, t)))), jobsBody)),
    jobView));
  async function openJob(job) {
    const log = await (await api('GET', `/system/logs/${path}/${job}`)).text();
    const files = await getJson(`/system/outputs/${path}/${job}`).catch(() => []);
    const preview = h('div', { class: 'result', id: 'output-preview' });
    jobView.replaceChildren(h('h2', {}, `Job ${job}`), h('pre', { id: 'job-log' }, log || '(empty log)'),
      h('h2', {}, 'Outputs'),
      files.length ? h('ul', { id: 'outputs' }, ...files.map((f) => h('li', {}, `${f.path} (${f.size} bytes) `,
        h('button', { type: 'button', class: 'secondary', onclick: async () => {
          const bytes = new Uint8Array(await (await api('GET', `/system/outputs/${path}/${job}/${f.path}`)).arrayBuffer());
          await showBytes(preview, bytes, f.path);
        } }, 'Preview'), ' ',
        h('button', { type: 'button', class: 'secondary', onclick: async () => {
          download(f.path, await (await api('GET', `/system/outputs/${path}/${job}/${f.path}`)).blob());
        } }, 'Download')))) : h('p', { class: 'muted' }, 'No output files.'),
      preview);
  }
  async function refreshJobs() {
    const listed = await getJson(`/system/logs/${path}`);
    const jobs = Object.entries(listed.jobs || {}).sort((a, b) => (b[1].creation_time || '').localeCompare(a[1].creation_time || ''));
    jobsBody.replaceChildren(...jobs.map(([job, j]) => h('tr', {},
      h('td', {}, h('a', { href: '#', 'data-job': job, onclick: (e) => { e.preventDefault(); openJob(job).catch((err) => jobView.replaceChildren(h('p', { class: 'error' }, err.message))); } }, job)),
      h('td', { class: `status-${j.status}` }, j.status),
      h('td', {}, j.creation_time || ''),
      h('td', {}, j.finish_time || ''),
      h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: async () => {
        if (!confirm(`Delete job ${job}?`)) return;
        await api('DELETE', `/system/logs/${path}/${job}`).catch((e) => alert(e.message));
        refreshJobs();
      } }, 'Delete')))));
    if (!jobs.length) jobsBody.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No jobs.')));
  }
  every(2000, () => refreshJobs().catch(() => {}));

  // Definition and module.
  const editor = h('textarea', { id: 'definition', 'aria-label': 'Definition (YAML)' }, jsyaml.dump(def));
  const saveStatus = h('p', { id: 'definition-status', role: 'status' });
  const bar = h('progress', { value: 0, max: 1 });
  const moduleStatus = h('p', { id: 'module-status', role: 'status' });
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Definition'), editor,
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'save', onclick: async () => {
        saveStatus.className = '';
        try {
          await api('PUT', '/system/services', { json: jsyaml.load(editor.value) });
          saveStatus.className = 'ok'; saveStatus.textContent = 'Saved.';
        } catch (e) { saveStatus.className = 'error'; saveStatus.textContent = e.message; }
      } }, 'Save'),
      h('button', { type: 'button', class: 'danger', id: 'delete', onclick: async () => {
        if (!confirm(`Delete the service ${name} and its jobs?`)) return;
        try { await api('DELETE', `/system/services/${path}`); location.hash = '#/services'; } catch (e) { saveStatus.className = 'error'; saveStatus.textContent = e.message; }
      } }, 'Delete service')),
    saveStatus,
    h('h2', {}, 'Module'),
    dropZone('Drop a .wasm file to upload it and attach it to this service', async ([file]) => {
      moduleStatus.className = '';
      try {
        const attached = JSON.parse(await upload('PUT', `/system/services/${path}/module`, file, bar));
        moduleStatus.className = 'ok'; moduleStatus.textContent = `Now running ${attached.digest}.`;
      } catch (e) { moduleStatus.className = 'error'; moduleStatus.textContent = e.message; }
    }, '.wasm'),
    bar, moduleStatus));
}

async function bucketsPage(main) {
  main.append(h('h1', {}, 'Buckets'));
  const body = h('tbody', { id: 'buckets' });
  main.append(h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, ...['Bucket', 'Visibility', 'Owner', 'Service'].map((t) => h('th', {}, t)))), body)));
  const buckets = await getJson('/system/buckets');
  body.replaceChildren(...buckets.map((b) => h('tr', {},
    h('td', {}, h('a', { href: `#/bucket/${encodeURIComponent(b.bucket_name)}` }, b.bucket_name)),
    h('td', {}, b.visibility), h('td', {}, b.metadata && b.metadata.owner_name || b.owner),
    h('td', {}, b.metadata && b.metadata.from_service ? h('a', { href: `#/service/${encodeURIComponent(b.metadata.from_service)}` }, b.metadata.from_service) : ''))));
  if (!buckets.length) body.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No buckets.')));
}

async function bucketPage(main, bucket) {
  const path = encodeURIComponent(bucket);
  main.append(h('h1', {}, `Bucket ${bucket}`));
  const info = await getJson(`/system/buckets/${path}`);
  let folder = '';
  const service = info.metadata && info.metadata.from_service;
  if (service) {
    const def = await getJson(`/system/services/${encodeURIComponent(service)}`).catch(() => null);
    const input = def && (def.input || []).find((i) => (i.path || '').split('/')[0] === bucket);
    if (input) folder = input.path.split('/').slice(1).join('/');
    main.append(h('p', {}, 'Files uploaded into an input folder of ', h('a', { href: `#/service/${encodeURIComponent(service)}` }, service), ' start a job; its results land in its output folders.'));
  }
  const folderInput = h('input', { type: 'text', id: 'folder', value: folder, 'aria-label': 'Folder' });
  const bar = h('progress', { value: 0, max: 1 });
  const status = h('p', { id: 'upload-status', role: 'status' });
  const body = h('tbody', { id: 'objects' });
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Upload'),
    h('div', { class: 'row' }, h('label', { for: 'folder' }, 'Folder'), folderInput),
    dropZone('Drop files to upload them into the folder', async (files) => {
      status.className = '';
      try {
        for (const file of files) {
          const key = [folderInput.value.replace(/^\/+|\/+$/g, ''), file.name].filter(Boolean).join('/');
          const type = file.type || 'application/octet-stream';
          const signed = await (await api('POST', `/system/buckets/${path}/presign`, { json: { object_key: key, operation: 'upload', content_type: type } })).json();
          await upload(signed.method, signed.url, file, bar, signed.headers || {}, false);
          status.className = 'ok'; status.textContent = `Uploaded ${key}.`;
        }
        refresh();
      } catch (e) { status.className = 'error'; status.textContent = e.message; }
    }), bar, status));
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Objects'),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ...['Key', 'Size', 'Modified', ''].map((t) => h('th', {}, t)))), body))));
  async function refresh() {
    const listed = await getJson(`/system/buckets/${path}`);
    body.replaceChildren(...(listed.objects || []).map((o) => h('tr', {},
      h('td', {}, o.object_name), h('td', {}, o.size_bytes), h('td', {}, o.last_modified),
      h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: async () => {
        const signed = await (await api('POST', `/system/buckets/${path}/presign`, { json: { object_key: o.object_name, operation: 'download' } })).json();
        download(o.object_name, await (await fetch(signed.url)).blob());
      } }, 'Download')))));
    if (!(listed.objects || []).length) body.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'Empty.')));
  }
  every(2000, () => refresh().catch(() => {}));
}

/** Parses Prometheus text: [{name, labels, value}]. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const labels = {};
    for (const pair of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

function quantile(buckets, q) {
  // buckets: [[le, cumulative count]] sorted by le.
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return 0;
  const found = buckets.find(([, count]) => count >= q * total);
  return found && Number.isFinite(found[0]) ? found[0] : buckets[buckets.length - 2]?.[0] || 0;
}

function chart(canvas, series, unit) {
  const ctx = canvas.getContext('2d');
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const hgt = (canvas.height = canvas.clientHeight * devicePixelRatio);
  ctx.clearRect(0, 0, w, hgt);
  const max = Math.max(1e-9, ...series.flatMap((s) => s.points));
  series.forEach((s, i) => {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.beginPath();
    s.points.forEach((v, x) => {
      const px = (x / Math.max(1, s.points.length - 1)) * w;
      const py = hgt - (v / max) * (hgt - 20 * devicePixelRatio) - 4;
      x ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
    ctx.fillStyle = s.color;
    if (s.points.length === 1) ctx.fillRect(0, hgt - (s.points[0] / max) * (hgt - 20 * devicePixelRatio) - 6, 4, 4);
    ctx.font = `${12 * devicePixelRatio}px sans-serif`;
    const last = s.points[s.points.length - 1] || 0;
    ctx.fillText(`${s.label} ${last.toFixed(unit === 'ms' ? 2 : 1)} ${unit}`, 6 + i * 130 * devicePixelRatio, 14 * devicePixelRatio);
  });
}

async function metricsPage(main) {
  main.append(h('h1', {}, 'At a glance'), h('p', { class: 'muted' }, 'From the server\'s own /metrics, every 2 s.'));
  const grid = h('div', { class: 'charts', id: 'charts' });
  const note = h('p', { class: 'error' });
  main.append(note, grid);
  const history = new Map();
  let previous = null;
  every(2000, async () => {
    let text;
    try { text = await (await api('GET', '/metrics')).text(); } catch (e) { note.textContent = e.message; return; }
    const now = performance.now();
    const samples = parseMetrics(text);
    const perService = new Map();
    const service = (name) => perService.get(name) || perService.set(name, { total: 0, failed: 0, buckets: new Map() }).get(name);
    for (const s of samples) {
      if (s.name === 'oscar_wasm_invocations_total') {
        const sv = service(s.labels.service);
        sv.total += s.value;
        if (s.labels.outcome !== 'success') sv.failed += s.value;
      } else if (s.name === 'oscar_wasm_invocation_duration_seconds_bucket') {
        const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
        service(s.labels.service).buckets.set(le, s.value);
      }
    }
    for (const [name, sv] of perService) {
      const before = previous && previous.services.get(name);
      const dt = previous ? (now - previous.at) / 1000 : 0;
      const rate = before && dt ? (sv.total - before.total) / dt : 0;
      const fails = before && dt ? (sv.failed - before.failed) / dt : 0;
      const sorted = [...sv.buckets.entries()].sort((a, b) => a[0] - b[0]);
      const delta = before ? sorted.map(([le, c]) => [le, c - (before.buckets.get(le) || 0)]) : sorted;
      const window = delta.length && delta[delta.length - 1][1] > 0 ? delta : sorted;
      const entry = history.get(name) || { rate: [], fails: [], p50: [], p99: [] };
      entry.rate.push(rate); entry.fails.push(fails);
      entry.p50.push(quantile(window, 0.5) * 1000); entry.p99.push(quantile(window, 0.99) * 1000);
      for (const key of Object.keys(entry)) if (entry[key].length > 60) entry[key].shift();
      history.set(name, entry);
    }
    previous = { at: now, services: perService };
    grid.replaceChildren(...[...history.entries()].map(([name, e]) => {
      const calls = h('canvas', { 'aria-label': `${name} calls per second` });
      const latency = h('canvas', { 'aria-label': `${name} latency` });
      const card = h('section', { class: 'card', 'data-service': name, 'data-points': e.rate.length }, h('h2', {}, name), calls, latency);
      requestAnimationFrame(() => {
        chart(calls, [{ label: 'calls', points: e.rate, color: '#2357c6' }, { label: 'failures', points: e.fails, color: '#b3261e' }], '/s');
        chart(latency, [{ label: 'p50', points: e.p50, color: '#1e7a3a' }, { label: 'p99', points: e.p99, color: '#8a5a00' }], 'ms');
      });
      return card;
    }));
    if (!history.size) grid.replaceChildren(h('p', { class: 'muted' }, 'No invocations yet.'));
  });
}

async function render() {
  timers.forEach(clearInterval);
  timers = [];
  const main = $('#main');
  main.replaceChildren();
  const [, page, arg] = (location.hash || '#/services').split('/');
  $('#nav').hidden = !auth;
  if (!auth || page === 'login') {
    loginPage(main);
    return;
  }
  $('#who').textContent = auth.startsWith('Basic') ? `as ${atob(auth.slice(6)).split(':')[0]}` : 'with a token';
  try {
    if (page === 'service' && arg) await servicePage(main, decodeURIComponent(arg));
    else if (page === 'buckets') await bucketsPage(main);
    else if (page === 'bucket' && arg) await bucketPage(main, decodeURIComponent(arg));
    else if (page === 'metrics') await metricsPage(main);
    else await servicesPage(main);
  } catch (e) {
    main.append(h('p', { class: 'error' }, e.message));
  }
  main.focus();
}

window.addEventListener('hashchange', render);
window.addEventListener('DOMContentLoaded', () => {
  $('#logout').addEventListener('click', () => logout('Logged out.'));
  render();
});
