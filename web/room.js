// The class page, for the instructor and participants alike (the role comes from the join
// ack): the view. The protocol and its state (connect, join, recover, teardown) are the
// Session's (session.js); ClassPage shows what the session tells it and hands the
// session what the person does. Nothing lives at module level but constants.

import { BoardLayout } from './board.js';
import { Chat } from './chat.js';
import { ClassState } from './classstate.js';
import { EffortPanel } from './effort.js';
import { HeartRateRoom } from './hrroom.js';
import { planFor, videoConstraints } from './layers.js';
import { JOIN_ERRORS, JOIN_HINTS, loadBoundToken, peekToken, readLink, summaryLink } from './link.js';
import { LocalMedia } from './localmedia.js';
import { Lobby } from './lobby.js';
import { openMedia } from './media.js';
import { MusicMode } from './music.js';
import { DevicePicker, preferredDevices, replaceSent } from './prejoin.js';
import { QualityPicker } from './quality.js';
import { Publisher, Subscriber, hasWebRtc } from './rtc.js';
import { Session } from './session.js';
import { ShoutOuts } from './shoutouts.js';
import { StrapPage } from './strap.js';
import { ProtocolError } from './signal.js';
import { Grid, Roster } from './tiles.js';
import { setButton, setStatus, showNotice, showView, toast } from './ui.js';
import { watchVisibility } from './visibility.js';

const WEBRTC = hasWebRtc(); // without it: no media connections, the rest works
const NAME_KEY = 'pulseroom.name';

const $ = (id) => document.getElementById(id);

/** The class page: its widgets, its Session and what the person does. One per page load. */
class ClassPage {
  /** `link`: readLink()'s {roomId, token}. */
  constructor(link) {
    this.els = {
      preview: $('preview'), mediaMessage: $('media-message'), joinForm: $('join-form'),
      nameInput: $('name-input'), joinButton: $('join-button'), joinError: $('join-error'),
      prejoinRole: $('prejoin-role'), title: $('class-title'), roleBadge: $('role-badge'),
      micButton: $('mic-button'), camButton: $('cam-button'), galleryButton: $('gallery-button'),
      recordButton: $('record-button'), recordingBadge: $('recording-badge'),
      galleryBanner: $('gallery-banner'), endButton: $('end-button'), leaveButton: $('leave-button'),
      endDialog: $('end-dialog'), endCancel: $('end-cancel'), endConfirm: $('end-confirm'),
    };
    this.link = link;
    this.hr = null; // the HeartRateRoom, once the link is known to be a class link
    this.mediaReady = Promise.resolve(); // the camera, which the join waits for
    const { roomId, token } = this.link;
    const session = new Session({
      roomId,
      linkToken: token,
      token: (roomId && loadBoundToken(roomId, token)) || token,
      origin: location.origin,
      io: (url, options) => io(url, options),
      rtc: { enabled: WEBRTC, Publisher, Subscriber },
      local: { stream: () => this.music.tab.published(this.local.stream), state: () => this.mediaState(), audioBitrate: () => this.music.bitrate() },
      view: this.viewHooks(),
    });
    this.session = session;
    // Emit a client→server event and resolve with its ack (signal.js).
    const request = session.request;
    this.grid = new Grid($('grid'));
    // The participants fill the stage (the instructor's page and the studio TV's board).
    this.board = new BoardLayout(this.grid, $('grid'));
    // Only while joined: the server refuses `visibility` before `join`.
    this.visibility = watchVisibility($('grid'), ({ visible, sizes }) => {
      if (session.you) request('visibility', { visible, sizes, max_height: this.quality.maxHeight }).catch(() => {});
    });
    this.quality = new QualityPicker({ select: $('quality-select'), onChange: () => this.visibility.resend({ now: true }) });
    this.roster = new Roster($('roster'), $('people-count'));
    this.chat = new Chat({
      log: $('chat-log'), form: $('chat-form'), input: $('chat-input'), button: $('chat-send'),
      send: (text) => this.sendChat(text),
    });
    this.local = new LocalMedia({ micButton: this.els.micButton, camButton: this.els.camButton });
    // The instructor's microphone as a music source (music.js), in the controls panel.
    this.music = new MusicMode({
      roomId, stream: () => this.local.stream, publisher: () => session.publisher, toast,
      onSwitched: (kind, track) => this.switchedDevice(kind, track),
      onChange: () => { if (session.you) session.sendOwnMedia(this.mediaState()); },
    });
    // Clock, interval timer, spotlight, lock, and the instructor's controls (classstate.js).
    this.classState = new ClassState({
      bar: $('class-bar'), panel: $('host-panel'), grid: this.grid, request, toast, render: () => this.render(),
      people: () => session.participants, readingOf: (id) => this.hr?.view.latest.get(id)?.reading,
      extras: [this.music.row],
    });
    // A scheduled class's lobby: the countdown and, for the instructor, "Start class".
    this.lobby = new Lobby({ el: $('lobby'), clock: this.classState.clock, request, toast });
    // Effort points: the class's target and leaderboard, the instructor's settings.
    this.effort = new EffortPanel({
      panel: $('effort-panel'), request, toast, people: () => session.participants,
      readingOf: (id) => this.hr?.view.latest.get(id)?.reading,
    });
    this.shoutOuts = new ShoutOuts({
      request, toast, you: () => session.you?.id, board: () => session.you?.role === 'board',
    });
    // The skip link moves focus itself: the page's address keeps its fragment for the token.
    $('skip-link').addEventListener('click', (event) => {
      event.preventDefault();
      $('toolbar').focus();
    });
    window.pulseroom = this.testHooks();
  }

