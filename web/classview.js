// The instructor's view of a class after it: a sortable table of everyone with heart
// rate, and how the class spread over the zones through time (a stacked area chart),
// with the timer's work phases marked. DOM-free arithmetic first (tested in Node).

import { markIntervals } from './chart.js';
import { ZONE_COLORS, ZONE_NAMES } from './heart.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 760;
const HEIGHT = 240;
const PAD = { left: 36, right: 16, top: 16, bottom: 28 };

/** The zone (0-5) of `bpm` for a participant whose zones 1-5 begin at `floors`. */
export function zoneOf(bpm, floors) {
  let zone = 0;
  for (const floor of floors) if (bpm >= floor) zone += 1;
  return zone;
}

/**
 * How many participants were in each zone, per time bucket: each person counts once in
 * a bucket, by their average heart rate in it. people: the summary's participants
 * (series [[t, bpm]], zone_floors_bpm). Null without any heart rate.
 */
export function zoneDistribution(people, step = null) {
  const withHr = people.filter((p) => p.series && p.series.length);
  if (!withHr.length) return null;
  const t0 = Math.min(...withHr.map((p) => p.series[0][0]));
  const t1 = Math.max(...withHr.map((p) => p.series[p.series.length - 1][0]));
  const width = step ?? (t1 - t0 <= 1200 ? 30 : 60);
  const buckets = Math.max(1, Math.ceil((t1 - t0) / width));
  const counts = Array.from({ length: buckets }, () => [0, 0, 0, 0, 0, 0]);
  for (const person of withHr) {
    const sums = new Map();
    for (const [t, bpm] of person.series) {
      const index = Math.min(buckets - 1, Math.floor((t - t0) / width));
      const sum = sums.get(index) || [0, 0];
      sums.set(index, [sum[0] + bpm, sum[1] + 1]);
    }
    for (const [index, [total, n]] of sums) counts[index][zoneOf(total / n, person.zone_floors_bpm)] += 1;
  }
  return { t0, step: width, counts };
}

/** Minutes in zones 4 and 5 (hard and maximum). */
export function hardMinutes(person) {
  const m = person.summary.minutes_in_zone;
  return (m[4] || 0) + (m[5] || 0);
}

const COLUMNS = [
  { key: 'name', label: 'Name', value: (p) => p.name.toLocaleLowerCase(), text: (p) => p.name },
  { key: 'average', label: 'Average bpm', value: (p) => p.summary.average_bpm, text: (p) => String(Math.round(p.summary.average_bpm)) },
  { key: 'peak', label: 'Peak bpm', value: (p) => p.summary.peak_bpm, text: (p) => String(p.summary.peak_bpm) },
  { key: 'hard', label: 'Min in zones 4–5', value: hardMinutes, text: (p) => hardMinutes(p).toFixed(1) },
  { key: 'points', label: 'Effort points', value: (p) => p.summary.effort_points ?? 0, text: (p) => (p.summary.effort_points ?? 0).toFixed(1) },
  { key: 'calories', label: 'kcal', value: (p) => p.summary.calories_kcal, text: (p) => String(Math.round(p.summary.calories_kcal)) },
  { key: 'target', label: 'Target', value: (p) => Number(Boolean(p.summary.effort_target_reached)), text: (p) => ({ true: 'reached', false: '—' })[p.summary.effort_target_reached] ?? '' },
];

/** Order `people` by a column (descending for figures, ascending for names). */
export function sortPeople(people, key, descending = key !== 'name') {
  const column = COLUMNS.find((c) => c.key === key) || COLUMNS[0];
  return [...people].sort((a, b) => {
    const [x, y] = [column.value(a), column.value(b)];
    const order = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -order : order;
  });
}

