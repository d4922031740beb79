// A participant's weekly trend as an SVG bar chart (the /me page): per week, minutes in
// zones 4-5 as bars and effort points as a line with dots, from GET /api/me/history's
// `weeks`. The geometry is DOM-free (`trendBars`), so node --test checks it.

import { ZONE_COLORS } from './heart.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 600;
const HEIGHT = 200;
const PAD = { left: 36, right: 36, top: 14, bottom: 26 };

/**
 * Bars and points for `weeks` ([{week, hard_minutes, effort_points}], oldest first):
 * [{x, width, barY, barHeight, pointY, label}] in a WIDTH × HEIGHT box; each series is
 * scaled to its own maximum (at least 1, so an empty week draws nothing).
 */
export function trendBars(weeks) {
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const step = plotW / Math.max(weeks.length, 1);
  const maxMinutes = Math.max(1, ...weeks.map((w) => w.hard_minutes));
  const maxPoints = Math.max(1, ...weeks.map((w) => w.effort_points));
  return weeks.map((w, i) => {
    const barHeight = (w.hard_minutes / maxMinutes) * plotH;
    return {
      x: PAD.left + i * step + step * 0.15,
      width: step * 0.7,
      barY: PAD.top + plotH - barHeight,
      barHeight,
      pointY: PAD.top + plotH - (w.effort_points / maxPoints) * plotH,
      label: w.week.slice(5), // MM-DD of the week's Monday
    };
  });
}

function node(name, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (parent) parent.append(el);
  return el;
}

/** The chart: an <svg role="img"> whose title says what it shows in words too. */
export function trendChart(weeks) {
  const total = weeks.reduce((sum, w) => sum + w.hard_minutes, 0);
  const svg = node('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart trend', role: 'img', 'data-testid': 'trend-chart' });
  node('title', {}, svg).textContent = `Minutes in zones 4 and 5 per week: ${Math.round(total)} in ${weeks.length} weeks; effort points as a line`;
  const bars = trendBars(weeks);
  bars.forEach((bar, i) => {
    const week = weeks[i];
    const rect = node('rect', { x: bar.x, y: bar.barY, width: bar.width, height: bar.barHeight, fill: ZONE_COLORS[4], 'data-week': week.week }, svg);
    node('title', {}, rect).textContent = `Week of ${week.week}: ${week.classes} classes, ${week.hard_minutes} min in zones 4–5, ${week.effort_points} points`;
    if (i % 2 === weeks.length % 2 || weeks.length <= 6) {
      node('text', { x: bar.x + bar.width / 2, y: HEIGHT - 8, 'text-anchor': 'middle', class: 'axis' }, svg).textContent = bar.label;
    }
  });
  const points = bars.map((bar) => `${bar.x + bar.width / 2},${bar.pointY}`).join(' ');
  if (bars.length) node('polyline', { points, fill: 'none', stroke: 'currentColor', 'stroke-width': 2, class: 'trend-points' }, svg);
  for (const bar of bars) node('circle', { cx: bar.x + bar.width / 2, cy: bar.pointY, r: 3, fill: 'currentColor' }, svg);
  return svg;
}
