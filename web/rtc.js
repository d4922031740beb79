// The two peer connections of docs/protocol.md ("Media"):
//   Publisher  - we offer send-only audio/video, the SFU answers (event `publish`).
//   Subscriber - the SFU offers one m-line per forwarded track, we answer (`subscribe_answer`).
//
// Both take a `signal(event, payload)` function that emits with an ack and resolves with
// the ack (it throws when the server refuses), so this file knows nothing about sockets.

import { LayerSwitch, addLayeredVideo, describeEncodings } from './layers.js';
import { answerStereo, offerMusic } from './opus.js';

const GATHER_TIMEOUT_MS = 2000;

/** Resolve when ICE gathering is complete, or after `ms` (whatever was gathered is in the SDP). */
export function waitForGathering(pc, ms = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/**
 * Trickles the ICE candidates that were not in the SDP we sent.
 *
 * Candidates found before the SDP is read are already in it. Those found after it was
 * sent but before its ack are held back: the server applies a candidate to a
 * description it may still be processing, so they go out once the ack says it is done.
 */
class Trickle {
  constructor(pcName, emitIce) {
    this.pcName = pcName;
    this.emitIce = emitIce;
    this.state = 'gathering'; // 'gathering' -> 'sent' -> 'ready'
    this.pending = [];
  }

  attach(pc) {
    pc.addEventListener('icecandidate', (event) => {
      if (this.state === 'gathering') return; // will be part of the SDP
      // A null candidate (or an empty one) means gathering ended: the protocol's ''.
      const c = event.candidate;
      const payload = {
        v: 1,
        pc: this.pcName,
        candidate: c ? c.candidate : '',
        sdpMid: c && c.sdpMid != null ? c.sdpMid : null,
        sdpMLineIndex: c && c.sdpMLineIndex != null ? c.sdpMLineIndex : null,
      };
      if (this.state === 'sent') this.pending.push(payload);
      else this.emitIce(payload);
    });
  }

  sent() {
    if (this.state === 'gathering') this.state = 'sent';
  }

  ready() {
    if (this.state === 'ready') return;
    this.state = 'ready';
    for (const payload of this.pending.splice(0)) this.emitIce(payload);
  }
}

/** Put VP8 first: the SFU keeps the first codec offered, and VP8 is what everyone decodes. */
function preferVp8(transceiver) {
  if (!RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
  const codecs = RTCRtpSender.getCapabilities('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  if (!vp8.length) return;
  const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== 'video/vp8');
  try {
    transceiver.setCodecPreferences([...vp8, ...rest]);
  } catch (error) {
    console.warn('could not set codec preferences', error);
  }
}

export const TELEMETRY_LABEL = 'telemetry';

/**
 * Whether this browser can make peer connections at all: some builds leave WebRTC out
 * (Debian's WebKitGTK, so Epiphany). Without it there is no video, sound or strap data
 * channel, but chat, the people list and heart rate through the bridge still work.
 */
export function hasWebRtc() {
  return typeof RTCPeerConnection === 'function';
}

/** Call `onFailed` once if ICE gives up on `pc` (a network gone for longer than consent lasts). */
function watchFailure(pc, onFailed) {
  if (!onFailed) return;
  let told = false;
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' && !told) {
      told = true;
      onFailed();
    }
  });
}

export class Publisher {
  /**
   * With `telemetry`, the connection carries the heart-rate data channel too (as
   * `this.channel`). It is created here, before the offer, so that the offer has its
   * m=application section: the SFU takes a publish offer once per join.
   * `layers` names the simulcast plan of the camera (layers.js): 'instructor' | 'participant'.
   * `stereo`: offer stereo Opus at up to 128 kbit/s (opus.js), which music mode uses: the
   * publish connection is negotiated once per join, so it is asked for up front.
   * `audioBitrate()`: the most the microphone may send (bit/s), or null for the browser's
   * choice; read once connected and again by applyAudioBitrate().
   */
  constructor({
    iceServers, stream, signal, emitIce, telemetry = false, onFailed = null, layers = 'participant',
    stereo = false, audioBitrate = () => null,
  }) {
    this.stream = stream;
    this.signal = signal;
    this.pc = new RTCPeerConnection({ iceServers });
    watchFailure(this.pc, onFailed);
    this.channel = telemetry ? this.pc.createDataChannel(TELEMETRY_LABEL) : null;
    this.trickle = new Trickle('publish', emitIce);
    this.trickle.attach(this.pc);
    this.plan = layers;
    this.layers = new LayerSwitch(layers);
    this.videoSender = null;
    this.audioSender = null;
    this.stereo = stereo;
    this.audioBitrate = audioBitrate;
    this.offerSdp = null; // the publish offer as sent, for tests and debugging
  }

  /** Offer our tracks (at most one audio and one video; none for heart rate alone) and apply the SFU's answer. */
  async start() {
    const pc = this.pc;
    for (const kind of ['audio', 'video']) {
      const track = this.stream.getTracks().find((t) => t.kind === kind);
      if (!track) continue;
      const init = { direction: 'sendonly', streams: [this.stream] };
      if (kind === 'audio') {
        this.audioSender = pc.addTransceiver(track, init).sender;
        continue;
      }
      const transceiver = addLayeredVideo(pc, track, init, this.plan);
      preferVp8(transceiver);
      this.videoSender = transceiver.sender;
    }
    const offer = await pc.createOffer();
    try {
      await pc.setLocalDescription(this.stereo ? { type: 'offer', sdp: offerMusic(offer.sdp) } : offer);
    } catch (error) {
      if (!this.stereo) throw error;
      // A browser that refuses an edited offer: the SFU's answer alone still makes it send stereo.
      await pc.setLocalDescription(offer);
    }
    await waitForGathering(pc);
    // Read and mark in one go: no candidate can slip between.
    const sdp = this.stereo ? offerMusic(pc.localDescription.sdp) : pc.localDescription.sdp;
    this.offerSdp = sdp;
    this.trickle.sent();
    const ack = await this.signal('publish', { type: 'offer', sdp });
    if (pc.signalingState === 'closed') return;
    await pc.setRemoteDescription({ type: 'answer', sdp: ack.sdp });
    this.trickle.ready();
    await this.applyAudioBitrate();
    if (this.videoSender) await this.layers.attach(this.videoSender);
  }

