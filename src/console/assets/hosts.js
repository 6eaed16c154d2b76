// Hosts page: the machines that borrowed, with names, notes and blocks, and the
// administrator's edit, block and unblock actions.

import { rpc } from './api.js';
import { el, timeEl, renderIfChanged, table, tableWrap, field, select, compact, CursorPager, confirmAndRun } from './ui.js';

const PAGE_SIZE = 50;

export function createHostsPage(ctx) {
  const pager = new CursorPager();
  let applied = {};

  const hostInput = el('input', { id: 'hosts-filter-host', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'MAC:… or CM:3-…' });
  const blockedSelect = select('hosts-filter-blocked', [['', 'any'], ['true', 'blocked'], ['false', 'not blocked']], '');
  const form = el('form', { class: 'filters', 'aria-label': 'Filter hosts' },
    field('Host id', hostInput),
    field('Blocked', blockedSelect),
    el('div', { class: 'filter-actions' }, el('button', { type: 'submit', id: 'hosts-apply', text: 'Filter' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    applied = compact({
      hostId: hostInput.value.trim(),
      blocked: blockedSelect.value === '' ? '' : blockedSelect.value === 'true',
    });
    pager.reset();
    ctx.refresh();
  });

  const results = el('div', { class: 'results' });
  const root = el('section', { id: 'page-hosts', class: 'page', 'aria-labelledby': 'hosts-title' },
    el('h1', { id: 'hosts-title', text: 'Hosts' }), form, results);

  function editHost(host) {
    confirmAndRun({
      title: 'Edit host',
      text: `Name and notes of ${host.hostId}. An empty field clears it.`,
      okLabel: 'Save',
      fields: [
        { id: 'dialog-name', label: 'Name', value: host.name || '' },
        { id: 'dialog-notes', label: 'Notes', value: host.notes || '', multiline: true },
      ],
    }, (values) => rpc('SetHostV1', {
      hostId: host.hostId,
      name: values['dialog-name'].trim() || null,
      notes: values['dialog-notes'].trim() || null,
    }), `Saved the name and notes of ${host.hostId}.`, () => ctx.refresh());
  }

  function blockHost(host) {
    confirmAndRun({
      title: 'Block host',
      text: `Block ${host.hostId}? Its new borrows are refused on every node; borrows it holds stay valid until an administrator returns them.`,
      okLabel: 'Block',
      danger: true,
      fields: [{ id: 'dialog-reason', label: 'Reason (optional)', placeholder: 'e.g. laptop reported stolen' }],
    }, (values) => {
      const params = { hostId: host.hostId };
      const reason = values['dialog-reason'].trim();
      if (reason) params.reason = reason;
      return rpc('BlockHostV1', params);
    }, (r) => {
      const held = r && r.borrows ? r.borrows.length : 0;
      return `Blocked ${host.hostId}.${held ? ` It holds ${held} current or upcoming ${held === 1 ? 'borrow' : 'borrows'}: ${r.borrows.map((b) => b.borrowId).join(', ')}.` : ''}`;
    }, () => ctx.refresh());
  }

  function unblockHost(host) {
    confirmAndRun({
      title: 'Unblock host',
      text: `Unblock ${host.hostId}? It may borrow again.`,
      okLabel: 'Unblock',
    }, () => rpc('UnblockHostV1', { hostId: host.hostId }), `Unblocked ${host.hostId}.`, () => ctx.refresh());
  }

  function row(host) {
    const blocked = host.blocked || null;
    const actions = ctx.isAdmin ? el('td', null, el('div', { class: 'row-actions' },
      el('button', { type: 'button', class: 'secondary small-btn', text: 'Edit', 'aria-label': `Edit ${host.hostId}`,
        dataset: { adminAction: 'edit-host', fk: `edit-${host.hostId}` }, on: { click: () => editHost(host) } }),
      blocked
        ? el('button', { type: 'button', class: 'secondary small-btn', text: 'Unblock', 'aria-label': `Unblock ${host.hostId}`,
          dataset: { adminAction: 'unblock', fk: `unblock-${host.hostId}` }, on: { click: () => unblockHost(host) } })
        : el('button', { type: 'button', class: 'secondary danger-text small-btn', text: 'Block', 'aria-label': `Block ${host.hostId}`,
          dataset: { adminAction: 'block', fk: `block-${host.hostId}` }, on: { click: () => blockHost(host) } }))) : null;
    return el('tr', { dataset: { hostId: host.hostId }, class: blocked ? 'blocked' : null },
      el('td', { class: 'mono' }, el('a', { href: `#/borrows?host=${encodeURIComponent(host.hostId)}`, text: host.hostId,
        title: 'Search its borrows', dataset: { fk: `host-${host.hostId}` } })),
      el('td', { text: host.name || '' }),
      el('td', { class: 'notes', text: host.notes || '' }),
      el('td', null, timeEl(host.firstBorrow)),
      el('td', null, timeEl(host.lastBorrow)),
      el('td', { class: 'num', text: String(host.borrows ?? '') }),
      el('td', null,
        el('span', { dataset: { blocked: blocked ? 'yes' : 'no' }, class: blocked ? 'badge bad' : 'badge', text: blocked ? 'yes' : 'no' }),
        blocked ? el('div', { class: 'small muted' }, 'since ', timeEl(blocked.at), blocked.reason ? `: ${blocked.reason}` : '') : null),
      actions);
  }

  async function load() {
    const params = { ...applied, limit: PAGE_SIZE };
    if (pager.cursor && !applied.hostId) params.cursor = pager.cursor;
    const cursor = pager.cursor;
    const filter = applied;
    const page = await rpc('ListHostsV1', params);
    if (cursor !== pager.cursor || filter !== applied) return;
    pager.next = page.nextCursor || null;
    const hosts = page.hosts || [];
    renderIfChanged(results, JSON.stringify([applied, pager.stack.length, pager.cursor, page]), () => {
      const headers = ['Host id', 'Name', 'Notes', 'First borrow', 'Last borrow', 'Borrows', 'Blocked'];
      if (ctx.isAdmin) headers.push('Actions');
      return [
        hosts.length
          ? tableWrap(table('Hosts', headers, hosts.map(row)))
          : el('p', { class: 'muted empty', text: 'No host matches.' }),
        pager.controls(() => ctx.refresh()),
      ];
    });
  }

  return { root, load };
}
