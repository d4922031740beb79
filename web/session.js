// The class session: the client side of docs/protocol.md with the same flow as
// pulseroom/bot.py (connect, `join`, publish, answer subscribe offers one at a time),
// recovery after a lost connection, and teardown. No DOM here: the page (room.js) hands
// in what it shows and what it sends (`view`, `local`), so Node's tests drive a session
// with fake sockets and peer connections.
//
// Phases: loading -> prejoin -> joining -> joined <-> reconnecting, and then one of
// left | ended | replaced | error.

import { planFor } from './layers.js';
import { BOUND_REFUSED, JOIN_ERRORS, clearBoundToken, saveBoundToken } from './link.js';
import { candidates, joinFollowing, sleep as defaultSleep } from './nodes.js';
import { requester, sendJoin as joinOn } from './signal.js';

const ICE_ACK_TIMEOUT_MS = 5000;
const LEAVE_ACK_TIMEOUT_MS = 3000;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 1000;

/** What the session asks of the page; every member is a function (room.js has the real ones). */
export const VIEW_HOOKS = Object.freeze([
  'phase', // (phase): the session's phase changed
  'status', // (text, kind): the connection status line
  'toast', // (message, kind, ms): a short notice
  'refused', // (code, serverMessage): a join refusal nobody can retry (link.js JOIN_ERRORS)
  'entered', // (ack): joined (first join or rejoin): show the class
  'telemetryJoined', // (ack): heart rate's part of a join
  'render', // (): participants, `you` or the gallery changed
  'participantGone', // (id): drop their tile at once
  'gallery', // (enabled): gallery mode changed
  'recording', // (on): the class is being recorded, or no longer
  'trackAdded', // (participantId, track)
  'trackGone', // (track)
  'offline', // ({stopLocal}): the connections are gone; stop the camera too if told
  'reconnecting', // (): the connection was lost, recovery starts
  'closed', // (reason, detail): 'left' | 'ended' ({bound}) | 'replaced' | 'removed'
  'chat', // (message)
  'speaker', // (id)
  'classState', // (payload)
  'muted', // ()
  'heartRate', // (payload): the `hr` event
  'effortSettings', // (payload): the `effort_settings` event
  'leaderboard', // (payload): the `leaderboard` event
  'maxHrRaised', // (payload): the `max_hr_raised` event
  'shoutOut', // (payload): the `shout_out` event
  'milestone', // (payload): the `milestone` event (instructor only)
  'telemetryAck', // (payload)
  'telemetryRefused', // (error)
  'wantsTelemetry', // (): whether heart rate needs a publish connection
  'attachTelemetry', // (channel): the publish connection's heart-rate channel
]);

export class Session {
  /**
   * roomId, linkToken: from the page's link; token: what the first join sends (a bound
   * token kept from an earlier visit, or the link's). origin: this page's node.
   * io(url, options): socket.io's client. rtc: {enabled, Publisher, Subscriber} (rtc.js).
   * local: {stream(), state(), audioBitrate?()}: the camera and microphone, whether each is on,
   *   and the most the microphone may send (bit/s, or null: music.js).
   * view: the page's side (VIEW_HOOKS). sleep(ms): between recovery rounds.
   */
  constructor({ roomId, linkToken, token, origin, io, rtc, local, view, sleep = defaultSleep }) {
    const missing = VIEW_HOOKS.filter((name) => typeof view[name] !== 'function');
    if (missing.length) throw new TypeError(`the view lacks ${missing.join(', ')}`);
    this.roomId = roomId;
    this.linkToken = linkToken;
    this.token = token; // what the next join sends: the bound token once the server gave one
    this.summaryToken = null; // reads the summary only (the join ack's)
    this.name = '';
    this.phase = 'loading';
    this.socket = null;
    this.nodeUrl = origin; // the node our socket is on (another one holds the class: `moved`)
    this.origin = origin;
    this.nodes = []; // the cluster's nodes named by the last join ack
    this.you = null;
    this.room = null;
    this.iceServers = [];
    this.participants = new Map(); // id -> Participant, in join order
    this.gallery = false;
    this.recording = false;
    this.publisher = null;
    this.started = true; // false in a scheduled class's lobby: nothing is sent until it starts
    this.subscriber = null;
    this.pendingOffers = []; // subscribe offers that arrived before the join ack
    this.layers = null; // this session's last `layers` event, for a publisher made later
    this.rejoins = []; // {why, url, took_ms, attempts}: for tests and debugging
    this.recovering = false;
    this.io = io;
    this.rtc = rtc;
    this.local = local;
    this.view = view;
    this.sleep = sleep;
    /** Emit a client→server event and resolve with its ack (signal.js). */
    this.request = requester(() => this.socket);
  }

