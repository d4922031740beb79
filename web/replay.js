// The replay page (/r/{room_id}/replay?rec=ID#t=TOKEN): a class recording in a seekable
// <video>, beside it a heart-rate curve of that class with a cursor that follows the
// video (docs/protocol.md, "REST": recordings and the summary).
//
// Rights are the summary's: a participant's token shows their own curve, the
// instructor's (or the owner's summary link) anyone's, picked from a list. The <video>
// cannot send the token: a ticket (POST …/ticket) leaves a cookie that only this
// recording's URL receives. The recording's `started_at` (when its first picture was, on
// the server's clock) puts the readings, stamped by each participant's device, under it.
// A viewer with a strap (Web Bluetooth) may ride along: its heart rate now is drawn beside
// the recorded curve at the video's moment, on this page only (nothing is sent or kept).

import { classApi } from './api.js';
import { Strap, hasWebBluetooth } from './bluetooth.js';
import { addLivePoint, heartRateChart, moveCursor, timeAt } from './chart.js';
import { peekToken, readingToken, readLink } from './link.js';
import { bpmAt, pickRecording, recordingStart, videoTime, wallTime } from './timeline.js';

const $ = (id) => document.getElementById(id);
const els = {
  title: $('class-title'), sub: $('replay-sub'), error: $('replay-error'), video: $('replay-video'),
  recordingPick: $('recording-pick'), recordingSelect: $('recording-select'),
  personPick: $('person-pick'), personSelect: $('person-select'),
  chart: $('replay-chart'), bpm: $('replay-bpm'), who: $('replay-who'), note: $('replay-note'),
  pair: $('replay-pair'), strap: $('replay-strap'), liveWrap: $('live-wrap'), liveBpm: $('live-bpm'),
  download: $('replay-download'),
};
const LIVE_FRESH_MS = 5000; // a strap reading older than this is not drawn
const LIVE_STEP_S = 0.5; // video seconds between two points of the live line

const { token: linkToken, roomId } = readLink();
const token = readingToken(roomId, linkToken);
const grant = (token && peekToken(token)) || {};
const call = classApi(roomId, token);
const state = { recording: null, startedAt: null, person: null, people: [], svg: null, frame: 0 };
const live = { bpm: null, at: 0, drawnAt: null };

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = !message;
  if (message) document.body.dataset.state = 'error';
}

