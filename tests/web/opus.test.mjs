// web/opus.js: stereo Opus on the SDP text (the instructor's offer, a subscriber's answer).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  MUSIC_BITRATE, answerStereo, isStereo, offerMusic, opusParameters, parseFmtp, withOpusParameters,
} from '../../web/opus.js';

// What Chromium offers for audio and video, trimmed to the lines that matter here.
const OFFER = [
  'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 63', 'a=mid:0', 'a=rtpmap:111 opus/48000/2',
  'a=fmtp:111 minptime=10;useinbandfec=1', 'a=rtpmap:63 red/48000/2', 'a=fmtp:63 111/111',
  'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=rtpmap:96 VP8/90000', '',
].join('\r\n');

test('fmtp text parses with or without spaces; keys are lower case', () => {
  assert.deepEqual(parseFmtp('minptime=10; useinbandfec=1;Stereo=1;bare'), { minptime: '10', useinbandfec: '1', stereo: '1' });
});

test('the instructor offers stereo music in every audio section, and only there', () => {
  const music = offerMusic(OFFER);
  assert.match(music, /\r\na=fmtp:111 minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate=128000\r\n/);
  assert.match(music, /\r\na=fmtp:63 111\/111\r\n/);
  assert.deepEqual(opusParameters(music)['0'], {
    minptime: '10', useinbandfec: '1', stereo: '1', 'sprop-stereo': '1', maxaveragebitrate: String(MUSIC_BITRATE),
  });
  assert.deepEqual(Object.keys(opusParameters(music)), ['0']);
  assert.equal(offerMusic(music), music, 'applying it twice changes nothing');
});

test('an Opus section without fmtp gets one after its rtpmap', () => {
  const bare = OFFER.replace('a=fmtp:111 minptime=10;useinbandfec=1\r\n', '');
  const added = withOpusParameters(bare, () => ({ stereo: 1 }));
  assert.match(added, /a=rtpmap:111 opus\/48000\/2\r\na=fmtp:111 stereo=1\r\n/);
  assert.equal(withOpusParameters(bare, () => null), bare);
});

test('a subscriber answers stereo (and the rate) for the stereo tracks of the offer only', () => {
  const offer = `${OFFER}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=rtpmap:111 opus/48000/2\r\n`
    .replace('a=fmtp:111 minptime=10;useinbandfec=1', 'a=fmtp:111 stereo=1;sprop-stereo=1;maxaveragebitrate=128000');
  const answer = `${OFFER}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n`;
  const stereo = opusParameters(answerStereo(offer, answer));
  assert.deepEqual(stereo['0'], { minptime: '10', useinbandfec: '1', stereo: '1', maxaveragebitrate: '128000' });
  assert.deepEqual(stereo['2'], { minptime: '10', useinbandfec: '1' }, 'a mono track stays mono');
  assert.equal(answerStereo(OFFER, OFFER), OFFER);
});

test('stereo is what either stereo parameter says', () => {
  assert.ok(isStereo({ stereo: '1' }));
  assert.ok(isStereo({ 'sprop-stereo': '1' }));
  assert.ok(!isStereo({ stereo: '0' }));
  assert.ok(!isStereo(undefined));
});
