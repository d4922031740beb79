// The after-class page (/r/{room_id}/summary#t=TOKEN): each participant's heart rate
// over the class against their zones, minutes per zone, average, peak, calories and
// training load, effort points, from GET /api/rooms/{room_id}/summary (docs/protocol.md, "REST").
//
// The token goes in the Authorization header, never in a URL. The instructor's sees
// everyone and may download the CSV; a participant's *bound* token (the one the class
// page got on join, also kept in this tab's sessionStorage) sees, exports and deletes
// only their own data.

import { classApi } from './api.js';
import { offerClaim } from './claim.js';
import { heartRateChart, zoneMinutes } from './chart.js';
import { classTable, zoneDistribution, zoneDistributionChart } from './classview.js';
import { targetText } from './effort.js';
import { peekToken, readingToken, readLink, replayLink } from './link.js';

const $ = (id) => document.getElementById(id);
const els = {
  title: $('class-title'), sub: $('summary-sub'), status: $('summary-status'), error: $('summary-error'),
  people: $('people'), csv: $('download-csv'), readings: $('download-readings'),
  exportMine: $('export-mine'), tcx: $('download-tcx'), fit: $('download-fit'), deleteMine: $('delete-mine'), dialog: $('delete-dialog'),
  deleteCancel: $('delete-cancel'), deleteConfirm: $('delete-confirm'),
  recordings: $('recordings'), recordingList: $('recording-list'),
};

const { token: linkToken, roomId } = readLink();
const token = readingToken(roomId, linkToken);
const grant = (token && peekToken(token)) || {};

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = !message;
}

const call = classApi(roomId, token);

/** Save a response as a file through a Blob link (the token never appears in a URL). */
async function saveAs(path, fallbackName) {
  const response = await call(path);
  const disposition = response.headers.get('Content-Disposition') || '';
  const match = disposition.match(/filename="([^"]+)"/);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = match ? match[1] : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}

