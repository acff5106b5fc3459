// murmur's web UI: nodes, services, key/value and servers, read from the agent's own HTTP API.
// No framework and no build step, so the binary embeds it as written. Lists are virtualized (only the
// rows on screen exist in the DOM) and a row is rebuilt only when its own data changed, so a blocking
// query that returns 5000 nodes after one of them failed repaints one row.
'use strict';

const ROW = 32; // px; the same as --row in app.css
const WAIT = '60s';
// At most two reads a second per list: in a big, busy cluster the agent's index moves all the time, and
// each read of 5000 nodes is a megabyte or more. Changes inside the gap arrive together, still well
// within a second of the agent knowing.
const MIN_GAP_MS = 500;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

let dc = ''; // '' is the agent's own datacenter
let view = null; // the shown view: its AbortController, its list, its back link

function url(path, params) {
  const u = new URL('/v1/' + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined) u.searchParams.set(k, v);
  if (dc) u.searchParams.set('dc', dc);
  return u;
}

function kvPath(key) {
  return 'kv/' + key.split('/').map(encodeURIComponent).join('/');
}

function say(text) {
  document.getElementById('live').textContent = text;
}

function sleep(ms, signal) {
  return new Promise((done) => {
    const stop = () => { clearTimeout(t); done(); };
    const t = setTimeout(() => { signal.removeEventListener('abort', stop); done(); }, ms);
    signal.addEventListener('abort', stop, { once: true });
  });
}

async function request(path, params, opts) {
  const r = await fetch(url(path, params), opts);
  if (r.status === 404) return { status: 404, body: null, index: Number(r.headers.get('X-Consul-Index')) || 0 };
  if (!r.ok) throw new Error(`${r.status}: ${(await r.text()).trim()}`);
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, index: Number(r.headers.get('X-Consul-Index')) || 0 };
}

// Follows a blocking query until the view goes: onData gets each result the agent returns.
async function watch(path, params, signal, onData) {
  let index = 0;
  let last = 0;
  while (!signal.aborted) {
    const since = performance.now() - last;
    if (since < MIN_GAP_MS) await sleep(MIN_GAP_MS - since, signal);
    if (signal.aborted) return;
    last = performance.now();
    try {
      const blocking = index ? { index, wait: WAIT } : {};
      const r = await request(path, { ...params, ...blocking }, { signal });
      // An index that goes backwards (a restore, a new leader) starts the watch over, as Consul advises.
      index = r.index < index ? 0 : r.index;
      say('');
      try {
        onData(r.body);
      } catch (e) {
        // The page's own fault, not the agent's: say so, and keep following.
        console.error(e);
        say(`The page could not show an update: ${e.message}`);
      }
    } catch (e) {
      if (signal.aborted) return;
      say(`Lost contact with the agent (${e.message}); retrying`);
      await sleep(1000, signal);
    }
  }
}

// Polls a non-blocking read every `ms` until the view goes.
async function poll(path, ms, signal, onData) {
  while (!signal.aborted) {
    try {
      onData((await request(path, {}, { signal })).body);
    } catch (e) {
      if (signal.aborted) return;
      onData(null, e);
    }
    await sleep(ms, signal);
  }
}

const RANK = { passing: 0, warning: 1, critical: 2 };
function worst(checks) {
  let s = 'passing';
  for (const c of checks || []) if (RANK[c.Status] > RANK[s]) s = c.Status;
  return s;
}

function badge(text, status) {
  return el('span', { class: 'badge ' + (status || '') }, text);
}

// A virtualized list of fixed-height rows: items are {key, sig, href, ...}; render(item) builds a row.
class VList {
  constructor(render) {
    this.render = render;
    this.items = [];
    this.rows = new Map(); // key -> {el, sig, top}
    // The selected row by key, not position: an update that adds a row above keeps the same one.
    this.selKey = null;
    this.box = el('div', { class: 'vlist', role: 'list' });
    this.spacer = el('div', { class: 'spacer' });
    this.box.append(this.spacer);
    this.box.addEventListener('scroll', () => this.schedule());
    new ResizeObserver(() => this.schedule()).observe(this.box);
  }

