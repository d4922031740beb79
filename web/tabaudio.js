// Tab audio: in music mode the instructor may add a browser tab's sound (a music
// player's tab, shared with getDisplayMedia) to their microphone.
//
// The two are mixed in the page, in a WebAudio graph (mic → gain ┐, tab → gain ┴→ one
// stereo destination), and the mix's track takes the microphone's place in the publish
// connection's audio sender with RTCRtpSender.replaceTrack: the same m-line, the same
// stereo Opus (opus.js), no renegotiation. The microphone itself stays in the page's
// local stream, so the toolbar's Mute silences it alone (the tab keeps playing), and a
// microphone opened again (music mode, the device picker) is put into the mix, not sent
// past it. When the share ends (the browser's "Stop sharing", or ours) the microphone is
// sent alone again. The shared picture is not wanted: its track is stopped at once.

/** Tab sound as it is: no processing meant for a voice, both channels. */
export const TAB_AUDIO_CONSTRAINTS = Object.freeze({
  echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 2,
});
const LEVELS = [['tab', 'Tab level'], ['mic', 'Microphone level']];

/** Whether this browser can share a tab's sound and mix it (no phone browser can). */
export function canShareTabAudio() {
  return typeof navigator !== 'undefined' && typeof navigator.mediaDevices?.getDisplayMedia === 'function'
    && typeof AudioContext === 'function';
}

/** The WebAudio graph: the tab and the microphone, each through its own gain, into one stereo track. */
class Mix {
  constructor(context, tabTrack) {
    this.context = context;
    this.out = context.createMediaStreamDestination();
    // Stereo out, whatever comes in: a mono microphone is heard in both channels.
    this.out.channelCount = 2;
    this.out.channelCountMode = 'explicit';
    this.gains = { tab: context.createGain(), mic: context.createGain() };
    for (const gain of Object.values(this.gains)) gain.connect(this.out);
    context.createMediaStreamSource(new MediaStream([tabTrack])).connect(this.gains.tab);
    this.micSource = null;
    this.micTrack = null;
  }

  get track() {
    return this.out.stream.getAudioTracks()[0];
  }

  /** The microphone in the mix now (null: none). */
  setMicrophone(track) {
    if (track === this.micTrack) return;
    this.micSource?.disconnect();
    this.micSource = null;
    this.micTrack = track || null;
    if (!track) return;
    this.micSource = this.context.createMediaStreamSource(new MediaStream([track]));
    this.micSource.connect(this.gains.mic);
  }

  setLevel(source, value) {
    this.gains[source].gain.value = value;
  }

  close() {
    this.micSource?.disconnect();
    this.context.close().catch(() => {});
  }
}

/** The "Add tab audio" button and level sliders, the mix, and which track the sender sends. */
export class TabAudio {
  /**
   * microphone(): the microphone track in the page's local stream, or undefined;
   * sender(): the publish connection's audio RTCRtpSender, or null; toast(message, kind, ms).
   */
  constructor({ microphone, sender, toast }) {
    Object.assign(this, { microphone, sender, toast });
    this.available = canShareTabAudio();
    this.allowed = false; // music mode is on (music.js says)
    this.mix = null;
    this.shared = null; // the shared tab's MediaStream while mixing
    this.busy = false;
    this.box = document.createElement('div');
    this.box.className = 'tab-audio';
    this.box.dataset.testid = 'tab-audio';
    this.button = document.createElement('button');
    this.button.type = 'button';
    this.button.className = 'toggle';
    this.button.dataset.testid = 'tab-audio-button';
    this.button.title = 'Mix the sound of a browser tab (a music player) with your microphone. In the browser\'s picker, choose the tab and tick "Share tab audio".';
    this.button.addEventListener('click', () => (this.mix ? this.stop() : this.start()));
    this.levels = document.createElement('div');
    this.levels.className = 'tab-audio-levels';
    this.levels.setAttribute('role', 'group');
    this.levels.setAttribute('aria-label', 'Sound levels of the mix');
    this.inputs = {};
    for (const [source, text] of LEVELS) this.levels.append(this.levelField(source, text));
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = 'The toolbar\'s Mute silences your microphone only: the tab keeps playing.';
    this.levels.append(hint);
    this.box.append(this.button, this.levels);
    this.paint();
  }

