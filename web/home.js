// Home page: who is logged in (GET /api/auth/me); for an instructor, create a class
// (POST /api/rooms, with the session's CSRF token) and show its two links.

import { coInstructorsPanel } from './coinstructors.js';

const form = document.getElementById('create-form');
const titleInput = document.getElementById('title-input');
const createButton = document.getElementById('create-button');
const errorText = document.getElementById('create-error');
const result = document.getElementById('result');
const loginNeeded = document.getElementById('login-needed');
const account = document.getElementById('account');
const classes = document.getElementById('classes');

// Roles that may create classes (docs/protocol.md, POST /api/rooms).
const CREATORS = new Set(['instructor', 'admin']);
let csrfToken = '';

function showError(message) {
  errorText.textContent = message;
  errorText.hidden = false;
}

// Logged out (or a session that ended): say so, link to /login, hide the form.
function showLoggedOut(text) {
  csrfToken = '';
  account.hidden = true;
  form.hidden = true;
  classes.hidden = true;
  if (text) document.getElementById('login-needed-text').textContent = text;
  loginNeeded.hidden = false;
}

function showAccount(me) {
  csrfToken = me.csrf_token;
  document.getElementById('account-email').textContent = `${me.email} (${me.role})`;
  account.hidden = false;
  document.getElementById('admin-link').hidden = me.role !== 'admin';
  if (CREATORS.has(me.role)) {
    loginNeeded.hidden = true;
    form.hidden = false;
    loadClasses();
  } else {
    showLoggedOut(`Logged in as ${me.email}: only instructors create classes. Your classes and heart-rate zones are on your page.`);
    account.hidden = false;
    const mine = document.getElementById('login-link');
    mine.href = '/me';
    mine.textContent = 'My classes';
  }
}

async function loadAccount() {
  try {
    const response = await fetch('/api/auth/me');
    if (response.ok) {
      showAccount(await response.json());
      return;
    }
  } catch {
    // the server is unreachable: the form would fail too, so show the login prompt
  }
  showLoggedOut();
}

document.getElementById('logout-button').addEventListener('click', async () => {
  try {
    await fetch('/api/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrfToken } });
  } catch {
    // offline: the page still forgets the session; the cookie ends with its expiry
  }
  result.hidden = true;
  showLoggedOut('You are logged out.');
});

// The API answers errors as {"error": {"code", "message"}}; anything else is unexpected.
async function readError(response, doing = 'create the class') {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // not JSON: fall through to a generic message
  }
  return `The server could not ${doing} (HTTP ${response.status}).`;
}

function postRoom(body) {
  return fetch('/api/rooms', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'X-CSRF-Token': csrfToken },
    body: JSON.stringify(body),
  });
}

// The POST /api/rooms body from the form: a start time only if one was chosen (the
// datetime-local field is in this browser's time zone; the server takes unix seconds).
function roomBody(title) {
  const body = { title };
  const description = document.getElementById('description-input').value.trim();
  if (description) body.description = description;
  const starts = document.getElementById('starts-input').value;
  const weekly = document.getElementById('weekly-input').checked;
  if (!starts) {
    if (weekly) throw new Error('A weekly class needs a start time.');
    return body;
  }
  const startsAt = new Date(starts).getTime() / 1000;
  if (!Number.isFinite(startsAt)) throw new Error('The start time is not a date and time.');
  body.starts_at = startsAt;
  body.duration_s = Math.round(Number(document.getElementById('duration-input').value) * 60);
  if (weekly) body.weekly = true;
  return body;
}

async function createClass(body) {
  let response;
  try {
    response = await postRoom(body);
    // Logged in again in another tab: a new session, a new CSRF token. Ask once more.
    if (response.status === 403 && (await response.clone().json()).error?.code === 'csrf_failed') {
      await loadAccount();
      if (csrfToken) response = await postRoom(body);
    }
  } catch {
    throw new Error('Could not reach the server. Check your connection and try again.');
  }
  if (response.status === 401) {
    // The session ended meanwhile (logged out elsewhere, disabled, expired).
    showLoggedOut('Your session has ended: log in again to create a class.');
    throw new Error('Log in again to create a class.');
  }
  if (!response.ok) throw new Error(await readError(response));
  return response.json();
}

// New links for a class (POST /api/rooms/{id}/links): the earlier ones stop working.
async function replaceLinks(classId) {
  const send = () => fetch(`/api/rooms/${encodeURIComponent(classId)}/links`, {
    method: 'POST', headers: { 'X-CSRF-Token': csrfToken },
  });
  let response;
  try {
    response = await send();
    if (response.status === 403 && (await response.clone().json()).error?.code === 'csrf_failed') {
      await loadAccount();
      if (csrfToken) response = await send();
    }
  } catch {
    throw new Error('Could not reach the server: the link was not replaced.');
  }
  if (!response.ok) throw new Error(await readError(response, 'replace the link'));
  const { host_link: hostLink, join_link: joinLink, board_link: boardLink, expires_at: expiresAt } = await response.json();
  return { host_link: hostLink, join_link: joinLink, board_link: boardLink, expires_at: expiresAt };
}