  set(items) {
    this.items = items;
    this.spacer.style.height = items.length * ROW + 'px';
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const top = this.box.scrollTop;
    const height = this.box.clientHeight || 800;
    const first = Math.max(0, Math.floor(top / ROW) - 10);
    const last = Math.min(this.items.length, Math.ceil((top + height) / ROW) + 10);
    const shown = new Set();
    for (let i = first; i < last; i++) {
      const it = this.items[i];
      shown.add(it.key);
      let r = this.rows.get(it.key);
      if (!r) { r = { el: null, sig: null, top: -1 }; this.rows.set(it.key, r); }
      if (r.sig !== it.sig) {
        const e = this.render(it);
        e.setAttribute('role', 'listitem');
        if (r.el) r.el.replaceWith(e); else this.spacer.append(e);
        r.el = e;
        r.sig = it.sig;
        r.top = -1;
      }
      if (r.top !== i * ROW) { r.el.style.top = i * ROW + 'px'; r.top = i * ROW; }
      r.el.classList.toggle('selected', it.key === this.selKey);
    }
    for (const [k, r] of this.rows) if (!shown.has(k)) { r.el.remove(); this.rows.delete(k); }
  }

  move(by) {
    if (!this.items.length) return;
    const at = this.items.findIndex((it) => it.key === this.selKey);
    const next = Math.max(0, Math.min(this.items.length - 1, at + by));
    this.selKey = this.items[next].key;
    const y = next * ROW;
    if (y < this.box.scrollTop) this.box.scrollTop = y;
    else if (y + ROW > this.box.scrollTop + this.box.clientHeight) this.box.scrollTop = y + ROW - this.box.clientHeight;
    this.schedule();
  }

  open() {
    const it = this.items.find((x) => x.key === this.selKey);
    if (it) location.hash = it.href;
  }
}

// A list pane: a filter box, a one-line summary and the list.
function listPane(list, placeholder) {
  const filter = el('input', { type: 'search', id: 'filter', placeholder, 'aria-label': placeholder });
  const summary = el('span', { class: 'summary', id: 'summary' });
  const pane = el('section', { class: 'pane' }, el('div', { class: 'toolbar' }, filter, summary), list.box);
  return { pane, filter, summary };
}

