// Choosing the camera and microphone: before joining (beside the preview) and in class
// (the Devices dialog). The choice is remembered for the next class on this browser.
//
// Switching replaces the track in the page's local stream and, once publishing, on the
// sender (RTCRtpSender.replaceTrack): no renegotiation, the class sees the new camera at
// once. A kind that was not published at join (no microphone then) needs a rejoin.

import { AUDIO_CONSTRAINTS, VIDEO_CONSTRAINTS } from './media.js';
import { setButton } from './ui.js';

const KEYS = { video: 'pulseroom.camera', audio: 'pulseroom.microphone' };
const NAMES = { video: 'Camera', audio: 'Microphone' };

/** The devices chosen last time, for openMedia(): {audio, video} device ids or null. */
export function preferredDevices() {
  const read = (key) => {
    try { return localStorage.getItem(key); } catch { return null; }
  };
  return { audio: read(KEYS.audio), video: read(KEYS.video) };
}

function remember(kind, deviceId) {
  try { localStorage.setItem(KEYS[kind], deviceId); } catch { /* private mode */ }
}

/** What to tell a person whose device could not be opened. */
function failure(kind, error) {
  const what = NAMES[kind].toLowerCase();
  if (error.name === 'NotAllowedError' || error.name === 'SecurityError') {
    return `The browser did not allow the ${what}: allow it in the site settings and try again.`;
  }
  if (error.name === 'NotReadableError') return `That ${what} is in use by another app.`;
  if (error.name === 'NotFoundError' || error.name === 'OverconstrainedError') return `That ${what} is not connected any more.`;
  return `The ${what} could not be opened: ${error.message || error.name}.`;
}

/** Put `track` on the publish connection in place of the one of its kind; false if none was sent. */
export async function replaceSent(pc, track) {
  const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === track.kind);
  if (!sender) return false;
  await sender.replaceTrack(track);
  return true;
}

export class DevicePicker {
  /**
   * container: where the two selects go; stream(): the page's local MediaStream;
   * onSwitched(kind, track): the stream now has `track` instead of the old one;
   * toast(message, kind): a short notice; video: the camera constraints of the role;
   * audio(): the microphone's constraints now (music mode changes them: music.js).
   */
  constructor({ container, stream, onSwitched, toast, video = VIDEO_CONSTRAINTS, audio = () => AUDIO_CONSTRAINTS }) {
    Object.assign(this, { container, stream, onSwitched, toast, video, audio });
    this.box = document.createElement('div');
    this.box.className = 'device-picker';
    this.box.dataset.testid = 'device-picker';
    this.selects = {};
    for (const kind of ['video', 'audio']) {
      const field = document.createElement('div');
      field.className = 'device-field';
      const select = document.createElement('select');
      select.id = `${kind}-device`;
      select.dataset.testid = kind === 'video' ? 'camera-select' : 'microphone-select';
      const label = document.createElement('label');
      label.htmlFor = select.id;
      label.textContent = NAMES[kind];
      select.addEventListener('change', () => this.choose(kind, select.value));
      field.append(label, select);
      this.box.append(field);
      this.selects[kind] = select;
    }
    this.status = document.createElement('p');
    this.status.className = 'hint device-status';
    this.status.dataset.testid = 'device-status';
    this.status.setAttribute('role', 'status');
    this.box.append(this.status);
    container.append(this.box);
    navigator.mediaDevices?.addEventListener?.('devicechange', () => this.refresh());
  }

  /** Move the picker (into the in-class dialog). */
  mount(parent) {
    if (this.box.parentElement !== parent) parent.append(this.box);
  }

  /** In class, the toolbar's Devices button opens the picker in a dialog (with the video quality). */
  bindDialog({ button, dialog, body, close }) {
    setButton(button, 'settings', 'Devices');
    button.setAttribute('aria-label', 'Choose camera, microphone and video quality');
    button.title = 'Choose camera, microphone and video quality';
    button.addEventListener('click', () => {
      this.mount(body);
      this.refresh();
      dialog.showModal();
    });
    close.addEventListener('click', () => dialog.close());
  }

  /** List the devices; the current track's device is the selected one. */
  async refresh() {
    let devices = [];
    try {
      devices = (await navigator.mediaDevices?.enumerateDevices?.()) || [];
    } catch {
      devices = [];
    }
    for (const kind of ['video', 'audio']) {
      const select = this.selects[kind];
      const listed = devices.filter((d) => d.kind === `${kind}input`);
      const mine = listed.filter((d) => d.deviceId);
      const current = this.stream().getTracks().find((t) => t.kind === kind);
      const currentId = current?.getSettings?.().deviceId || '';
      const options = mine.map((d, i) => {
        const option = document.createElement('option');
        option.value = d.deviceId;
        // Labels stay empty until the page may use a device (permission not granted).
        option.textContent = d.label || `${NAMES[kind]} ${i + 1}`;
        return option;
      });
      if (!options.length) {
        const none = document.createElement('option');
        none.value = '';
        // Listed without an id: there is one, but this site may not use it (denied).
        none.textContent = listed.length
          ? `${NAMES[kind]} blocked for this site`
          : (kind === 'video' ? 'No camera found' : 'No microphone found');
        options.push(none);
      }
      select.replaceChildren(...options);
      select.disabled = !mine.length;
      if (currentId && mine.some((d) => d.deviceId === currentId)) select.value = currentId;
    }
  }

  /** Open the chosen device and put it in place of the current one. */
  async choose(kind, deviceId) {
    if (!deviceId) return;
    const constraints = kind === 'video' ? this.video : this.audio();
    const select = this.selects[kind];
    select.disabled = true;
    this.status.textContent = '';
    try {
      const fresh = await navigator.mediaDevices.getUserMedia({ [kind]: { ...constraints, deviceId: { exact: deviceId } } });
      const track = fresh.getTracks().find((t) => t.kind === kind);
      const stream = this.stream();
      for (const old of stream.getTracks().filter((t) => t.kind === kind)) {
        stream.removeTrack(old);
        old.stop();
      }
      stream.addTrack(track);
      remember(kind, deviceId);
      await this.onSwitched(kind, track);
      this.status.textContent = `${NAMES[kind]}: ${track.label || 'switched'}.`;
    } catch (error) {
      const message = failure(kind, error);
      this.status.textContent = message;
      this.toast(message);
    } finally {
      select.disabled = false;
      this.refresh();
    }
  }
}