  /** What the session asks of the page (session.js, VIEW_HOOKS). */
  viewHooks() {
    return {
      phase: (phase) => { document.body.dataset.state = phase; },
      status: setStatus,
      toast,
      refused: (code, serverMessage) => showJoinError(code, serverMessage),
      entered: (ack) => this.enteredClass(ack),
      telemetryJoined: (ack) => this.hr.joined(ack),
      render: () => this.render(),
      participantGone: (id) => this.grid.remove(id),
      gallery: (enabled) => this.paintGallery(enabled),
      recording: (on) => this.paintRecording(on),
      trackAdded: (participantId, track) => {
        this.grid.addTrack(participantId, track);
        this.render();
      },
      trackGone: (track) => {
        this.grid.removeTrack(track);
        this.render();
      },
      offline: ({ stopLocal }) => {
        this.hr.offline();
        this.classState.stop();
        this.lobby.stop();
        this.grid.clear();
        this.chat.setEnabled(false);
        if (stopLocal) this.stopLocalMedia();
      },
      reconnecting: () => this.reconnecting(),
      closed: (reason, detail) => CLOSED[reason](this, detail),
      chat: (message) => this.chat.add(message),
      speaker: (id) => this.grid.setSpeaker(id),
      classState: (payload) => {
        this.classState.onState(payload);
        this.paintLobby(payload.state, this.session.you?.role === 'host', this.session.room?.description);
      },
      muted: () => this.mutedByInstructor(),
      heartRate: (payload) => {
        this.hr.onHr(payload);
        this.classState.readingsChanged();
        this.effort.readingsChanged();
      },
      effortSettings: (payload) => this.effort.onSettings(payload),
      leaderboard: (payload) => this.effort.onLeaderboard(payload),
      maxHrRaised: (payload) => this.hr.onMaxRaised(payload),
      shoutOut: (payload) => this.shoutOuts.onShoutOut(payload),
      milestone: (payload) => this.shoutOuts.onMilestone(payload),
      telemetryAck: (payload) => this.hr.onAck(payload),
      telemetryRefused: (error) => this.hr.refused(error),
      wantsTelemetry: () => this.hr.wantsChannel(),
      attachTelemetry: (channel) => this.hr.attachChannel(channel),
    };
  }

  /** Test and debugging hooks (window.pulseroom); getters so they always show the current objects. */
  testHooks() {
    const { session, classState } = this;
    const page = this;
    return {
      get publishPc() { return session.publisher ? session.publisher.pc : null; },
      get subscribePc() { return session.subscriber ? session.subscriber.pc : null; },
      get participants() { return [...session.participants.values()].map((p) => ({ ...p })); },
      get you() { return session.you ? { ...session.you } : null; },
      get room() { return session.room ? { ...session.room } : null; },
      get tracks() { return session.subscriber ? session.subscriber.trackMap() : {}; },
      get phase() { return session.phase; },
      get started() { return session.started; },
      get socket() { return session.socket; },
      get hr() { return page.hr ? page.hr.hook() : null; },
      get token() { return session.token; },
      get node() { return session.nodeUrl; },
      get rejoins() { return session.rejoins.slice(); },
      get controls() { return classState.hook(); },
      get effort() { return page.effort.hook(); },
      get board() { return page.board.hook(); },
      get music() { return page.music.hook(); },
      get local() { return page.local.stream.getTracks().map((t) => ({ kind: t.kind, label: t.label, enabled: t.enabled })); },
      get layers() {
        const p = session.publisher;
        return { last: session.layers, plan: p?.plan ?? null, encodings: p ? p.encodings() : [], offer: p?.offerSdp ?? null };
      },
    };
  }

