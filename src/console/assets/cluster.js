// Cluster page: Raft membership with each member's progress as the leader sees it, the
// serving node's and the leader's indexes, and an administrator's leadership transfer.

import { rpc } from './api.js';
import { el, renderIfChanged, patchCells, table, tableWrap, fmtNum, confirmAndRun } from './ui.js';

// A member's addresses as the membership holds them: `{raft_addr, api_addr}`.
function address(addr) {
  if (typeof addr === 'string') return addr;
  if (addr && typeof addr === 'object') {
    const raft = addr.raft_addr ?? addr.raftAddr;
    const api = addr.api_addr ?? addr.apiAddr;
    if (typeof raft === 'string') return api ? `peer ${raft} · client ${api}` : `peer ${raft}`;
  }
  return JSON.stringify(addr);
}

export function createClusterPage(ctx) {
  const summary = el('div', { class: 'results' });
  const members = el('div', { class: 'results' });
  const root = el('section', { id: 'page-cluster', class: 'page', 'aria-labelledby': 'cluster-title' },
    el('h1', { id: 'cluster-title', text: 'Cluster' }),
    summary,
    el('h2', { text: 'Members' }),
    members);

  function transfer(id, leaderId) {
    confirmAndRun({
      title: 'Transfer leadership',
      text: `Hand the leadership from node ${leaderId} to node ${id}? Writes pause briefly while node ${id} takes over.`,
      okLabel: 'Transfer',
    }, () => rpc('TransferLeadershipV1', { to: id }),
    (r) => (r && r.message ? r.message : `Node ${id} leads.`), () => ctx.refresh());
  }

  function statusCard(title, s) {
    const rows = [
      ['Node', `node ${s.node}`], ['State', s.state], ['Knows leader', s.leader === null || s.leader === undefined ? 'none' : `node ${s.leader}`],
      ['Term', fmtNum(s.term)], ['Last log index', fmtNum(s.lastLogIndex)], ['Committed', fmtNum(s.committed)],
      ['Applied', fmtNum(s.applied)], ['Snapshot', fmtNum(s.snapshot)], ['Purged', fmtNum(s.purged)],
      ['Snapshots built / installed', `${fmtNum(s.snapshotsBuilt)} / ${fmtNum(s.snapshotsInstalled)}`],
    ];
    return el('article', { class: 'card', dataset: { view: title } },
      el('h2', { text: title }),
      el('dl', { class: 'fields' }, rows.map(([name, value]) => [el('dt', { text: name }), el('dd', { text: value })])));
  }

  async function load() {
    const s = await rpc('GetClusterStatusV1');
    if (s.servedBy !== undefined) ctx.setServedBy(s.servedBy);
    const leaderId = s.leader ? s.leader.node : s.node.leader;
    const view = s.leader || s.node;

    renderIfChanged(summary, JSON.stringify(s), () => [
      el('p', { class: 'big-number', id: 'cluster-leader' },
        leaderId === null || leaderId === undefined
          ? el('span', { class: 'badge bad', text: 'no leader' })
          : ['Leader: ', el('strong', { text: `node ${leaderId}` })],
        el('span', { class: 'muted', text: ` · term ${fmtNum(view.term)} · this console is served by node ${s.servedBy ?? s.node.node}` })),
      s.leaderError ? el('p', { class: 'load-error', text: `The leader could not be asked: ${s.leaderError}. Member progress is this node's view.` }) : null,
      el('div', { class: 'grid two' },
        statusCard(`Serving node (${s.node.node})`, s.node),
        s.leader && s.leader.node !== s.node.node ? statusCard(`Leader (${s.leader.node})`, s.leader) : null),
    ]);

    const ack = (m) => (m.lastAckMs === null || m.lastAckMs === undefined ? '—' : `${m.lastAckMs} ms ago`);
    const shape = (view.members || []).map((m) => [m.id, m.addr, m.voter]);
    renderIfChanged(members, JSON.stringify([shape, leaderId]), () => {
      const headers = ['Id', 'Address', 'Kind', 'Role', 'Matched', 'Lag', 'Last ack'];
      if (ctx.isAdmin) headers.push('Actions');
      const rows = (view.members || []).map((m) => {
        const role = m.id === leaderId ? 'leader' : (m.voter ? 'follower' : 'learner');
        const canTransfer = ctx.isAdmin && m.voter && m.id !== leaderId && leaderId !== null && leaderId !== undefined;
        return el('tr', { dataset: { memberId: m.id }, class: role === 'leader' ? 'leader-row' : null },
          el('td', { class: 'num', text: String(m.id) }),
          el('td', { class: 'mono', text: address(m.addr) }),
          el('td', { text: m.voter ? 'voter' : 'learner' }),
          el('td', null, el('span', { class: `badge role-${role}`, dataset: { role }, text: role })),
          el('td', { class: 'num', dataset: { cell: 'matched' } }),
          el('td', { class: 'num', dataset: { cell: 'lag' } }),
          el('td', { class: 'num', dataset: { cell: 'ack' } }),
          ctx.isAdmin ? el('td', null, canTransfer ? el('button', {
            type: 'button', class: 'secondary small-btn', text: 'Make leader',
            'aria-label': `Transfer leadership to node ${m.id}`,
            dataset: { adminAction: 'transfer', to: m.id, fk: `transfer-${m.id}` },
            on: { click: () => transfer(m.id, leaderId) },
          }) : null) : null);
      });
      return rows.length
        ? tableWrap(table('Cluster members', headers, rows))
        : el('p', { class: 'muted', text: 'No member is known.' });
    });
    for (const m of view.members || []) {
      patchCells(members.querySelector(`tr[data-member-id="${CSS.escape(String(m.id))}"]`),
        { matched: fmtNum(m.matched), lag: fmtNum(m.lag), ack: ack(m) });
    }
  }

  return { root, load };
}
