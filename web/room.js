// The class page, for the instructor and participants alike (the role comes from the join
// ack). Implements the client side of docs/protocol.md with the same flow as
// pulseroom/bot.py: connect, `join`, publish, answer subscribe offers one at a time.

import { Chat } from './chat.js';
import { ClassState } from './classstate.js';
import { HeartRateRoom } from './hrroom.js';
import { planFor, videoConstraints } from './layers.js';
import {
  BOUND_REFUSED, JOIN_ERRORS, JOIN_HINTS, clearBoundToken, loadBoundToken, peekToken, readLink, saveBoundToken, summaryLink,
} from './link.js';
import { LocalMedia } from './localmedia.js';
import { openMedia } from './media.js';
import { DevicePicker, preferredDevices, replaceSent } from './prejoin.js';
import { candidates, joinFollowing, sleep } from './nodes.js';
import { QualityPicker } from './quality.js';
import { Publisher, Subscriber, hasWebRtc } from './rtc.js';
import { ProtocolError, requester, sendJoin as joinOn } from './signal.js';
import { Grid, Roster } from './tiles.js';
import { setButton, setStatus, showNotice, showView, toast } from './ui.js';
import { watchVisibility } from './visibility.js';

const WEBRTC = hasWebRtc(); // without it: no media connections, the rest works
const NAME_KEY = 'pulseroom.name';

const $ = (id) => document.getElementById(id);
const els = {
  preview: $('preview'), mediaMessage: $('media-message'), joinForm: $('join-form'),
  nameInput: $('name-input'), joinButton: $('join-button'), joinError: $('join-error'),
  prejoinRole: $('prejoin-role'), title: $('class-title'), roleBadge: $('role-badge'),
  micButton: $('mic-button'), camButton: $('cam-button'), galleryButton: $('gallery-button'),
  galleryBanner: $('gallery-banner'), endButton: $('end-button'), leaveButton: $('leave-button'),
  endDialog: $('end-dialog'), endCancel: $('end-cancel'), endConfirm: $('end-confirm'),
};

// Emit a client→server event and resolve with its ack (signal.js); before the objects
// below, which are handed it.
const request = requester(() => state.socket);
const grid = new Grid($('grid'));
// Only while joined: the server refuses `visibility` before `join`.
const visibility = watchVisibility($('grid'), ({ visible, sizes }) => {
  if (state.you) request('visibility', { visible, sizes, max_height: quality.maxHeight }).catch(() => {});
});
const quality = new QualityPicker({ select: $('quality-select'), onChange: () => visibility.resend({ now: true }) });
const roster = new Roster($('roster'), $('people-count'));
const chat = new Chat({
  log: $('chat-log'), form: $('chat-form'), input: $('chat-input'), button: $('chat-send'),
  send: sendChat,
});
// Clock, interval timer, spotlight, lock, and the instructor's controls (classstate.js).
const classState = new ClassState({
  bar: $('class-bar'), panel: $('host-panel'), grid, request, toast, render: () => render(),
  people: () => state.participants, readingOf: (id) => hr?.view.latest.get(id)?.reading,
});

const state = {
  roomId: null,
  token: null, // what the next join sends: the bound token once the server gave one
  linkToken: null, // the token of the page's link
  name: '',
  phase: 'loading', // prejoin | joining | joined | reconnecting | left | ended | error
  socket: null,
  nodeUrl: location.origin, // the node our socket is on (another one holds the class: `moved`)
  nodes: [], // the cluster's nodes named by the last join ack
  you: null,
  room: null,
  iceServers: [],
  participants: new Map(), // id -> Participant, in join order
  gallery: false,
  publisher: null,
  subscriber: null,
  pendingOffers: [], // subscribe offers that arrived before the join ack
  layers: null, // this session's last `layers` event, for a publisher made later
};

let hr = null; // the HeartRateRoom, once the page knows its class

