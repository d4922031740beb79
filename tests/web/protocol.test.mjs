// web/signal.js, web/nodes.js, web/link.js: acked requests, joining across nodes, links and tokens.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BOUND_REFUSED, JOIN_ERRORS, peekToken, summaryLink } from '../../web/link.js';
import { candidates, joinFollowing } from '../../web/nodes.js';
import { ProtocolError, requester, sendJoin } from '../../web/signal.js';
import { FakeNetwork } from './fakes.mjs';

const A = 'http://a';
const B = 'http://b';

test('a request carries v: 1 and resolves with the ack', async () => {
  const network = new FakeNetwork({ [A]: (event, payload) => ({ ok: true, echo: [event, payload] }) });
  const socket = network.io(A, { transports: ['websocket'], reconnection: false });
  const request = requester(() => socket);
  await assert.rejects(request('chat', { text: 'hi' }), (error) => error instanceof ProtocolError && error.code === 'offline');
  await new Promise((resolve) => { setImmediate(resolve); });
  const ack = await request('chat', { text: 'hi' });
  assert.deepEqual(ack.echo, ['chat', { v: 1, text: 'hi' }]);
});

test('a refused request throws the server’s error', async () => {
  const refused = { ok: false, error: { code: 'rate_limited', message: 'Slow down' } };
  const network = new FakeNetwork({ [A]: () => refused });
  const socket = network.io(A, { transports: ['websocket'], reconnection: false });
  await new Promise((resolve) => { setImmediate(resolve); });
  const request = requester(() => socket);
  await assert.rejects(request('chat', {}), { name: 'Error', code: 'rate_limited', message: 'Slow down' });
  network.handlers[A] = () => null;
  await assert.rejects(request('chat', {}), { code: 'internal' });
});

test('a join that loses its connection throws instead of waiting for the ack', async () => {
  const network = new FakeNetwork({ [A]: () => new Promise(() => {}) });
  const socket = network.io(A, { transports: ['websocket'], reconnection: false });
  await new Promise((resolve) => { setImmediate(resolve); });
  const joining = sendJoin(socket, { token: 't', name: 'n', room: 'r' });
  socket.drop();
  await assert.rejects(joining, /closed while joining/);
  assert.deepEqual(socket.listeners.get('disconnect'), [], 'the drop listener is removed');
});

test('joinFollowing follows `moved` to the holder, and gives up after a few hops', async () => {
  const moved = (url) => () => ({ ok: false, error: { code: 'moved', url } });
  const network = new FakeNetwork({ [A]: moved(B), [B]: () => ({ ok: true }) });
  const make = (url) => network.io(url, { transports: ['websocket'], reconnection: false });
  const join = (socket) => sendJoin(socket, { token: 't', name: 'n', room: 'r' });
  const { socket, url, ack } = await joinFollowing(A, make, join);
  assert.equal(url, B);
  assert.equal(socket.url, B);
  assert.deepEqual(ack, { ok: true });
  network.handlers[B] = moved(A);
  await assert.rejects(joinFollowing(A, make, join), /moved too many times/);
  assert.ok(network.sockets.every((s) => s === socket || !s.connected), 'every other socket is closed');
  await assert.rejects(joinFollowing('http://down', make, join), /is down/);
});

test('candidates: our node, then the named ones, then the page’s, each once', () => {
  assert.deepEqual(candidates(`${B}/`, [A, B, 'http://c//'], A), [B, A, 'http://c']);
  assert.deepEqual(candidates(null, null, A), [A]);
});

test('peekToken reads the payload without verifying it', () => {
  const body = Buffer.from(JSON.stringify({ role: 'host', room: 'r1' })).toString('base64url');
  assert.deepEqual(peekToken(`${body}.signature`), { role: 'host', room: 'r1' });
  assert.equal(peekToken('not a token'), null);
  assert.equal(peekToken(`${Buffer.from('"text"').toString('base64url')}.x`), null);
});

test('links and refusals', () => {
  assert.equal(summaryLink('a b', 'tok'), '/r/a%20b/summary#t=tok');
  for (const code of BOUND_REFUSED) assert.equal(typeof code, 'string');
  for (const { title, body } of Object.values(JOIN_ERRORS)) assert.ok(title && body);
});
