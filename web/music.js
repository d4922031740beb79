// The instructor's music mode: the microphone as a music source, not a voice.
//
// Voice (the default) runs echo cancellation, noise suppression and automatic gain,
// which pump and smear music. Music mode opens the microphone without them, in stereo
// where the device has two channels, and lets Opus send up to 128 kbit/s; the publish
// connection of an instructor always negotiates stereo (opus.js), so switching needs no
// renegotiation. The choice is kept for the browser tab's session of the class.
//
// Music and voice are one track, so a recording that leaves the music out (the
// instructor's choice here, sent with `record`) leaves their audio out while music mode
// is on: the page tells the server (media_state's `music`) each time it switches.

import { AUDIO_CONSTRAINTS } from './media.js';
import { MUSIC_BITRATE } from './opus.js';
import { TabAudio } from './tabaudio.js';

export const MUSIC_CONSTRAINTS = Object.freeze({
  echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 2,
});
// Speech over the stereo-capable connection: the two channels are the same, Opus codes
// them as one, and this keeps the rate near a mono voice's.
export const VOICE_BITRATE = 40000;
const PROCESSING = ['echoCancellation', 'noiseSuppression', 'autoGainControl'];

/**
 * Whether a track's settings show the processing `wanted` asks for. A setting the browser
 * does not report (a WebAudio track) cannot be shown: it does not match.
 */
export function processingMatches(settings, wanted) {
  return PROCESSING.every((key) => wanted[key] === undefined || settings[key] === wanted[key]);
}

export class MusicMode {
  /**
   * roomId: the class (the choice is remembered per class in sessionStorage);
   * stream(): the page's local MediaStream; onSwitched(kind, track): a new microphone
   * track took the old one's place in that stream (the page shows and sends it);
   * publisher(): the session's rtc.js Publisher, or null; toast(message, kind, ms);
   * onChange(): music mode went on or off.
   */
  constructor({ roomId, stream, onSwitched, publisher, toast, onChange = () => {} }) {
    Object.assign(this, { stream, onSwitched, publisher, toast, onChange });
    this.key = `pulseroom.music.${roomId}`;
    this.enabled = false; // only an instructor has music mode
    this.on = false;
    try { this.on = sessionStorage.getItem(this.key) === 'on'; } catch { /* private mode */ }
    this.button = document.createElement('button');
    this.button.type = 'button';
    this.button.className = 'toggle';
    this.button.dataset.testid = 'music-button';
    this.button.title = 'Stereo sound without echo cancellation, noise suppression or automatic gain, for music. Use headphones: what your speakers play would be sent too.';
    this.button.addEventListener('click', () => this.set(!this.on));
    this.leaveOut = document.createElement('input');
    this.leaveOut.type = 'checkbox';
    this.leaveOut.dataset.testid = 'record-without-music';
    const label = document.createElement('label');
    label.className = 'hint';
    label.title = 'Your music and voice are one sound: while music mode is on, a recording started with this box ticked has no sound from you.';
    label.append(this.leaveOut, ' Leave music out of recordings');
    // A browser tab's sound mixed with the microphone, offered in music mode (tabaudio.js).
    this.tab = new TabAudio({
      microphone: () => this.stream().getAudioTracks()[0], sender: () => this.publisher()?.audioSender ?? null, toast,
    });
    this.row = document.createElement('div');
    this.row.className = 'row wrap host-row';
    this.row.append(this.button, label, this.tab.box);
    this.paint();
  }

  /** An instructor (from the link, then from the join ack) may use music mode; nobody else. */
  setEnabled(enabled) {
    this.enabled = enabled;
    this.paint();
  }

  get active() {
    return this.enabled && this.on;
  }

  /** What a recording started now does with music (`record`'s `music`). */
  recordMusic() {
    return this.leaveOut.checked ? 'exclude' : 'include';
  }

  /** The microphone constraints to open it with now. */
  constraints() {
    return this.active ? MUSIC_CONSTRAINTS : AUDIO_CONSTRAINTS;
  }

  /** The most the microphone may send (bit/s); null where stereo was not negotiated. */
  bitrate() {
    if (!this.enabled) return null;
    return this.on ? MUSIC_BITRATE : VOICE_BITRATE;
  }

  /** Switch music mode on or off: the microphone's processing, then the bitrate. */
  async set(on) {
    if (!this.enabled || on === this.on) return;
    const previous = this.on;
    this.on = on;
    this.button.disabled = true;
    try {
      await this.applyToMicrophone();
      try { sessionStorage.setItem(this.key, on ? 'on' : 'off'); } catch { /* private mode */ }
      await this.publisher()?.applyAudioBitrate();
      this.onChange();
      this.toast(on ? 'Music mode on: stereo, no echo cancellation. Use headphones.' : 'Music mode off: your microphone is tuned for speech again.', 'info', 4000);
    } catch (error) {
      this.on = previous;
      this.toast(`Music mode could not be switched ${on ? 'on' : 'off'}: ${error.message || error.name}`);
    } finally {
      this.button.disabled = false;
      this.paint();
    }
  }

  /**
   * Give the microphone the current constraints: in place if the browser can change its
   * processing (applyConstraints), else opened again with them (Chromium keeps the
   * processing a microphone was opened with) and put in the old track's place.
   */
  async applyToMicrophone() {
    const stream = this.stream();
    const track = stream.getAudioTracks()[0];
    if (!track) return; // no microphone: only the bitrate changes
    const wanted = this.constraints();
    try {
      await track.applyConstraints(wanted);
    } catch {
      // refused: opened again below
    }
    if (processingMatches(track.getSettings(), wanted)) return;
    const deviceId = track.getSettings().deviceId;
    const open = async (constraints) => {
      const fresh = await navigator.mediaDevices.getUserMedia({
        // ideal, not exact: a track that is no device (WebAudio) has an id no device has.
        audio: deviceId ? { ...constraints, deviceId: { ideal: deviceId } } : constraints,
      });
      return fresh.getAudioTracks()[0];
    };
    let next;
    let failure = null;
    try {
      next = await open(wanted);
    } catch {
      // Some systems open a microphone once at a time: let go of it and try again, and
      // if that fails too, take it back as it was rather than leave the class silent.
      track.stop();
      try {
        next = await open(wanted);
      } catch (error) {
        failure = error;
        next = await open(this.on ? AUDIO_CONSTRAINTS : MUSIC_CONSTRAINTS);
      }
    }
    stream.removeTrack(track);
    track.stop();
    stream.addTrack(next);
    await this.onSwitched('audio', next);
    if (failure) throw failure;
  }

  paint() {
    const on = this.active;
    this.row.hidden = !this.enabled;
    this.button.textContent = on ? 'Music mode: on' : 'Music mode: off';
    this.button.setAttribute('aria-pressed', String(on));
    this.button.dataset.music = on ? 'on' : 'off';
    this.tab.setAllowed(on); // off: a tab being mixed stops, the microphone is sent alone
  }

  /** For tests and debugging (window.pulseroom.music). */
  hook() {
    return { enabled: this.enabled, on: this.active, constraints: { ...this.constraints() }, bitrate: this.bitrate(), recordMusic: this.recordMusic(), tab: this.tab.hook() };
  }
}
