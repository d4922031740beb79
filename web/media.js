// The camera and microphone of the class page.

const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 30 } };
const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true };

/**
 * Ask for camera and microphone. Never throws: without them one can still join and
 * watch, so the result is a (possibly empty) stream and a message saying what is missing.
 */
export async function openMedia() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    return { stream: new MediaStream(), message: 'This browser cannot use a camera on this page (it needs https). You can still join and watch the class.' };
  }
  try {
    return { stream: await md.getUserMedia({ audio: AUDIO_CONSTRAINTS, video: VIDEO_CONSTRAINTS }), message: '' };
  } catch (error) {
    if (error.name === 'NotAllowedError' || error.name === 'SecurityError') {
      return { stream: new MediaStream(), message: 'Camera/microphone access was denied. You can still join and watch; to be seen and heard, allow access in your browser\'s site settings and reload.' };
    }
    // One device is missing or busy: try each alone and keep what works.
    for (const [constraints, message] of [
      [{ audio: AUDIO_CONSTRAINTS }, 'No camera is available: you will join with your microphone only.'],
      [{ video: VIDEO_CONSTRAINTS }, 'No microphone is available: you will join with your camera only.'],
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