/** The recording's ticket cookie. Logged in, a POST needs the session's CSRF token too. */
async function takeTicket(recordingId) {
  const path = `/recordings/${encodeURIComponent(recordingId)}/ticket`;
  // Same-origin credentials: the answer's cookie is kept (an 'omit' fetch drops it).
  try {
    await call(path, { method: 'POST', credentials: 'same-origin' });
  } catch (error) {
    if (error.code !== 'csrf_failed') throw error;
    const me = await (await fetch('/api/auth/me', { credentials: 'same-origin' })).json();
    await call(path, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': me.csrf_token } });
  }
}

function drawChart() {
  const person = state.person;
  const duration = Number.isFinite(els.video.duration) ? els.video.duration : null;
  state.svg = null;
  els.chart.replaceChildren();
  if (!person || state.startedAt === null || duration === null) return;
  const start = state.startedAt;
  const end = wallTime(start, duration);
  const inside = person.series.filter(([t]) => t >= start && t <= end);
  els.who.textContent = grant.role === 'host' ? `· ${person.name}` : '· you';
  els.note.textContent = inside.length
    ? `${inside.length} heart-rate points during the recording. Click the chart to jump there.`
    : 'No heart-rate readings while this recording was made.';
  state.svg = heartRateChart({
    series: person.series, hrMax: person.hr_max, start, end, cursor: true,
    method: person.resting_hr != null ? person.zone_method : 'hrmax', restingHr: person.resting_hr,
    label: `Heart rate of ${person.name} during the recording`,
  });
  state.svg.addEventListener('click', (event) => {
    const t = timeAt(state.svg, event.clientX);
    if (t !== null) els.video.currentTime = videoTime(start, t, duration);
  });
  els.chart.append(state.svg);
  live.drawnAt = null;
  follow();
}

/** Cursor and readout at the video's current moment. */
function follow() {
  if (!state.svg || !state.person) return;
  const t = wallTime(state.startedAt, els.video.currentTime);
  moveCursor(state.svg, t);
  const bpm = bpmAt(state.person.series, t);
  els.bpm.textContent = bpm === null ? '–' : String(Math.round(bpm));
  rideAlong(t);
}

/** While the video plays, the strap's fresh reading joins the live line every LIVE_STEP_S. */
function rideAlong(t) {
  if (live.bpm === null || els.video.paused || performance.now() - live.at > LIVE_FRESH_MS) return;
  if (live.drawnAt !== null && t >= live.drawnAt && t - live.drawnAt < LIVE_STEP_S) return;
  addLivePoint(state.svg, t, live.bpm);
  live.drawnAt = t;
}

function setUpStrap() {
  if (!hasWebBluetooth()) return; // the bridge cannot help here: it sends to a class
  const strap = new Strap({
    onReading: ({ bpm }) => {
      Object.assign(live, { bpm, at: performance.now() });
      els.liveBpm.textContent = String(bpm);
      els.liveWrap.hidden = false;
    },
    onStatus: ({ text }) => { els.strap.textContent = text; },
  });
  els.pair.hidden = false;
  els.pair.addEventListener('click', () => strap.pair().catch(() => { /* shown by onStatus */ }));
}

/** While playing, the cursor moves every frame (timeupdate alone fires ~4 times a second). */
function animate() {
  cancelAnimationFrame(state.frame);
  const step = () => {
    follow();
    if (!els.video.paused && !els.video.ended) state.frame = requestAnimationFrame(step);
  };
  state.frame = requestAnimationFrame(step);
}

async function showRecording(recording) {
  state.recording = recording;
  state.startedAt = recordingStart(recording);
  els.sub.textContent = state.startedAt === null ? ''
    : `Recorded ${new Date(state.startedAt * 1000).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}.`;
  await takeTicket(recording.id);
  const url = `/api/rooms/${encodeURIComponent(roomId)}/recordings/${encodeURIComponent(recording.id)}`;
  els.video.src = url;
  els.download.href = url;
  els.download.hidden = false;
}

function choosePeople(people) {
  state.people = people.filter((p) => p.series && p.series.length);
  if (grant.role === 'host') {
    els.personSelect.replaceChildren(...state.people.map((p) => new Option(p.name, p.id)));
    els.personPick.hidden = state.people.length === 0;
  }
  state.person = state.people[0] || null;
  if (!state.person) els.note.textContent = grant.role === 'host' ? 'No one had a heart-rate strap in this class.' : 'No heart-rate readings of yours in this class.';
}

async function load() {
  let summary;
  let listing;
  try {
    [summary, listing] = await Promise.all([
      call('/summary').then((r) => r.json()),
      call('/recordings').then((r) => r.json()),
    ]);
  } catch (error) {
    showError(`The replay cannot be shown: ${error.message}`);
    return;
  }
  document.title = `${summary.room.title} · replay · PulseRoom`;
  els.title.textContent = summary.room.title;
  const wanted = new URLSearchParams(location.search).get('rec');
  const { finished, chosen } = pickRecording(listing.recordings, wanted);
  if (!chosen) {
    showError('This class has no finished recording.');
    return;
  }
  els.recordingSelect.replaceChildren(...finished.map((r) => new Option(r.id, r.id, false, r === chosen)));
  els.recordingPick.hidden = finished.length < 2;
  choosePeople(summary.participants);
  try {
    await showRecording(chosen);
  } catch (error) {
    showError(`The recording cannot be played: ${error.message}`);
    return;
  }
  document.body.dataset.state = 'loaded';
}

function init() {
  if (!roomId || !token) {
    showError('This link has no class token. Open the replay from the class summary page.');
    return;
  }
  setUpStrap();
  els.video.addEventListener('loadedmetadata', drawChart);
  els.video.addEventListener('durationchange', drawChart);
  els.video.addEventListener('timeupdate', follow);
  els.video.addEventListener('seeked', follow);
  els.video.addEventListener('play', animate);
  els.video.addEventListener('error', () => {
    // An H.264 recording is Matroska, which not every browser plays: the file still downloads.
    const kind = state.recording && state.recording.content_type === 'video/x-matroska' ? ' (H.264 in Matroska)' : '';
    showError(`The recording${kind} cannot be played in this browser: download it below the player.`);
  });
  els.personSelect.addEventListener('change', () => {
    state.person = state.people.find((p) => p.id === els.personSelect.value) || null;
    drawChart();
  });
  els.recordingSelect.addEventListener('change', async () => {
    const recording = (await (await call('/recordings')).json()).recordings.find((r) => r.id === els.recordingSelect.value);
    if (recording) showRecording(recording).catch((error) => showError(error.message));
  });
  load();
}

init();