  /** Whether the page is in the class (or getting back into it). */
  get inClass() {
    return this.phase === 'joined' || this.phase === 'reconnecting';
  }

  /** Whether the token is one the server bound to us (it reads our summary). */
  get bound() {
    return this.token !== this.linkToken;
  }

  setPhase(phase) {
    this.phase = phase;
    this.view.phase(phase);
  }

  /** A refusal nobody can retry: the page says why; the session is over. */
  refuse(code, serverMessage) {
    this.setPhase('error');
    this.view.refused(code, serverMessage);
  }

  /** Trickled ICE candidates: fire and forget (a refusal arrives as an `error` event). */
  emitIce(payload) {
    if (this.phase !== 'joined' || !this.socket?.connected) return;
    this.socket.timeout(ICE_ACK_TIMEOUT_MS).emit('ice', payload, () => {});
  }

  // -- the socket ---------------------------------------------------------------------

  connectSocket(url) {
    // WebSocket only: no long-polling fallback to keep sticky sessions out of deployments.
    // Reconnecting is ours (recover()): after a drop the class may be on another node.
    const socket = this.io(url, { transports: ['websocket'], reconnection: false });
    for (const [event, handler] of Object.entries(this.handlers(socket))) socket.on(event, handler);
    return socket;
  }

  /** Server→client events (docs/protocol.md), for one socket. */
  handlers(socket) {
    const view = this.view;
    return {
      participant_joined: ({ participant }) => {
        this.participants.set(participant.id, participant);
        view.render();
      },
      participant_left: ({ id }) => {
        this.participants.delete(id);
        view.participantGone(id); // at once, not when the SFU's next offer turns their m-lines inactive
        view.render();
      },
      participant_updated: ({ participant }) => {
        if (!this.participants.has(participant.id)) return;
        this.participants.set(participant.id, participant);
        if (this.you && participant.id === this.you.id) this.you = participant;
        view.render();
      },
      subscribe_offer: (offer) => {
        if (this.subscriber) this.subscriber.handleOffer(offer);
        else this.pendingOffers.push(offer);
      },
      gallery: ({ enabled }) => this.setGallery(enabled),
      recording: ({ on }) => this.setRecording(Boolean(on)),
      media_failed: ({ message }) => {
        // The class moved to another media server: drop the old connections, join again.
        if (socket !== this.socket || this.phase !== 'joined') return;
        view.toast(message || 'The media server restarted; rejoining…', 'info', 4000);
        this.connectionLost('media_failed');
      },
      class_ended: () => this.classEnded(),
      layers: (payload) => {
        if (!Array.isArray(payload?.active)) return;
        this.layers = payload;
        this.publisher?.layers.want(payload.active);
      },
      error: (error) => this.onError(error),
      disconnect: (reason) => {
        if (socket === this.socket) this.onDisconnect(reason);
      },
      // The page's own business.
      chat: ({ message }) => view.chat(message),
      active_speaker: ({ id }) => view.speaker(id),
      hr: (payload) => view.heartRate(payload),
      effort_settings: (payload) => view.effortSettings(payload),
      leaderboard: (payload) => view.leaderboard(payload),
      max_hr_raised: (payload) => view.maxHrRaised(payload),
      shout_out: (payload) => view.shoutOut(payload),
      milestone: (payload) => view.milestone(payload),
      class_state: (payload) => {
        view.classState(payload);
        this.classStarted(payload.state);
      },
      muted: () => view.muted(),
      telemetry_ack: (payload) => view.telemetryAck(payload),
    };
  }

