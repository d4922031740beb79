// Heart rate in the class page: the strap (Web Bluetooth) or the bridge's device link,
// the telemetry sender, the profile form and the display, wired to the page's session.
//
// room.js calls: joined(ack) after each join ack, onHr / onAck for the `hr` and
// `telemetry_ack` events, attachChannel(channel) for each new publish connection, paint()
// after re-rendering tiles, and ended() / left() when the class is over for this page.

import { Strap, hasWebBluetooth } from './bluetooth.js';
import { TelemetrySender } from './heart.js';
import { HeartRateView } from './hrview.js';
import { copyText, deviceLink } from './link.js';
import { ProfileForm } from './profile.js';
import { qrSvg } from './qr.js';
import { setButton } from './ui.js';

const $ = (id) => document.getElementById(id);

/** The status line of a browser without Web Bluetooth: a participant is pointed to the QR code. */
function noStrapHere(role) {
  return role === 'host' ? 'No strap paired in this browser.' : 'No strap paired in this browser: scan the QR code below with an Android phone to pair yours there.';
}

export class HeartRateRoom {
  /**
   * request(event, payload): the page's acked emit; ensureChannel(): start a publish
   * connection (data only) if there is none; toast(message, kind): a short notice.
   */
  constructor({ roomId, grid, request, ensureChannel, toast }) {
    this.roomId = roomId;
    this.request = request;
    this.ensureChannel = ensureChannel;
    this.toast = toast;
    this.joinedNow = false;
    this.bluetooth = hasWebBluetooth();
    this.sender = new TelemetrySender(`pulseroom.hr.${roomId}`);
    this.view = new HeartRateView({ grid, own: $('own-hr') });
    this.strap = new Strap({
      onReading: (measurement) => this.reading(measurement),
      onStatus: (status) => this.strapStatus(status),
    });
    this.els = {
      prejoinPair: $('prejoin-pair-button'), prejoinStatus: $('prejoin-strap-status'),
      prejoinBridge: $('prejoin-bridge-note'), pair: $('pair-button'), zones: $('zones-button'),
      strapStatus: $('strap-status'), bridge: $('bridge-details'), bridgeSummary: $('bridge-summary'),
      bridgeText: $('bridge-text'), deviceLink: $('device-link'), copyLink: $('copy-device-link'),
      zonesDialog: $('zones-dialog'), zonesBody: $('zones-dialog-body'), zonesClose: $('zones-close'),
      profileHome: $('profile-home'), qr: $('device-qr'), qrCode: $('device-qr-code'),
      qrCaption: $('device-qr-caption'),
    };
    this.profile = new ProfileForm($('profile-form'), { onSave: (p) => this.saveProfile(p) });
    this.setupButtons();
  }

  setupButtons() {
    const e = this.els;
    if (!this.bluetooth) {
      // Firefox, Safari, or plain http: the strap goes through `pulseroom hr-bridge`.
      e.prejoinPair.hidden = true;
      e.pair.hidden = true;
      e.prejoinBridge.hidden = false;
      e.bridge.open = true;
      e.bridgeSummary.textContent = 'Heart rate through the bridge';
      const code = document.createElement('code');
      code.textContent = 'pulseroom hr-bridge';
      e.bridgeText.replaceChildren(
        window.isSecureContext
          ? 'This browser cannot connect to a heart-rate strap (Web Bluetooth works in Chrome, Edge and Opera). Scan the code below with an Android phone near your strap, or run '
          : 'This page is not served over https, so the browser cannot use Bluetooth. Scan the code below with an Android phone near your strap, or run ',
        code, ' on a computer there with your device link:',
      );
      // The phone is the way for most: the code comes first and large (style.css).
      e.qr.classList.add('prominent');
      e.qrCaption.textContent = 'Scan with an Android phone to pair your strap';
    }
    const pair = () => this.togglePair();
    e.prejoinPair.addEventListener('click', pair);
    e.pair.addEventListener('click', pair);
    e.zones.addEventListener('click', () => {
      this.profile.mount(e.zonesBody);
      e.zonesDialog.showModal();
    });
    e.zonesClose.addEventListener('click', () => e.zonesDialog.close());
    e.copyLink.addEventListener('click', async () => {
      const ok = await copyText(e.deviceLink);
      e.copyLink.textContent = ok ? 'Copied!' : 'Select and copy';
      if (!ok) e.deviceLink.select();
      setTimeout(() => { e.copyLink.textContent = 'Copy'; }, 2000);
    });
    this.paintPairButtons();
    setButton(e.zones, 'zones', 'Zones');
    e.zones.setAttribute('aria-label', 'Heart-rate zones');
    e.zones.title = 'Heart-rate zones';
  }

