// The class page, for the instructor and participants alike (the role comes from the join
// ack): the view. The protocol and its state (connect, join, recover, teardown) are the
// Session's (session.js); this module shows what the session tells it and hands the
// session what the person does.

import { Chat } from './chat.js';
import { ClassState } from './classstate.js';
import { HeartRateRoom } from './hrroom.js';
import { planFor, videoConstraints } from './layers.js';
import { JOIN_ERRORS, JOIN_HINTS, loadBoundToken, peekToken, readLink, summaryLink } from './link.js';
import { LocalMedia } from './localmedia.js';
import { openMedia } from './media.js';
import { DevicePicker, preferredDevices, replaceSent } from './prejoin.js';
import { QualityPicker } from './quality.js';
import { Publisher, Subscriber, hasWebRtc } from './rtc.js';
import { Session } from './session.js';
import { ProtocolError } from './signal.js';
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

// What the session asks of the page (session.js, VIEW_HOOKS).
const view = {
  phase: (phase) => { document.body.dataset.state = phase; },
  status: setStatus,
  toast,
  refused: showJoinError,
  entered: enteredClass,
  telemetryJoined: (ack) => hr.joined(ack),
  render: () => render(),
  participantGone: (id) => grid.remove(id),
  gallery: paintGallery,
  trackAdded: (participantId, track) => {
    grid.addTrack(participantId, track);
    render();
  },
  trackGone: (track) => {
    grid.removeTrack(track);
    render();
  },
  offline: ({ stopLocal }) => {
    hr.offline();
    classState.stop();
    grid.clear();
    chat.setEnabled(false);
    if (stopLocal) stopLocalMedia();
  },
  reconnecting,
  closed: (reason, detail) => CLOSED[reason](detail),
  chat: (message) => chat.add(message),
  speaker: (id) => grid.setSpeaker(id),
  classState: (payload) => classState.onState(payload),
  muted: () => mutedByInstructor(),
  heartRate: (payload) => {
    hr.onHr(payload);
    classState.readingsChanged();
  },
  telemetryAck: (payload) => hr.onAck(payload),
  telemetryRefused: (error) => hr.refused(error),
  wantsTelemetry: () => hr.wantsChannel(),
  attachTelemetry: (channel) => hr.attachChannel(channel),
};

const link = readLink();
const session = new Session({
  roomId: link.roomId,
  linkToken: link.token,
  token: (link.roomId && loadBoundToken(link.roomId, link.token)) || link.token,
  origin: location.origin,
  io: (url, options) => io(url, options),
  rtc: { enabled: WEBRTC, Publisher, Subscriber },
  local: { stream: () => local.stream, state: () => local.state() },
  view,
});
// Emit a client→server event and resolve with its ack (signal.js).
const request = session.request;

const grid = new Grid($('grid'));
// Only while joined: the server refuses `visibility` before `join`.
const visibility = watchVisibility($('grid'), ({ visible, sizes }) => {
  if (session.you) request('visibility', { visible, sizes, max_height: quality.maxHeight }).catch(() => {});
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
  people: () => session.participants, readingOf: (id) => hr?.view.latest.get(id)?.reading,
});
const local = new LocalMedia({ micButton: els.micButton, camButton: els.camButton });
const mediaState = () => local.state();

// The page's two late-bound parts: heart rate once the link is known to be a class link,
// and the camera, which the join waits for.
let hr = null;
let mediaReady = Promise.resolve();

