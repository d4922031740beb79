// The participant account's page (/me): the zone profile kept across classes (GET|PUT
// /api/me/profile), each class attended with its figures and a link to its summary,
// a weekly trend (GET /api/me/history), export (GET /api/me/export) and deleting the
// account (DELETE /api/me, with the password). docs/protocol.md, "Participant accounts".

import { claim, takePendingClaim } from './claim.js';
import { ProfileForm } from './profile.js';
import { trendChart } from './trend.js';

const $ = (id) => document.getElementById(id);
let csrfToken = '';

function setStatus(text) {
  $('me-status').textContent = text;
}

function showError(message) {
  $('me-error').textContent = message;
  $('me-error').hidden = !message;
}

/** fetch with the session's CSRF token; the API's error message thrown on a refusal. */
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      ...options,
      headers: { 'content-type': 'application/json', 'X-CSRF-Token': csrfToken, ...(options.headers || {}) },
    });
  } catch {
    throw new Error('Could not reach the server. Check your connection and try again.');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((body.error && body.error.message) || `The server refused (HTTP ${response.status}).`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(row, text, testid) {
  const td = document.createElement('td');
  td.textContent = text;
  if (testid) td.dataset.testid = testid;
  row.append(td);
  return td;
}

function classRow(visit) {
  const row = document.createElement('tr');
  row.dataset.testid = 'me-class';
  row.dataset.roomId = visit.room_id;
  const name = document.createElement('th');
  name.scope = 'row';
  const when = new Date(visit.joined_at * 1000);
  name.textContent = visit.title;
  const date = document.createElement('div');
  date.className = 'hint';
  date.textContent = when.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  name.append(date);
  row.append(name);
  const s = visit.summary;
  const has = visit.readings > 0;
  cell(row, has ? String(Math.round(s.average_bpm)) : '–', 'me-average');
  cell(row, has ? String(s.peak_bpm) : '–', 'me-peak');
  cell(row, has ? s.minutes_in_zone.map((m) => Math.round(m)).join(' · ') : '–', 'me-zones');
  cell(row, has ? String(Math.round(s.calories_kcal)) : '–', 'me-calories');
  cell(row, has ? (s.effort_points ?? 0).toFixed(1) : '–', 'me-points');
  const link = document.createElement('a');
  link.href = visit.summary_link;
  link.textContent = 'Summary';
  link.dataset.testid = 'me-summary-link';
  link.setAttribute('aria-label', `Summary of ${visit.title}`);
  cell(row, '').append(link);
  return row;
}

function render(history) {
  const table = $('me-classes');
  const body = table.querySelector('tbody');
  body.replaceChildren(...history.classes.map(classRow));
  table.hidden = history.classes.length === 0;
  $('me-empty').hidden = history.classes.length > 0;
  $('me-trend').replaceChildren(trendChart(history.weeks));
}

const profileForm = new ProfileForm($('me-profile'), {
  onSave: async (profile) => {
    const answer = await api('/api/me/profile', { method: 'PUT', body: JSON.stringify(profile) });
    return answer.profile;
  },
});

function fillProfile(profile) {
  if (!profileForm.hasValues(profile)) return;
  // The class page sends the form's profile on each join: keep this browser's copy the
  // account's, so the next class starts from what is kept here.
  const kept = {};
  for (const key of ['age', 'max_hr', 'resting_hr', 'weight_kg', 'sex']) if (profile[key] != null) kept[key] = profile[key];
  kept.zone_method = profile.zone_method;
  profileForm.fill(kept);
  profileForm.remember(kept);
}

$('me-delete').addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = $('delete-password').value;
  if (!password) {
    showError('Enter your password to delete your account.');
    $('delete-password').focus();
    return;
  }
  if (!confirm('Delete your account and your data in every class? This cannot be undone.')) return;
  showError('');
  try {
    const answer = await api('/api/me', { method: 'DELETE', body: JSON.stringify({ password }) });
    try { localStorage.removeItem('pulseroom.profile'); } catch { /* private mode */ }
    $('me-content').hidden = true;
    $('me-account').hidden = true;
    setStatus(`Your account is deleted, with your data in ${answer.deleted.classes} classes.`);
  } catch (error) {
    showError(error.message);
  }
});

$('me-logout').addEventListener('click', async () => {
  await fetch('/api/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrfToken } }).catch(() => {});
  location.href = '/login';
});

async function load() {
  const response = await fetch('/api/auth/me').catch(() => null);
  if (!response || !response.ok) {
    setStatus('');
    $('me-login').hidden = false;
    return;
  }
  const me = await response.json();
  csrfToken = me.csrf_token;
  $('me-email').textContent = me.email;
  $('me-account').hidden = false;
  if (me.role !== 'participant') {
    setStatus('');
    $('me-login-text').textContent = `You are logged in as ${me.email} (${me.role}): this page is for participant accounts.`;
    $('me-login').hidden = false;
    return;
  }
  // A class the summary page offered to keep, before this login or sign-up.
  const pending = takePendingClaim();
  if (pending) {
    try {
      await claim(pending, csrfToken);
    } catch (error) {
      showError(`That class was not added: ${error.message}`);
    }
  }
  try {
    const history = await api('/api/me/history');
    fillProfile(history.profile);
    render(history);
    $('me-content').hidden = false;
    setStatus(`${history.classes.length} ${history.classes.length === 1 ? 'class' : 'classes'}.`);
    document.body.dataset.state = 'ready';
  } catch (error) {
    setStatus('');
    showError(error.message);
  }
}

load();
