// Test doubles for the page's DOM-free modules: socket.io sockets on a fake network of
// PulseRoom nodes, peer connections that only record, and a view that logs what it is told.

import { VIEW_HOOKS } from '../../web/session.js';

/** A socket.io client socket: connects on the next turn if its node is up. */
export class FakeSocket {
  constructor(url, network) {
    this.url = url;
    this.network = network;
    this.connected = false;
    this.listeners = new Map();
    this.sent = []; // [event, payload] from emit and emitWithAck
    setImmediate(() => {
      if (this.closed) return;
      if (network.up(url)) {
        this.connected = true;
        this.fire('connect');
      } else {
        this.fire('connect_error', new Error(`${url} is down`));
      }
    });
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(fn);
    return this;
  }

  once(event, fn) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      fn(...args);
    };
    wrapped.inner = fn;
    return this.on(event, wrapped);
  }

  off(event, fn) {
    const list = this.listeners.get(event) || [];
    this.listeners.set(event, list.filter((f) => f !== fn && f.inner !== fn));
    return this;
  }

  /** Call the page's handlers as if the server had sent `event`. */
  fire(event, ...args) {
    for (const fn of [...(this.listeners.get(event) || [])]) fn(...args);
  }

  timeout() {
    return {
      emit: (event, payload, callback) => {
        this.sent.push([event, payload]);
        callback?.(null, { ok: true });
      },
      emitWithAck: async (event, payload) => {
        this.sent.push([event, payload]);
        return this.network.answer(this, event, payload);
      },
    };
  }

  disconnect() {
    this.closed = true;
    if (!this.connected) return;
    this.connected = false;
    this.fire('disconnect', 'io client disconnect');
  }

  /** The server dropped us (or the network did). */
  drop(reason = 'transport close') {
    this.connected = false;
    this.fire('disconnect', reason);
  }
}

/**
 * Nodes by URL: `handlers[url](event, payload, socket)` returns the ack; a node without a
 * handler is down. `io` is what the session gets as socket.io's client.
 */
export class FakeNetwork {
  constructor(handlers = {}) {
    this.handlers = { ...handlers };
    this.sockets = [];
    this.io = (url, options) => {
      assertWebSocketOnly(options);
      const socket = new FakeSocket(url, this);
      this.sockets.push(socket);
      return socket;
    };
  }

  up(url) {
    return Boolean(this.handlers[url]);
  }

  async answer(socket, event, payload) {
    return this.handlers[socket.url](event, payload, socket);
  }

  /** The live socket the session uses now. */
  get current() {
    return this.sockets.filter((s) => s.connected).at(-1);
  }

  /** Everything the session emitted on every socket, as [event, payload]. */
  sent(event) {
    return this.sockets.flatMap((s) => s.sent).filter(([e]) => e === event).map(([, p]) => p);
  }
}

function assertWebSocketOnly(options) {
  if (options?.reconnection !== false || String(options?.transports) !== 'websocket') {
    throw new Error(`unexpected socket options ${JSON.stringify(options)}`);
  }
}

/** A join ack for `room` as `you`, with others already in the class. */
export function joinAck({ room = 'r1', you = { id: 'me', name: 'Me', role: 'participant' }, others = [], ...extra } = {}) {
  return {
    ok: true,
    v: 1,
    token: `bound-${you.id}`,
    you,
    room: { id: room, title: 'Morning HIIT', gallery: false },
    participants: [...others, you],
    ice_servers: [{ urls: 'stun:example.org' }],
    ...extra,
  };
}

/** A view that records every hook call as [name, ...args]. */
export function recordingView({ wantsTelemetry = false } = {}) {
  const calls = [];
  const view = { calls };
  for (const name of VIEW_HOOKS) view[name] = (...args) => { calls.push([name, ...args]); };
  view.wantsTelemetry = () => wantsTelemetry;
  view.named = (name) => calls.filter(([n]) => n === name).map(([, ...args]) => args);
  return view;
}

/** Publisher and Subscriber (rtc.js) that record instead of connecting. */
export function fakeRtc() {
  const made = { publishers: [], subscribers: [] };
  class Publisher {
    constructor(options) {
      this.options = options;
      this.wanted = [];
      this.layers = { want: (active) => this.wanted.push(active) };
      this.channel = { label: 'telemetry' };
      this.pc = { kind: 'publish' };
      this.closed = false;
      made.publishers.push(this);
    }

    async start() {}

    close() { this.closed = true; }
  }
  class Subscriber {
    constructor(options) {
      this.options = options;
      this.offers = [];
      this.closed = false;
      made.subscribers.push(this);
    }

    handleOffer(offer) { this.offers.push(offer); }

    close() { this.closed = true; }
  }
  return { rtc: { enabled: true, Publisher, Subscriber }, made };
}

/** The camera and microphone: both on unless told. */
export function fakeLocal({ audio = true, video = true } = {}) {
  const tracks = [...(audio ? [{ kind: 'audio' }] : []), ...(video ? [{ kind: 'video' }] : [])];
  return { stream: () => ({ getTracks: () => tracks }), state: () => ({ audio, video }) };
}

/** Resolve once `predicate()` holds (checked every turn), or fail after `ms`. */
export async function until(predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await new Promise((resolve) => { setTimeout(resolve, 1); });
  }
}
