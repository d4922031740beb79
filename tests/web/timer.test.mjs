// web/timer.js and web/controls.js: the interval timer's arithmetic (as
// signaling/interval_timer.py computes it) and the programs the instructor starts.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PRESETS, program } from '../../web/controls.js';
import { formatDuration, timerPosition } from '../../web/timer.js';

const tabata = { ...program(PRESETS.tabata), started_at: 1000, paused_at: null, total_s: 8 * 30 };

test('programs: work then rest, no rest phase when there is none', () => {
  assert.deepEqual(program(PRESETS.tabata).phases.map((p) => [p.kind, p.seconds]), [['work', 20], ['rest', 10]]);
  assert.deepEqual(program(PRESETS.emom).phases.map((p) => p.kind), ['work']);
});

test('the position in a running timer', () => {
  const at = (s) => timerPosition(tabata, 1000 + s);
  assert.deepEqual(
    [at(0), at(19.5), at(20), at(31), at(239.9)].map((p) => [p.round, p.phase.kind, Math.round(p.remaining * 10) / 10]),
    [[1, 'work', 20], [1, 'work', 0.5], [1, 'rest', 10], [2, 'work', 19], [8, 'rest', 0.1]],
  );
  assert.equal(at(-5).elapsed, 0, 'before the start: at the start');
  const done = at(500);
  assert.equal(done.done, true);
  assert.equal(done.round, 8);
  assert.equal(done.remaining, 0);
});

test('a paused timer stands still', () => {
  const paused = { ...tabata, paused_at: 1025 };
  const position = timerPosition(paused, 5000);
  assert.equal(position.paused, true);
  assert.equal(position.phase.kind, 'rest');
  assert.equal(position.remaining, 5);
});

test('durations read as a clock', () => {
  assert.deepEqual([0, 75, 3725, -3, 59.9].map(formatDuration), ['0:00', '1:15', '1:02:05', '0:00', '0:59']);
});
