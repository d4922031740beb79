// The strap page: a participant's device link (/r/{room_id}#t={device_token}) opened in a
// browser, say Chrome on an Android phone, for someone whose own browser has no Web
// Bluetooth (every iPhone browser). It does what `pulseroom hr-bridge` does
// (pulseroom/hr_link.py): joins as the device, publishes the `telemetry` data channel
// only, and sends the strap's readings, which the class sees as that participant's.
//
// Nothing here is new protocol: the Session (session.js) joins, rejoins after a drop and
// reports the class's end or a removal; the TelemetrySender (heart.js) keeps every
// reading until the server acknowledges it; the Strap (bluetooth.js) talks to the strap.

import { Strap, hasWebBluetooth } from './bluetooth.js';
import { TelemetrySender } from './heart.js';
import { JOIN_ERRORS } from './link.js';
import { Publisher, Subscriber, hasWebRtc } from './rtc.js';
import { Session, VIEW_HOOKS } from './session.js';
import { setStatus, showNotice, showView, toast } from './ui.js';

// The device's own name: the server's log shows it, no one in the class does.
const DEVICE_NAME = 'Strap page';

// Refusals as the holder of a device link reads them (else link.js's, for class links).
const DEVICE_ERRORS = {
  link_replaced: {
    title: 'This device link was replaced',
    body: 'The instructor made new links for this class, so this device link no longer works. Rejoin the class with the new link: your class page then shows a new device link.',
  },
  removed: { title: 'Removed from this class', body: 'The instructor removed the person this device link belongs to, so no heart rate can be sent for them.' },
  room_ended: { title: 'This class has ended', body: 'No more heart rate can be sent to it. Thanks for training!' },
  not_found: { title: 'This device link is not in use yet', body: 'Its owner never joined the class. Join the class first, then open the device link your class page shows.' },
  invalid_token: { title: 'This device link is not valid', body: 'It is damaged or incomplete. Open it again from your class page (or scan its QR code again).' },
  token_expired: { title: 'This device link has expired', body: 'Rejoin the class with the class link: your class page then shows a new device link.' },
};
// Refusals worth another try from this page, in words for people.
const RETRY_HINTS = {
  device_in_use: 'Another device is already sending heart rate with this link (another phone or tab, or pulseroom hr-bridge). Close it there, then try again.',
  offline: 'Could not reach the class. Check your connection, then try again.',
};

const $ = (id) => document.getElementById(id);

/** The page for a device link: one Strap, one TelemetrySender, one Session. */
export class StrapPage {
  /** `link`: readLink()'s {roomId, token}, the token a device token. */
  constructor(link) {
    this.link = link;
    this.bluetooth = hasWebBluetooth();
    this.els = {
      heading: $('strap-heading'), noBluetooth: $('strap-no-bluetooth'), live: $('strap-live'),
      bpm: $('strap-bpm'), state: $('strap-state'), delivery: $('strap-delivery'),
      pair: $('strap-pair'), retry: $('strap-retry'), title: $('class-title'),
    };
    this.lastRefusal = 0;
    this.wakeLock = null; // the screen's (a promise of it), while a strap is paired
    // Per class, apart from a class page's queue in the same tab (heart.js keeps it per tab).
    this.sender = new TelemetrySender(`pulseroom.device.${link.roomId}`);
    this.strap = new Strap({
      onReading: (measurement) => this.reading(measurement),
      onStatus: (status) => this.strapStatus(status),
    });
    this.session = new Session({
      roomId: link.roomId,
      linkToken: link.token,
      token: link.token,
      origin: location.origin,
      io: (url, options) => io(url, options),
      rtc: { enabled: hasWebRtc(), Publisher, Subscriber },
      // No camera or microphone: the publish connection carries the data channel alone.
      local: { stream: () => new MediaStream(), state: () => ({ audio: false, video: false }) },
      view: this.viewHooks(),
    });
    window.pulseroom = this.testHooks();
  }

