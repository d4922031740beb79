// An SVG line chart of one participant's heart rate over a class, drawn over coloured
// bands for the training zones (the floors 50/60/70/80/90 % of their maximum heart rate,
// or of their heart-rate reserve with Karvonen when the resting rate is known).

import { ZONE_COLORS, ZONE_FLOORS, ZONE_NAMES } from './heart.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 760;
const HEIGHT = 260;
const PAD = { left: 44, right: 16, top: 22, bottom: 28 };
const GAP_S = 30; // a longer pause between points (strap dropped) breaks the line

function node(name, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (parent) parent.append(el);
  return el;
}

/** Heart rates where zones 1-5 start. */
export function zoneFloors(hrMax, method = 'hrmax', restingHr = null) {
  if (method === 'karvonen' && restingHr != null && hrMax > restingHr) {
    return ZONE_FLOORS.map((f) => restingHr + f * (hrMax - restingHr));
  }
  return ZONE_FLOORS.map((f) => f * hrMax);
}

function formatClock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** A step for ~6 ticks over `span`, from a list of "round" steps. */
function niceStep(span, steps) {
  return steps.find((step) => span / step <= 6) || steps[steps.length - 1];
}

/**
 * series: [[unix s, bpm], …] in time order. Returns an <svg> (role img, labelled) with
 * zone bands (rect[data-zone]), axis ticks and the heart-rate line (path.hr-line).
 * With `start` and `end` (unix s) the chart spans them (a replay: the recording's span)
 * and shows only the points inside; with `cursor`, a vertical line (line.hr-cursor)
 * that `moveCursor` places.
 */
export function heartRateChart({
  series, hrMax, method = 'hrmax', restingHr = null, label = 'Heart rate', start = null, end = null, cursor = false,
  intervals = [],
}) {
  const svg = node('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', role: 'img', 'data-testid': 'hr-chart' });
  node('title', {}, svg).textContent = label;
  const shown = start === null || end === null ? series : series.filter(([t]) => t >= start && t <= end);
  const t0 = start ?? series[0][0];
  const t1 = end ?? series[series.length - 1][0];
  const span = Math.max(t1 - t0, start === null || end === null ? 10 : 1);
  const floors = zoneFloors(hrMax, method, restingHr);
  const bpms = shown.length ? shown.map((p) => p[1]) : [floors[0]];
  const lo = Math.max(0, Math.min(Math.floor((Math.min(...bpms) - 10) / 10) * 10, Math.floor(floors[0] / 10) * 10 - 10));
  const hi = Math.ceil((Math.max(hrMax, ...bpms) + 5) / 10) * 10;
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - t0) / span) * plotW;
  const y = (bpm) => PAD.top + (1 - (bpm - lo) / (hi - lo)) * plotH;

  // Zone bands, 0 (below the first floor) to 5 (above the last).
  const bands = node('g', { class: 'zone-bands' }, svg);
  const edges = [lo, ...floors, hi];
  for (let zone = 0; zone < 6; zone += 1) {
    const bottom = Math.max(lo, Math.min(hi, edges[zone]));
    const top = Math.max(lo, Math.min(hi, edges[zone + 1]));
    if (top <= bottom) continue;
    const band = node('rect', {
      x: PAD.left, width: plotW, y: y(top), height: y(bottom) - y(top),
      fill: ZONE_COLORS[zone], 'fill-opacity': 0.16, 'data-zone': zone,
    }, bands);
    node('title', {}, band).textContent = `Zone ${zone} (${ZONE_NAMES[zone]}): ${Math.round(bottom)}–${Math.round(top)} bpm`;
    if (y(bottom) - y(top) >= 14) {
      const text = node('text', { x: PAD.left + plotW - 4, y: y(top) + 12, 'text-anchor': 'end', fill: ZONE_COLORS[zone] }, bands);
      text.textContent = `Z${zone}`;
      text.style.fill = ZONE_COLORS[zone];
    }
  }

  // The instructor's timer: its work phases shaded over the class (summary JSON `intervals`).
  markIntervals(svg, intervals, x, t0, t0 + span, PAD.top, plotH);

  // Axes: bpm every 20 (or so), time in m:ss.
  const axes = node('g', { class: 'axes' }, svg);
  const bpmStep = niceStep(hi - lo, [10, 20, 40, 50, 100]);
  for (let v = Math.ceil(lo / bpmStep) * bpmStep; v <= hi; v += bpmStep) {
    node('line', { class: 'grid-line', x1: PAD.left, x2: PAD.left + plotW, y1: y(v), y2: y(v) }, axes);
    node('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, axes).textContent = String(v);
  }
  const timeStep = niceStep(span, [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]);
  for (let s = 0; s <= span; s += timeStep) {
    const anchor = s === 0 ? 'start' : span - s < timeStep / 3 ? 'end' : 'middle';
    node('text', { x: x(t0 + s), y: HEIGHT - 8, 'text-anchor': anchor }, axes).textContent = formatClock(s);
  }
  node('text', { x: PAD.left - 6, y: 12, 'text-anchor': 'end' }, axes).textContent = 'bpm';

  // The line, broken where the strap was away.
  let d = '';
  let previous = null;
  for (const [t, bpm] of shown) {
    d += `${previous === null || t - previous > GAP_S ? 'M' : 'L'}${x(t).toFixed(1)},${y(bpm).toFixed(1)}`;
    previous = t;
  }
  if (shown.length === 1) d += `h2`;
  node('path', { d, class: 'hr-line', 'data-testid': 'hr-line', 'data-points': shown.length }, svg);
  if (cursor) {
    Object.assign(svg.dataset, { t0, span, lo, hi });
    node('path', { d: '', class: 'live-line', 'data-testid': 'live-line', 'data-points': 0 }, svg);
    node('line', {
      class: 'hr-cursor', 'data-testid': 'hr-cursor', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: PAD.top + plotH,
    }, svg);
  }
  return svg;
}

