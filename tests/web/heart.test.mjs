// web/bluetooth.js and web/heart.js: decoding a strap's notification (the same worked
// examples as tests/test_hrm.py for telemetry/hrm.py) and the reading sent for it.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bluetoothErrorMessage, decodeHeartRateMeasurement } from '../../web/bluetooth.js';
import { zoneFloors } from '../../web/chart.js';
import { readingMessage } from '../../web/heart.js';

const decode = (hex) => {
  const bytes = Buffer.from(hex.replace(/ /g, ''), 'hex');
  return decodeHeartRateMeasurement(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
};

const EXAMPLES = [
  ['0048', { bpm: 72, contact: null, energy_kj: null, rr: [], wide: false }],
  ['068c', { bpm: 140, contact: true, energy_kj: null, rr: [], wide: false }],
  ['0450', { bpm: 80, contact: false, energy_kj: null, rr: [], wide: false }],
  ['013401', { bpm: 308, contact: null, energy_kj: null, rr: [], wide: true }],
  ['085a0201', { bpm: 90, contact: null, energy_kj: 258, rr: [], wide: false }],
  ['16780004 0003', { bpm: 120, contact: true, energy_kj: null, rr: [1024, 768], wide: false }],
  ['1f9b00e803bc02', { bpm: 155, contact: true, energy_kj: 1000, rr: [700], wide: true }],
  ['1064', { bpm: 100, contact: null, energy_kj: null, rr: [], wide: false }],
];

test('worked examples decode as telemetry/hrm.py decodes them', () => {
  for (const [hex, expected] of EXAMPLES) {
    const decoded = decode(hex);
    delete decoded.rr_ms;
    assert.deepEqual(decoded, expected, hex);
  }
  assert.deepEqual(decode('10780004 0002').rr_ms, [1000, 500]);
});

test('malformed notifications are refused', () => {
  for (const [hex, reason] of [
    ['', /too short/], ['00', /too short/], ['0134', /16-bit heart rate value truncated/],
    ['08 5a 02', /energy expended field truncated/], ['10 78 00 04 00', /odd 3 bytes/],
    ['00 48 00', /after the last field/], ['01 48 00 07', /after the last field/],
  ]) {
    assert.throws(() => decode(hex), reason, hex);
  }
});

test('a reading message: what the server accepts, nothing it would refuse', () => {
  assert.equal(readingMessage({ bpm: 0 }, 1, 5), null, 'no contact reads as 0');
  assert.equal(readingMessage({ bpm: 301 }, 1, 5), null);
  assert.deepEqual(readingMessage({ bpm: 120, contact: true, energy_kj: 9, rr_ms: [0, 812.34, 6000] }, 7, 99), {
    v: 1, type: 'hr', seq: 7, t: 99, bpm: 120, rr: [812.3], energy_kj: 9, contact: true,
  });
  const many = readingMessage({ bpm: 60, rr_ms: Array.from({ length: 40 }, (_, i) => 500 + i) }, 1, 1);
  assert.equal(many.rr.length, 32);
  assert.equal(many.rr.at(-1), 539, 'the latest intervals are kept');
});

test('zone floors: percentages of the maximum, or of the reserve with Karvonen', () => {
  assert.deepEqual(zoneFloors(200), [100, 120, 140, 160, 180]);
  assert.deepEqual(zoneFloors(200, 'karvonen', 60).map(Math.round), [130, 144, 158, 172, 186]);
  assert.deepEqual(zoneFloors(200, 'karvonen', null), [100, 120, 140, 160, 180]);
});

test('pairing errors in words for people', () => {
  assert.match(bluetoothErrorMessage({ name: 'NotFoundError', message: 'User cancelled the requestDevice() chooser.' }), /cancelled/);
  assert.equal(typeof bluetoothErrorMessage(null), 'string');
});
