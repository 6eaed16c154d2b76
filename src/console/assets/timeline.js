// Seat timeline of a license: lane assignment of its current and upcoming borrows (pure,
// no DOM) and their rendering as absolutely positioned bars on a time axis.

import { el, fmtDate } from './ui.js';

const HOUR = 3600e3;
const DAY = 24 * HOUR;

/** The range selector's choices: span, tick step and the alignment of the window. */
export const RANGES = {
  '24h': { label: '24 hours', span: DAY, step: 3 * HOUR, align: HOUR },
  '7d': { label: '7 days', span: 7 * DAY, step: DAY, align: DAY },
  '30d': { label: '30 days', span: 30 * DAY, step: 5 * DAY, align: DAY },
  '90d': { label: '90 days', span: 90 * DAY, step: 10 * DAY, align: DAY },
};

const ms = (iso) => new Date(iso).getTime();

/**
 * Assigns each interval ({validFrom, validUntil, ...}) to a lane: in order of start, the
 * first lane whose last interval ended at or before its start (intervals are
 * half-open, so one ending at 12:00 and one starting at 12:00 share a lane). First fit in
 * start order uses exactly as many lanes as the most intervals overlapping at one
 * instant, so `lanes` is also the peak number of seats held.
 */
export function assignLanes(intervals) {
  const sorted = intervals
    .map((interval) => ({ interval, start: ms(interval.validFrom), end: ms(interval.validUntil) }))
    .sort((a, b) => a.start - b.start || a.end - b.end
      || String(a.interval.borrowId).localeCompare(String(b.interval.borrowId)));
  const laneEnds = [];
  const placed = sorted.map((item) => {
    let lane = laneEnds.findIndex((end) => end <= item.start);
    if (lane === -1) {
      lane = laneEnds.length;
      laneEnds.push(item.end);
    } else {
      laneEnds[lane] = item.end;
    }
    return { ...item, lane };
  });
  return { placed, lanes: laneEnds.length };
}

/** How many intervals contain the instant `now` ([validFrom, validUntil)). */
export function inUseAt(intervals, now) {
  return intervals.filter((i) => ms(i.validFrom) <= now && now < ms(i.validUntil)).length;
}

/** The window shown for `rangeKey`: a tenth of it before now, aligned to whole hours or days. */
export function windowFor(rangeKey, now) {
  const range = RANGES[rangeKey] || RANGES['7d'];
  const start = Math.floor((now - range.span / 10) / range.align) * range.align;
  return { start, end: start + range.span, range };
}

const pct = (value, win) => ((value - win.start) / (win.end - win.start)) * 100;

