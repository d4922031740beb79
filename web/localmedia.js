// Our own camera and microphone in the class page: the local stream, whether each is on,
// and the two toolbar buttons that show it.

import { setButton } from './ui.js';

export class LocalMedia {
  constructor({ micButton, camButton }) {
    this.micButton = micButton;
    this.camButton = camButton;
    this.stream = new MediaStream(); // replaced by openMedia()'s, possibly still empty
    this.audioOn = true;
    this.videoOn = true;
  }

  has(kind) {
    return this.stream.getTracks().some((t) => t.kind === kind);
  }

  /** Our real mic/camera state as the protocol sees it (no device counts as off). */
  state() {
    return { audio: this.has('audio') && this.audioOn, video: this.has('video') && this.videoOn };
  }

  /** Turn one kind on or off. Disabling keeps the track flowing as silence/black: no renegotiation. */
  toggle(kind) {
    const key = kind === 'audio' ? 'audioOn' : 'videoOn';
    this[key] = !this[key];
    for (const track of this.stream.getTracks()) {
      if (track.kind === kind) track.enabled = this[key];
    }
    this.paint();
  }

  /** A new track (another device) took its kind's place: it is on or off as the old one was. */
  adopt(track) {
    track.enabled = track.kind === 'audio' ? this.audioOn : this.videoOn;
    this.paint();
  }

  stop() {
    for (const track of this.stream.getTracks()) track.stop();
  }

  /** The toolbar's microphone and camera buttons. */
  paint() {
    const audio = this.has('audio');
    const video = this.has('video');
    const { micButton: mic, camButton: cam } = this;
    mic.disabled = !audio;
    cam.disabled = !video;
    setButton(mic, this.audioOn && audio ? 'mic' : 'micOff',
      !audio ? 'No microphone' : this.audioOn ? 'Mute' : 'Unmute');
    setButton(cam, this.videoOn && video ? 'cam' : 'camOff',
      !video ? 'No camera' : this.videoOn ? 'Stop video' : 'Start video');
    mic.classList.toggle('off', !(this.audioOn && audio));
    cam.classList.toggle('off', !(this.videoOn && video));
    mic.setAttribute('aria-pressed', String(!this.audioOn));
    cam.setAttribute('aria-pressed', String(!this.videoOn));
  }
}