// Test and debugging hooks; getters so they always show the current objects.
window.pulseroom = {
  get publishPc() { return state.publisher ? state.publisher.pc : null; },
  get subscribePc() { return state.subscriber ? state.subscriber.pc : null; },
  get participants() { return [...state.participants.values()].map((p) => ({ ...p })); },
  get you() { return state.you ? { ...state.you } : null; },
  get room() { return state.room ? { ...state.room } : null; },
  get tracks() { return state.subscriber ? state.subscriber.trackMap() : {}; },
  get phase() { return state.phase; },
  get socket() { return state.socket; },
  get hr() { return hr ? hr.hook() : null; },
  get token() { return state.token; },
  get node() { return state.nodeUrl; },
  get rejoins() { return rejoins.slice(); },
  get controls() { return classState.hook(); },
  get local() { return local.stream.getTracks().map((t) => ({ kind: t.kind, label: t.label, enabled: t.enabled })); },
  get layers() {
    const p = state.publisher;
    return { last: state.layers, plan: p?.plan ?? null, encodings: p ? p.encodings() : [], offer: p?.offerSdp ?? null };
  },
};

const rejoins = []; // {why, url, took_ms, attempts}: for tests and debugging

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.state = phase;
}

/** A refusal arrives as an `error` event (shown as a toast); say so for the other failures. */
async function sendChat(text) {
  try {
    return await request('chat', { text });
  } catch (error) {
    if (!(error instanceof ProtocolError) || error.code === 'offline') {
      toast('Not connected: your message was not sent.');
    }
    throw error;
  }
}

/** Trickled ICE candidates: fire and forget (a refusal arrives as an `error` event). */
function emitIce(payload) {
  if (state.phase !== 'joined' || !state.socket?.connected) return;
  state.socket.timeout(5000).emit('ice', payload, () => {});
}

// -- the link -------------------------------------------------------------------------

function showJoinError(code, serverMessage) {
  const known = JOIN_ERRORS[code];
  setPhase('error');
  setStatus('Not connected', 'bad');
  showNotice({
    title: known.title,
    body: code === 'room_full' && serverMessage ? `${serverMessage}. ${known.body}` : known.body,
    kind: 'error',
    code,
    action: { text: 'Go to PulseRoom', href: '/' },
  });
}

// -- camera and microphone ------------------------------------------------------------

const local = new LocalMedia({ micButton: els.micButton, camButton: els.camButton });
const mediaState = () => local.state();

function toggle(kind) {
  local.toggle(kind);
  if (state.you) {
    Object.assign(state.you, mediaState());
    state.participants.set(state.you.id, state.you);
    render();
    request('media_state', mediaState()).catch(() => {});
  }
}

/** The instructor muted us (`muted`): everyone already sees it; the microphone goes off. */
function mutedByInstructor() {
  if (local.audioOn) toggle('audio');
  toast('The instructor muted your microphone. Unmute yourself when you want to speak.', 'info', 6000);
}

/** Another camera or microphone was chosen (prejoin.js): show it, and send it once in class. */
async function switchedDevice(kind, track) {
  local.adopt(track);
  const video = local.stream.getVideoTracks();
  els.preview.srcObject = video.length ? new MediaStream(video) : null;
  if (!state.you) return;
  grid.addTrack(state.you.id, track);
  if (!state.publisher) startPublisher(); // joined without camera and microphone
  else if (!(await replaceSent(state.publisher.pc, track))) toast('Rejoin the class to send it too.', 'info');
  Object.assign(state.you, mediaState());
  request('media_state', mediaState()).catch(() => {});
}

// -- joining --------------------------------------------------------------------------