  /** What the session asks of the page: most of a class page's hooks mean nothing here. */
  viewHooks() {
    const nothing = Object.fromEntries(VIEW_HOOKS.map((name) => [name, () => {}]));
    return {
      ...nothing,
      phase: (phase) => { document.body.dataset.state = phase; },
      status: setStatus,
      toast,
      refused: (code, serverMessage) => this.refused(code, serverMessage),
      entered: (ack) => this.entered(ack),
      offline: () => this.sender.detach(),
      reconnecting: () => {
        setStatus('Connection lost. Reconnecting…', 'warn');
        this.paintDelivery();
      },
      closed: (reason) => this.closed(reason),
      telemetryAck: (payload) => {
        // Refused readings (the phone's clock far off) will never be stored: stop re-sending them.
        this.sender.ack([...(payload?.acks || []), ...(payload?.refused || [])]);
        this.paintDelivery();
      },
      telemetryRefused: (error) => this.readingRefused(error),
      wantsTelemetry: () => !this.strap.stopped || this.sender.pending.size > 0,
      attachTelemetry: (channel) => this.sender.attach(channel),
    };
  }

  start() {
    // A pasted link that differs only in its fragment would not reload the page by itself.
    window.addEventListener('hashchange', () => location.reload());
    document.title = 'Heart rate · PulseRoom';
    showView('strap');
    this.els.pair.addEventListener('click', () => this.togglePair());
    this.els.retry.addEventListener('click', () => this.join());
    // The browser lets a wake lock go when the page is hidden: take it again on return.
    document.addEventListener('visibilitychange', () => this.keepAwake(!this.strap.stopped));
    const cannot = this.cannotSend();
    if (cannot) {
      // Nothing to send from here: the link is not taken (a bridge elsewhere may use it).
      this.session.setPhase('error');
      setStatus('Not connected');
      this.els.live.hidden = true;
      this.els.noBluetooth.hidden = false;
      this.els.noBluetooth.textContent = cannot;
      return;
    }
    this.join();
  }

  /** Why this browser cannot send a strap's readings, or '' if it can. */
  cannotSend() {
    if (!window.isSecureContext) return 'This page is not served over https, so the browser cannot use Bluetooth. Open this link over https, in Chrome on an Android phone or on a computer.';
    if (!this.bluetooth) return 'This browser cannot connect to a heart-rate strap: it has no Web Bluetooth (no iPhone browser has it). Open this link in Chrome on an Android phone or on a computer, or use pulseroom hr-bridge.';
    if (!hasWebRtc()) return 'This browser has no WebRTC, which the readings travel over. Open this link in Chrome on an Android phone or on a computer.';
    return '';
  }

  async join() {
    const els = this.els;
    els.retry.hidden = true;
    els.pair.disabled = true;
    this.session.setPhase('prejoin');
    setStatus('Joining…');
    els.delivery.textContent = 'Connecting to the class…';
    const error = await this.session.join(DEVICE_NAME, Promise.resolve());
    if (!error) return;
    if (JOIN_ERRORS[error.code] || DEVICE_ERRORS[error.code]) {
      this.session.refuse(error.code, error.message);
      return;
    }
    this.session.setPhase('prejoin');
    setStatus('Not connected', 'bad');
    els.delivery.textContent = RETRY_HINTS[error.code] || error.message;
    els.delivery.dataset.code = error.code;
    els.retry.hidden = false;
  }

  /** In the class (first join or rejoin after a drop). */
  entered(ack) {
    const { els } = this;
    const name = ack.you.for_name;
    const title = ack.room.title;
    els.heading.textContent = name && title ? `Heart rate for ${name} in ${title}` : 'Heart rate for the class';
    if (title) {
      els.title.textContent = title;
      document.title = `Heart rate · ${title} · PulseRoom`;
    }
    delete els.delivery.dataset.code;
    els.pair.disabled = false;
    this.sender.setOwner(ack.you.acts_for);
    setStatus('Connected', 'live');
    this.paintDelivery();
    if (document.activeElement === document.body) els.heading.focus({ preventScroll: true });
  }

  async togglePair() {
    if (!this.strap.stopped) {
      await this.strap.disconnect();
      this.els.bpm.textContent = '--';
    } else {
      try {
        await this.strap.pair();
      } catch {
        // said in the strap's status line
      }
    }
    this.paintPair();
  }