  paintPairButtons() {
    const active = !this.strap.stopped;
    const text = active ? 'Unpair heart-rate strap' : 'Pair heart-rate strap';
    setButton(this.els.prejoinPair, 'heart', text);
    // The toolbar's label is short (it hides at phone width); the accessible name is whole.
    setButton(this.els.pair, 'heart', active ? 'Unpair strap' : 'Pair strap');
    for (const button of [this.els.prejoinPair, this.els.pair]) {
      button.setAttribute('aria-pressed', String(active));
      button.setAttribute('aria-label', text);
      button.title = text;
    }
  }

  async togglePair() {
    if (!this.strap.stopped) {
      await this.strap.disconnect();
      this.view.showOwn(false);
      this.paintPairButtons();
      return;
    }
    try {
      await this.strap.pair();
    } catch (error) {
      if (this.joinedNow) this.toast(this.strap.state === 'error' ? this.els.strapStatus.textContent : String(error.message || error));
    }
    this.paintPairButtons();
  }

  strapStatus({ state, text }) {
    this.els.prejoinStatus.textContent = text;
    this.els.strapStatus.textContent = text;
    this.els.strapStatus.dataset.state = state;
    this.view.setOwnStatus(state === 'connected' ? '' : text);
    if (state === 'connected') {
      this.view.showOwn(this.joinedNow);
      if (this.joinedNow) this.ensureChannel();
    }
    this.paintPairButtons();
  }

  /** A measurement from the strap: queued and sent while in class, shown locally before. */
  reading(measurement) {
    if (this.joinedNow) {
      this.sender.record(measurement);
    } else {
      this.els.prejoinStatus.textContent = `${this.strap.describe()} · ♥ ${measurement.bpm} bpm`;
    }
  }

  /** Whether a publish connection is needed for heart rate alone. */
  wantsChannel() {
    return !this.strap.stopped || this.sender.pending.size > 0;
  }

  attachChannel(channel) {
    this.sender.attach(channel);
  }

  /** After every join ack (first join, rejoin after a drop, or a reload). */
  joined(ack) {
    this.joinedNow = true;
    this.sender.setOwner(ack.you.id);
    this.view.setSelf(ack.you.id);
    this.view.reset();
    this.view.update(ack.heart_rates || [], { fromAck: true });
    this.view.showOwn(!this.strap.stopped);
    if (ack.device_token) this.showDeviceLink(deviceLink(this.roomId, ack.device_token));
    // The instructor mostly watches: the bridge stays folded away for them.
    if (!this.bluetooth) this.els.bridge.open = ack.you.role !== 'host';
    this.els.strapStatus.textContent = this.strap.stopped
      ? (this.bluetooth ? 'No strap paired.' : noStrapHere(ack.you.role))
      : this.els.strapStatus.textContent;
    if (this.profile.form.parentElement === this.els.profileHome) this.profile.mount(this.els.zonesBody);
    if (ack.you.role !== 'board') this.sendProfile(ack.profile); // a board has no heart of its own
  }