  /** A refusal arrives as an `error` event (shown as a toast); say so for the other failures. */
  async sendChat(text) {
    try {
      return await this.session.request('chat', { text });
    } catch (error) {
      if (!(error instanceof ProtocolError) || error.code === 'offline') {
        toast('Not connected: your message was not sent.');
      }
      throw error;
    }
  }

  // -- camera and microphone ----------------------------------------------------------

  /** What media_state says: microphone and camera, and an instructor's music mode. */
  mediaState() {
    return { ...this.local.state(), ...(this.music.enabled ? { music: this.music.active } : {}) };
  }

  toggle(kind) {
    this.local.toggle(kind);
    if (this.session.you) {
      this.session.sendOwnMedia(this.mediaState());
      this.render();
    }
  }

  /** The instructor muted us (`muted`): everyone already sees it; the microphone goes off. */
  mutedByInstructor() {
    if (this.local.audioOn) this.toggle('audio');
    toast('The instructor muted your microphone. Unmute yourself when you want to speak.', 'info', 6000);
  }

  /** Another camera or microphone was chosen (prejoin.js): show it, and send it once in class. */
  async switchedDevice(kind, track) {
    const { local, session } = this;
    local.adopt(track);
    const video = local.stream.getVideoTracks();
    this.els.preview.srcObject = video.length ? new MediaStream(video) : null;
    if (!session.you) return;
    this.grid.addTrack(session.you.id, track);
    if (!session.publisher) session.startPublisher(); // joined without camera and microphone
    else if (!(await replaceSent(session.publisher.pc, this.music.tab.sending(track)))) toast('Rejoin the class to send it too.', 'info');
    session.sendOwnMedia(this.mediaState());
  }

  stopLocalMedia() {
    this.music.tab.stop();
    this.local.stop();
    this.els.preview.srcObject = null;
  }

  // -- joining ------------------------------------------------------------------------

  async join() {
    const els = this.els;
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
    const error = await this.session.join(name, this.mediaReady);
    if (!error) return;
    if (JOIN_ERRORS[error.code]) {
      this.stopLocalMedia();
      this.session.refuse(error.code, error.message);
      return;
    }
    // Something the person can fix and retry (a bad name, a network problem).
    this.session.setPhase('prejoin');
    setStatus('Not joined');
    els.joinError.textContent = JOIN_HINTS[error.code] || error.message;
    els.joinError.hidden = false;
    els.joinButton.disabled = false;
    els.joinButton.textContent = 'Join class';
  }

  /** In the class (first join or rejoin): show it. */
  enteredClass(ack) {
    const { els, grid } = this;
    const you = this.session.you;
    setStatus('Live', 'live');
    showView('classroom');
    document.title = `${ack.room.title} · PulseRoom`;
    els.title.textContent = ack.room.title;
    const isHost = you.role === 'host';
    this.board.setOn(isHost || you.role === 'board');
    els.roleBadge.hidden = !isHost;
    els.galleryButton.hidden = !isHost;
    els.recordButton.hidden = !isHost;
    els.endButton.hidden = !isHost;
    this.chat.reset(ack.chat || [], you.id);
    this.chat.setEnabled(true);

    grid.clear();
    for (const track of this.local.stream.getTracks()) grid.addTrack(you.id, track);
    this.music.setEnabled(isHost);
    this.classState.joined(ack, isHost);
    this.paintLobby(ack.controls, isHost, ack.room.description);
    this.effort.joined(ack, isHost);
    this.visibility.resend();
    // Focus into the class (it was on the join button, now hidden): a screen reader says
    // where we are, and Tab goes on from here, not from the top of the page.
    if (!$('classroom').contains(document.activeElement)) $('class-heading').focus({ preventScroll: true });
  }

  /** A scheduled class not yet started shows its lobby (lobby.js) and says so in the status line. */
  paintLobby(controls, isHost, description) {
    this.lobby.apply(controls, { isHost, description });
    if (controls && controls.started === false) setStatus('Waiting for the class to start');
    else setStatus('Live', 'live');
  }

  /** The connection was lost: only ourselves are shown until the session is back. */
  reconnecting() {
    for (const track of this.local.stream.getTracks()) this.grid.addTrack(this.session.you.id, track);
    this.render();
    setStatus('Connection lost. Reconnecting…', 'warn');
    toast('Connection to the class lost. Reconnecting…', 'info');
  }

  // -- in class -----------------------------------------------------------------------

