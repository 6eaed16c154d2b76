// Licenses page: every license of the pool with its seats and a timeline of its current
// and upcoming borrows, one lane per seat in use.

import { rpc } from './api.js';
import { el, timeEl, renderIfChanged, patchCells } from './ui.js';
import { RANGES, assignLanes, inUseAt, renderTimeline, moveNow, windowFor } from './timeline.js';

const RANGE_KEY = 'licensed.console.range';

export function createLicensesPage() {
  let rangeKey = sessionStorage.getItem(RANGE_KEY) || '7d';
  if (!RANGES[rangeKey]) rangeKey = '7d';
  let licenses = null;

  const list = el('div', { class: 'license-list' });
  const rangeButtons = Object.entries(RANGES).map(([key, range]) => el('button', {
    type: 'button',
    class: 'seg',
    text: range.label,
    'aria-pressed': key === rangeKey ? 'true' : 'false',
    dataset: { range: key },
    on: {
      click: () => {
        rangeKey = key;
        sessionStorage.setItem(RANGE_KEY, key);
        for (const b of rangeButtons) b.setAttribute('aria-pressed', b.dataset.range === key ? 'true' : 'false');
        if (licenses) render();
      },
    },
  }));
  const root = el('section', { id: 'page-licenses', class: 'page', 'aria-labelledby': 'licenses-title' },
    el('div', { class: 'page-head' },
      el('h1', { id: 'licenses-title', text: 'Licenses' }),
      el('div', { class: 'segmented', role: 'group', 'aria-label': 'Timeline range', id: 'timeline-range' }, rangeButtons)),
    el('p', { class: 'muted', text: 'Each lane is one seat held over time. Lanes beyond the license\u2019s seat count mean it is over-booked (after a forced change). Select a bar to open the borrow.' }),
    list);

  function capacity(license, now) {
    const intervals = license.borrowedIntervals || [];
    const free = Math.max(license.count - inUseAt(intervals, now), 0);
    const { lanes } = assignLanes(intervals);
    return `${free} free now · ${lanes} ${lanes === 1 ? 'lane' : 'lanes'} at peak · ${intervals.length} current or upcoming ${intervals.length === 1 ? 'borrow' : 'borrows'}`;
  }

  function card(license, now) {
    const intervals = license.borrowedIntervals || [];
    const key = `${license.feature}/${license.uuid}`;
    const used = inUseAt(intervals, now);
    const { lanes } = assignLanes(intervals);
    const over = lanes > license.count;
    return el('article', { class: over ? 'card license over' : 'card license', dataset: { license: key } },
      el('header', { class: 'license-head' },
        el('h2', null, el('span', { text: license.feature }), el('span', { class: 'muted mono', text: ` ${license.uuid}` })),
        el('p', { class: 'meta' },
          `version ${license.version} · ${license.edition} · modules `, el('code', { text: license.modules }),
          ' · valid ', license.validFrom ? ['from ', timeEl(license.validFrom), ' '] : null,
          license.validUntil ? ['until ', timeEl(license.validUntil)] : 'without end')),
      el('p', { class: 'seats' },
        el('strong', { dataset: { seats: '' }, text: `${used} of ${license.count} seats in use now` }),
        el('span', { class: 'muted', dataset: { cell: 'capacity' }, text: capacity(license, now) }),
        over ? el('span', { class: 'badge bad', text: `over-booked: ${lanes} lanes for ${license.count} seats` }) : null),
      renderTimeline({ intervals, count: license.count, rangeKey, now, label: `Borrows of ${key}` }));
  }

  function render() {
    const now = Date.now();
    const win = windowFor(rangeKey, now);
    const sig = JSON.stringify([rangeKey, win.start, licenses]);
    const rebuilt = renderIfChanged(list, sig, () => (licenses.length
      ? licenses.map((l) => card(l, now))
      : el('p', { class: 'muted', text: 'No license in the pool.' })));
    if (!rebuilt) {
      // Same data: only time moved on, which starts and ends borrows. Patched in place so
      // that the bars stay the elements they were.
      for (const node of list.querySelectorAll('[data-timeline]')) moveNow(node, now);
      for (const license of licenses) {
        const box = list.querySelector(`[data-license="${CSS.escape(`${license.feature}/${license.uuid}`)}"]`);
        if (!box) continue;
        const seats = box.querySelector('[data-seats]');
        const text = `${inUseAt(license.borrowedIntervals || [], now)} of ${license.count} seats in use now`;
        if (seats && seats.textContent !== text) seats.textContent = text;
        patchCells(box, { capacity: capacity(license, now) });
      }
    }
  }

  async function load() {
    licenses = await rpc('ListLicensesV1', []);
    render();
  }

  return { root, load };
}
