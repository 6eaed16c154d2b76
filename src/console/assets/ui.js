// Shared DOM helpers of the console: element building, UTC date formatting, the
// confirmation dialog, the outcome status region and small table/paging pieces.

import { RpcError } from './api.js';

/**
 * Builds an element. `attrs` keys: `class`, `text`, `dataset` (object), `on` (object of
 * listeners), `hidden`, properties such as `value`/`checked`/`disabled`, and any other
 * name as an attribute (null/false/undefined leave it out). Children may be nodes,
 * strings, numbers, arrays or null.
 */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = value;
      else if (name === 'dataset') {
        for (const [k, v] of Object.entries(value)) {
          if (v !== null && v !== undefined) node.dataset[k] = String(v);
        }
      } else if (name === 'on') {
        for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
      } else if (name === 'value' || name === 'checked' || name === 'disabled' || name === 'selected') {
        node[name] = value;
      } else if (name === 'hidden') node.hidden = true;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces every child of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const pad = (n) => String(n).padStart(2, '0');

/** An ISO instant as UTC `YYYY-MM-DD HH:MM`; '' for none, the input when unparsable. */
export function fmtDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

/** A <time> showing `fmtDate` with the ISO value in its title; a dash for none. */
export function timeEl(iso) {
  if (!iso) return el('span', { class: 'muted', text: '—' });
  return el('time', { datetime: iso, title: iso, text: fmtDate(iso) });
}

/** A duration in milliseconds for people: "3 h 20 min", "12 days". */
export function fmtDuration(ms) {
  const abs = Math.abs(ms);
  const min = Math.round(abs / 60000);
  if (min < 1) return 'less than a minute';
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
  return `${Math.round(h / 24)} days`;
}

/** A possibly-null number (Raft index, lag) for a table cell. */
export function fmtNum(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object') {
    if (typeof value.index === 'number') return String(value.index);
    return JSON.stringify(value);
  }
  return String(value);
}