  strapStatus({ state, text }) {
    this.els.state.textContent = text;
    this.els.state.dataset.state = state;
    if (state === 'connected') this.session.startPublisher(); // no-op while one is there
    if (state !== 'connected') this.els.bpm.dataset.stale = 'true';
    this.keepAwake(!this.strap.stopped);
    this.paintPair();
  }

  /**
   * While a strap is paired, the phone's screen stays on where the browser allows it
   * (Screen Wake Lock): a locked phone suspends the page, and readings wait until it wakes.
   */
  async keepAwake(on) {
    if (!on) {
      const held = this.wakeLock;
      this.wakeLock = null;
      (await held)?.release().catch(() => {});
      return;
    }
    if (this.wakeLock || !navigator.wakeLock || document.visibilityState !== 'visible') return;
    // Kept as the request's promise, so that a second call meanwhile asks for no second lock.
    const lock = navigator.wakeLock.request('screen').catch(() => null); // refused: battery saver
    this.wakeLock = lock;
    const sentinel = await lock;
    if (!sentinel) {
      if (this.wakeLock === lock) this.wakeLock = null;
      return;
    }
    sentinel.addEventListener('release', () => {
      if (this.wakeLock === lock) this.wakeLock = null;
    });
  }

  paintPair() {
    const active = !this.strap.stopped;
    this.els.pair.textContent = active ? 'Unpair strap' : 'Pair strap';
    this.els.pair.setAttribute('aria-pressed', String(active));
  }

  /** A measurement from the strap: shown, and queued until the server has it. */
  reading(measurement) {
    const message = this.sender.record(measurement);
    if (!message) return; // no skin contact reads 0: nothing the server would take
    this.els.bpm.textContent = String(message.bpm);
    delete this.els.bpm.dataset.stale;
    this.paintDelivery();
  }

  /** How many readings the class has, and how many wait for the connection. */
  paintDelivery() {
    const { acked } = this.sender.counts;
    const pending = this.sender.pending.size;
    const inClass = this.session.phase === 'joined';
    let text = inClass ? 'Connected to the class.' : 'Not connected to the class: readings are kept and sent when it is back.';
    if (acked) text = `${acked} readings delivered to the class${pending ? `, ${pending} on their way` : ''}.`;
    else if (pending) text = `${pending} readings on their way to the class.`;
    if ((acked || pending) && !inClass) text += ' Reconnecting…';
    this.els.delivery.textContent = text;
  }

  /** The server refused a reading (`bad_reading`): say so, at most every 30 s. */
  readingRefused(error) {
    const now = performance.now();
    if (this.lastRefusal && now - this.lastRefusal < 30000) return;
    this.lastRefusal = now;
    toast(`The server refused a heart-rate reading: ${error.message}`);
  }

  /** The class ended or the owner was removed: let the strap go. */
  closed(reason) {
    this.strap.disconnect();
    this.sender.detach();
    if (reason !== 'ended') return; // `removed`: the session shows the refusal next
    this.sender.clear();
    this.refused('room_ended');
  }

  /** A refusal nobody can retry from here: say why, in a device link's words. */
  refused(code, serverMessage) {
    this.strap.disconnect();
    const known = DEVICE_ERRORS[code] || JOIN_ERRORS[code] || { title: 'Heart rate cannot be sent', body: serverMessage || code };
    setStatus(code === 'room_ended' ? 'Class ended' : 'Not connected', code === 'room_ended' ? '' : 'bad');
    showNotice({ title: known.title, body: known.body, kind: code === 'room_ended' ? 'info' : 'error', code, action: { text: 'Go to PulseRoom', href: '/' } });
  }

  /** For tests and debugging (window.pulseroom). */
  testHooks() {
    const { session, sender, strap } = this;
    return {
      get phase() { return session.phase; },
      get you() { return session.you ? { ...session.you } : null; },
      get room() { return session.room ? { ...session.room } : null; },
      get socket() { return session.socket; },
      get publishPc() { return session.publisher ? session.publisher.pc : null; },
      get rejoins() { return session.rejoins.slice(); },
      get hr() { return { sender: sender.stats(), strap: { state: strap.state || 'idle' } }; },
    };
  }
}
