// Borrows page: search of the borrow ledger with cursor paging, and a borrow's detail:
// its signed license decoded, the cluster's verification, and an administrator's return.

import { rpc } from './api.js';
import { el, replace, forgetRendering, timeEl, describeError, renderIfChanged, table, tableWrap, field, select, compact, CursorPager, confirmAndRun } from './ui.js';

const PAGE_SIZE = 50;
const STATUSES = [['', 'any'], ['upcoming', 'upcoming'], ['active', 'active'], ['returned', 'returned'], ['expired', 'expired']];

/** The payload of `LIC1.<payload>.<sig>` as an object; throws when it does not decode. */
export function decodeLicense(text) {
  const parts = String(text).trim().split('.');
  if (parts.length !== 3 || parts[0] !== 'LIC1') throw new Error('not a LIC1.<payload>.<signature> string');
  const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
}

export function createBorrowsPage(ctx, params) {
  const pager = new CursorPager();
  let applied = {};
  let selected = params.get('borrow') || null;
  let focusDetail = !!selected;

  const inputs = {
    host: el('input', { id: 'filter-host', type: 'text', autocomplete: 'off', placeholder: 'MAC:… or CM:3-…', spellcheck: 'false' }),
    user: el('input', { id: 'filter-user', type: 'text', autocomplete: 'off', placeholder: 'text in user info' }),
    feature: el('input', { id: 'filter-feature', type: 'text', autocomplete: 'off', spellcheck: 'false' }),
    status: select('filter-status', STATUSES, ''),
    from: el('input', { id: 'filter-from', type: 'date' }),
    until: el('input', { id: 'filter-until', type: 'date' }),
  };
  const form = el('form', { id: 'borrows-filter', class: 'filters', 'aria-label': 'Search borrows' },
    field('Host id', inputs.host),
    field('User info contains', inputs.user),
    field('Feature', inputs.feature),
    field('Status', inputs.status),
    field('Window from (UTC)', inputs.from),
    field('Window until (UTC)', inputs.until),
    el('div', { class: 'filter-actions' },
      el('button', { type: 'submit', id: 'filter-apply', text: 'Search' }),
      el('button', { type: 'button', class: 'secondary', text: 'Clear', on: { click: clearFilters } })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    applyFilters();
  });

  const detailSlot = el('div', { class: 'detail-slot' });
  const results = el('div', { class: 'results' });
  const root = el('section', { id: 'page-borrows', class: 'page', 'aria-labelledby': 'borrows-title' },
    el('h1', { id: 'borrows-title', text: 'Borrows' }), form, detailSlot, results);

  function applyFilters() {
    applied = compact({
      hostId: inputs.host.value.trim(),
      userInfo: inputs.user.value.trim(),
      feature: inputs.feature.value.trim(),
      status: inputs.status.value,
      from: inputs.from.value,
      until: inputs.until.value,
    });
    pager.reset();
    ctx.refresh();
  }

  function clearFilters() {
    for (const input of Object.values(inputs)) input.value = '';
    applyFilters();
  }

  // #/borrows?host=<id> (from the Hosts page) starts a search for that host.
  let hostParam = null;
  function takeHostParam(next) {
    const host = next.get('host');
    if (!host || host === hostParam) return;
    hostParam = host;
    inputs.host.value = host;
    applied = compact({ ...applied, hostId: host });
    pager.reset();
  }
  takeHostParam(params);

  function open(borrowId) {
    location.hash = `#/borrows?borrow=${encodeURIComponent(borrowId)}`;
  }

  function renderResults(page) {
    pager.next = page.nextCursor || null;
    const borrows = page.borrows || [];
    const sig = JSON.stringify([applied, pager.stack.length, pager.cursor, page, selected]);
    renderIfChanged(results, sig, () => {
      const rows = borrows.map((b) => el('tr', {
        class: b.borrowId === selected ? 'selected clickable' : 'clickable',
        dataset: { borrowId: b.borrowId },
        on: {
          click: (event) => {
            if (event.target.closest('a, button')) return;
            open(b.borrowId);
          },
        },
      },
      el('td', null, el('a', { href: `#/borrows?borrow=${encodeURIComponent(b.borrowId)}`, class: 'mono', title: b.borrowId, text: `${b.borrowId.slice(0, 8)}…`, dataset: { fk: `open-${b.borrowId}` } })),
      el('td', null, el('span', { text: b.feature }), el('div', { class: 'muted mono small', text: b.uuid })),
      el('td', { class: 'mono', text: b.hostId }),
      el('td', { text: b.userInfo || '' }),
      el('td', null, timeEl(b.validFrom)),
      el('td', null, timeEl(b.validUntil)),
      el('td', null, el('span', { class: `badge status-${b.status}`, dataset: { status: '' }, text: b.status || '' })),
      el('td', null, timeEl(b.issuedAt)),
      el('td', null, b.returnedAt ? timeEl(b.returnedAt) : '')));
      return [
        borrows.length
          ? tableWrap(table('Borrows', ['Borrow', 'License', 'Host', 'User', 'From', 'Until', 'Status', 'Issued', 'Returned'], rows))
          : el('p', { class: 'muted empty', text: 'No borrow matches.' }),
        pager.controls(() => ctx.refresh()),
      ];
    });
  }

  async function loadDetail() {
    if (!selected) {
      replace(detailSlot);
      forgetRendering(detailSlot);
      return;
    }
    const borrowId = selected;
    let borrowed = null;
    let check = null;
    let error = null;
    let payload = null;
    let decodeError = null;
    try {
      borrowed = await rpc('GetBorrowedLicenseV1', { borrowId });
      try {
        payload = decodeLicense(borrowed.license);
      } catch (e) {
        decodeError = e.message;
      }
      try {
        check = await rpc('CheckLicenseV1', { license: borrowed.license });
      } catch (e) {
        check = { error: e };
      }
    } catch (e) {
      error = e;
    }
    if (borrowId !== selected) return;
    const sig = JSON.stringify([borrowId, borrowed, check && check.error ? describeError(check.error) : check, error ? describeError(error) : null]);
    renderIfChanged(detailSlot, sig, () => detailPanel(borrowId, borrowed, payload, decodeError, check, error));
    if (focusDetail) {
      focusDetail = false;
      const heading = detailSlot.querySelector('#borrow-detail h2');
      if (heading) heading.focus({ preventScroll: false });
    }
  }

  function detailPanel(borrowId, borrowed, payload, decodeError, check, error) {
    const close = el('button', { type: 'button', class: 'secondary small-btn', text: 'Close', dataset: { fk: 'detail-close' },
      on: { click: () => { location.hash = '#/borrows'; } } });
    const head = el('div', { class: 'detail-head' }, el('h2', { tabindex: '-1', text: 'Borrow detail' }), close);
    if (error) {
      return el('aside', { id: 'borrow-detail', class: 'card detail', 'aria-label': 'Borrow detail' }, head,
        el('p', { class: 'mono', text: borrowId }),
        el('p', { class: 'load-error', text: describeError(error) }));
    }
    const p = payload || {};
    const live = check && !check.error ? check.borrow || null : null;
    const status = check && !check.error ? check.status : null;
    const rows = [
      ['Borrow id', el('span', { class: 'mono', text: borrowId })],
      ['Feature', p.feature], ['UUID', el('span', { class: 'mono', text: p.uuid || '' })],
      ['Version', p.version], ['Edition', p.edition], ['Modules', p.modules ? el('code', { text: p.modules }) : ''],
      ['Host id', el('span', { class: 'mono', text: p.hostId || '' })], ['User info', p.userInfo || '—'],
      ['Valid from', timeEl(p.validFrom)], ['Valid until', timeEl(p.validUntil)],
      ['Issued at', timeEl(p.issuedAt)], ['Signing key id', el('span', { class: 'mono', text: p.keyId || '' })],
      ['Format', p.format === undefined ? '' : String(p.format)],
    ];
    if (live && live.returnedAt) rows.push(['Returned at', timeEl(live.returnedAt)]);
    let verify;
    if (!check) verify = el('span', { id: 'verify-status', text: 'not checked' });
    else if (check.error) verify = el('span', { id: 'verify-status', class: 'load-error', text: `check failed: ${describeError(check.error)}` });
    else {
      verify = el('span', { id: 'verify-status', class: check.signature === 'valid' ? 'verify good' : 'verify bad' },
        el('strong', { text: check.signature }), check.reason ? ` — ${check.reason}` : '');
    }
    const canReturn = ctx.isAdmin && status !== 'returned' && status !== 'expired';
    const actions = canReturn ? el('div', { class: 'actions' }, el('button', {
      type: 'button', class: 'danger', text: 'Return this borrow', dataset: { adminAction: 'return', fk: 'detail-return' },
      on: {
        click: () => confirmAndRun({
          title: 'Return borrow',
          text: `Return borrow ${borrowId} (${p.feature || ''}/${p.uuid || ''}, host ${p.hostId || '?'})? Its seat is free at once; the machine's signed copy stays verifiable offline.`,
          okLabel: 'Return',
          danger: true,
        }, () => rpc('ReturnLicenseV1', { borrowId }),
        (r) => (r && r.returnedAt ? `Returned borrow ${borrowId} at ${r.returnedAt}.` : `Borrow ${borrowId} had already ended: nothing changed.`),
        () => ctx.refresh()),
      },
    })) : null;
    return el('aside', { id: 'borrow-detail', class: 'card detail', 'aria-label': 'Borrow detail' }, head,
      el('dl', { class: 'fields' },
        rows.map(([name, value]) => [el('dt', { text: name }), el('dd', null, value === undefined || value === null || value === '' ? '—' : value)]),
        el('dt', { text: 'Live status' }), el('dd', null, status ? el('span', { class: `badge status-${status}`, text: status }) : '—'),
        el('dt', { text: 'Verification' }), el('dd', null, verify)),
      decodeError ? el('p', { class: 'load-error', text: `The license does not decode: ${decodeError}` }) : null,
      el('div', { class: 'field' },
        el('label', { for: 'detail-license', text: 'Signed license' }),
        el('textarea', { id: 'detail-license', class: 'mono license-text', readonly: true, rows: 3, value: borrowed.license, spellcheck: 'false' })),
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary', text: 'Copy license', dataset: { fk: 'detail-copy' },
          on: { click: (event) => copyText(borrowed.license, event.currentTarget) } }),
        actions));
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch (e) {
      const area = document.getElementById('detail-license');
      if (area) area.select();
      button.textContent = 'Selected: press Ctrl+C';
    }
  }

  async function load() {
    const params = { ...applied, limit: PAGE_SIZE };
    if (pager.cursor) params.cursor = pager.cursor;
    const cursor = pager.cursor;
    const filter = applied;
    const [page] = await Promise.all([rpc('ListBorrowsV1', params), loadDetail()]);
    // A search or page change made while this answer was on its way supersedes it.
    if (cursor !== pager.cursor || filter !== applied) return;
    renderResults(page);
  }

  function setParams(next) {
    const id = next.get('borrow') || null;
    if (id !== selected) focusDetail = !!id;
    selected = id;
    takeHostParam(next);
  }

  return { root, load, setParams };
}