// Test and debugging hooks; getters so they always show the current objects.
window.pulseroom = {
  get publishPc() { return session.publisher ? session.publisher.pc : null; },
  get subscribePc() { return session.subscriber ? session.subscriber.pc : null; },
  get participants() { return [...session.participants.values()].map((p) => ({ ...p })); },
  get you() { return session.you ? { ...session.you } : null; },
  get room() { return session.room ? { ...session.room } : null; },
  get tracks() { return session.subscriber ? session.subscriber.trackMap() : {}; },
  get phase() { return session.phase; },
  get socket() { return session.socket; },
  get hr() { return hr ? hr.hook() : null; },
  get token() { return session.token; },
  get node() { return session.nodeUrl; },
  get rejoins() { return session.rejoins.slice(); },
  get controls() { return classState.hook(); },
  get local() { return local.stream.getTracks().map((t) => ({ kind: t.kind, label: t.label, enabled: t.enabled })); },
  get layers() {
    const p = session.publisher;
    return { last: session.layers, plan: p?.plan ?? null, encodings: p ? p.encodings() : [], offer: p?.offerSdp ?? null };
  },
};

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

/** A join refusal nobody can retry (the session's phase is already `error`). */
function showJoinError(code, serverMessage) {
  const known = JOIN_ERRORS[code];
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

function toggle(kind) {
  local.toggle(kind);
  if (session.you) {
    session.sendOwnMedia(mediaState());
    render();
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
  if (!session.you) return;
  grid.addTrack(session.you.id, track);
  if (!session.publisher) session.startPublisher(); // joined without camera and microphone
  else if (!(await replaceSent(session.publisher.pc, track))) toast('Rejoin the class to send it too.', 'info');
  session.sendOwnMedia(mediaState());
}

function stopLocalMedia() {
  local.stop();
  els.preview.srcObject = null;
}

// -- joining --------------------------------------------------------------------------

async function join() {
  const name = els.nameInput.value.trim();
  els.joinError.hidden = true;
  if (!name) {
    els.joinError.textContent = 'Enter your name so the class knows who you are.';
    els.joinError.hidden = false;
    els.nameInput.focus();
    return;
  }
  try { localStorage.setItem(NAME_KEY, name); } catch { /* private mode */ }
  els.joinButton.disabled = true;
  els.joinButton.textContent = 'Joining…';
  setStatus('Joining…');
  const error = await session.join(name, mediaReady);
  if (!error) return;
  if (JOIN_ERRORS[error.code]) {
    stopLocalMedia();
    session.refuse(error.code, error.message);
    return;
  }
  // Something the person can fix and retry (a bad name, a network problem).
  session.setPhase('prejoin');
  setStatus('Not joined');
  els.joinError.textContent = JOIN_HINTS[error.code] || error.message;
  els.joinError.hidden = false;
  els.joinButton.disabled = false;
  els.joinButton.textContent = 'Join class';
}

/** In the class (first join or rejoin): show it. */
function enteredClass(ack) {
  const you = session.you;
  setStatus('Live', 'live');
  showView('classroom');
  document.title = `${ack.room.title} · PulseRoom`;
  els.title.textContent = ack.room.title;
  const isHost = you.role === 'host';
  els.roleBadge.hidden = !isHost;
  els.galleryButton.hidden = !isHost;
  els.endButton.hidden = !isHost;
  chat.reset(ack.chat || [], you.id);
  chat.setEnabled(true);

  grid.clear();
  for (const track of local.stream.getTracks()) grid.addTrack(you.id, track);
  classState.joined(ack, isHost);
  visibility.resend();
}

/** The connection was lost: only ourselves are shown until the session is back. */
function reconnecting() {
  for (const track of local.stream.getTracks()) grid.addTrack(session.you.id, track);
  render();
  setStatus('Connection lost. Reconnecting…', 'warn');
  toast('Connection to the class lost. Reconnecting…', 'info');
}

// -- in class -------------------------------------------------------------------------

/** Whether a participant gets a tile: mirrors who receives whom (docs/protocol.md). */
function tileVisible(p) {
  const you = session.you;
  return p.id === you.id || p.role === 'host' || you.role === 'host' || session.gallery
    || p.id === classState.spotlight || grid.hasMedia(p.id);
}

/** Bring the tiles and the roster in line with the session's participants. */
function render() {
  const you = session.you;
  if (!you) return;
  const participants = session.participants;
  for (const p of participants.values()) {
    if (tileVisible(p)) grid.upsert(p, { self: p.id === you.id });
    else if (grid.has(p.id)) grid.hide(p.id);
  }
  for (const id of grid.ids()) {
    if (!participants.has(id)) grid.remove(id);
  }
  roster.render([...participants.values()], you.id);
  hr.paint();
}

function paintGallery(enabled) {
  els.galleryBanner.hidden = !enabled;
  setButton(els.galleryButton, 'grid', enabled ? 'Gallery mode: on' : 'Gallery mode: off');
  els.galleryButton.setAttribute('aria-pressed', String(enabled));
  render();
}

async function toggleGallery() {
  els.galleryButton.disabled = true;
  try {
    await request('gallery', { enabled: !session.gallery });
  } catch {
    // shown by the `error` event
  } finally {
    els.galleryButton.disabled = false;
  }
}

async function leave() {
  if (!session.inClass) return;
  els.leaveButton.disabled = true;
  await session.leave();
}

async function endClass() {
  els.endDialog.close();
  els.endButton.disabled = true;
  if (!(await session.endClass())) els.endButton.disabled = false;
}

// -- out of the class -----------------------------------------------------------------

// The page after the session closed, by reason (the session has torn everything down).
const CLOSED = {
  left() {
    hr.stop();
    setStatus('Not connected');
    showNotice({
      title: 'You left the class',
      body: 'You can rejoin with the same link while the class is running.',
      code: 'left',
      // The link is this very page: a plain link to it would only change the fragment.
      action: { text: 'Rejoin the class', href: location.href, onClick: () => location.reload() },
    });
  },
  ended({ bound }) {
    hr.stop({ ended: true });
    setStatus('Class ended');
    // The bound token reads this participant's summary (the instructor's: everyone's).
    showNotice({
      title: 'The class has ended',
      body: bound
        ? 'Thanks for taking part. Your heart-rate summary is ready.'
        : 'Thanks for taking part. See you next time!',
      code: 'class_ended',
      action: bound
        ? { text: 'See your summary', href: summaryLink(session.roomId, session.token) }
        : { text: 'Back to PulseRoom', href: '/' },
      secondary: bound ? { text: 'Back to PulseRoom', href: '/' } : null,
    });
  },
  replaced() {
    hr.stop();
    setStatus('Not connected');
    showNotice({
      title: 'You joined from another window',
      body: 'This class is open in another tab or on another device as you. Continue there, or rejoin here (the other window then stops).',
      code: 'replaced',
      action: { text: 'Rejoin here', href: location.href, onClick: () => location.reload() },
    });
  },
  // The session shows the refusal next (`removed`).
  removed() {
    hr.stop();
  },
};

// -- start ----------------------------------------------------------------------------

function init() {
  const { token, roomId } = link;
  // A pasted link that differs only in its fragment would not reload the page by itself.
  window.addEventListener('hashchange', () => location.reload());

  if (!token || !roomId) {
    session.refuse('invalid_token');
    return;
  }
  const payload = peekToken(token);
  if (payload && payload.role === 'device') {
    session.setPhase('error');
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
    ensureChannel: () => { session.startPublisher(); },
  });
  els.prejoinRole.textContent = payload && payload.role === 'host'
    ? 'You are joining as the instructor.'
    : 'Check your camera, then join the class.';

  session.setPhase('prejoin');
  setStatus('Not joined');
  showView('prejoin');
  try { els.nameInput.value = localStorage.getItem(NAME_KEY) || ''; } catch { /* private mode */ }
  $('webrtc-banner').hidden = WEBRTC;
  openCamera(payload);
  bindControls();
}

/** The camera is opened before the join ack names the role: the link's token says it. */
function openCamera(payload) {
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
}

function bindControls() {
  els.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (session.phase === 'prejoin') join();
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
