// Overview page: cluster health, seats in use per license, refusals of the last hour
// and licenses close to the end of their validity.

import { rpc, readiness } from './api.js';
import { el, replace, timeEl, fmtNum, fmtDuration, isoAgo, describeError, renderIfChanged, patchCells, hasRendering, forgetRendering, table, tableWrap } from './ui.js';
import { inUseAt } from './timeline.js';

const HOUR = 3600e3;
const EXPIRY_WINDOW = 90 * 24 * HOUR;
const REFUSAL_PAGES = 10;
const REFUSAL_PAGE_SIZE = 1000;
// The refusal count reads up to ten pages; doing that every poll would load the leader
// for a number that hardly moves within seconds.
const REFUSAL_EVERY_MS = 10000;

export function createOverviewPage(ctx) {
  const health = el('div', { class: 'card-body' });
  const utilisation = el('div', { class: 'card-body' });
  const refusals = el('div', { id: 'overview-refusals', class: 'card-body' });
  const expiring = el('div', { id: 'overview-expiring', class: 'card-body' });
  const root = el('section', { id: 'page-overview', class: 'page', 'aria-labelledby': 'overview-title' },
    el('h1', { id: 'overview-title', text: 'Overview' }),
    el('div', { class: 'grid' },
      el('article', { class: 'card' }, el('h2', { text: 'Cluster health' }), health),
      el('article', { class: 'card' }, el('h2', { text: 'Seats in use now' }), utilisation),
      el('article', { class: 'card' }, el('h2', { text: 'Refusals in the last hour' }), refusals),
      el('article', { class: 'card' }, el('h2', { text: 'Licenses ending within 90 days' }), expiring)));

  let lastRefusals = 0;

  async function loadRefusals() {
    if (!ctx.isAdmin) {
      renderIfChanged(refusals, 'not-admin', () =>
        el('p', { class: 'muted', text: 'Counting refusals reads the audit trail, which needs an admin credential.' }));
      return;
    }
    if (Date.now() - lastRefusals < REFUSAL_EVERY_MS && hasRendering(refusals)) return;
    const since = isoAgo(HOUR);
    const byFeature = new Map();
    let cursor = null;
    let pages = 0;
    let truncated = false;
    try {
      do {
        const params = { kind: 'refusal', since, limit: REFUSAL_PAGE_SIZE };
        if (cursor) params.cursor = cursor;
        const page = await rpc('ListAuditV1', params);
        for (const entry of page.entries || []) {
          const key = entry.feature || '(no license)';
          byFeature.set(key, (byFeature.get(key) || 0) + 1);
        }
        cursor = page.nextCursor || null;
        pages += 1;
      } while (cursor && pages < REFUSAL_PAGES);
      truncated = !!cursor;
      lastRefusals = Date.now();
    } catch (err) {
      renderIfChanged(refusals, `err:${describeError(err)}`, () =>
        el('p', { class: 'load-error', text: describeError(err) }));
      return;
    }
    const rows = [...byFeature.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const total = rows.reduce((sum, [, n]) => sum + n, 0);
    renderIfChanged(refusals, JSON.stringify([rows, truncated]), () => el('div', null,
      el('p', { class: 'big-number' }, el('strong', { text: `${total}${truncated ? '+' : ''}` }), ' refused since ', timeEl(since)),
      rows.length
        ? el('ul', { class: 'plain-list' }, rows.map(([feature, n]) =>
          el('li', { dataset: { refusalFeature: feature } }, el('span', { text: feature }), el('strong', { text: String(n) }))))
        : el('p', { class: 'muted', text: 'No borrow was refused.' }),
      truncated ? el('p', { class: 'hint', text: `Counted the first ${REFUSAL_PAGES * REFUSAL_PAGE_SIZE} refusals only.` }) : null));
  }

  function renderHealth(status, ready) {
    // Lag and last ack move on every poll: they are patched below, not part of the shape.
    const shape = status.ok
      ? { ...status.value, node: null, leader: null, members: ((status.value.leader || status.value.node).members || []).map((m) => [m.id, m.voter]),
        leaderId: status.value.leader ? status.value.leader.node : status.value.node.leader,
        term: (status.value.leader || status.value.node).term }
      : { error: describeError(status.error) };
    const sig = JSON.stringify([shape, ready.ok ? ready.value : describeError(ready.error)]);
    renderIfChanged(health, sig, () => {
      const parts = [];
      if (status.ok) {
        const s = status.value;
        if (s.servedBy !== undefined) ctx.setServedBy(s.servedBy);
        const view = s.leader || s.node;
        const leaderId = s.leader ? s.leader.node : s.node.leader;
        parts.push(el('p', { id: 'overview-leader', class: 'big-number' },
          leaderId === null || leaderId === undefined
            ? el('span', { class: 'badge bad', text: 'no leader' })
            : [el('span', { text: 'Leader: ' }), el('strong', { text: `node ${leaderId}` })],
          el('span', { class: 'muted', text: ` · term ${fmtNum(view.term)}` })));
        if (s.leaderError) parts.push(el('p', { class: 'load-error', text: `The leader could not be asked: ${s.leaderError}` }));
        const rows = (view.members || []).map((m) => {
          const role = m.id === leaderId ? 'leader' : (m.voter ? 'follower' : 'learner');
          return el('tr', { dataset: { memberId: m.id } },
            el('td', { text: `node ${m.id}` }),
            el('td', null, el('span', { class: `badge role-${role}`, text: role })),
            el('td', { class: 'num', dataset: { cell: 'lag' } }),
            el('td', { class: 'num', dataset: { cell: 'ack' } }));
        });
        parts.push(el('div', { id: 'overview-members' },
          tableWrap(table('Members', ['Member', 'Role', 'Lag', 'Last ack'], rows))));
      } else {
        parts.push(el('p', { id: 'overview-leader', class: 'load-error', text: `Cluster status: ${describeError(status.error)}` }));
        parts.push(el('div', { id: 'overview-members' }));
      }
      if (ready.ok) {
        const r = ready.value;
        parts.push(el('p', { class: 'readiness' },
          el('span', { class: r.ready ? 'badge good' : 'badge bad', text: r.ready ? 'ready' : 'not ready' }),
          ` node ${r.node ?? '?'}`, r.reason ? el('span', { class: 'muted', text: ` · ${r.reason}` }) : null));
      } else {
        parts.push(el('p', { class: 'load-error', text: `Readiness: ${describeError(ready.error)}` }));
      }
      return parts;
    });
    if (status.ok) {
      const view = status.value.leader || status.value.node;
      for (const m of view.members || []) {
        patchCells(health.querySelector(`tr[data-member-id="${CSS.escape(String(m.id))}"]`), {
          lag: fmtNum(m.lag),
          ack: m.lastAckMs === null || m.lastAckMs === undefined ? '—' : `${m.lastAckMs} ms`,
        });
      }
    }
  }

  function renderUtilisation(licenses, now) {
    const rows = licenses.map((l) => {
      const used = inUseAt(l.borrowedIntervals || [], now);
      return { key: `${l.feature}/${l.uuid}`, used, count: l.count };
    });
    renderIfChanged(utilisation, JSON.stringify(rows), () => {
      if (!rows.length) return el('p', { class: 'muted', text: 'No license in the pool.' });
      return el('ul', { class: 'util-list' }, rows.map((r) => {
        const share = r.count > 0 ? Math.min(r.used / r.count, 1) : (r.used > 0 ? 1 : 0);
        const fill = el('span', { class: r.used > r.count ? 'util-fill over' : 'util-fill' });
        fill.style.width = `${share * 100}%`;
        return el('li', { dataset: { utilisation: r.key } },
          el('a', { href: '#/licenses', class: 'util-name', text: r.key, dataset: { fk: `util-${r.key}` } }),
          el('span', { class: 'util-count', text: `${r.used} / ${r.count}` }),
          el('span', { class: 'util-bar', role: 'img', 'aria-label': `${r.used} of ${r.count} seats in use` }, fill));
      }));
    });
  }

  function renderExpiring(licenses, now) {
    const soon = licenses
      .filter((l) => l.validUntil && new Date(l.validUntil).getTime() - now <= EXPIRY_WINDOW)
      .sort((a, b) => new Date(a.validUntil) - new Date(b.validUntil));
    const sig = JSON.stringify([Math.floor(now / 60000), soon.map((l) => [l.feature, l.uuid, l.validUntil])]);
    renderIfChanged(expiring, sig, () => {
      if (!soon.length) return el('p', { class: 'muted', text: 'No license ends within 90 days.' });
      return el('ul', { class: 'plain-list' }, soon.map((l) => {
        const left = new Date(l.validUntil).getTime() - now;
        return el('li', { dataset: { expiring: `${l.feature}/${l.uuid}` } },
          el('span', { text: `${l.feature}/${l.uuid}` }),
          el('span', null, timeEl(l.validUntil), ' ',
            el('span', { class: left <= 0 ? 'badge bad' : 'badge warn', text: left <= 0 ? 'ended' : `in ${fmtDuration(left)}` })));
      }));
    });
  }

  const settle = (promise) => promise.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }));

  async function load() {
    const [licenses, status, ready] = await Promise.all([
      settle(rpc('ListLicensesV1', [])),
      settle(rpc('GetClusterStatusV1')),
      settle(readiness()),
      loadRefusals(),
    ]);
    renderHealth(status, ready);
    if (!licenses.ok) {
      replace(utilisation, el('p', { class: 'load-error', text: describeError(licenses.error) }));
      forgetRendering(utilisation);
      throw licenses.error;
    }
    const now = Date.now();
    renderUtilisation(licenses.value, now);
    renderExpiring(licenses.value, now);
  }

  return { root, load };
}
