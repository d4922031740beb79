// Simulcast on the publish connection (issue 14): what each role captures and sends as
// RID layers, and switching layers on and off as the SFU's `layers` event asks.
//
// The SFU forwards each subscriber the layer that fits the tile it is drawn in, so a
// camera is sent at several sizes at once, lowest first; a layer nobody receives is
// paused to save the publisher's upload and CPU. No DOM here: the functions take what
// they need, so that pages and tests can call them alike.

/** Below this height a layer is not worth its bits: the next one up shows it better. */
export const MIN_LAYER_HEIGHT = 90;

/**
 * Per role: the camera constraints and the simulcast encodings, ordered low to high.
 * The instructor is shown large to everyone, so it gets a 720p top layer; a participant
 * is a strip tile for most viewers and keeps the 360p capture the class always had.
 */
export const PLANS = Object.freeze({
  instructor: Object.freeze({
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } },
    encodings: [
      { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
    ],
  }),
  participant: Object.freeze({
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 30 } },
    encodings: [
      { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 150_000 },
      { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 600_000 },
    ],
  }),
});

// Three temporal layers let the SFU drop to 15 or 7.5 fps within a layer later on.
const TEMPORAL_MODE = 'L1T3';

/** The plan of a protocol role ('host' or 'participant'). */
export function planFor(role) {
  return role === 'host' ? 'instructor' : 'participant';
}

/** The camera constraints of a plan. */
export function videoConstraints(plan) {
  return (PLANS[plan] || PLANS.participant).video;
}

/**
 * The encodings to send a `sourceHeight`-high track with (0: unknown, send them all).
 * Layers that would come out under MIN_LAYER_HEIGHT are left out: a camera giving the
 * instructor 360p sends 90p, 180p and 360p, not a 720p plan squeezed from it. One
 * encoding alone goes without a rid: that is plain sending, as before simulcast.
 */
export function encodingsFor(plan, sourceHeight = 0, { scalabilityMode = null } = {}) {
  const all = (PLANS[plan] || PLANS.participant).encodings;
  const fit = sourceHeight
    ? all.filter((e) => sourceHeight / e.scaleResolutionDownBy >= MIN_LAYER_HEIGHT)
    : all;
  const kept = fit.length ? fit : [all[all.length - 1]];
  return kept.map(({ rid, ...rest }) => ({
    ...(kept.length > 1 ? { rid } : {}),
    ...rest,
    ...(scalabilityMode ? { scalabilityMode } : {}),
  }));
}

/**
 * The temporal mode to ask for, from RTCRtpSender.getCapabilities('video'): null when
 * the browser lists VP8's modes without it; when it lists none (Firefox), we ask anyway
 * and the browser ignores or refuses it (then addLayeredVideo asks without).
 */
export function temporalMode(capabilities) {
  const vp8 = (capabilities?.codecs ?? []).find((c) => c.mimeType.toLowerCase() === 'video/vp8');
  const modes = vp8?.scalabilityModes;
  if (Array.isArray(modes) && !modes.includes(TEMPORAL_MODE)) return null;
  return TEMPORAL_MODE;
}

/**
 * Add the video transceiver with the plan's layers. Each fallback is what some browser
 * needs: without the temporal mode, then a single encoding as before simulcast (a
 * browser refusing `sendEncodings` still sends the camera).
 */
export function addLayeredVideo(pc, track, init, plan) {
  const height = track.getSettings?.().height || 0;
  const caps = globalThis.RTCRtpSender?.getCapabilities?.('video');
  const mode = temporalMode(caps);
  const attempts = mode ? [encodingsFor(plan, height, { scalabilityMode: mode })] : [];
  attempts.push(encodingsFor(plan, height));
  for (const sendEncodings of attempts) {
    try {
      return pc.addTransceiver(track, { ...init, sendEncodings });
    } catch (error) {
      console.warn('simulcast encodings refused, trying fewer options', sendEncodings, error);
    }
  }
  return pc.addTransceiver(track, init);
}

/**
 * Set each encoding's `active` from the rids wanted; the first (lowest) always stays on
 * so that every subscriber has something to fall back to. Returns whether any changed.
 */
export function setActive(encodings, wanted) {
  let changed = false;
  encodings.forEach((encoding, i) => {
    const active = i === 0 || !encoding.rid || wanted.includes(encoding.rid);
    if (encoding.active !== active) {
      encoding.active = active;
      changed = true;
    }
  });
  return changed;
}

/**
 * An SFU that answers without `a=simulcast` leaves the browser sending only the first
 * encoding, which is the smallest: make that one full size at the plan's top bitrate.
 * Returns whether `encodings` changed.
 */
export function widenLoneEncoding(encodings, plan) {
  if (encodings.length !== 1) return false;
  const lone = encodings[0];
  const top = (PLANS[plan] || PLANS.participant).encodings.at(-1);
  if ((lone.scaleResolutionDownBy ?? 1) === 1 && lone.maxBitrate === top.maxBitrate) return false;
  lone.scaleResolutionDownBy = 1;
  lone.maxBitrate = top.maxBitrate;
  return true;
}

/** What a sender sends, for tests and debugging. */
export function describeEncodings(sender) {
  if (!sender) return [];
  return (sender.getParameters().encodings || []).map((e) => ({
    rid: e.rid ?? null,
    active: e.active !== false,
    scaleResolutionDownBy: e.scaleResolutionDownBy ?? 1,
    maxBitrate: e.maxBitrate ?? null,
    scalabilityMode: e.scalabilityMode ?? null,
  }));
}

/**
 * The video sender's layers, switched through setParameters one call at a time (a
 * second call while one is in flight is refused by the browser). Only the latest wanted
 * set matters: one that arrives early (before the sender is negotiated) or during a
 * call is applied when the sender is free.
 */
export class LayerSwitch {
  constructor(plan) {
    this.plan = plan;
    this.sender = null;
    this.wanted = null; // rids, or null: nothing new to apply
    this.busy = false;
    this.closed = false;
  }

  /** The sender is negotiated: fit it to the answer, then apply what is wanted. */
  attach(sender) {
    this.sender = sender;
    return this.run((encodings) => widenLoneEncoding(encodings, this.plan));
  }

  /** The SFU's `layers` event: the rids some subscriber receives. */
  want(active) {
    this.wanted = [...active];
    return this.run(null);
  }

  close() {
    this.closed = true;
  }

  async run(first) {
    if (this.busy || !this.sender || this.closed) return;
    this.busy = true;
    try {
      if (first) await this.update(first);
      while (this.wanted && !this.closed) await this.update(this.take());
    } finally {
      this.busy = false;
    }
  }

  take() {
    const wanted = this.wanted;
    this.wanted = null;
    return (encodings) => setActive(encodings, wanted);
  }

  async update(change) {
    const params = this.sender.getParameters();
    if (!params.encodings?.length || !change(params.encodings)) return;
    try {
      await this.sender.setParameters(params);
    } catch (error) {
      if (!this.closed) console.warn('could not switch video layers', error);
    }
  }
}