function connectSocket(url) {
  // WebSocket only: no long-polling fallback to keep sticky sessions out of deployments.
  // Reconnecting is ours (recover()): after a drop the class may be on another node.
  const socket = io(url, { transports: ['websocket'], reconnection: false });
  socket.on('participant_joined', ({ participant }) => {
    state.participants.set(participant.id, participant);
    render();
  });
  socket.on('participant_left', ({ id }) => {
    state.participants.delete(id);
    grid.remove(id); // at once, not when the SFU's next offer turns their m-lines inactive
    render();
  });
  socket.on('participant_updated', ({ participant }) => {
    if (!state.participants.has(participant.id)) return;
    state.participants.set(participant.id, participant);
    if (state.you && participant.id === state.you.id) state.you = participant;
    render();
  });
  socket.on('chat', ({ message }) => chat.add(message));
  socket.on('subscribe_offer', (offer) => {
    if (state.subscriber) state.subscriber.handleOffer(offer);
    else state.pendingOffers.push(offer);
  });
  socket.on('gallery', ({ enabled }) => setGallery(enabled));
  socket.on('active_speaker', ({ id }) => grid.setSpeaker(id));
  socket.on('media_failed', ({ message }) => {
    // The class moved to another media server: drop the old connections, join again.
    if (socket !== state.socket || state.phase !== 'joined') return;
    toast(message || 'The media server restarted; rejoining…', 'info', 4000);
    connectionLost('media_failed');
  });
  socket.on('class_ended', () => classEnded());
  socket.on('hr', (payload) => {
    hr.onHr(payload);
    classState.readingsChanged();
  });
  socket.on('class_state', (payload) => classState.onState(payload));
  socket.on('muted', () => mutedByInstructor());
  socket.on('layers', (payload) => {
    if (!Array.isArray(payload?.active)) return;
    state.layers = payload;
    state.publisher?.layers.want(payload.active);
  });
  socket.on('telemetry_ack', (payload) => hr.onAck(payload));
  socket.on('error', (error) => {
    if (error.code === 'replaced' || error.code === 'removed') {
      if (error.code === 'replaced') replaced();
      else removed();
      return;
    }
    if (error.event === 'telemetry') {
      hr.refused(error);
      return;
    }
    // Join refusals are shown as a notice; a refused ICE candidate is nothing a person
    // can act on (the others usually suffice); everything else is shown as a toast.
    if (error.event === 'ice') console.warn('ICE candidate refused:', error.message);
    if (error.event === 'join' || error.event === 'ice' || state.phase !== 'joined') return;
    toast(error.message || `The server refused ${error.event}`);
  });
  socket.on('disconnect', (reason) => {
    if (socket === state.socket) onDisconnect(reason);
  });
  return socket;
}

const sendJoin = (socket) => joinOn(socket, { token: state.token, name: state.name, room: state.roomId });

async function join() {
  const name = els.nameInput.value.trim();
  els.joinError.hidden = true;
  if (!name) {
    els.joinError.textContent = 'Enter your name so the class knows who you are.';
    els.joinError.hidden = false;
    els.nameInput.focus();
    return;
  }
  state.name = name;
  try { localStorage.setItem(NAME_KEY, name); } catch { /* private mode */ }
  setPhase('joining');
  els.joinButton.disabled = true;
  els.joinButton.textContent = 'Joining…';
  setStatus('Joining…');
  await mediaReady;

  let ack = await tryJoin();
  if (ack && !ack.ok && state.token !== state.linkToken && BOUND_REFUSED.has(ack.error?.code)) {
    // This tab's earlier identity is no longer valid: come in afresh with the link.
    clearBoundToken(state.roomId);
    state.token = state.linkToken;
    state.socket?.disconnect();
    ack = await tryJoin();
  }
  if (ack && ack.ok) {
    enterClass(ack);
    return;
  }
  const error = (ack && ack.error) || { code: 'internal', message: 'The server did not answer.' };
  state.socket?.disconnect();
  state.socket = null;
  if (JOIN_ERRORS[error.code]) {
    stopLocalMedia();
    showJoinError(error.code, error.message);
    return;
  }
  // Something the person can fix and retry (a bad name, a network problem).
  setPhase('prejoin');
  setStatus('Not joined');
  els.joinError.textContent = JOIN_HINTS[error.code] || error.message;
  els.joinError.hidden = false;
  els.joinButton.disabled = false;
  els.joinButton.textContent = 'Join class';
}

/** Join on the node that holds the class (this page's, or where `moved` sends us). */
async function tryJoin() {
  try {
    const { socket, url, ack } = await joinFollowing(state.nodeUrl, connectSocket, sendJoin);
    state.socket = socket;
    state.nodeUrl = url;
    return ack;
  } catch {
    return { ok: false, error: { code: 'offline', message: 'Could not reach the server. Check your connection and try again.' } };
  }
}

let recovering = false;

/**
 * The connection (or the media behind it) was lost: the server dropped us too, so join
 * again with the bound token, as the same participant, so heart rate and its re-sent
 * readings carry on. The node we were on is tried first, then the other nodes: one
 * that died has its class taken over by a live node within seconds.
 */
