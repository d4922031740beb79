// web/layers.js: the simulcast plans, the encodings sent and switching layers on and off.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  LayerSwitch, MIN_LAYER_HEIGHT, PLANS, describeEncodings, encodingsFor, planFor, setActive, temporalMode,
  videoConstraints, widenLoneEncoding,
} from '../../web/layers.js';

test('a role maps to its plan; an unknown plan falls back to the participant one', () => {
  assert.equal(planFor('host'), 'instructor');
  assert.equal(planFor('participant'), 'participant');
  assert.equal(planFor(undefined), 'participant');
  assert.equal(videoConstraints('instructor').height.ideal, 720);
  assert.deepEqual(videoConstraints('nonsense'), PLANS.participant.video);
});

test('every layer is sent when the source height is unknown, lowest first, with rids', () => {
  const encodings = encodingsFor('instructor');
  assert.deepEqual(encodings.map((e) => e.rid), ['q', 'h', 'f']);
  assert.deepEqual(encodings.map((e) => e.scaleResolutionDownBy), [4, 2, 1]);
  assert.ok(encodings.every((e) => !('scalabilityMode' in e)));
});

test('layers under the minimum height are left out of a small source', () => {
  // 360p for the instructor: 90p, 180p, 360p.
  assert.deepEqual(encodingsFor('instructor', 360).map((e) => e.rid), ['q', 'h', 'f']);
  // 240p: the quarter layer would be 60p.
  assert.deepEqual(encodingsFor('instructor', 240).map((e) => e.rid), ['h', 'f']);
  assert.ok(240 / 4 < MIN_LAYER_HEIGHT);
});

test('a lone encoding goes without a rid, as plain sending', () => {
  const [lone, ...rest] = encodingsFor('participant', 120);
  assert.deepEqual(rest, []);
  assert.equal(lone.rid, undefined);
  assert.equal(lone.scaleResolutionDownBy, 1);
  // Even a source smaller than every layer sends the top one.
  assert.equal(encodingsFor('participant', 50).length, 1);
});

test('the temporal mode is asked for unless VP8 lists modes without it', () => {
  assert.equal(encodingsFor('participant', 0, { scalabilityMode: 'L1T3' })[0].scalabilityMode, 'L1T3');
  assert.equal(temporalMode(undefined), 'L1T3');
  assert.equal(temporalMode({ codecs: [{ mimeType: 'video/VP8' }] }), 'L1T3');
  assert.equal(temporalMode({ codecs: [{ mimeType: 'video/VP8', scalabilityModes: ['L1T1', 'L1T3'] }] }), 'L1T3');
  assert.equal(temporalMode({ codecs: [{ mimeType: 'video/VP8', scalabilityModes: ['L1T1'] }] }), null);
});

test('setActive keeps the lowest layer on and reports changes', () => {
  const encodings = [{ rid: 'q', active: true }, { rid: 'h', active: true }, { rid: 'f', active: true }];
  assert.equal(setActive(encodings, []), true);
  assert.deepEqual(encodings.map((e) => e.active), [true, false, false]);
  assert.equal(setActive(encodings, ['q']), false);
  assert.equal(setActive(encodings, ['f']), true);
  assert.deepEqual(encodings.map((e) => e.active), [true, false, true]);
  const plain = [{ active: false }];
  setActive(plain, []);
  assert.equal(plain[0].active, true);
});

test('a lone encoding from an answer without simulcast is widened to the top layer', () => {
  const encodings = [{ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }];
  assert.equal(widenLoneEncoding(encodings, 'instructor'), true);
  assert.deepEqual(encodings[0], { rid: 'q', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 });
  assert.equal(widenLoneEncoding(encodings, 'instructor'), false);
  assert.equal(widenLoneEncoding([{}, {}], 'instructor'), false);
});

test('describeEncodings fills in the defaults', () => {
  assert.deepEqual(describeEncodings(null), []);
  const sender = { getParameters: () => ({ encodings: [{ rid: 'q', active: false }, {}] }) };
  assert.deepEqual(describeEncodings(sender), [
    { rid: 'q', active: false, scaleResolutionDownBy: 1, maxBitrate: null, scalabilityMode: null },
    { rid: null, active: true, scaleResolutionDownBy: 1, maxBitrate: null, scalabilityMode: null },
  ]);
});

/** A sender whose setParameters takes a while and refuses overlapping calls, as browsers do. */
function fakeSender(rids) {
  const sender = {
    params: { encodings: rids.map((rid) => ({ rid, active: true, scaleResolutionDownBy: 1, maxBitrate: 1 })) },
    calls: 0,
    inFlight: false,
    getParameters: () => structuredClone(sender.params),
    async setParameters(params) {
      assert.equal(sender.inFlight, false, 'setParameters called while another call was in flight');
      sender.inFlight = true;
      sender.calls += 1;
      await new Promise((resolve) => { setTimeout(resolve, 5); });
      sender.params = params;
      sender.inFlight = false;
    },
  };
  return sender;
}

test('LayerSwitch applies only the latest wish, one setParameters call at a time', async () => {
  const layers = new LayerSwitch('instructor');
  // Wished before the sender is negotiated: kept for later.
  await layers.want(['h']);
  const sender = fakeSender(['q', 'h', 'f']);
  const attached = layers.attach(sender);
  layers.want(['f']);
  layers.want(['h', 'f']);
  await attached;
  assert.deepEqual(sender.params.encodings.map((e) => e.active), [true, true, true]);
  await layers.want([]);
  assert.deepEqual(sender.params.encodings.map((e) => e.active), [true, false, false]);
  const calls = sender.calls;
  layers.close();
  await layers.want(['f']);
  assert.equal(sender.calls, calls, 'a closed switch changes nothing');
});