  onError(error) {
    if (error.code === 'replaced' || error.code === 'removed') {
      if (error.code === 'replaced') this.replaced();
      else this.removed();
      return;
    }
    if (error.event === 'telemetry') {
      this.view.telemetryRefused(error);
      return;
    }
    // Join refusals are shown as a notice; a refused ICE candidate is nothing a person
    // can act on (the others usually suffice); everything else is shown as a toast.
    if (error.event === 'ice') console.warn('ICE candidate refused:', error.message);
    if (error.event === 'join' || error.event === 'ice' || this.phase !== 'joined') return;
    this.view.toast(error.message || `The server refused ${error.event}`);
  }

  onDisconnect(reason) {
    if (this.phase !== 'joined') return;
    if (reason === 'io client disconnect') return; // we did it (leave, end)
    this.connectionLost(reason);
  }

  setGallery(enabled) {
    this.gallery = enabled;
    this.view.gallery(enabled);
  }

  setRecording(on) {
    this.recording = on;
    this.view.recording(on);
  }

  // -- joining ------------------------------------------------------------------------

  /** joinFollowing's arguments: sockets with this session's handlers, our join. */
  joinAt(url) {
    return joinFollowing(
      url,
      (at) => this.connectSocket(at),
      (socket) => joinOn(socket, { token: this.token, name: this.name, room: this.roomId }),
    );
  }

  /**
   * Join as `name` once `ready` (the camera) resolves. Resolves null when in the class,
   * else the refusal ({code, message}); the page shows it (room.js).
   */
  async join(name, ready) {
    this.name = name;
    this.setPhase('joining');
    await ready;
    let ack = await this.tryJoin();
    if (ack && !ack.ok && this.bound && BOUND_REFUSED.has(ack.error?.code)) {
      // This tab's earlier identity is no longer valid: come in afresh with the link.
      clearBoundToken(this.roomId);
      this.token = this.linkToken;
      this.socket?.disconnect();
      ack = await this.tryJoin();
    }
    if (ack && ack.ok) {
      this.enterClass(ack);
      return null;
    }
    this.socket?.disconnect();
    this.socket = null;
    return (ack && ack.error) || { code: 'internal', message: 'The server did not answer.' };
  }

  /** Join on the node that holds the class (this page's, or where `moved` sends us). */
  async tryJoin() {
    try {
      const { socket, url, ack } = await this.joinAt(this.nodeUrl);
      this.socket = socket;
      this.nodeUrl = url;
      return ack;
    } catch {
      return { ok: false, error: { code: 'offline', message: 'Could not reach the server. Check your connection and try again.' } };
    }
  }