function table(headers, rows) {
  return el('table', {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
}

function checksTable(checks) {
  if (!checks.length) return el('p', { class: 'empty' }, 'No checks.');
  return table(['Check', 'Status', 'Service', 'Output'], checks.map((c) => el('tr', { 'data-check': c.CheckID, 'data-status': c.Status },
    el('td', {}, c.Name, el('div', { class: 'meta' }, c.CheckID)),
    el('td', {}, badge(c.Status, c.Status)),
    el('td', {}, c.ServiceName || '—'),
    el('td', {}, el('div', { class: 'output' }, c.Output || '')))));
}

// --- Nodes -------------------------------------------------------------------------------------------

function nodeItem(n) {
  const serf = (n.Checks || []).find((c) => c.CheckID === 'serfHealth');
  const failed = serf !== undefined && serf.Status === 'critical';
  const status = worst(n.Checks);
  const services = (n.Services || []).length;
  return {
    key: n.Node, href: '#/nodes/' + encodeURIComponent(n.Node), node: n, status, failed, services,
    sig: [status, failed, n.Address, services, (n.Checks || []).map((c) => c.Status).join()].join('|'),
  };
}

function nodeRow(it) {
  return el('a', { class: 'row', href: it.href, 'data-node': it.key, 'data-status': it.status },
    el('span', { class: 'dot', title: it.status }),
    el('span', { class: 'name' }, it.key),
    el('span', { class: 'meta' }, it.node.Address),
    it.failed ? badge('failed', 'critical') : null,
    it.services ? badge(`${it.services} service${it.services === 1 ? '' : 's'}`) : null);
}

function nodeDetail(n) {
  const it = nodeItem(n);
  const services = n.Services || [];
  return [
    el('h2', {}, n.Node, ' ', badge(it.failed ? 'failed' : it.status, it.status)),
    table(['Address', 'Node ID'], [el('tr', {}, el('td', {}, n.Address), el('td', {}, n.ID || ''))]),
    el('h3', {}, 'Checks'),
    checksTable(n.Checks || []),
    el('h3', {}, 'Services'),
    services.length
      ? table(['Service', 'ID', 'Port', 'Tags'], services.map((s) => el('tr', {},
        el('td', {}, el('a', { href: '#/services/' + encodeURIComponent(s.Service) }, s.Service)),
        el('td', {}, s.ID), el('td', {}, s.Port), el('td', {}, (s.Tags || []).join(', ')))))
      : el('p', { class: 'empty' }, 'No services.'),
  ];
}

function showNodes(main, signal, selected) {
  const list = new VList(nodeRow);
  const { pane, filter, summary } = listPane(list, 'Filter nodes by name or address');
  const detail = el('section', { class: 'pane detail', id: 'detail' });
  main.append(pane);
  if (selected) main.append(detail);
  let all = [];
  const apply = () => {
    const f = filter.value.trim().toLowerCase();
    const shown = f ? all.filter((it) => it.key.toLowerCase().includes(f) || it.node.Address.includes(f)) : all;
    list.set(shown);
    const failed = all.filter((it) => it.failed).length;
    const warning = all.filter((it) => !it.failed && it.status !== 'passing').length;
    summary.textContent = `${all.length} nodes · ${failed} failed · ${warning} with failing checks`;
  };
  filter.addEventListener('input', apply);
  watch('internal/ui/nodes', {}, signal, (body) => {
    all = (body || []).map(nodeItem).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    apply();
    if (selected) {
      const it = all.find((x) => x.key === selected);
      detail.replaceChildren(...(it ? nodeDetail(it.node) : [el('p', { class: 'empty' }, `No node ${selected}.`)]));
    }
  });
  return { list, filter, back: selected ? '#/nodes' : null };
}

// --- Services ----------------------------------------------------------------------------------------

function serviceItem(s) {
  const status = s.ChecksCritical ? 'critical' : s.ChecksWarning ? 'warning' : 'passing';
  return {
    key: s.Name, href: '#/services/' + encodeURIComponent(s.Name), svc: s, status,
    sig: [status, s.InstanceCount, s.ChecksPassing, s.ChecksWarning, s.ChecksCritical, (s.Tags || []).join()].join('|'),
  };
}

function serviceRow(it) {
  const s = it.svc;
  return el('a', { class: 'row', href: it.href, 'data-service': s.Name, 'data-status': it.status },
    el('span', { class: 'dot', title: it.status }),
    el('span', { class: 'name' }, s.Name),
    el('span', { class: 'meta' }, `${s.InstanceCount} instance${s.InstanceCount === 1 ? '' : 's'}`),
    s.ChecksPassing ? badge(`${s.ChecksPassing} passing`, 'passing') : null,
    s.ChecksWarning ? badge(`${s.ChecksWarning} warning`, 'warning') : null,
    s.ChecksCritical ? badge(`${s.ChecksCritical} critical`, 'critical') : null,
    el('span', { class: 'meta' }, (s.Tags || []).join(', ')));
}

function instanceRows(entries) {
  return entries.map((e) => {
    const status = worst(e.Checks);
    return el('tr', { 'data-instance': e.Service.ID, 'data-node': e.Node.Node, 'data-status': status },
      el('td', {}, el('span', { class: 'dot', 'data-status': status }), ' ',
        el('a', { href: '#/nodes/' + encodeURIComponent(e.Node.Node) }, e.Node.Node)),
      el('td', {}, e.Service.ID),
      el('td', {}, `${e.Service.Address || e.Node.Address}:${e.Service.Port}`),
      el('td', {}, (e.Checks || []).map((c) => badge(`${c.Name}: ${c.Status}`, c.Status))));
  });
}

function showServices(main, signal, selected) {
  const list = new VList(serviceRow);
  const { pane, filter, summary } = listPane(list, 'Filter services by name or tag');
  main.append(pane);
  let all = [];
  const apply = () => {
    const f = filter.value.trim().toLowerCase();
    list.set(f ? all.filter((it) => it.key.toLowerCase().includes(f) || (it.svc.Tags || []).some((t) => t.toLowerCase().includes(f))) : all);
    summary.textContent = `${all.length} services · ${all.filter((it) => it.status === 'critical').length} with critical checks`;
  };
  filter.addEventListener('input', apply);
  watch('internal/ui/services', {}, signal, (body) => {
    all = (body || []).map(serviceItem);
    apply();
  });
  if (selected) {
    const detail = el('section', { class: 'pane detail', id: 'detail' }, el('h2', {}, selected));
    main.append(detail);
    watch('health/service/' + encodeURIComponent(selected), {}, signal, (body) => {
      const entries = body || [];
      detail.replaceChildren(el('h2', {}, selected, ' ', badge(`${entries.length} instance${entries.length === 1 ? '' : 's'}`)),
        entries.length ? table(['Node', 'ID', 'Address', 'Checks'], instanceRows(entries))
          : el('p', { class: 'empty' }, 'No instances.'));
    });
  }
  return { list, filter, back: selected ? '#/services' : null };
}

// --- Key/Value ---------------------------------------------------------------------------------------

// A key in a page link: each segment encoded, so '%', '#', '?' and spaces survive the trip through the
// address bar; route() decodes segment by segment.
function kvHref(key) {
  return '#/kv/' + key.split('/').map(encodeURIComponent).join('/');
}

// A URL cannot carry '.' or '..' as a path segment (the browser folds them away, and the request would
// reach another endpoint), so the page refuses to read or write such keys; the API and CLI can.
function unreachable(key) {
  return key.split('/').some((seg) => seg === '.' || seg === '..');
}
const UNREACHABLE = "A browser cannot address a key with '.' or '..' segments; use the API or `murmur kv`.";

// The value as text, or null when a text box could not give back the same bytes: not UTF-8, or holding a
// carriage return (a textarea turns \r\n into \n). Such values are shown read-only, so saving never
// changes a byte nobody edited. A byte-order mark is kept.
function decode(b64) {
  if (!b64) return '';
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
      .decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    return text.includes('\r') ? null : text;
  } catch (e) {
    return null;
  }
}

function crumbs(key) {
  const parts = key.split('/');
  const out = [el('a', { href: '#/kv/' }, 'kv')];
  let acc = '';
  parts.forEach((p, i) => {
    if (!p) return;
    acc += p + (i < parts.length - 1 ? '/' : '');
    out.push(' / ', el('a', { href: kvHref(acc) }, p));
  });
  return el('h2', { class: 'crumbs' }, out);
}

function showFolder(main, signal, prefix) {
  const list = new VList((it) => el('a', { class: 'row', href: it.href, 'data-key': it.key },
    el('span', { class: 'name' }, it.key.slice(prefix.length)), it.key.endsWith('/') ? badge('folder') : null));
  const { pane, filter, summary } = listPane(list, 'Filter keys');
  const key = el('input', { type: 'text', id: 'kv-key', placeholder: 'key, or folder/', 'aria-label': 'New key' });
  const value = el('textarea', { id: 'kv-value', 'aria-label': 'Value' });
  const err = el('p', { class: 'error', id: 'kv-error' });
  const create = el('button', { id: 'kv-create', type: 'submit' }, 'Create');
  const form = el('form', { class: 'pane detail' }, el('h3', {}, `Create in ${prefix || '/'}`), key, el('p'), value, el('p'), create, err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = key.value.trim();
    if (!name) { err.textContent = 'A key needs a name.'; return; }
    if (unreachable(prefix + name)) { err.textContent = UNREACHABLE; return; }
    try {
      // cas=0: create only; an existing key is never overwritten from here.
      const r = await request(kvPath(prefix + name), { cas: 0 }, { method: 'PUT', body: name.endsWith('/') ? '' : value.value });
      if (r.body !== true) { err.textContent = `${prefix + name} already exists.`; return; }
      location.hash = kvHref(prefix + name);
    } catch (e) { err.textContent = e.message; }
  });
  main.append(el('div', { class: 'pane' }, crumbs(prefix), pane), form);
  if (unreachable(prefix)) { err.textContent = UNREACHABLE; return { list, filter, back: null }; }
  let all = [];
  const apply = () => {
    const f = filter.value.trim().toLowerCase();
    list.set(f ? all.filter((it) => it.key.toLowerCase().includes(f)) : all);
    summary.textContent = `${all.length} entries`;
  };
  filter.addEventListener('input', apply);
  watch(kvPath(prefix), { keys: '', separator: '/' }, signal, (body) => {
    all = (body || []).filter((k) => k !== prefix).map((k) => ({ key: k, sig: k, href: kvHref(k) }));
    apply();
  });
  return { list, filter, back: null };
}