async function recover(why) {
  if (recovering) return;
  recovering = true;
  const started = performance.now();
  let attempts = 0;
  let delay = 250;
  try {
    while (state.phase === 'reconnecting') {
      for (const url of candidates(state.nodeUrl, state.nodes)) {
        if (state.phase !== 'reconnecting') return;
        attempts += 1;
        let result;
        try {
          result = await joinFollowing(url, connectSocket, sendJoin);
        } catch {
          continue; // that node is unreachable: try the next one
        }
        const { socket, url: at, ack } = result;
        if (state.phase !== 'reconnecting') {
          socket.disconnect();
          return;
        }
        if (ack && ack.ok) {
          state.socket = socket;
          state.nodeUrl = at;
          enterClass(ack);
          rejoins.push({ why, url: at, took_ms: Math.round(performance.now() - started), attempts });
          toast('Reconnected to the class.', 'info', 3000);
          return;
        }
        socket.disconnect();
        if (ack && JOIN_ERRORS[ack.error?.code]) {
          teardown({ stopLocal: true });
          showJoinError(ack.error.code, ack.error.message);
          return;
        }
      }
      setStatus(`Connection lost. Reconnecting (attempt ${attempts})…`, 'warn');
      await sleep(delay);
      delay = Math.min(delay * 2, 1000);
    }
  } finally {
    recovering = false;
  }
}

function enterClass(ack) {
  if (ack.room.id !== state.roomId) {
    // The server checks this too (join's `room`); never show one class under another's URL.
    teardown({ stopLocal: true });
    showJoinError('wrong_room');
    return;
  }
  if (ack.token) {
    state.token = ack.token;
    saveBoundToken(state.roomId, state.linkToken, ack.token);
  }
  if (Array.isArray(ack.nodes)) state.nodes = ack.nodes;
  state.you = { ...ack.you, ...mediaState() };
  state.room = ack.room;
  state.iceServers = ack.ice_servers || [];
  state.participants = new Map(ack.participants.map((p) => [p.id, p]));
  state.participants.set(state.you.id, state.you);
  setPhase('joined');
  setStatus('Live', 'live');
  showView('classroom');
  document.title = `${ack.room.title} · PulseRoom`;
  els.title.textContent = ack.room.title;
  const isHost = state.you.role === 'host';
  els.roleBadge.hidden = !isHost;
  els.galleryButton.hidden = !isHost;
  els.endButton.hidden = !isHost;
  chat.reset(ack.chat || [], state.you.id);
  chat.setEnabled(true);

  grid.clear();
  for (const track of local.stream.getTracks()) grid.addTrack(state.you.id, track);
  classState.joined(ack, isHost);
  setGallery(ack.room.gallery);

  // The server assumes microphone and camera on; say what is really the case.
  if (!state.you.audio || !state.you.video) request('media_state', mediaState()).catch(() => {});

  hr.joined(ack);
  startSubscriber();
  startPublisher();
  visibility.resend();
}

function startSubscriber() {
  if (!WEBRTC) return; // the SFU's offers go unanswered: nothing could play them
  const subscriber = new Subscriber({
    iceServers: state.iceServers,
    signal: request,
    emitIce,
    onTrack: (participantId, track) => {
      grid.addTrack(participantId, track);
      render();
    },
    onTrackGone: (track) => {
      grid.removeTrack(track);
      render();
    },
    onError: (error) => {
      console.error('subscribe negotiation failed', error);
      toast(`Video from the class could not be set up: ${error.message}`);
    },
    onFailed: () => mediaConnectionFailed(subscriber),
  });
  state.subscriber = subscriber;
  for (const offer of state.pendingOffers.splice(0)) subscriber.handleOffer(offer);
}

/**
 * The publish connection: our camera and microphone, and the heart-rate data channel.
 * Watching without camera or microphone, it is made only once heart rate needs it.
 */
async function startPublisher() {
  if (state.publisher || state.phase !== 'joined' || !WEBRTC) return;
  if (!local.stream.getTracks().length && !hr.wantsChannel()) return; // watching only
  const publisher = new Publisher({
    iceServers: state.iceServers, stream: local.stream, signal: request, emitIce, telemetry: true,
    onFailed: () => mediaConnectionFailed(publisher), layers: planFor(state.you.role),
  });
  state.publisher = publisher;
  if (state.layers) publisher.layers.want(state.layers.active);
  hr.attachChannel(publisher.channel);
  try {
    await publisher.start();
  } catch (error) {
    if (publisher !== state.publisher) return; // a newer session replaced it
    console.error('publish failed', error);
    toast(`Your camera and microphone could not be sent to the class: ${error.message}`);
  }
}

