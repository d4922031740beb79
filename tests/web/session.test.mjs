// web/session.js: the class session without a page: join (following `moved`, falling
// back from a stale bound token), server events, losing the connection and recovering on
// another node, and every way out (leave, end, replaced, removed).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Session } from '../../web/session.js';
import { FakeNetwork, fakeLocal, fakeRtc, joinAck, recordingView, until } from './fakes.mjs';

const A = 'http://node-a:8080';
const B = 'http://node-b:8080';

/** A session for room r1 on node A, with fakes everywhere; `handlers` answer per node. */
function makeSession({ handlers, token = 'link-token', local = fakeLocal(), wantsTelemetry = false } = {}) {
  const network = new FakeNetwork(handlers);
  const view = recordingView({ wantsTelemetry });
  const { rtc, made } = fakeRtc();
  const session = new Session({
    roomId: 'r1', linkToken: 'link-token', token, origin: A, io: network.io, rtc, local, view,
    sleep: async () => {},
  });
  return { session, network, view, made };
}

/** A node answering `join` with `ack` (a function of the payload, or a value) and acking the rest. */
function node(ack, log = []) {
  return (event, payload) => {
    log.push([event, payload]);
    if (event === 'join') return typeof ack === 'function' ? ack(payload) : ack;
    return { ok: true };
  };
}

test('a session needs every view hook', () => {
  assert.throws(() => new Session({ view: { phase() {} } }), /the view lacks status, toast/);
});

test('joining: the class, ourselves with our real media state, then both connections', async () => {
  const others = [{ id: 'coach', name: 'Coach', role: 'host' }];
  const log = [];
  const { session, network, view, made } = makeSession({
    handlers: { [A]: node(joinAck({ others }), log) }, local: fakeLocal({ video: false }),
  });
  const error = await session.join('Me', Promise.resolve());
  assert.equal(error, null);
  assert.equal(session.phase, 'joined');
  assert.deepEqual(view.named('phase').flat(), ['joining', 'joined']);
  assert.deepEqual(log[0], ['join', { v: 1, token: 'link-token', name: 'Me', room: 'r1' }]);
  assert.equal(session.token, 'bound-me');
  assert.equal(session.bound, true);
  assert.deepEqual([...session.participants.keys()], ['coach', 'me']);
  assert.deepEqual(session.you, { id: 'me', name: 'Me', role: 'participant', audio: true, video: false });
  assert.equal(session.participants.get('me'), session.you);
  // The server assumes the camera is on: it is told otherwise.
  assert.deepEqual(network.sent('media_state'), [{ v: 1, audio: true, video: false }]);
  const hooks = view.calls.map(([name]) => name);
  assert.deepEqual(hooks.slice(hooks.indexOf('entered')), ['entered', 'gallery', 'recording', 'telemetryJoined', 'attachTelemetry']);
  assert.equal(made.subscribers.length, 1);
  assert.deepEqual(made.subscribers[0].options.iceServers, [{ urls: 'stun:example.org' }]);
  assert.equal(made.publishers.length, 1);
  assert.equal(made.publishers[0].options.layers, 'participant');
  assert.equal(made.publishers[0].options.telemetry, true);
});

test('a device (strap.js) joins to send heart rate only: no subscriber, no media_state, the week\'s room', async () => {
  // A device's ack (docs/protocol.md): no participants, no token; in a weekly series the
  // room is the week's session, not the series the page's URL names.
  const ack = {
    ok: true, v: 1, you: { id: 'dev1', name: 'Strap page', role: 'device', audio: false, video: false, acts_for: 'me', for_name: 'Me' },
    room: { id: 'week-3', title: 'Morning HIIT' }, ice_servers: [],
  };
  const { session, network, view, made } = makeSession({
    handlers: { [A]: node(ack) }, local: fakeLocal({ audio: false, video: false }), wantsTelemetry: false,
  });
  assert.equal(await session.join('Strap page', Promise.resolve()), null);
  assert.equal(session.phase, 'joined');
  assert.equal(view.named('entered').length, 1);
  assert.equal(session.bound, false, 'a device ack hands back no token');
  assert.deepEqual(network.sent('media_state'), []);
  assert.equal(made.subscribers.length, 0);
  assert.equal(made.publishers.length, 0, 'no strap yet: nothing to publish');
});

test('the instructor publishes the instructor plan', async () => {
  const you = { id: 'coach', name: 'Coach', role: 'host' };
  const { session, made } = makeSession({ handlers: { [A]: node(joinAck({ you })) } });
  await session.join('Coach', Promise.resolve());
  assert.equal(made.publishers[0].options.layers, 'instructor');
});