async function showKey(main, signal, key) {
  const parent = key.slice(0, key.lastIndexOf('/') + 1);
  const value = el('textarea', { id: 'kv-value', 'aria-label': 'Value' });
  const err = el('p', { class: 'error', id: 'kv-error' });
  const info = el('p', { class: 'summary', id: 'kv-info' });
  const save = el('button', { id: 'kv-save', type: 'submit' }, 'Save');
  const del = el('button', { id: 'kv-delete', type: 'button', class: 'secondary' }, 'Delete');
  const form = el('form', { class: 'pane' }, crumbs(key), info, value, el('p', {}, save, ' ', del), err);
  main.append(form);
  const shown = { list: null, filter: null, back: kvHref(parent) };
  if (unreachable(key)) {
    err.textContent = UNREACHABLE;
    save.disabled = del.disabled = value.disabled = true;
    return shown;
  }
  let modify = 0;
  let flags = 0;
  const load = async () => {
    const r = await request(kvPath(key), {}, { signal });
    if (!r.body) {
      info.textContent = 'This key does not exist (yet); Save creates it.';
      modify = 0;
      flags = 0;
      return;
    }
    const e = r.body[0];
    const text = decode(e.Value);
    value.value = text === null ? '' : text;
    save.disabled = value.disabled = text === null;
    modify = e.ModifyIndex;
    flags = e.Flags;
    info.textContent = `Flags ${e.Flags} · modify index ${e.ModifyIndex}${e.Session ? ' · locked by session ' + e.Session : ''}` +
      (text === null ? ' · not plain text (binary, or with carriage returns): read-only here' : '');
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      // Check-and-set on the index we loaded, so an edit never silently overwrites someone else's; the
      // key's flags are kept.
      const r = await request(kvPath(key), { cas: modify, flags }, { method: 'PUT', body: value.value });
      if (r.body !== true) { err.textContent = 'The key changed since it was loaded; reloaded, try again.'; await load(); return; }
      err.textContent = '';
      await load();
      say(`Saved ${key}`);
    } catch (e) { err.textContent = e.message; }
  });
  del.addEventListener('click', async () => {
    try {
      const r = await request(kvPath(key), { cas: modify }, { method: 'DELETE' });
      if (r.body !== true) { err.textContent = 'The key changed since it was loaded; reloaded, nothing deleted.'; await load(); return; }
      location.hash = kvHref(parent);
    } catch (e) { err.textContent = e.message; }
  });
  try { await load(); } catch (e) { if (!signal.aborted) err.textContent = e.message; }
  return shown;
}