  /**
   * The connection (or the media behind it) was lost: the server dropped us too, so join
   * again with the bound token, as the same participant, so heart rate and its re-sent
   * readings carry on. The node we were on is tried first, then the other nodes: one
   * that died has its class taken over by a live node within seconds.
   */
  async recover(why) {
    if (this.recovering) return;
    this.recovering = true;
    const started = performance.now();
    const round = { attempts: 0 };
    let delay = RETRY_FIRST_MS;
    try {
      while (this.phase === 'reconnecting') {
        if (await this.recoverRound(why, started, round)) return;
        this.view.status(`Connection lost. Reconnecting (attempt ${round.attempts})…`, 'warn');
        await this.sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    } finally {
      this.recovering = false;
    }
  }

  /** One try at every node we know; true when recovery is over (rejoined or refused). */
  async recoverRound(why, started, round) {
    for (const url of candidates(this.nodeUrl, this.nodes, this.origin)) {
      if (this.phase !== 'reconnecting') return true;
      round.attempts += 1;
      let result;
      try {
        result = await this.joinAt(url);
      } catch {
        continue; // that node is unreachable: try the next one
      }
      const { socket, url: at, ack } = result;
      if (this.phase !== 'reconnecting') {
        socket.disconnect();
        return true;
      }
      if (ack && ack.ok) {
        this.socket = socket;
        this.nodeUrl = at;
        this.enterClass(ack);
        this.rejoins.push({ why, url: at, took_ms: Math.round(performance.now() - started), attempts: round.attempts });
        this.view.toast('Reconnected to the class.', 'info', 3000);
        return true;
      }
      socket.disconnect();
      if (ack && JOIN_ERRORS[ack.error?.code]) {
        this.teardown({ stopLocal: true });
        this.refuse(ack.error.code, ack.error.message);
        return true;
      }
    }
    return false;
  }

  enterClass(ack) {
    // A device (strap.js) sends to the week's session of a weekly series: its ack names that.
    const device = ack.you.role === 'device';
    if (!device && ack.room.id !== this.roomId) {
      // The server checks this too (join's `room`); never show one class under another's URL.
      this.teardown({ stopLocal: true });
      this.refuse('wrong_room');
      return;
    }
    if (ack.token) {
      this.token = ack.token;
      saveBoundToken(this.roomId, this.linkToken, ack.token);
    }
    // Reads this participant's summary (the instructor's: everyone's) and nothing else:
    // the summary URL may be shared or bookmarked, unlike the rejoin token.
    if (ack.summary_token) this.summaryToken = ack.summary_token;
    if (Array.isArray(ack.nodes)) this.nodes = ack.nodes;
    this.you = { ...ack.you, ...this.local.state() };
    this.room = ack.room;
    this.iceServers = ack.ice_servers || [];
    this.participants = new Map((ack.participants || []).map((p) => [p.id, p])); // none for a device
    this.participants.set(this.you.id, this.you);
    this.setPhase('joined');
    this.started = !ack.controls || ack.controls.started !== false;
    this.view.entered(ack);
    this.setGallery(ack.room.gallery);
    this.setRecording(Boolean(ack.recording));
    // The server assumes microphone and camera on and no music; say what is really the case.
    const media = this.local.state();
    // A board (the studio TV) and a device send nothing: they have no media to tell of.
    if (this.you.role !== 'board' && !device && (!this.you.audio || !this.you.video || media.music)) this.request('media_state', media).catch(() => {});
    this.view.telemetryJoined(ack);
    if (!device) this.startSubscriber(); // a device receives no media
    this.startPublisher();
  }

  /** The instructor started the class (`class_state`): out of the lobby, send our media. */
  classStarted(state) {
    if (!state || state.started === false || this.started) return;
    this.started = true;
    this.startPublisher();
  }

  // -- media connections --------------------------------------------------------------

  startSubscriber() {
    if (!this.rtc.enabled) return; // the SFU's offers go unanswered: nothing could play them
    const subscriber = new this.rtc.Subscriber({
      iceServers: this.iceServers,
      signal: this.request,
      emitIce: (payload) => this.emitIce(payload),
      onTrack: (participantId, track) => this.view.trackAdded(participantId, track),
      onTrackGone: (track) => this.view.trackGone(track),
      onError: (error) => {
        console.error('subscribe negotiation failed', error);
        this.view.toast(`Video from the class could not be set up: ${error.message}`);
      },
      onFailed: () => this.mediaConnectionFailed(subscriber),
    });
    this.subscriber = subscriber;
    for (const offer of this.pendingOffers.splice(0)) subscriber.handleOffer(offer);
  }

  /**
   * The publish connection: our camera and microphone, and the heart-rate data channel.
   * Watching without camera or microphone, it is made only once heart rate needs it.
   */
  async startPublisher() {
    if (this.publisher || this.phase !== 'joined' || !this.rtc.enabled || !this.started) return;
    const stream = this.local.stream();
    if (!stream.getTracks().length && !this.view.wantsTelemetry()) return; // watching only
    const publisher = new this.rtc.Publisher({
      iceServers: this.iceServers, stream, signal: this.request, emitIce: (payload) => this.emitIce(payload),
      telemetry: true, onFailed: () => this.mediaConnectionFailed(publisher), layers: planFor(this.you.role),
      // The instructor may switch to music at any time (music.js): stereo is negotiated now.
      stereo: this.you.role === 'host', audioBitrate: () => this.local.audioBitrate?.() ?? null,
    });
    this.publisher = publisher;
    if (this.layers) publisher.layers.want(this.layers.active);
    this.view.attachTelemetry(publisher.channel);
    try {
      await publisher.start();
    } catch (error) {
      if (publisher !== this.publisher) return; // a newer session replaced it
      console.error('publish failed', error);
      this.view.toast(`Your camera and microphone could not be sent to the class: ${error.message}`);
    }
  }

  /**
   * ICE gave up on one of our connections (the network was gone for longer than consent
   * lasts, or our address changed) while the socket may still be up: rejoin from scratch.
   */
  mediaConnectionFailed(connection) {
    if (this.phase !== 'joined') return;
    if (connection !== this.publisher && connection !== this.subscriber) return;
    this.connectionLost('ice_failed');
  }

  /** Our microphone or camera went on or off (or another one was chosen): tell the class. */
  sendOwnMedia(state) {
    Object.assign(this.you, state);
    this.participants.set(this.you.id, this.you);
    this.request('media_state', state).catch(() => {});
  }

  // -- leaving ------------------------------------------------------------------------

  /** Close both peer connections and the socket; keep the camera for a rejoin unless told. */
  teardown({ stopLocal = false } = {}) {
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = null;
    this.started = true; // false in a scheduled class's lobby: nothing is sent until it starts
    this.subscriber = null;
    this.pendingOffers = [];
    this.layers = null;
    this.view.offline({ stopLocal });
    if (this.socket) {
      this.socket.disconnect();
      this.socket = null;
    }
  }

  /** Leave the class (the page's Leave button). */
  async leave() {
    if (!this.inClass) return;
    try {
      await this.request('leave', {}, LEAVE_ACK_TIMEOUT_MS);
    } catch {
      // disconnecting is the same as leaving (docs/protocol.md)
    }
    this.setPhase('left');
    this.teardown({ stopLocal: true });
    this.view.closed('left');
  }

  /** The instructor ends the class; resolves whether the server agreed. */
  async endClass() {
    try {
      await this.request('end_class');
    } catch {
      return false;
    }
    this.classEnded(); // the `class_ended` event may come first; both paths end the same way
    return true;
  }

  classEnded() {
    if (this.phase === 'ended') return;
    this.setPhase('ended');
    this.teardown({ stopLocal: true });
    // The bound token reads this participant's summary (the instructor's: everyone's).
    this.view.closed('ended', { bound: this.bound });
  }

  /** The same participant joined from another tab or device: this page steps aside. */
  replaced() {
    if (this.phase === 'replaced') return;
    this.setPhase('replaced');
    this.teardown({ stopLocal: true });
    this.view.closed('replaced');
  }

  /** The instructor removed us: out for good (the server refuses our rejoin too). */
  removed() {
    if (this.phase !== 'joined') return;
    this.teardown({ stopLocal: true });
    this.view.closed('removed');
    this.refuse('removed');
  }

  /** The server treats a disconnect as leaving: our connections are gone on its side. */
  connectionLost(why) {
    this.setPhase('reconnecting');
    this.teardown();
    // Who is in the class is unknown until the rejoin ack; keep showing only ourselves.
    this.participants = new Map([[this.you.id, this.you]]);
    this.view.reconnecting();
    this.recover(why);
  }
}