test('watching without camera or microphone makes no publish connection until heart rate needs one', async () => {
  const { session, made } = makeSession({
    handlers: { [A]: node(joinAck()) }, local: fakeLocal({ audio: false, video: false }),
  });
  await session.join('Me', Promise.resolve());
  assert.equal(made.publishers.length, 0);
  session.view.wantsTelemetry = () => true;
  await session.startPublisher();
  assert.equal(made.publishers.length, 1);
  await session.startPublisher();
  assert.equal(made.publishers.length, 1, 'one publish connection at a time');
});

test('the join waits for the camera', async () => {
  const { session, network } = makeSession({ handlers: { [A]: node(joinAck()) } });
  let open;
  const ready = new Promise((resolve) => { open = resolve; });
  const joining = session.join('Me', ready);
  await new Promise((resolve) => { setTimeout(resolve, 20); });
  assert.equal(session.phase, 'joining');
  assert.equal(network.sockets.length, 0);
  open();
  assert.equal(await joining, null);
});

test('a join answered `moved` is made again on the node that holds the class', async () => {
  const moved = { ok: false, error: { code: 'moved', message: 'elsewhere', url: B } };
  const { session, network } = makeSession({
    handlers: { [A]: node(moved), [B]: node(joinAck({ nodes: [A, B] })) },
  });
  assert.equal(await session.join('Me', Promise.resolve()), null);
  assert.equal(session.nodeUrl, B);
  assert.deepEqual(session.nodes, [A, B]);
  assert.equal(network.sockets[0].connected, false, 'the socket to the first node is closed');
  assert.equal(session.socket, network.sockets[1]);
});

test('a bound token that stopped working: the join is made again with the link', async () => {
  const tokens = [];
  const { session } = makeSession({
    token: 'stale-bound',
    handlers: {
      [A]: node(({ token }) => {
        tokens.push(token);
        return token === 'stale-bound' ? { ok: false, error: { code: 'invalid_token', message: 'bad' } } : joinAck();
      }),
    },
  });
  assert.equal(await session.join('Me', Promise.resolve()), null);
  assert.deepEqual(tokens, ['stale-bound', 'link-token']);
});

test('a refusal goes back to the page, with no socket left open', async () => {
  const locked = { ok: false, error: { code: 'room_locked', message: 'locked' } };
  const { session, network } = makeSession({ handlers: { [A]: node(locked) } });
  assert.deepEqual(await session.join('Me', Promise.resolve()), locked.error);
  assert.equal(session.socket, null);
  assert.equal(network.sockets[0].connected, false);
});

test('an unreachable server is an `offline` refusal', async () => {
  const { session } = makeSession({ handlers: {} });
  const error = await session.join('Me', Promise.resolve());
  assert.equal(error.code, 'offline');
});

test('an ack for another class is never shown under this one', async () => {
  const { session, view } = makeSession({ handlers: { [A]: node(joinAck({ room: 'other' })) } });
  await session.join('Me', Promise.resolve());
  assert.equal(session.phase, 'error');
  assert.deepEqual(view.named('refused'), [['wrong_room', undefined]]);
  assert.deepEqual(view.named('offline'), [[{ stopLocal: true }]]);
  assert.equal(session.socket, null);
});

/** A joined session on node A (and the socket it is on). */
async function joined(options = {}) {
  const made = makeSession({ handlers: { [A]: node(joinAck()) }, ...options });
  assert.equal(await made.session.join('Me', Promise.resolve()), null);
  return { ...made, socket: made.session.socket };
}

test('offers before the join ack wait for the subscribe connection, later ones go to it', async () => {
  const { session, network, made } = makeSession({
    handlers: {
      [A]: (event, payload, socket) => {
        if (event === 'join') socket.fire('subscribe_offer', { sdp: 'early' });
        return event === 'join' ? joinAck() : { ok: true };
      },
    },
  });
  await session.join('Me', Promise.resolve());
  network.current.fire('subscribe_offer', { sdp: 'later' });
  assert.deepEqual(made.subscribers[0].offers.map((o) => o.sdp), ['early', 'later']);
});

test('people joining, changing and leaving', async () => {
  const { session, socket, view } = await joined();
  socket.fire('participant_joined', { participant: { id: 'p2', name: 'Two', role: 'participant' } });
  assert.ok(session.participants.has('p2'));
  socket.fire('participant_updated', { participant: { id: 'p2', name: 'Two', role: 'participant', audio: false } });
  assert.equal(session.participants.get('p2').audio, false);
  socket.fire('participant_updated', { participant: { id: 'ghost', name: 'Gone' } });
  assert.ok(!session.participants.has('ghost'), 'an update for someone not here is ignored');
  socket.fire('participant_updated', { participant: { id: 'me', name: 'Me', role: 'participant', audio: false } });
  assert.equal(session.you.audio, false);
  socket.fire('participant_left', { id: 'p2' });
  assert.ok(!session.participants.has('p2'));
  assert.deepEqual(view.named('participantGone'), [['p2']]);
  assert.equal(view.named('render').length, 4);
});