// --- Servers -----------------------------------------------------------------------------------------

function showServers(main, signal) {
  const box = el('section', { class: 'pane' }, el('h2', {}, 'Servers'));
  main.append(box);
  poll('operator/raft/configuration', 2000, signal, (cfg, e) => {
    if (e) { box.replaceChildren(el('h2', {}, 'Servers'), el('p', { class: 'error' }, e.message)); return; }
    const rows = (cfg.Servers || []).map((s) => el('tr', { 'data-server': s.Node, 'data-leader': s.Leader ? 'true' : 'false' },
      el('td', {}, s.Node), el('td', {}, s.Address), el('td', {}, s.Leader ? badge('leader', 'passing') : 'follower'),
      el('td', {}, s.Voter ? 'yes' : 'no'), el('td', {}, s.ID)));
    box.replaceChildren(el('h2', {}, 'Servers'), table(['Node', 'Address', 'State', 'Voter', 'ID'], rows),
      el('p', { class: 'summary' }, `Raft index ${cfg.Index}`));
  });
  return { list: null, filter: null, back: null };
}

// --- Shell -------------------------------------------------------------------------------------------

function route() {
  if (view) view.ctl.abort();
  const ctl = new AbortController();
  const main = document.getElementById('view');
  main.replaceChildren();
  // Each segment decoded on its own (links encode them so): a key's own '%', '#' and '?' survive.
  const segments = location.hash.replace(/^#\/?/, '').split('/').map((seg) => {
    try { return decodeURIComponent(seg); } catch (e) { return seg; }
  });
  const [section, ...rest] = segments;
  const arg = rest.join('/');
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === (section || 'nodes'));
  let shown;
  switch (section) {
    case 'services': shown = showServices(main, ctl.signal, arg); break;
    case 'kv': shown = arg === '' || arg.endsWith('/') ? showFolder(main, ctl.signal, arg) : showKey(main, ctl.signal, arg); break;
    case 'servers': shown = showServers(main, ctl.signal); break;
    default: shown = showNodes(main, ctl.signal, arg);
  }
  view = { ctl, list: null, filter: null, back: null };
  Promise.resolve(shown).then((s) => { if (view.ctl === ctl) Object.assign(view, s); });
}

