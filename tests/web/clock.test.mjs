// web/clock.js: the server clock estimate from `time` round trips.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ServerClock } from '../../web/clock.js';

/**
 * Date.now() stands at `now` and moves only by `tick(ms)`. (Node's mock.timers fakes Date
 * only from Node 20.11; Debian 12's Node is 18.)
 */
function frozenClock(now) {
  const real = Date.now;
  let current = now;
  Date.now = () => current;
  return { tick: (ms) => { current += ms; }, restore: () => { Date.now = real; } };
}

test('a hint sets the offset until a round trip gives a better one', async () => {
  const time = frozenClock(1_000_000);
  try {
    const clock = new ServerClock(async () => ({ ok: true, server_time: 2000 }));
    clock.hint('nonsense');
    assert.equal(clock.now(), 1000);
    clock.hint(1500);
    assert.equal(clock.now(), 1500);
    await clock.sample();
    assert.equal(clock.now(), 2000);
    assert.deepEqual(clock.hook(), { offset_ms: 1_000_000, rtt_ms: 0 });
    clock.hint(1500);
    assert.equal(clock.now(), 2000, 'a measured offset beats a hint');
  } finally {
    time.restore();
  }
});

test('the sample with the shortest round trip wins; a failed one changes nothing', async () => {
  const time = frozenClock(0);
  try {
    const answers = [
      { rtt: 400, serverTime: 10 }, // offset 10 s - 0.2 s
      { rtt: 100, serverTime: 20 }, // the best
      { rtt: 300, serverTime: 99 },
      null,
    ];
    const clock = new ServerClock(async () => {
      const answer = answers.shift();
      if (!answer) throw new Error('offline');
      time.tick(answer.rtt);
      return { ok: true, server_time: answer.serverTime };
    });
    await clock.sample();
    assert.equal(clock.hook().rtt_ms, 400);
    assert.equal(clock.offsetMs, 10_000 - 200);
    await clock.sample();
    const best = clock.offsetMs;
    assert.equal(clock.hook().rtt_ms, 100);
    await clock.sample();
    await clock.sample();
    assert.equal(clock.offsetMs, best);
    assert.equal(clock.hook().rtt_ms, 100);
  } finally {
    time.restore();
  }
});

test('start samples a few times, stop ends it', async () => {
  let calls = 0;
  const clock = new ServerClock(async () => {
    calls += 1;
    return { ok: true, server_time: Date.now() / 1000 };
  });
  clock.start();
  await new Promise((resolve) => { setTimeout(resolve, 200); });
  clock.stop();
  const seen = calls;
  assert.ok(seen >= 1 && seen <= 5, `sampled ${seen} times`);
  await new Promise((resolve) => { setTimeout(resolve, 400); });
  assert.equal(calls, seen, 'no sampling after stop');
});