  /** Hold the microphone's sender to audioBitrate() (null: lift the cap). */
  async applyAudioBitrate() {
    const sender = this.audioSender;
    if (!sender || this.pc.signalingState === 'closed') return;
    const params = sender.getParameters();
    if (!params.encodings?.length) return; // not negotiated yet: start() applies it
    const bitrate = this.audioBitrate();
    for (const encoding of params.encodings) {
      if (bitrate) encoding.maxBitrate = bitrate;
      else delete encoding.maxBitrate;
    }
    try {
      await sender.setParameters(params);
    } catch (error) {
      console.warn('could not set the microphone bitrate', error);
    }
  }

  /** The video encodings being sent (rid, active, scale, bitrate), for tests and debugging. */
  encodings() {
    return describeEncodings(this.videoSender);
  }

  close() {
    this.layers.close();
    this.pc.close();
  }
}

export class Subscriber {
  /**
   * onTrack(participantId, track, mid) - a forwarded track started.
   * onTrackGone(track)                 - its m-line went inactive (the publisher left).
   */
  constructor({ iceServers, signal, emitIce, onTrack, onTrackGone, onError, onFailed = null }) {
    this.onFailed = onFailed;
    this.iceServers = iceServers;
    this.signal = signal;
    this.emitIce = emitIce;
    this.onTrack = onTrack;
    this.onTrackGone = onTrackGone;
    this.onError = onError;
    this.pc = null;
    this.trickle = new Trickle('subscribe', emitIce);
    this.owners = new Map(); // mid -> {mid, participant_id, kind}
    this.queue = Promise.resolve();
    this.closed = false;
    this.watchedStreams = new WeakSet();
  }

  /**
   * Offers are answered strictly one at a time, in order: applying the next offer while
   * the previous answer is still being made would break the signaling state machine.
   */
  handleOffer(offer) {
    this.queue = this.queue
      .then(() => this.answer(offer))
      .catch((error) => { if (!this.closed) this.onError(error); });
    return this.queue;
  }

  createPc() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    watchFailure(pc, this.onFailed);
    this.trickle.attach(pc);
    pc.addEventListener('track', (event) => this.handleTrack(event));
    return pc;
  }

  async answer(offer) {
    if (this.closed) return;
    // Record the map before applying the offer: `track` events fire inside setRemoteDescription.
    for (const t of offer.tracks || []) this.owners.set(t.mid, t);
    if (!this.pc) this.pc = this.createPc();
    const pc = this.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    // Stereo tracks (the instructor's music) are decoded in stereo only if we say so.
    const answer = await pc.createAnswer();
    const stereo = answerStereo(offer.sdp, answer.sdp);
    try {
      await pc.setLocalDescription(stereo === answer.sdp ? answer : { type: 'answer', sdp: stereo });
    } catch (error) {
      if (stereo === answer.sdp) throw error;
      await pc.setLocalDescription(answer); // a browser that refuses an edited answer plays it in mono
    }
    await waitForGathering(pc);
    if (this.closed) return;
    const sdp = pc.localDescription.sdp;
    this.trickle.sent();
    await this.signal('subscribe_answer', { type: 'answer', sdp });
    this.trickle.ready();
    this.sweepInactive();
  }

  handleTrack(event) {
    const mid = event.transceiver ? event.transceiver.mid : null;
    const owner = this.owners.get(mid);
    // The SFU also names the publisher as the stream id; use it if the map lacks the mid.
    const participantId = owner ? owner.participant_id : event.streams[0]?.id;
    if (!participantId) return;
    const track = event.track;
    const stream = event.streams[0];
    if (stream && !this.watchedStreams.has(stream)) {
      this.watchedStreams.add(stream);
      stream.addEventListener('removetrack', (e) => this.onTrackGone(e.track));
    }
    track.addEventListener('ended', () => this.onTrackGone(track));
    // `mute` also fires on a short network stall; only an inactive m-line means "gone".
    track.addEventListener('mute', () => {
      if (isInactive(event.transceiver)) this.onTrackGone(track);
    });
    this.onTrack(participantId, track, mid);
  }

  /** After each negotiation: tracks on m-lines the SFU turned inactive are gone. */
  sweepInactive() {
    if (!this.pc) return;
    for (const transceiver of this.pc.getTransceivers()) {
      if (isInactive(transceiver) && transceiver.receiver.track) {
        this.onTrackGone(transceiver.receiver.track);
      }
    }
  }

  /** mid -> participant id of the m-lines in use, for tests and debugging. */
  trackMap() {
    return Object.fromEntries([...this.owners].map(([mid, t]) => [mid, { ...t }]));
  }

  close() {
    this.closed = true;
    if (this.pc) this.pc.close();
  }
}

function isInactive(transceiver) {
  if (!transceiver) return false;
  const direction = transceiver.currentDirection;
  return direction === 'inactive' || direction === 'stopped';
}