function onKey(ev) {
  const typing = ev.target.matches('input, textarea, select');
  if (ev.key === 'Escape') {
    if (typing) ev.target.blur();
    else if (view && view.back) location.hash = view.back;
    return;
  }
  if (typing || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const list = view && view.list;
  if (ev.key === '/' && view && view.filter) { ev.preventDefault(); view.filter.focus(); }
  else if ((ev.key === 'ArrowDown' || ev.key === 'j') && list) { ev.preventDefault(); list.move(1); }
  else if ((ev.key === 'ArrowUp' || ev.key === 'k') && list) { ev.preventDefault(); list.move(-1); }
  else if (ev.key === 'Enter' && list && list.selKey !== null && !ev.target.matches('a, button')) { ev.preventDefault(); list.open(); }
}

async function header() {
  const select = document.getElementById('dc');
  try {
    const dcs = (await request('catalog/datacenters', {})).body || [];
    select.replaceChildren(...dcs.map((d, i) => el('option', { value: i === 0 ? '' : d }, d)));
  } catch (e) { say(e.message); }
  select.addEventListener('change', () => { dc = select.value; route(); });
  const leader = document.getElementById('leader');
  poll('status/leader', 5000, new AbortController().signal, (addr, e) => {
    leader.textContent = e ? 'agent unreachable' : addr ? `leader ${addr}` : 'no leader';
  });
}

window.addEventListener('hashchange', route);
document.addEventListener('keydown', onKey);
header();
route();
