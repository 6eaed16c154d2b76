// Audit page: the replicated audit trail with filters; the newest entries first by
// default, or paged forward from the oldest with the API's cursor.

import { rpc } from './api.js';
import { el, timeEl, renderIfChanged, table, tableWrap, field, select, compact, CursorPager } from './ui.js';

const KINDS = ['borrow', 'refusal', 'return', 'license-add', 'license-update', 'license-remove', 'pool-apply',
  'host-update', 'host-block', 'host-unblock', 'api-key-create', 'api-key-revoke', 'membership'];
const PAGE_SIZE = 100;
const LATEST_PAGE_SIZE = 1000;
// Pages read per poll on the way to the newest entry; a long trail is caught up over a
// few polls instead of in one burst.
const LATEST_MAX_PAGES = 20;

export function createAuditPage(ctx) {
  const pager = new CursorPager();
  let applied = {};
  let mode = 'latest';
  let latestStart = null;

  const inputs = {
    kind: select('audit-kind', [['', 'any'], ...KINDS.map((k) => [k, k])], ''),
    host: el('input', { id: 'audit-host', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'MAC:… or CM:3-…' }),
    feature: el('input', { id: 'audit-feature', type: 'text', autocomplete: 'off', spellcheck: 'false' }),
    borrow: el('input', { id: 'audit-borrow', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'borrow UUID' }),
    actor: el('input', { id: 'audit-actor', type: 'text', autocomplete: 'off', spellcheck: 'false', list: 'audit-actors', placeholder: 'client, admin, key:…, node:…, system' }),
    since: el('input', { id: 'audit-since', type: 'date' }),
    until: el('input', { id: 'audit-until', type: 'date' }),
  };
  const actors = el('datalist', { id: 'audit-actors' }, ['client', 'admin', 'system'].map((a) => el('option', { value: a })));
  const form = el('form', { class: 'filters', 'aria-label': 'Filter the audit trail' },
    field('Kind', inputs.kind), field('Host id', inputs.host), field('Feature', inputs.feature),
    field('Borrow id', inputs.borrow), field('Actor', inputs.actor), actors,
    field('Since (UTC)', inputs.since), field('Until (UTC)', inputs.until),
    el('div', { class: 'filter-actions' },
      el('button', { type: 'submit', id: 'audit-apply', text: 'Filter' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    applied = compact({
      kind: inputs.kind.value,
      hostId: inputs.host.value.trim(),
      feature: inputs.feature.value.trim(),
      borrowId: inputs.borrow.value.trim(),
      actor: inputs.actor.value.trim(),
      since: inputs.since.value,
      until: inputs.until.value,
    });
    latestStart = null;
    pager.reset();
    ctx.refresh();
  });

  const modeButtons = [
    el('button', { type: 'button', id: 'audit-latest', class: 'seg', text: 'Newest first', 'aria-pressed': 'true', on: { click: () => setMode('latest') } }),
    el('button', { type: 'button', id: 'audit-oldest', class: 'seg', text: 'Oldest first, paged', 'aria-pressed': 'false', on: { click: () => setMode('forward') } }),
  ];
  function setMode(next) {
    mode = next;
    modeButtons[0].setAttribute('aria-pressed', String(next === 'latest'));
    modeButtons[1].setAttribute('aria-pressed', String(next === 'forward'));
    latestStart = null;
    pager.reset();
    ctx.refresh();
  }

  const results = el('div', { class: 'results' });
  const root = el('section', { id: 'page-audit', class: 'page', 'aria-labelledby': 'audit-title' },
    el('div', { class: 'page-head' },
      el('h1', { id: 'audit-title', text: 'Audit trail' }),
      ctx.isAdmin ? el('div', { class: 'segmented', role: 'group', 'aria-label': 'Order' }, modeButtons) : null));
  if (ctx.isAdmin) root.append(form, results);
  else root.append(el('p', { class: 'notice', text: 'The audit trail needs an admin credential (the admin token or an admin API key).' }));

  function row(entry) {
    return el('tr', { dataset: { seq: entry.seq } },
      el('td', { class: 'num', text: String(entry.seq) }),
      el('td', null, timeEl(entry.at)),
      el('td', { class: 'num', text: entry.node === undefined ? '—' : String(entry.node) }),
      el('td', { class: 'mono', text: entry.actor }),
      el('td', null, el('span', { class: `badge kind-${entry.kind}`, dataset: { kind: entry.kind }, text: entry.kind })),
      el('td', { text: entry.feature ? `${entry.feature}/${entry.uuid || ''}` : '' }),
      el('td', { class: 'mono', text: entry.hostId || '' }),
      el('td', null, entry.borrowId
        ? el('a', { href: `#/borrows?borrow=${encodeURIComponent(entry.borrowId)}`, class: 'mono', title: entry.borrowId, text: `${entry.borrowId.slice(0, 8)}…`, dataset: { fk: `borrow-${entry.seq}` } })
        : ''),
      el('td', { class: 'num', text: entry.code === undefined ? '' : String(entry.code) }),
      el('td', { class: 'detail-text', text: entry.detail || '' }));
  }

  function render(entries, note, withPager) {
    const sig = JSON.stringify([mode, applied, pager.stack.length, pager.cursor, pager.next, entries, note]);
    renderIfChanged(results, sig, () => [
      note ? el('p', { class: 'hint', text: note }) : null,
      entries.length
        ? tableWrap(table('Audit entries', ['Seq', 'At', 'Node', 'Actor', 'Kind', 'License', 'Host', 'Borrow', 'Code', 'Detail'], entries.map(row)))
        : el('p', { class: 'muted empty', text: 'No entry matches.' }),
      withPager ? pager.controls(() => ctx.refresh()) : null,
    ]);
  }

  async function loadLatest(filter) {
    let cursor = latestStart;
    const pages = [];
    let more = false;
    for (;;) {
      const params = { ...filter, limit: LATEST_PAGE_SIZE };
      if (cursor) params.cursor = cursor;
      const page = await rpc('ListAuditV1', params);
      pages.push({ cursor, entries: page.entries || [] });
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
      if (pages.length >= LATEST_MAX_PAGES) {
        more = true;
        break;
      }
    }
    if (filter !== applied || mode !== 'latest') return;
    // Next time start at the page before the last, so that the newest hundred are always
    // at hand without reading the trail from its start again.
    latestStart = pages.length >= 2 ? pages[pages.length - 2].cursor : pages[0].cursor;
    if (more) latestStart = cursor;
    const tail = pages.slice(-2).flatMap((p) => p.entries).slice(-PAGE_SIZE).reverse();
    render(tail, more ? 'Still reading towards the newest entries; the list catches up on the next refreshes.' : `The newest ${PAGE_SIZE} entries, newest first.`, false);
  }

  async function loadForward(filter) {
    const params = { ...filter, limit: PAGE_SIZE };
    if (pager.cursor) params.cursor = pager.cursor;
    const cursor = pager.cursor;
    const page = await rpc('ListAuditV1', params);
    if (filter !== applied || mode !== 'forward' || cursor !== pager.cursor) return;
    pager.next = page.nextCursor || null;
    render(page.entries || [], 'Oldest first.', true);
  }

  async function load() {
    if (!ctx.isAdmin) return;
    if (mode === 'latest') await loadLatest(applied);
    else await loadForward(applied);
  }

  return { root, load };
}