  /** The device link, as text to copy and as a QR code for a phone (strap.js opens it there). */
  showDeviceLink(link) {
    const e = this.els;
    e.deviceLink.value = link;
    e.qrCode.replaceChildren(qrSvg(link, 'QR code of your device link'));
    e.qr.dataset.link = link; // what the code says, for tests
    e.qr.hidden = false;
  }

  /** After a join: the form's profile goes to the server, or the server's fills the form. */
  sendProfile(serverProfile) {
    const local = this.profile.read({ quiet: true });
    if (local && this.profile.hasValues(local)) {
      this.profile.remember(local);
      this.saveProfile(local).catch((error) => this.toast(`Your heart-rate zones were not saved: ${error.message}`));
    } else if (!local && this.profile.hasValues(this.profile.stored())) {
      this.saveProfile(this.profile.stored()).catch(() => {});
    } else if (serverProfile && this.profile.hasValues(serverProfile)) {
      this.profile.fill(serverProfile);
      this.view.setOwnMethod(serverProfile.zone_method);
    }
  }

  async saveProfile(profile) {
    if (!this.joinedNow) return null; // sent on join
    const ack = await this.request('profile', profile);
    this.view.setOwnMethod(ack.profile && ack.profile.zone_method);
    return ack.profile;
  }

  onHr(payload) {
    const readings = (payload && payload.readings) || [];
    this.view.update(readings);
    // Our own readings while no strap is paired here: they come from the bridge (or
    // another device with our device link). Say so, instead of "No strap paired" and an
    // old Bluetooth error.
    const mine = readings.filter((r) => r.participant_id === this.view.selfId);
    if (mine.length && this.strap.stopped) {
      const status = this.els.strapStatus;
      status.textContent = `Heart rate from your bridge: ${mine[mine.length - 1].bpm} bpm.`;
      status.dataset.state = 'bridge';
      this.view.setOwnStatus('');
    }
  }

  /**
   * `max_hr_raised`: a hold above the maximum raised it. One's own: told, and the form
   * remembers the new maximum, so the next join does not send the old one back. The
   * instructor's page just sees the new %max on the tile.
   */
  onMaxRaised(payload) {
    if (!payload || payload.participant_id !== this.view.selfId) return;
    this.toast(payload.message || `Your max heart rate was raised to ${payload.hr_max} bpm`, 'info', 8000);
    const saved = this.profile.read({ quiet: true }) || this.profile.stored() || {};
    const profile = { ...saved, max_hr: payload.hr_max };
    this.profile.fill(profile);
    this.profile.remember(profile);
  }

  onAck(payload) {
    // Refused readings (device clock far off) will never be stored: stop re-sending them too.
    this.sender.ack([...((payload && payload.acks) || []), ...((payload && payload.refused) || [])]);
  }

  /** The server refused a reading (`bad_reading`): say so, at most every 30 s. */
  refused(error) {
    const now = performance.now();
    if (this.lastRefusal && now - this.lastRefusal < 30000) return;
    this.lastRefusal = now;
    this.toast(`The server refused a heart-rate reading: ${error.message}`);
  }

  /** The tiles were re-rendered: put the badges back. */
  paint() {
    this.view.paintAll();
  }

  /**
   * The publish connection is gone (connection lost, media moved): readings keep being
   * recorded and are re-sent on the next channel, after the rejoin.
   */
  offline() {
    this.sender.detach();
  }

  /** Left the class or it ended: the strap is let go; after an end nothing can be sent. */
  async stop({ ended = false } = {}) {
    this.joinedNow = false;
    this.sender.detach();
    if (ended) this.sender.clear();
    else this.sender.save(true);
    if (this.els.zonesDialog.open) this.els.zonesDialog.close();
    await this.strap.disconnect();
    this.paintPairButtons();
  }

  /** For tests and debugging (window.pulseroom.hr). */
  hook() {
    return {
      ...this.view.stats,
      sender: this.sender.stats(),
      strap: { state: this.strap.state || 'idle', name: this.strap.connected ? this.strap.name : null },
      bluetooth: this.bluetooth,
    };
  }
}