  /** Whether a participant gets a tile: mirrors who receives whom (docs/protocol.md). */
  tileVisible(p) {
    const { you, gallery } = this.session;
    if (you.role === 'board') return p.id !== you.id; // everyone but the board itself
    return p.id === you.id || p.role === 'host' || you.role === 'host' || gallery
      || p.id === this.classState.spotlight || this.grid.hasMedia(p.id);
  }

  /** Bring the tiles and the roster in line with the session's participants. */
  render() {
    const { you, participants } = this.session;
    if (!you) return;
    const grid = this.grid;
    for (const p of participants.values()) {
      if (this.tileVisible(p)) grid.upsert(p, { self: p.id === you.id });
      else if (grid.has(p.id)) grid.hide(p.id);
    }
    for (const id of grid.ids()) {
      if (!participants.has(id)) grid.remove(id);
    }
    this.roster.render([...participants.values()].filter((p) => p.role !== 'board'), you.id);
    this.hr.paint();
  }

  paintGallery(enabled) {
    const els = this.els;
    els.galleryBanner.hidden = !enabled;
    setButton(els.galleryButton, 'grid', enabled ? 'Gallery mode: on' : 'Gallery mode: off');
    els.galleryButton.setAttribute('aria-pressed', String(enabled));
    this.render();
  }

  paintRecording(on) {
    // Everyone sees it: a class being recorded says so on every page.
    this.els.recordingBadge.hidden = !on;
    this.els.recordButton.textContent = on ? 'Stop recording' : 'Record';
    this.els.recordButton.setAttribute('aria-pressed', String(on));
  }

  async toggleRecording() {
    const button = this.els.recordButton;
    button.disabled = true;
    try {
      await this.session.request('record', { on: !this.session.recording, music: this.music.recordMusic() });
    } catch {
      // shown by the `error` event
    } finally {
      button.disabled = false;
    }
  }

  async toggleGallery() {
    const button = this.els.galleryButton;
    button.disabled = true;
    try {
      await this.session.request('gallery', { enabled: !this.session.gallery });
    } catch {
      // shown by the `error` event
    } finally {
      button.disabled = false;
    }
  }

  async leave() {
    if (!this.session.inClass) return;
    this.els.leaveButton.disabled = true;
    await this.session.leave();
  }

  async endClass() {
    this.els.endDialog.close();
    this.els.endButton.disabled = true;
    if (!(await this.session.endClass())) this.els.endButton.disabled = false;
  }

  // -- start --------------------------------------------------------------------------

  start() {
    const { token, roomId } = this.link;
    const { els, session } = this;
    // A pasted link that differs only in its fragment would not reload the page by itself.
    window.addEventListener('hashchange', () => location.reload());

    if (!token || !roomId) {
      session.refuse('invalid_token');
      return;
    }
    const payload = peekToken(token);
    this.hr = new HeartRateRoom({
      roomId, grid: this.grid, request: session.request, toast,
      ensureChannel: () => { session.startPublisher(); },
    });
    if (payload && payload.role === 'board') {
      this.startBoard();
      return;
    }
    els.prejoinRole.textContent = payload && payload.role === 'host'
      ? 'You are joining as the instructor.'
      : 'Check your camera, then join the class.';

    session.setPhase('prejoin');
    setStatus('Not joined');
    showView('prejoin');
    try { els.nameInput.value = localStorage.getItem(NAME_KEY) || ''; } catch { /* private mode */ }
    $('webrtc-banner').hidden = WEBRTC;
    this.openCamera(payload);
    this.bindControls();
    this.preview(token, roomId);
  }

  /**
   * What the link leads to, asked as the page opens (GET …/preview): the class's title
   * on the pre-join screen, or a damaged, expired, replaced or ended link said at once,
   * before anyone types a name. If the server cannot say, the join will.
   */
  async preview(token, roomId) {
    let response;
    try {
      response = await fetch(`/api/rooms/${encodeURIComponent(roomId)}/preview`, {
        headers: { Authorization: `Bearer ${token}` },
      });
    } catch {
      return;
    }
    if (this.session.phase !== 'prejoin') return; // joined (or gone) meanwhile
    let body = null;
    try { body = await response.json(); } catch { return; }
    if (!response.ok) {
      if (body?.error?.code && response.status !== 401) this.session.refuse(body.error.code, body.error.message);
      return;
    }
    const title = body.room?.title;
    if (!title) return;
    $('prejoin-heading').textContent = `Ready to join “${title}”?`;
    document.title = `${title} · PulseRoom`;
    this.els.title.textContent = title;
  }