function formatDuration(seconds) {
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min ${String(s % 60).padStart(2, '0')} s`;
}

function figure(term, value, testid) {
  const wrap = document.createElement('div');
  wrap.className = 'figure';
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  dd.textContent = value;
  dd.dataset.testid = testid;
  wrap.append(dt, dd);
  return wrap;
}

/** Effort points, and whether the class's target was reached. */
function effortText(s, target) {
  const points = `${(s.effort_points ?? 0).toFixed(1)} pts`;
  if (s.effort_target_reached == null) return points;
  return `${points} · target ${s.effort_target_reached ? 'reached' : 'not reached'} (${targetText(target)})`;
}

function personCard(person, effort, intervals) {
  const card = document.createElement('section');
  card.className = 'person';
  card.dataset.testid = 'person';
  card.dataset.participantId = person.id;
  const heading = document.createElement('h3');
  heading.textContent = person.name;
  if (person.role === 'host') {
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = 'instructor';
    heading.append(tag);
  }
  card.append(heading);
  const s = person.summary;
  if (!person.readings) {
    const note = document.createElement('p');
    note.className = 'empty-note';
    note.textContent = 'No heart-rate readings in this class.';
    card.append(note);
    return card;
  }
  const figures = document.createElement('dl');
  figures.className = 'figures';
  figures.append(
    figure('Duration', formatDuration(s.duration_s), 'duration'),
    figure('Average', `${Math.round(s.average_bpm)} bpm`, 'average-bpm'),
    figure('Peak', `${s.peak_bpm} bpm`, 'peak-bpm'),
    figure('Calories', `${Math.round(s.calories_kcal)} kcal`, 'calories'),
    figure('Training load (TRIMP)', String(s.trimp), 'trimp'),
    figure('Effort points', effortText(s, effort?.target), 'effort-points'),
    figure(s.hr_max_learned ? 'Max HR used (learned in class)' : 'Max HR used', `${s.hr_max_used ?? person.hr_max} bpm`, 'hr-max'),
  );
  // Recovery figures: only for straps that send beat intervals (RMSSD), and only when
  // a reading was near the end of the work and a minute after it (HR recovery).
  if (s.rmssd_ms != null) figures.append(figure('HRV (RMSSD, whole class)', `${Math.round(s.rmssd_ms)} ms`, 'rmssd'));
  if (s.hr_recovery_bpm != null) figures.append(figure('HR recovery (60 s)', `${s.hr_recovery_bpm} bpm`, 'hr-recovery'));
  card.append(figures);
  if (person.series && person.series.length) {
    // Bands as the server computes zones (% of max, or of reserve with Karvonen).
    card.append(heartRateChart({
      series: person.series,
      hrMax: person.hr_max,
      method: person.resting_hr != null ? person.zone_method : 'hrmax',
      restingHr: person.resting_hr,
      intervals,
      label: `Heart rate of ${person.name} over the class: average ${Math.round(s.average_bpm)}, peak ${s.peak_bpm} bpm`,
    }));
  }
  card.append(zoneMinutes(s.minutes_in_zone));
  return card;
}

async function load() {
  showError('');
  let data;
  try {
    data = await (await call('/summary')).json();
  } catch (error) {
    setState('error');
    els.people.replaceChildren();
    const hint = error.status === 403 && !grant.p && grant.role !== 'host'
      ? ' Open this page from the class page (its “See your summary” link), where you joined.'
      : '';
    showError(`The summary cannot be shown: ${error.message}.${hint}`);
    return;
  }
  document.title = `${data.room.title} · summary · PulseRoom`;
  els.title.textContent = data.room.title;
  const ended = data.room.ended_at ? new Date(data.room.ended_at * 1000) : null;
  const count = data.participants.filter((p) => p.readings > 0).length;
  els.sub.textContent = `${ended ? `Ended ${ended.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}. ` : 'Still running. '}`
    + (grant.role === 'host' ? `${count} of ${data.participants.length} with heart rate.` : 'Only you and the instructor see your heart rate.');
  const people = [...data.participants].sort((a, b) => (b.readings > 0) - (a.readings > 0));
  const intervals = data.intervals || [];
  if (grant.role === 'host') {
    // The class first (a table, the zones over time), then a card for each person with
    // heart rate; those without are named on one line, not given empty cards.
    const measured = people.filter((p) => p.readings > 0);
    const parts = [];
    if (measured.length) {
      parts.push(classTable(measured));
      const distribution = zoneDistribution(measured);
      if (distribution) {
        const box = document.createElement('figure');
        box.className = 'class-zones';
        const caption = document.createElement('figcaption');
        caption.textContent = `How many were in each zone through the class${intervals.length ? ' (the timer\'s work phases shaded)' : ''}`;
        box.append(caption, zoneDistributionChart(distribution, intervals));
        parts.push(box);
      }
    }
    const without = people.filter((p) => !p.readings);
    if (without.length && measured.length) {
      const note = document.createElement('p');
      note.className = 'hint';
      note.dataset.testid = 'without-hr';
      note.textContent = `No heart rate: ${without.map((p) => p.name).join(', ')}.`;
      parts.push(note);
    }
    els.people.replaceChildren(...parts, ...measured.map((p) => personCard(p, data.effort, intervals)));
  } else {
    els.people.replaceChildren(...people.map((p) => personCard(p, data.effort, intervals)));
  }
  if (!people.length) {
    const note = document.createElement('p');
    note.className = 'empty-note';
    note.textContent = grant.role === 'host' ? 'Nothing is stored for this class.' : 'Nothing is stored about you in this class.';
    note.dataset.testid = 'nothing-stored';
    els.exportMine.hidden = true;
    els.deleteMine.hidden = true;
    els.people.append(note);
  }
  if (!people.some((p) => p.readings > 0)) {
    els.tcx.hidden = true; // nothing to put in a workout file
    els.fit.hidden = true;
  }
  setState('loaded');
}

/** Links to the class's finished recordings, if there are any (a replay each). */
async function showRecordings() {
  let recordings;
  try {
    recordings = (await (await call('/recordings')).json()).recordings.filter((r) => r.complete);
  } catch {
    return; // no recordings to offer: the summary stands alone
  }
  els.recordingList.replaceChildren(...recordings.map((r) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = replayLink(roomId, r.id, token);
    link.dataset.testid = 'replay-link';
    const started = new Date((r.started_at ?? r.modified_at) * 1000);
    link.textContent = `Watch the recording of ${started.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}`;
    item.append(link);
    return item;
  }));
  els.recordings.hidden = recordings.length === 0;
}

function guard(button, action) {
  button.addEventListener('click', async () => {
    button.disabled = true;
    showError('');
    try {
      await action();
    } catch (error) {
      showError(error.message);
    } finally {
      button.disabled = false;
    }
  });
}

function init() {
  if (!roomId || !token) {
    setState('error');
    showError('This link has no class token. Open the summary from the class page, or with the instructor link.');
    return;
  }
  const host = grant.role === 'host';
  const own = grant.role === 'participant' && Boolean(grant.p);
  els.csv.hidden = !host;
  els.readings.hidden = !host;
  els.exportMine.hidden = !own;
  els.tcx.hidden = !own;
  els.fit.hidden = !own;
  els.deleteMine.hidden = !own;
  guard(els.csv, () => saveAs('/summary.csv', 'class-summary.csv'));
  guard(els.readings, () => saveAs('/heart-rate.csv', 'heart-rate.csv'));
  guard(els.exportMine, () => saveAs('/me/export', 'my-pulseroom-data.json'));
  guard(els.tcx, () => saveAs('/me/activity.tcx', 'pulseroom-class.tcx'));
  guard(els.fit, () => saveAs('/me/activity.fit', 'pulseroom-class.fit'));
  els.deleteMine.addEventListener('click', () => els.dialog.showModal());
  els.deleteCancel.addEventListener('click', () => els.dialog.close());
  guard(els.deleteConfirm, async () => {
    els.dialog.close();
    const answer = await (await call('/me', { method: 'DELETE' })).json();
    const d = answer.deleted || {};
    els.status.textContent = `Deleted: ${d.heart_rate ?? 0} heart-rate readings and ${d.other ?? 0} other records.`;
    await load();
  });
  load();
  showRecordings();
  if (own) offerClaim(document.getElementById('claim'), token);
}

init();