test('the page’s own events pass through to the view', async () => {
  const { socket, view } = await joined();
  socket.fire('chat', { message: { text: 'hi' } });
  socket.fire('active_speaker', { id: 'p2' });
  socket.fire('hr', { readings: [] });
  socket.fire('class_state', { state: null });
  socket.fire('muted', {});
  socket.fire('telemetry_ack', { acks: [1] });
  socket.fire('gallery', { enabled: true });
  assert.deepEqual(view.named('chat'), [[{ text: 'hi' }]]);
  assert.deepEqual(view.named('speaker'), [['p2']]);
  assert.deepEqual(view.named('heartRate'), [[{ readings: [] }]]);
  assert.deepEqual(view.named('classState'), [[{ state: null }]]);
  assert.equal(view.named('muted').length, 1);
  assert.deepEqual(view.named('telemetryAck'), [[{ acks: [1] }]]);
  assert.deepEqual(view.named('gallery').at(-1), [true]);
});

test('recording: off from the join ack, then as the server says', async () => {
  const { session, socket, view } = await joined();
  assert.deepEqual(view.named('recording'), [[false]]);
  socket.fire('recording', { v: 1, on: true });
  assert.equal(session.recording, true);
  socket.fire('recording', { v: 1, on: false });
  assert.deepEqual(view.named('recording'), [[false], [true], [false]]);
});

test('`layers` goes to the publisher, and to a publisher made later', async () => {
  const { session, socket, made } = await joined();
  socket.fire('layers', { active: ['q', 'h'] });
  socket.fire('layers', { active: 'nonsense' });
  assert.deepEqual(made.publishers[0].wanted, [['q', 'h']]);
  assert.deepEqual(session.layers, { active: ['q', 'h'] });
});

test('server errors: a toast in class, nothing for join and ICE, telemetry to heart rate', async () => {
  const { socket, view } = await joined();
  socket.fire('error', { event: 'chat', code: 'rate_limited', message: 'Slow down' });
  socket.fire('error', { event: 'gallery', code: 'forbidden' });
  socket.fire('error', { event: 'join', code: 'bad', message: 'no' });
  socket.fire('error', { event: 'telemetry', code: 'bad_reading', message: 'clock' });
  assert.deepEqual(view.named('toast'), [['Slow down'], ['The server refused gallery']]);
  assert.deepEqual(view.named('telemetryRefused'), [[{ event: 'telemetry', code: 'bad_reading', message: 'clock' }]]);
});

test('our media state: the class is told', async () => {
  const { session, network } = await joined();
  session.sendOwnMedia({ audio: false, video: true });
  assert.equal(session.you.audio, false);
  assert.deepEqual(network.sent('media_state').at(-1), { v: 1, audio: false, video: true });
});

test('ICE candidates go out only while joined', async () => {
  const { session, network } = await joined();
  session.emitIce({ pc: 'publish', candidate: 'c1' });
  session.phase = 'reconnecting';
  session.emitIce({ pc: 'publish', candidate: 'c2' });
  assert.deepEqual(network.sent('ice'), [{ pc: 'publish', candidate: 'c1' }]);
});

test('a lost connection: the same participant again, on another node when ours is gone', async () => {
  const { session, network, view, made, socket } = await joined();
  session.nodes = [A, B];
  network.handlers[B] = node(({ token }) => joinAck({ token: token === 'bound-me' ? 'bound-me-2' : 'wrong' }));
  delete network.handlers[A]; // node A died
  socket.drop();
  assert.equal(session.phase, 'reconnecting');
  assert.ok(made.publishers[0].closed && made.subscribers[0].closed);
  assert.deepEqual([...session.participants.keys()], ['me'], 'only ourselves until the rejoin ack');
  assert.equal(view.named('reconnecting').length, 1);
  await until(() => session.phase === 'joined');
  assert.equal(session.nodeUrl, B);
  assert.equal(session.token, 'bound-me-2');
  assert.equal(session.rejoins.length, 1);
  assert.equal(session.rejoins[0].why, 'transport close');
  assert.equal(session.rejoins[0].url, B);
  assert.equal(session.rejoins[0].attempts, 2);
  assert.deepEqual(view.named('toast').at(-1), ['Reconnected to the class.', 'info', 3000]);
  assert.equal(made.publishers.length, 2);
  assert.equal(made.subscribers.length, 2);
});