/** "now minus `ms`" as an RFC 3339 instant with whole seconds, as the API prints. */
export function isoAgo(ms) {
  return new Date(Date.now() - ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Text of an error for people: JSON-RPC code, message and reason verbatim. */
export function describeError(err) {
  if (err instanceof RpcError) return err.describe();
  return `Error: ${err && err.message ? err.message : String(err)}`;
}

// --- outcome status region -------------------------------------------------------

function outcomeNode() {
  return document.getElementById('outcome');
}

/** Shows a success in #outcome. */
export function showOk(text) {
  const node = outcomeNode();
  if (!node) return;
  node.classList.remove('error');
  node.classList.add('ok');
  node.textContent = text;
}

/** Shows a failure in #outcome with its code and reason. */
export function showError(err) {
  const node = outcomeNode();
  if (!node) return;
  node.classList.remove('ok');
  node.classList.add('error');
  node.textContent = describeError(err);
}

export function clearOutcome() {
  const node = outcomeNode();
  if (!node) return;
  node.classList.remove('ok', 'error');
  node.textContent = '';
}

// --- confirmation dialog ---------------------------------------------------------

let dialogResolve = null;

/**
 * Opens #confirm-dialog and resolves to the fields' values (an object keyed by field
 * id) on OK, or null on cancel/Escape. `fields`: [{id, label, value, multiline,
 * placeholder}] with ids among dialog-reason, dialog-name, dialog-notes.
 */
export function confirmDialog({ title, text, okLabel, danger, fields }) {
  const dialog = document.getElementById('confirm-dialog');
  const form = document.getElementById('confirm-form');
  const fieldBox = document.getElementById('confirm-fields');
  const ok = document.getElementById('confirm-ok');
  document.getElementById('confirm-title').textContent = title || 'Please confirm';
  document.getElementById('confirm-text').textContent = text;
  ok.textContent = okLabel || 'Confirm';
  ok.classList.toggle('danger', !!danger);
  fieldBox.replaceChildren();
  const inputs = [];
  for (const f of fields || []) {
    const input = f.multiline
      ? el('textarea', { id: f.id, rows: 3, placeholder: f.placeholder || null })
      : el('input', { id: f.id, type: 'text', placeholder: f.placeholder || null, autocomplete: 'off' });
    input.value = f.value || '';
    inputs.push(input);
    fieldBox.appendChild(el('div', { class: 'field' }, el('label', { for: f.id, text: f.label }), input));
  }
  if (dialogResolve) dialogResolve(null);
  return new Promise((resolve) => {
    dialogResolve = (values) => {
      dialogResolve = null;
      resolve(values);
    };
    form.onsubmit = (event) => {
      event.preventDefault();
      const values = {};
      for (const input of inputs) values[input.id] = input.value;
      close(values);
    };
    const close = (values) => {
      const done = dialogResolve;
      if (dialog.open) dialog.close();
      if (done) done(values);
    };
    document.getElementById('confirm-cancel').onclick = () => close(null);
    dialog.oncancel = (event) => {
      event.preventDefault();
      close(null);
    };
    dialog.onclose = () => {
      if (dialogResolve) dialogResolve(null);
    };
    const opener = document.activeElement;
    dialog.addEventListener('close', () => {
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    }, { once: true });
    dialog.showModal();
    (inputs[0] || ok).focus();
  });
}

/**
 * Confirms, runs `action`, reports the outcome in #outcome and calls `after` (a data
 * refresh) whatever happened. `action` gets the dialog's values.
 */
export async function confirmAndRun(options, action, success, after) {
  const values = await confirmDialog(options);
  if (!values) return;
  try {
    const result = await action(values);
    showOk(typeof success === 'function' ? success(result) : success);
  } catch (err) {
    showError(err);
  } finally {
    if (after) after();
  }
}

// --- pieces used by several pages ---------------------------------------------------

/** A horizontally scrolling wrapper around a table. */
export function tableWrap(table) {
  return el('div', { class: 'table-wrap' }, table);
}

/** A <table> with a caption (visually hidden when `hideCaption`), header and body. */
export function table(caption, headers, bodyRows, hideCaption = true) {
  return el('table', { class: 'data' },
    el('caption', { class: hideCaption ? 'sr-only' : null, text: caption }),
    el('thead', null, el('tr', null, headers.map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', null, bodyRows));
}

/** A labelled form field. */
export function field(label, input, hint) {
  return el('div', { class: 'field' }, el('label', { for: input.id, text: label }), input,
    hint ? el('span', { class: 'hint', text: hint }) : null);
}

/** A <select> from [value, label] pairs. */
export function select(id, options, value) {
  const node = el('select', { id }, options.map(([v, label]) => el('option', { value: v, text: label })));
  node.value = value || '';
  return node;
}

/**
 * Re-renders `container` with `build()` only when `signature` differs from the last
 * one, so that a poll that brings nothing new leaves focus, selection and scroll
 * alone; when it does re-render, focus returns to the element with the same
 * data-fk key.
 */
const signatures = new WeakMap();

export function renderIfChanged(container, signature, build) {
  if (signatures.get(container) === signature) return false;
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.fk : null;
  const scrollers = [...container.querySelectorAll('.table-wrap, .timeline-scroll')].map((n) => n.scrollLeft);
  replace(container, build());
  signatures.set(container, signature);
  [...container.querySelectorAll('.table-wrap, .timeline-scroll')].forEach((n, i) => {
    if (scrollers[i]) n.scrollLeft = scrollers[i];
  });
  if (key) {
    const again = container.querySelector(`[data-fk="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
  return true;
}

/**
 * Sets the text of `[data-cell="<name>"]` inside `scope` for each entry of `cells`,
 * touching only what changed: numbers that move on every poll (lag, last ack) are
 * patched in place instead of rebuilding rows whose buttons someone may be about to
 * press.
 */
export function patchCells(scope, cells) {
  if (!scope) return;
  for (const [name, text] of Object.entries(cells)) {
    const cell = scope.querySelector(`[data-cell="${name}"]`);
    if (cell && cell.textContent !== text) cell.textContent = text;
  }
}

/** Whether `container` holds a rendering from renderIfChanged. */
export function hasRendering(container) {
  return signatures.has(container);
}

/** Forgets the rendering of `container`, so that the next renderIfChanged builds it. */
export function forgetRendering(container) {
  signatures.delete(container);
}

/** A "previous / next" pager over cursor pages. */
export class CursorPager {
  constructor() {
    this.reset();
  }

  reset() {
    this.stack = [];
    this.cursor = null;
    this.next = null;
  }

  forward() {
    if (!this.next) return;
    this.stack.push(this.cursor);
    this.cursor = this.next;
  }

  back() {
    if (!this.stack.length) return;
    this.cursor = this.stack.pop();
  }

  /** The controls: #page-prev / #page-next and the page number. */
  controls(onMove) {
    const prev = el('button', { type: 'button', id: 'page-prev', dataset: { fk: 'page-prev' }, class: 'secondary', text: '← Previous',
      disabled: this.stack.length === 0, on: { click: () => { this.back(); onMove(); } } });
    const next = el('button', { type: 'button', id: 'page-next', dataset: { fk: 'page-next' }, class: 'secondary', text: 'Next →',
      disabled: !this.next, on: { click: () => { this.forward(); onMove(); } } });
    return el('div', { class: 'pager' }, prev, el('span', { class: 'muted', text: `Page ${this.stack.length + 1}` }), next);
  }
}

/** Empty strings become undefined so that they are left out of the parameters. */
export function compact(params) {
  const out = {};
  for (const [k, v] of Object.entries(params)) {
    if (v !== '' && v !== null && v !== undefined) out[k] = v;
  }
  return out;
}