/**
 * ICE gave up on one of our connections (the network was gone for longer than consent
 * lasts, or our address changed) while the socket may still be up: rejoin from scratch.
 */
function mediaConnectionFailed(connection) {
  if (state.phase !== 'joined') return;
  if (connection !== state.publisher && connection !== state.subscriber) return;
  connectionLost('ice_failed');
}

// -- in class -------------------------------------------------------------------------

/** Whether a participant gets a tile: mirrors who receives whom (docs/protocol.md). */
function tileVisible(p) {
  const you = state.you;
  return p.id === you.id || p.role === 'host' || you.role === 'host' || state.gallery
    || p.id === classState.spotlight || grid.hasMedia(p.id);
}

/** Bring the tiles and the roster in line with `state.participants`. */
function render() {
  if (!state.you) return;
  for (const p of state.participants.values()) {
    if (tileVisible(p)) grid.upsert(p, { self: p.id === state.you.id });
    else if (grid.has(p.id)) grid.hide(p.id);
  }
  for (const id of grid.ids()) {
    if (!state.participants.has(id)) grid.remove(id);
  }
  roster.render([...state.participants.values()], state.you.id);
  hr.paint();
}

function setGallery(enabled) {
  state.gallery = enabled;
  els.galleryBanner.hidden = !enabled;
  setButton(els.galleryButton, 'grid', enabled ? 'Gallery mode: on' : 'Gallery mode: off');
  els.galleryButton.setAttribute('aria-pressed', String(enabled));
  render();
}

async function toggleGallery() {
  els.galleryButton.disabled = true;
  try {
    await request('gallery', { enabled: !state.gallery });
  } catch {
    // shown by the `error` event
  } finally {
    els.galleryButton.disabled = false;
  }
}

function stopLocalMedia() {
  local.stop();
  els.preview.srcObject = null;
}

/** Close both peer connections and the socket; keep the camera for a rejoin unless told. */
function teardown({ stopLocal = false, keepSocket = false } = {}) {
  state.publisher?.close();
  state.subscriber?.close();
  state.publisher = null;
  state.subscriber = null;
  state.pendingOffers = [];
  state.layers = null;
  hr.offline();
  classState.stop();
  grid.clear();
  chat.setEnabled(false);
  if (!keepSocket && state.socket) {
    state.socket.disconnect();
    state.socket = null;
  }
  if (stopLocal) stopLocalMedia();
}

async function leave() {
  if (state.phase !== 'joined' && state.phase !== 'reconnecting') return;
  els.leaveButton.disabled = true;
  try {
    await request('leave', {}, 3000);
  } catch {
    // disconnecting is the same as leaving (docs/protocol.md)
  }
  setPhase('left');
  teardown({ stopLocal: true });
  hr.stop();
  setStatus('Not connected');
  showNotice({
    title: 'You left the class',
    body: 'You can rejoin with the same link while the class is running.',
    code: 'left',
    // The link is this very page: a plain link to it would only change the fragment.
    action: { text: 'Rejoin the class', href: location.href, onClick: () => location.reload() },
  });
}

function classEnded() {
  if (state.phase === 'ended') return;
  setPhase('ended');
  teardown({ stopLocal: true });
  hr.stop({ ended: true });
  setStatus('Class ended');
  // The bound token reads this participant's summary (the instructor's: everyone's).
  const bound = state.token !== state.linkToken;
  showNotice({
    title: 'The class has ended',
    body: bound
      ? 'Thanks for taking part. Your heart-rate summary is ready.'
      : 'Thanks for taking part. See you next time!',
    code: 'class_ended',
    action: bound
      ? { text: 'See your summary', href: summaryLink(state.roomId, state.token) }
      : { text: 'Back to PulseRoom', href: '/' },
    secondary: bound ? { text: 'Back to PulseRoom', href: '/' } : null,
  });
}

