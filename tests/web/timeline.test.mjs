// web/timeline.js: a recording's time against the class's wall clock, for the replay page.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bpmAt, pickRecording, recordingStart, videoTime, wallTime } from '../../web/timeline.js';

test("a recording's zero: its started_at, else its id's UTC stamp", () => {
  assert.equal(recordingStart({ id: '20261207T091441Z', started_at: 1796634882.25 }), 1796634882.25);
  assert.equal(recordingStart({ id: '20261207T091441Z', started_at: null }), Date.UTC(2026, 11, 7, 9, 14, 41) / 1000);
  assert.equal(recordingStart({ id: '20261207T091441Z-2' }), Date.UTC(2026, 11, 7, 9, 14, 41) / 1000);
  assert.equal(recordingStart({ id: 'nope' }), null);
});

test('video time and wall time map both ways, clamped to the file', () => {
  const start = 1_800_000_000.5;
  assert.equal(wallTime(start, 0), start);
  assert.equal(wallTime(start, 12.25), start + 12.25);
  assert.equal(videoTime(start, start + 12.25, 60), 12.25);
  assert.equal(videoTime(start, start - 5, 60), 0);
  assert.equal(videoTime(start, start + 90, 60), 60);
  // Unix seconds in a double keep the video's time to well under a millisecond.
  for (const t of [0, 0.04, 3.5, 59.99]) assert.ok(Math.abs(videoTime(start, wallTime(start, t), 60) - t) < 1e-5);
});

test('the heart rate under the cursor: the latest reading, while it is fresh', () => {
  const series = [[100, 120], [101, 125], [105, 140], [200, 90]];
  assert.equal(bpmAt(series, 99.9), null); // before the first reading
  assert.equal(bpmAt(series, 100), 120);
  assert.equal(bpmAt(series, 100.5), 120);
  assert.equal(bpmAt(series, 101), 125);
  assert.equal(bpmAt(series, 134.9), 140);
  assert.equal(bpmAt(series, 136), null); // the strap was away
  assert.equal(bpmAt(series, 210), 90);
  assert.equal(bpmAt([], 100), null);
});

test('the recording shown: the one asked for if finished, else the latest finished', () => {
  const recordings = [
    { id: '20261207T090000Z', complete: true },
    { id: '20261207T093000Z', complete: true },
    { id: '20261207T100000Z', complete: false },
  ];
  assert.equal(pickRecording(recordings, '20261207T090000Z').chosen.id, '20261207T090000Z');
  assert.equal(pickRecording(recordings, '20261207T100000Z').chosen.id, '20261207T093000Z');
  assert.equal(pickRecording(recordings, null).finished.length, 2);
  assert.equal(pickRecording([], null).chosen, null);
});