/** The class table: one row per participant with heart rate; headers sort it. */
export function classTable(people) {
  const table = document.createElement('table');
  table.className = 'class-table';
  table.dataset.testid = 'class-table';
  const caption = document.createElement('caption');
  caption.textContent = 'The class at a glance (select a heading to sort)';
  const head = document.createElement('thead');
  const headRow = document.createElement('tr');
  const body = document.createElement('tbody');
  let sortedBy = 'points';
  const paint = () => {
    body.replaceChildren(...sortPeople(people, sortedBy).map((p) => {
      const row = document.createElement('tr');
      row.dataset.testid = 'class-row';
      row.dataset.participantId = p.id;
      for (const column of COLUMNS) {
        const cell = document.createElement(column.key === 'name' ? 'th' : 'td');
        if (column.key === 'name') cell.scope = 'row';
        cell.textContent = column.text(p);
        row.append(cell);
      }
      return row;
    }));
    for (const th of headRow.children) {
      th.setAttribute('aria-sort', th.dataset.key === sortedBy ? (sortedBy === 'name' ? 'ascending' : 'descending') : 'none');
    }
  };
  for (const column of COLUMNS) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.dataset.key = column.key;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = column.label;
    button.dataset.testid = `sort-${column.key}`;
    button.addEventListener('click', () => { sortedBy = column.key; paint(); });
    th.append(button);
    headRow.append(th);
  }
  head.append(headRow);
  table.append(caption, head, body);
  paint();
  return table;
}

function node(name, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (parent) parent.append(el);
  return el;
}

/** The stacked area chart of `zoneDistribution`, with the timer's work phases shaded. */
export function zoneDistributionChart(distribution, intervals = []) {
  const { t0, step, counts } = distribution;
  const total = Math.max(1, ...counts.map((c) => c.reduce((a, b) => a + b, 0)));
  const svg = node('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'data-testid': 'zone-distribution' });
  node('title', {}, svg).textContent = 'How many people were in each heart-rate zone through the class';
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const span = counts.length * step;
  const x = (t) => PAD.left + ((t - t0) / span) * plotW;
  const y = (n) => PAD.top + (1 - n / total) * plotH;
  markIntervals(svg, intervals, x, t0, t0 + span, PAD.top, plotH);
  // Zone 5 on top: each band between the running sums below and above it, bucket by bucket.
  const below = counts.map(() => 0);
  for (let zone = 0; zone < 6; zone += 1) {
    const above = counts.map((c, i) => below[i] + c[zone]);
    if (above.every((v, i) => v === below[i])) continue;
    const top = above.map((v, i) => `${x(t0 + i * step).toFixed(1)},${y(v).toFixed(1)} ${x(t0 + (i + 1) * step).toFixed(1)},${y(v).toFixed(1)}`);
    const bottom = below.map((v, i) => `${x(t0 + (i + 1) * step).toFixed(1)},${y(v).toFixed(1)} ${x(t0 + i * step).toFixed(1)},${y(v).toFixed(1)}`).reverse();
    const area = node('polygon', { points: [...top, ...bottom].join(' '), fill: ZONE_COLORS[zone], 'fill-opacity': 0.85, 'data-zone': zone }, svg);
    node('title', {}, area).textContent = `Zone ${zone} (${ZONE_NAMES[zone]})`;
    above.forEach((v, i) => { below[i] = v; });
  }
  const axes = node('g', { class: 'axes' }, svg);
  node('text', { x: PAD.left - 6, y: y(total) + 4, 'text-anchor': 'end' }, axes).textContent = String(total);
  node('text', { x: PAD.left - 6, y: y(0) + 4, 'text-anchor': 'end' }, axes).textContent = '0';
  const minutes = Math.round(span / 60);
  node('text', { x: PAD.left, y: HEIGHT - 8, 'text-anchor': 'start' }, axes).textContent = '0:00';
  node('text', { x: PAD.left + plotW, y: HEIGHT - 8, 'text-anchor': 'end' }, axes).textContent = `${minutes} min`;
  return svg;
}