  levelField(source, text) {
    const label = document.createElement('label');
    label.className = 'tab-audio-level';
    const input = document.createElement('input');
    Object.assign(input, { type: 'range', min: '0', max: '150', step: '5', value: '100' });
    input.dataset.testid = `${source}-level`;
    input.addEventListener('input', () => {
      input.setAttribute('aria-valuetext', `${input.value} %`);
      this.mix?.setLevel(source, Number(input.value) / 100);
    });
    input.setAttribute('aria-valuetext', '100 %');
    this.inputs[source] = input;
    label.append(text, input);
    return label;
  }

  /** Music mode went on or off: tab audio is offered only in music mode (and stops with it). */
  async setAllowed(allowed) {
    this.allowed = allowed;
    if (!allowed) await this.stop();
    this.paint();
  }

  get mixing() {
    return Boolean(this.mix);
  }

  /** Ask for a tab's sound and send the mix in place of the microphone. */
  async start() {
    if (this.mix || this.busy || !this.allowed) return;
    const sender = this.sender();
    if (!sender) {
      this.toast('Join with a microphone first: the tab\'s sound goes out with it.');
      return;
    }
    this.busy = true;
    this.paint();
    // Made while the click still counts as one, so that it may start playing.
    const context = new AudioContext({ sampleRate: 48000 });
    let shared = null;
    try {
      shared = await navigator.mediaDevices.getDisplayMedia({
        video: true, audio: TAB_AUDIO_CONSTRAINTS, systemAudio: 'include', selfBrowserSurface: 'exclude',
      });
      for (const track of shared.getVideoTracks()) track.stop(); // the picture is not sent
      const tabTrack = shared.getAudioTracks()[0];
      if (!tabTrack) throw new Error('no sound was shared: choose a tab and tick "Share tab audio"');
      const mix = new Mix(context, tabTrack);
      for (const [source, input] of Object.entries(this.inputs)) mix.setLevel(source, Number(input.value) / 100);
      mix.setMicrophone(this.microphone());
      if (context.state !== 'running') await context.resume();
      await sender.replaceTrack(mix.track);
      this.mix = mix;
      this.shared = shared;
      // The browser's "Stop sharing" ends the track: back to the microphone alone.
      tabTrack.addEventListener('ended', () => this.stop());
      this.toast('Tab audio on: the class hears the tab with your microphone.', 'info', 4000);
    } catch (error) {
      for (const track of shared?.getTracks() ?? []) track.stop();
      context.close().catch(() => {});
      if (error.name !== 'NotAllowedError') this.toast(`Tab audio could not be added: ${error.message || error.name}`);
    } finally {
      this.busy = false;
      this.paint();
    }
  }

  /** Stop mixing: the microphone alone goes out again. */
  async stop() {
    const { mix, shared } = this;
    if (!mix) return;
    this.mix = null;
    this.shared = null;
    const sender = this.sender();
    try {
      if (sender && sender.track === mix.track) await sender.replaceTrack(this.microphone() || null);
    } catch (error) {
      console.warn('could not send the microphone again', error);
    }
    for (const track of shared.getTracks()) track.stop();
    mix.close();
    this.paint();
    this.toast('Tab audio stopped: the class hears your microphone alone.', 'info', 4000);
  }

  /**
   * The track to send for `track` (a microphone or camera just opened): while mixing, a
   * microphone goes into the mix and the mix is what is sent.
   */
  sending(track) {
    if (!this.mix || track.kind !== 'audio') return track;
    this.mix.setMicrophone(track);
    return this.mix.track;
  }

  /** The stream a new publish connection sends: `stream`, with the mix for its microphone. */
  published(stream) {
    if (!this.mix) return stream;
    this.mix.setMicrophone(stream.getAudioTracks()[0]);
    return new MediaStream([...stream.getVideoTracks(), this.mix.track]);
  }

  paint() {
    this.box.hidden = !(this.available && this.allowed);
    const on = this.mixing;
    this.button.disabled = this.busy;
    this.button.textContent = on ? 'Stop tab audio' : 'Add tab audio';
    this.button.setAttribute('aria-pressed', String(on));
    this.button.dataset.tabAudio = on ? 'on' : 'off';
    this.levels.hidden = !on;
  }

  /** For tests and debugging (window.pulseroom.music.tab). */
  hook() {
    const sent = this.sender()?.track ?? null;
    return {
      available: this.available, allowed: this.allowed, mixing: this.mixing,
      sent: !sent ? null : sent === this.mix?.track ? 'mix' : sent === this.microphone() ? 'microphone' : 'other',
      levels: Object.fromEntries(Object.entries(this.inputs).map(([source, input]) => [source, Number(input.value)])),
    };
  }
}