function tickLabel(t, range) {
  const d = new Date(t);
  const p = (n) => String(n).padStart(2, '0');
  if (range.step < DAY) return `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
  return `${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}`;
}

function barTitle(interval) {
  const who = [interval.hostId, interval.userInfo].filter(Boolean).join(' · ');
  return `${who}\n${fmtDate(interval.validFrom)} – ${fmtDate(interval.validUntil)} UTC\nborrow ${interval.borrowId}`;
}

/**
 * The timeline element ([data-timeline]): one lane per seat in use (at least one row),
 * lanes beyond `count` marked as over-booked, a bar per borrow ([data-borrow-id],
 * [data-lane]) linking to its detail, ticks and the now marker ([data-now]). A borrow
 * that starts after the window is drawn as a stub at its right edge so that every borrow
 * stays reachable.
 */
export function renderTimeline({ intervals, count, rangeKey, now, label }) {
  const win = windowFor(rangeKey, now);
  const { placed, lanes } = assignLanes(intervals);
  const rows = Math.max(lanes, 1);

  const labels = el('div', { class: 'tl-labels', 'aria-hidden': 'true' }, el('div', { class: 'tl-axis-spacer' }));
  for (let lane = 0; lane < rows; lane += 1) {
    const over = lane >= count;
    labels.appendChild(el('div', { class: over ? 'tl-label over' : 'tl-label', text: lanes === 0 ? '' : (over ? `over ${lane + 1}` : `seat ${lane + 1}`) }));
  }

  const axis = el('div', { class: 'tl-axis', 'aria-hidden': 'true' });
  const body = el('div', { class: 'tl-rows' });
  body.style.height = `calc(${rows} * var(--lane-h))`;

  const firstTick = Math.ceil(win.start / win.range.step) * win.range.step;
  for (let t = firstTick; t < win.end; t += win.range.step) {
    const left = `${pct(t, win)}%`;
    const tick = el('span', { class: 'tl-tick', text: tickLabel(t, win.range) });
    tick.style.left = left;
    axis.appendChild(tick);
    const grid = el('div', { class: 'tl-grid' });
    grid.style.left = left;
    body.appendChild(grid);
  }

  for (let lane = count; lane < lanes; lane += 1) {
    const band = el('div', { class: 'tl-band-over' });
    band.style.top = `calc(${lane} * var(--lane-h))`;
    body.appendChild(band);
  }

  for (const { interval, start, end, lane } of placed) {
    const beyond = start >= win.end;
    const from = Math.max(start, win.start);
    const until = Math.min(end, win.end);
    const classes = ['tl-bar'];
    if (lane >= count) classes.push('over');
    if (start <= now && now < end) classes.push('current');
    if (beyond) classes.push('beyond');
    if (start < win.start) classes.push('clip-left');
    if (end > win.end && !beyond) classes.push('clip-right');
    const title = beyond ? `${barTitle(interval)}\n(starts after this range)` : barTitle(interval);
    const bar = el('a', {
      class: classes.join(' '),
      href: `#/borrows?borrow=${encodeURIComponent(interval.borrowId)}`,
      title,
      'aria-label': `Borrow by ${interval.hostId}${interval.userInfo ? ` (${interval.userInfo})` : ''} from ${fmtDate(interval.validFrom)} until ${fmtDate(interval.validUntil)} UTC`,
      dataset: { borrowId: interval.borrowId, lane, fk: `bar-${interval.borrowId}`, from: start, until: end },
    }, el('span', { class: 'tl-bar-text', text: beyond ? '›' : (interval.userInfo || interval.hostId) }));
    bar.style.top = `calc(${lane} * var(--lane-h) + 3px)`;
    if (beyond) {
      bar.style.left = 'calc(100% - 14px)';
      bar.style.width = '12px';
    } else {
      bar.style.left = `${pct(from, win)}%`;
      bar.style.width = `${Math.max(pct(until, win) - pct(from, win), 0)}%`;
    }
    body.appendChild(bar);
  }

  const marker = el('div', { class: 'tl-now', dataset: { now: '' }, title: `now: ${fmtDate(new Date(now).toISOString())} UTC` });
  marker.style.left = `${pct(now, win)}%`;
  body.appendChild(marker);
  const tag = el('span', { class: 'tl-now-tag', dataset: { nowTag: '' }, text: 'now' });
  tag.style.left = marker.style.left;
  axis.appendChild(tag);

  const plot = el('div', { class: 'tl-plot' }, axis, body);
  return el('div', {
    class: 'timeline',
    dataset: { timeline: '', start: win.start, end: win.end },
    role: 'group',
    'aria-label': label || 'Borrow timeline',
  }, el('div', { class: 'timeline-scroll' }, el('div', { class: 'timeline-inner' }, labels, plot)));
}

/** Moves the now marker of a rendered timeline without rebuilding it. */
export function moveNow(timeline, now) {
  const marker = timeline.querySelector('[data-now]');
  const tag = timeline.querySelector('[data-now-tag]');
  const start = Number(timeline.dataset.start);
  const end = Number(timeline.dataset.end);
  if (!marker || !(end > start)) return;
  marker.style.left = `${((now - start) / (end - start)) * 100}%`;
  if (tag) tag.style.left = marker.style.left;
  marker.title = `now: ${fmtDate(new Date(now).toISOString())} UTC`;
  for (const bar of timeline.querySelectorAll('[data-borrow-id]')) {
    bar.classList.toggle('current', Number(bar.dataset.from) <= now && now < Number(bar.dataset.until));
  }
}