test('recovery keeps trying while every node is down, and says so', async () => {
  const { session, network, view, socket } = await joined();
  const handler = network.handlers[A];
  delete network.handlers[A];
  socket.drop();
  await until(() => view.named('status').some(([text]) => /attempt 3/.test(text)));
  network.handlers[A] = handler;
  await until(() => session.phase === 'joined');
  assert.equal(session.rejoins[0].attempts >= 3, true);
});

test('recovery ends when the class refuses us for good', async () => {
  const { session, network, view, socket } = await joined();
  network.handlers[A] = node({ ok: false, error: { code: 'room_ended', message: 'ended' } });
  socket.drop();
  await until(() => session.phase === 'error');
  assert.deepEqual(view.named('refused'), [['room_ended', 'ended']]);
  assert.deepEqual(view.named('offline').at(-1), [{ stopLocal: true }]);
});

test('media_failed and an ICE failure rejoin too; a connection already replaced does not', async () => {
  const { session, made, socket } = await joined();
  socket.fire('media_failed', { message: 'moved' });
  assert.equal(session.phase, 'reconnecting');
  await until(() => session.phase === 'joined');
  made.publishers[0].options.onFailed(); // the old one: ignored
  assert.equal(session.phase, 'joined');
  made.subscribers[1].options.onFailed();
  assert.equal(session.phase, 'reconnecting');
  await until(() => session.phase === 'joined');
  assert.deepEqual(session.rejoins.map((r) => r.why), ['media_failed', 'ice_failed']);
});

test('leaving: `leave` is sent, then everything closes and stays closed', async () => {
  const { session, network, view, made, socket } = await joined();
  await session.leave();
  assert.equal(session.phase, 'left');
  assert.deepEqual(network.sent('leave'), [{ v: 1 }]);
  assert.equal(socket.connected, false);
  assert.equal(session.socket, null);
  assert.ok(made.publishers[0].closed && made.subscribers[0].closed);
  assert.deepEqual(view.named('closed'), [['left']]);
  assert.equal(session.rejoins.length, 0, 'our own disconnect is no lost connection');
  await session.leave();
  assert.equal(view.named('closed').length, 1);
});

test('the class ends once, whether by the event or by our own end_class', async () => {
  const { session, view, socket } = await joined();
  assert.equal(await session.endClass(), true);
  socket.fire('class_ended', {});
  assert.equal(session.phase, 'ended');
  assert.deepEqual(view.named('closed'), [['ended', { bound: true }]]);
});

test('end_class refused: still in class', async () => {
  const { session, network } = await joined();
  network.handlers[A] = () => ({ ok: false, error: { code: 'forbidden', message: 'no' } });
  assert.equal(await session.endClass(), false);
  assert.equal(session.phase, 'joined');
});

test('replaced by another window, or removed by the instructor', async () => {
  const first = await joined();
  first.socket.fire('error', { code: 'replaced', message: 'elsewhere' });
  assert.equal(first.session.phase, 'replaced');
  assert.deepEqual(first.view.named('closed'), [['replaced']]);
  const second = await joined();
  second.socket.fire('error', { code: 'removed', message: 'out' });
  assert.equal(second.session.phase, 'error');
  assert.deepEqual(second.view.named('closed'), [['removed']]);
  assert.deepEqual(second.view.named('refused'), [['removed', undefined]]);
});

test('two sessions share nothing', async () => {
  const one = await joined();
  const two = makeSession({ handlers: { [A]: node(joinAck({ you: { id: 'p9', name: 'Nine', role: 'participant' } })) } });
  await two.session.join('Nine', Promise.resolve());
  assert.deepEqual([...one.session.participants.keys()], ['me']);
  assert.deepEqual([...two.session.participants.keys()], ['p9']);
  assert.notEqual(one.session.request, two.session.request);
});

test('in a scheduled class’s lobby nothing is published until the class starts', async () => {
  const lobby = { started: false, starts_at: 1_900_000_000 };
  const { session, made } = makeSession({ handlers: { [A]: node(joinAck({ controls: lobby })) } });
  assert.equal(await session.join('Me', Promise.resolve()), null);
  assert.equal(session.phase, 'joined');
  assert.equal(session.started, false);
  assert.equal(made.subscribers.length, 1, 'the subscribe connection waits for offers anyway');
  await session.startPublisher(); // heart rate asking for a channel does not start it either
  assert.equal(made.publishers.length, 0);
  session.socket.fire('class_state', { state: { ...lobby, locked: true } });
  assert.equal(made.publishers.length, 0, 'a change in the lobby is no start');
  session.socket.fire('class_state', { state: { ...lobby, started: true } });
  assert.equal(session.started, true);
  assert.equal(made.publishers.length, 1);
  session.socket.fire('class_state', { state: { ...lobby, started: true } });
  assert.equal(made.publishers.length, 1, 'started once');
});
