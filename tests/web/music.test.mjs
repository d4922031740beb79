// web/music.js: which microphone settings show music mode's processing.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AUDIO_CONSTRAINTS } from '../../web/media.js';
import { MUSIC_CONSTRAINTS, processingMatches } from '../../web/music.js';

test('music wants every processing step off and two channels', () => {
  assert.deepEqual(MUSIC_CONSTRAINTS, {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 2,
  });
});

test('settings match when each processing step asked for is as asked', () => {
  const music = { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 };
  assert.ok(processingMatches(music, MUSIC_CONSTRAINTS), 'a mono microphone still plays music');
  assert.ok(!processingMatches({ ...music, echoCancellation: true }, MUSIC_CONSTRAINTS));
  assert.ok(processingMatches({ echoCancellation: true, noiseSuppression: true, autoGainControl: false }, AUDIO_CONSTRAINTS),
    'voice does not ask about automatic gain');
  assert.ok(!processingMatches({}, MUSIC_CONSTRAINTS), 'a track that reports nothing (WebAudio) is opened again');
});
