// The /me page's weekly trend geometry (web/trend.js): bars scale to the busiest week,
// effort points to their own maximum, and an empty history draws nothing.
import assert from 'node:assert/strict';
import test from 'node:test';

import { trendBars } from '../../web/trend.js';

const week = (day, hard, points) => ({ week: `2026-11-${day}`, classes: 1, hard_minutes: hard, effort_points: points });

test('bars scale to the busiest week, points to their own maximum', () => {
  const bars = trendBars([week('16', 10, 50), week('23', 20, 25), week('30', 0, 0)]);
  assert.equal(bars.length, 3);
  assert.equal(bars[0].barHeight * 2, bars[1].barHeight);
  assert.equal(bars[2].barHeight, 0);
  assert.ok(bars[0].pointY < bars[1].pointY, 'more points: higher');
  assert.equal(bars[1].barY + bars[1].barHeight, bars[2].barY, 'bars stand on one baseline');
  assert.deepEqual(bars.map((b) => b.label), ['11-16', '11-23', '11-30']);
  assert.ok(bars[0].x < bars[1].x && bars[1].x < bars[2].x);
});

test('weeks without classes draw no bars', () => {
  const bars = trendBars([week('23', 0, 0), week('30', 0, 0)]);
  assert.ok(bars.every((b) => b.barHeight === 0 && Number.isFinite(b.pointY)));
  assert.deepEqual(trendBars([]), []);
});