/** Shade the work phases of `intervals` ([{start, end, name, kind}], unix s) that fall in [t0, t1]. */
export function markIntervals(svg, intervals, x, t0, t1, top, height) {
  const group = node('g', { class: 'intervals' }, svg);
  for (const phase of intervals) {
    if (phase.kind !== 'work' || phase.end <= t0 || phase.start >= t1) continue;
    const left = x(Math.max(phase.start, t0));
    const band = node('rect', {
      x: left, width: Math.max(1, x(Math.min(phase.end, t1)) - left), y: top, height,
      class: 'interval-band', 'data-testid': 'interval-band',
    }, group);
    node('title', {}, band).textContent = phase.name;
  }
}

/** Place a chart's cursor (heartRateChart with `cursor`) at `t` (unix s), within its span. */
export function moveCursor(svg, t) {
  const line = svg.querySelector('.hr-cursor');
  if (!line) return;
  const t0 = Number(svg.dataset.t0);
  const span = Number(svg.dataset.span);
  const at = PAD.left + (Math.min(Math.max(t - t0, 0), span) / span) * (WIDTH - PAD.left - PAD.right);
  line.setAttribute('x1', at.toFixed(1));
  line.setAttribute('x2', at.toFixed(1));
}

/**
 * Add a point to a chart's second line (heartRateChart with `cursor`): the heart rate a
 * strap reads now, drawn at the replay's moment `t` (unix s) beside the recorded one.
 */
export function addLivePoint(svg, t, bpm) {
  const line = svg.querySelector('.live-line');
  if (!line) return;
  const { t0, span, lo, hi } = Object.fromEntries(Object.entries(svg.dataset).map(([k, v]) => [k, Number(v)]));
  if (t < t0 || t > t0 + span) return;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = PAD.left + ((t - t0) / span) * (WIDTH - PAD.left - PAD.right);
  const y = PAD.top + (1 - (Math.min(Math.max(bpm, lo), hi) - lo) / (hi - lo)) * plotH;
  const last = line.dataset.lastT === undefined ? null : Number(line.dataset.lastT);
  // A seek (or a pause longer than the line's gap) starts a new piece of line.
  const joined = last !== null && t >= last && t - last <= GAP_S;
  line.setAttribute('d', `${line.getAttribute('d')}${joined ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`);
  line.dataset.lastT = String(t);
  line.dataset.points = String(Number(line.dataset.points) + 1);
}

/** The time (unix s) under a click at `clientX` on a chart with a cursor, or null outside its plot. */
export function timeAt(svg, clientX) {
  const box = svg.getBoundingClientRect();
  if (!box.width) return null;
  const plotX = ((clientX - box.left) / box.width) * WIDTH - PAD.left;
  const plotW = WIDTH - PAD.left - PAD.right;
  if (plotX < 0 || plotX > plotW) return null;
  return Number(svg.dataset.t0) + (plotX / plotW) * Number(svg.dataset.span);
}

/** Minutes per zone as one stacked bar and a legend. */
export function zoneMinutes(minutes) {
  const total = minutes.reduce((a, b) => a + b, 0);
  const wrap = document.createElement('div');
  const bar = document.createElement('div');
  bar.className = 'zone-minutes';
  bar.dataset.testid = 'zone-minutes';
  bar.setAttribute('role', 'img');
  const legend = document.createElement('ul');
  legend.className = 'zone-legend';
  const parts = [];
  minutes.forEach((value, zone) => {
    const text = `Z${zone} ${ZONE_NAMES[zone]}: ${formatClock(value * 60)}`;
    if (total > 0 && value > 0) {
      const part = document.createElement('span');
      part.style.width = `${(100 * value) / total}%`;
      part.style.background = ZONE_COLORS[zone];
      part.title = text;
      part.dataset.zone = String(zone);
      bar.append(part);
      parts.push(text);
    }
    const item = document.createElement('li');
    item.style.setProperty('--zone', ZONE_COLORS[zone]);
    item.textContent = text;
    legend.append(item);
  });
  bar.setAttribute('aria-label', `Time per zone (min:s): ${parts.join(', ') || 'none'}`);
  wrap.append(bar, legend);
  return wrap;
}