const when = (unix) => new Date(unix * 1000).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// One class: its title and state, and what the instructor can do with it now. Links
// are minted by the server for this login (GET /api/classes): nothing to keep.
function classItem(c) {
  const item = element('li', { className: 'class-item' });
  item.dataset.testid = 'class-item';
  item.dataset.classId = c.id;
  item.dataset.upcoming = String(c.next_starts_at !== null);
  const people = `${c.participants} participant${c.participants === 1 ? '' : 's'}`;
  const co = c.hosting === 'co_instructor' ? ' · you co-instruct' : '';
  item.append(element('span', { className: 'class-name' },
    element('strong', { textContent: c.title }), element('span', { className: 'hint', textContent: classState(c, people) + co })));
  if (c.host_link) {
    const open = element('a', { className: 'button primary', href: c.host_link, textContent: 'Open as instructor' });
    open.dataset.testid = 'class-open';
    const share = element('button', { type: 'button', textContent: 'Copy participant link' });
    share.dataset.testid = 'class-copy-join';
    share.addEventListener('click', async () => {
      const input = element('input', { value: c.join_link, readOnly: true });
      const ok = await copy(input);
      share.textContent = ok ? 'Copied!' : c.join_link;
      setTimeout(() => { share.textContent = 'Copy participant link'; }, 2000);
    });
    // The studio TV's read-only board: everyone's video and heart rate, full screen.
    const board = element('a', { className: 'button', href: c.board_link, target: '_blank', textContent: 'TV board' });
    board.dataset.testid = 'class-board';
    board.title = 'Open the class board for a studio screen: it shows everyone\'s heart rate to whoever sees it.';
    const replace = element('button', { type: 'button', textContent: 'New participant link' });
    replace.dataset.testid = 'class-replace-link';
    replace.title = 'Replace the participant link: the old one, and the rejoin links it gave, stop working. Those in the class stay.';
    replace.addEventListener('click', async () => {
      if (!confirm('Replace this class\'s participant link? The old link stops working, and so does rejoining with it. Those in the class now stay.')) return;
      replace.disabled = true;
      try {
        Object.assign(c, await replaceLinks(c.id));
        open.href = c.host_link;
        board.href = c.board_link;
        if (result.dataset.classId === c.id) showLinks(c); // the panel shows the old ones
        const ok = await copy(element('input', { value: c.join_link, readOnly: true }));
        replace.textContent = ok ? 'New link copied!' : c.join_link;
      } catch (error) {
        replace.textContent = error.message;
      } finally {
        replace.disabled = false;
        setTimeout(() => { replace.textContent = 'New participant link'; }, 4000);
      }
    });
    // Only the class's creator replaces its links (a co-instructor's are minted for them).
    item.append(open, share, ...(co ? [] : [replace]), board);
  }
  // A weekly series has none: each week's session (listed too) has its own.
  if (c.summary_link) {
    const summary = element('a', { className: 'button', href: c.summary_link, textContent: 'Summary' });
    summary.dataset.testid = 'class-summary';
    item.append(summary);
  }
  // Co-instructors are the creator's to manage; a series' weeks have the series'.
  if (!co && !c.series_id) item.append(coInstructorsPanel(c.id, c.title, () => csrfToken));
  return item;
}

// When a class is (or was), in a line: upcoming ones by their next start.
function classState(c, people) {
  if (c.weekly) return `every week · next ${when(c.next_starts_at ?? c.starts_at)}`;
  const week = c.series_id ? 'weekly session · ' : '';
  if (c.ended_at) return `${week}ended ${when(c.ended_at)} · ${people}`;
  if (c.starts_at && !c.started_at) return `${week}starts ${when(c.starts_at)} · ${people}`;
  if (c.started_at) return `${week}started ${when(c.started_at)} · ${people}`;
  return `created ${when(c.created_at)} · ${people}`;
}

async function loadClasses() {
  let list;
  try {
    const response = await fetch('/api/classes');
    if (!response.ok) return; // logged out meanwhile: loadAccount says so
    list = (await response.json()).classes;
  } catch {
    return; // offline: the list stays as it was
  }
  document.getElementById('class-list').replaceChildren(...list.map(classItem));
  document.getElementById('classes-empty').hidden = list.length > 0;
  classes.hidden = false;
}

function showLinks(data) {
  document.getElementById('host-link').value = data.host_link;
  document.getElementById('join-link').value = data.join_link;
  document.getElementById('open-host').href = data.host_link;
  const expires = new Date(data.expires_at * 1000);
  document.getElementById('expires').textContent =
    `Both links work until ${expires.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}.`;
}

function showResult(data) {
  document.getElementById('result-title').textContent = `“${data.room.title}” is ready`;
  showLinks(data);
  result.dataset.classId = data.room.id;
  result.hidden = false;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  errorText.hidden = true;
  const title = titleInput.value.trim();
  if (!title) {
    showError('Give the class a title first.');
    titleInput.focus();
    return;
  }
  createButton.disabled = true;
  createButton.textContent = 'Creating…';
  try {
    showResult(await createClass(roomBody(title)));
    loadClasses();
  } catch (error) {
    showError(error.message);
  } finally {
    createButton.disabled = false;
    createButton.textContent = 'Create class';
  }
});

// Copy buttons: the Clipboard API needs a secure context (https or localhost), so fall
// back to selecting the text and execCommand for a server reached by plain-http address.
async function copy(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.select();
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
}

for (const button of document.querySelectorAll('[data-copy]')) {
  button.addEventListener('click', async () => {
    const input = document.getElementById(button.dataset.copy);
    const ok = await copy(input);
    button.textContent = ok ? 'Copied!' : 'Select and copy';
    if (!ok) input.select();
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  });
}

loadAccount();
