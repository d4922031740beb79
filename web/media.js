// The camera and microphone of the class page.

import { videoConstraints } from './layers.js';
import { hasWebRtc } from './rtc.js';

export const VIDEO_CONSTRAINTS = videoConstraints('participant');
export const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true };

/**
 * Ask for camera and microphone. Never throws: without them one can still join and
 * watch, so the result is a (possibly empty) stream and a message saying what is missing.
 * `preferred` ({audio, video} device ids, from prejoin.js) are tried first, not required.
 * `video`: the camera constraints of the role's layer plan (layers.js); `audio`: the
 * microphone's (voice, or music for an instructor in music mode: music.js).
 */
export async function openMedia(preferred = {}, video = VIDEO_CONSTRAINTS, audio = AUDIO_CONSTRAINTS) {
  if (!hasWebRtc()) {
    // Nothing could send the camera anywhere: do not ask for it.
    return { stream: new MediaStream(), message: 'This browser cannot send or receive live video and sound (it has no WebRTC). You can still join for the chat, the people list and heart rate; for video, open this link in a current Chrome, Edge, Firefox or Safari.' };
  }
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    return { stream: new MediaStream(), message: 'This browser cannot use a camera on this page (it needs https). You can still join and watch the class.' };
  }
  if (preferred.audio || preferred.video) {
    // The devices chosen last time, if they are still there; else whatever there is.
    const exactly = (constraints, id) => (id ? { ...constraints, deviceId: { exact: id } } : constraints);
    try {
      const stream = await md.getUserMedia({
        audio: exactly(audio, preferred.audio), video: exactly(video, preferred.video),
      });
      return { stream, message: '' };
    } catch {
      // unplugged, busy or refused: the plain request below finds out which, and says so
    }
  }
  try {
    return { stream: await md.getUserMedia({ audio, video }), message: '' };
  } catch (error) {
    if (error.name === 'NotAllowedError' || error.name === 'SecurityError') {
      return { stream: new MediaStream(), message: 'Camera/microphone access was denied. You can still join and watch; to be seen and heard, allow access in your browser\'s site settings and reload.' };
    }
    // One device is missing or busy: try each alone and keep what works.
    for (const [constraints, message] of [
      [{ audio }, 'No camera is available: you will join with your microphone only.'],
      [{ video }, 'No microphone is available: you will join with your camera only.'],
    ]) {
      try {
        return { stream: await md.getUserMedia(constraints), message };
      } catch {
        // try the next one
      }
    }
    const busy = error.name === 'NotReadableError';
    return {
      stream: new MediaStream(),
      message: busy
        ? 'Your camera/microphone is in use by another app. You can still join and watch; close the other app and reload to be seen.'
        : 'No camera or microphone was found. You can still join and watch the class.',
    };
  }
}