  /**
   * The studio TV's board (/r/{id}/board): no camera, microphone, sound or controls; it
   * joins at once and shows the class full screen, and rejoins by itself after a drop.
   */
  async startBoard() {
    document.body.classList.add('board-view');
    this.grid.silent = true;
    // A TV's browser opens windowed: a double click (or a remote's select) fills the screen.
    document.addEventListener('dblclick', () => document.documentElement.requestFullscreen?.().catch(() => {}));
    this.session.setPhase('prejoin');
    setStatus('Joining…');
    const error = await this.session.join('Class board', Promise.resolve());
    if (!error) return;
    if (JOIN_ERRORS[error.code]) this.session.refuse(error.code, error.message);
    else showNotice({ title: 'The board could not join the class', body: error.message, kind: 'error', code: error.code, action: { text: 'Try again', href: location.href, onClick: () => location.reload() } });
  }

  /** The camera is opened before the join ack names the role: the link's token says it. */
  openCamera(payload) {
    const { els, local } = this;
    const video = videoConstraints(planFor(payload?.role));
    this.music.setEnabled(payload?.role === 'host'); // music mode kept from earlier in this tab
    const picker = new DevicePicker({
      container: $('device-home'), stream: () => local.stream, toast, video, audio: () => this.music.constraints(),
      onSwitched: (kind, track) => this.switchedDevice(kind, track),
    });
    picker.bindDialog({ button: $('devices-button'), dialog: $('devices-dialog'), body: $('devices-dialog-body'), close: $('devices-close') });
    this.mediaReady = openMedia(preferredDevices(), video, this.music.constraints()).then(({ stream, message }) => {
      local.stream = stream;
      els.preview.srcObject = stream.getVideoTracks().length ? stream : null;
      els.mediaMessage.textContent = message;
      els.mediaMessage.hidden = !message;
      local.paint();
      picker.refresh();
    });
  }

  bindControls() {
    const els = this.els;
    els.joinForm.addEventListener('submit', (event) => {
      event.preventDefault();
      if (this.session.phase === 'prejoin') this.join();
    });
    els.micButton.addEventListener('click', () => this.toggle('audio'));
    els.camButton.addEventListener('click', () => this.toggle('video'));
    els.leaveButton.addEventListener('click', () => this.leave());
    els.galleryButton.addEventListener('click', () => this.toggleGallery());
    els.recordButton.addEventListener('click', () => this.toggleRecording());
    els.endButton.addEventListener('click', () => els.endDialog.showModal());
    els.endCancel.addEventListener('click', () => els.endDialog.close());
    els.endConfirm.addEventListener('click', () => this.endClass());
    this.local.paint();
    setButton(els.leaveButton, 'leave', 'Leave');
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

// The page after the session closed, by reason (the session has torn everything down).
const CLOSED = Object.freeze({
  left(page) {
    page.hr.stop();
    setStatus('Not connected');
    showNotice({
      title: 'You left the class',
      body: 'You can rejoin with the same link while the class is running.',
      code: 'left',
      // The link is this very page: a plain link to it would only change the fragment.
      action: { text: 'Rejoin the class', href: location.href, onClick: () => location.reload() },
    });
  },
  ended(page, { bound }) {
    page.hr.stop({ ended: true });
    setStatus('Class ended');
    // The summary token reads this participant's summary (the instructor's: everyone's).
    const summaryToken = page.session.summaryToken;
    showNotice({
      title: 'The class has ended',
      body: bound && summaryToken
        ? 'Thanks for taking part. Your heart-rate summary is ready.'
        : 'Thanks for taking part. See you next time!',
      code: 'class_ended',
      action: bound && summaryToken
        // A weekly series' summary is its session's (the link names the series).
        ? { text: 'See your summary', href: summaryLink(page.session.room?.session_id || page.session.roomId, summaryToken) }
        : { text: 'Back to PulseRoom', href: '/' },
      secondary: bound && summaryToken ? { text: 'Back to PulseRoom', href: '/' } : null,
    });
  },
  replaced(page) {
    page.hr.stop();
    setStatus('Not connected');
    showNotice({
      title: 'You joined from another window',
      body: 'This class is open in another tab or on another device as you. Continue there, or rejoin here (the other window then stops).',
      code: 'replaced',
      action: { text: 'Rejoin here', href: location.href, onClick: () => location.reload() },
    });
  },
  // The session shows the refusal next (`removed`).
  removed(page) {
    page.hr.stop();
  },
});

// A participant's device link (role `device`) opens the strap page instead (strap.js).
const link = readLink();
if (link.roomId && peekToken(link.token || '')?.role === 'device') new StrapPage(link).start();
else new ClassPage(link).start();