/** The same participant joined from another tab or device: this page steps aside. */
function replaced() {
  if (state.phase === 'replaced') return;
  setPhase('replaced');
  teardown({ stopLocal: true });
  hr.stop();
  setStatus('Not connected');
  showNotice({
    title: 'You joined from another window',
    body: 'This class is open in another tab or on another device as you. Continue there, or rejoin here (the other window then stops).',
    code: 'replaced',
    action: { text: 'Rejoin here', href: location.href, onClick: () => location.reload() },
  });
}

/** The instructor removed us: out for good (the server refuses our rejoin too). */
function removed() {
  if (state.phase !== 'joined') return;
  teardown({ stopLocal: true });
  hr.stop();
  showJoinError('removed');
}

async function endClass() {
  els.endDialog.close();
  els.endButton.disabled = true;
  try {
    await request('end_class');
    classEnded(); // the `class_ended` event may come first; both paths end the same way
  } catch {
    els.endButton.disabled = false;
  }
}

function onDisconnect(reason) {
  if (state.phase !== 'joined') return;
  if (reason === 'io client disconnect') return; // we did it (leave, end)
  connectionLost(reason);
}

/** The server treats a disconnect as leaving: our connections are gone on its side. */
function connectionLost(why) {
  setPhase('reconnecting');
  teardown();
  // Who is in the class is unknown until the rejoin ack; keep showing only ourselves.
  state.participants = new Map([[state.you.id, state.you]]);
  for (const track of local.stream.getTracks()) grid.addTrack(state.you.id, track);
  render();
  setStatus('Connection lost. Reconnecting…', 'warn');
  toast('Connection to the class lost. Reconnecting…', 'info');
  recover(why);
}

// -- start ----------------------------------------------------------------------------

let mediaReady = Promise.resolve();

function init() {
  const { token, roomId } = readLink();
  state.linkToken = token;
  state.token = (roomId && loadBoundToken(roomId, token)) || token;
  state.roomId = roomId;
  // A pasted link that differs only in its fragment would not reload the page by itself.
  window.addEventListener('hashchange', () => location.reload());

  if (!token || !roomId) {
    showJoinError('invalid_token');
    return;
  }
  const payload = peekToken(token);
  if (payload && payload.role === 'device') {
    setPhase('error');
    setStatus('Not connected');
    showNotice({
      title: 'This is a heart-rate device link',
      body: 'It is for the pulseroom hr-bridge program, which sends a strap’s heart rate to the class for you. To take part yourself, open the class link you were given.',
      code: 'device_link',
      action: { text: 'Go to PulseRoom', href: '/' },
    });
    return;
  }
  hr = new HeartRateRoom({
    roomId, grid, request, toast,
    ensureChannel: () => { startPublisher(); },
  });
  els.prejoinRole.textContent = payload && payload.role === 'host'
    ? 'You are joining as the instructor.'
    : 'Check your camera, then join the class.';

  setPhase('prejoin');
  setStatus('Not joined');
  showView('prejoin');
  try { els.nameInput.value = localStorage.getItem(NAME_KEY) || ''; } catch { /* private mode */ }

  $('webrtc-banner').hidden = WEBRTC;
  // The camera is opened before the join ack names the role: the link's token says it.
  const video = videoConstraints(planFor(payload?.role));
  const picker = new DevicePicker({
    container: $('device-home'), stream: () => local.stream, onSwitched: switchedDevice, toast, video,
  });
  picker.bindDialog({ button: $('devices-button'), dialog: $('devices-dialog'), body: $('devices-dialog-body'), close: $('devices-close') });
  mediaReady = openMedia(preferredDevices(), video).then(({ stream, message }) => {
    local.stream = stream;
    els.preview.srcObject = stream.getVideoTracks().length ? stream : null;
    els.mediaMessage.textContent = message;
    els.mediaMessage.hidden = !message;
    local.paint();
    picker.refresh();
  });

  els.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (state.phase === 'prejoin') join();
  });
  els.micButton.addEventListener('click', () => toggle('audio'));
  els.camButton.addEventListener('click', () => toggle('video'));
  els.leaveButton.addEventListener('click', leave);
  els.galleryButton.addEventListener('click', toggleGallery);
  els.endButton.addEventListener('click', () => els.endDialog.showModal());
  els.endCancel.addEventListener('click', () => els.endDialog.close());
  els.endConfirm.addEventListener('click', endClass);
  local.paint();
  setButton(els.leaveButton, 'leave', 'Leave');
}

init();
