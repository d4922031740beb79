// The admin page (/admin): accounts (invite, role, disable, password link) and the audit
// log, over /api/admin/* (docs/protocol.md) with the session's CSRF token.

const $ = (id) => document.getElementById(id);
const ACTIONS = [
  'login', 'login_failed', 'logout', 'setup', 'user_added', 'user_disabled', 'user_enabled',
  'role_changed', 'password_link', 'password_set', 'class_created', 'participant_removed',
  'link_rotated', 'co_instructor_added', 'co_instructor_removed', 'data_exported',
  'data_deleted', 'data_erased', 'recording_deleted', 'signup', 'visit_claimed', 'account_deleted',
];
const PAGE = 100;
let csrfToken = '';
let me = null;
let oldest = null; // `at` of the last audit entry shown: the next page starts below it

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // not JSON
  }
  return `The server refused (HTTP ${response.status}).`;
}

function api(path, method = 'GET', body = undefined) {
  const headers = method === 'GET' ? {} : { 'X-CSRF-Token': csrfToken };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

function showError(message) {
  $('users-error').textContent = message;
  $('users-error').hidden = !message;
}

function showLink(link, who, seconds) {
  $('new-link').value = link;
  $('link-label').textContent = `One-time password link for ${who}`;
  const days = Math.round(seconds / 86400);
  $('link-hint').textContent = `Send it to them yourself. It works once, for ${days >= 1 ? `${days} day${days > 1 ? 's' : ''}` : `${Math.round(seconds / 3600)} hours`}; it is not shown again.`;
  $('link-box').hidden = false;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function button(text, testid, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.dataset.testid = testid;
  b.addEventListener('click', onClick);
  return b;
}

async function change(user, body) {
  showError('');
  const response = await api(`/api/admin/users/${encodeURIComponent(user.id)}`, 'PATCH', body);
  if (!response.ok) showError(await errorOf(response));
  await Promise.all([loadUsers(), reloadAudit()]);
}

async function passwordLink(user) {
  showError('');
  const response = await api(`/api/admin/users/${encodeURIComponent(user.id)}/password-link`, 'POST');
  if (!response.ok) {
    showError(await errorOf(response));
    return;
  }
  const body = await response.json();
  showLink(body.link, user.email, body.link_expires_in);
  await reloadAudit();
}

function userRow(user) {
  const row = document.createElement('tr');
  row.dataset.testid = 'user-row';
  row.dataset.email = user.email;
  row.append(cell(user.email));
  const roleCell = document.createElement('td');
  const role = document.createElement('select');
  role.dataset.testid = 'user-role';
  role.setAttribute('aria-label', `Role of ${user.email}`);
  for (const name of ['admin', 'instructor', 'participant']) {
    const option = new Option(name, name, false, name === user.role);
    role.append(option);
  }
  role.addEventListener('change', () => change(user, { role: role.value }));
  roleCell.append(role);
  row.append(roleCell);
  const status = user.disabled ? 'disabled' : (user.has_password ? 'active' : 'invited');
  row.append(cell(status));
  const actions = document.createElement('td');
  if (user.id !== me.id) {
    actions.append(user.disabled
      ? button('Enable', 'user-enable', () => change(user, { disabled: false }))
      : button('Disable', 'user-disable', () => change(user, { disabled: true })));
  }
  if (!user.disabled) {
    actions.append(button(user.has_password ? 'Password reset link' : 'New invitation link',
      'user-link', () => passwordLink(user)));
  }
  row.append(actions);
  return row;
}

async function loadUsers() {
  const response = await api('/api/admin/users');
  if (!response.ok) {
    showError(await errorOf(response));
    return;
  }
  const { users } = await response.json();
  me.id = (users.find((u) => u.email === me.email) || {}).id;
  $('user-rows').replaceChildren(...users.map(userRow));
}

function detailText(detail) {
  return Object.entries(detail).map(([k, v]) => `${k}: ${v}`).join(', ');
}

function auditRow(entry) {
  const row = document.createElement('tr');
  row.dataset.testid = 'audit-row';
  row.dataset.action = entry.action;
  const when = new Date(entry.at * 1000);
  row.append(
    cell(when.toLocaleString()), cell(entry.action.replace(/_/g, ' ')), cell(entry.actor.label),
    cell(entry.target), cell(entry.address), cell(detailText(entry.detail)),
  );
  return row;
}

async function loadAudit(more = false) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (more && oldest !== null) query.set('before', String(oldest));
  if ($('audit-action').value) query.set('action', $('audit-action').value);
  const response = await api(`/api/admin/audit?${query}`);
  if (!response.ok) return;
  const { entries } = await response.json();
  const rows = entries.map(auditRow);
  if (more) $('audit-rows').append(...rows);
  else $('audit-rows').replaceChildren(...rows);
  if (entries.length) oldest = entries[entries.length - 1].at;
  $('audit-more').hidden = entries.length < PAGE;
}

function reloadAudit() {
  oldest = null;
  return loadAudit(false);
}

$('invite-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  showError('');
  const email = $('invite-email').value.trim();
  if (!email) {
    showError('Enter the email address of the person to invite.');
    return;
  }
  const response = await api('/api/admin/users', 'POST', { email, role: $('invite-role').value });
  if (!response.ok) {
    showError(await errorOf(response));
    return;
  }
  const body = await response.json();
  $('invite-email').value = '';
  showLink(body.link, body.user.email, body.link_expires_in);
  await Promise.all([loadUsers(), reloadAudit()]);
});

$('copy-link').addEventListener('click', () => {
  navigator.clipboard?.writeText($('new-link').value).catch(() => $('new-link').select());
});
$('audit-more').addEventListener('click', () => loadAudit(true));
$('audit-action').addEventListener('change', reloadAudit);

async function start() {
  for (const action of ACTIONS) $('audit-action').append(new Option(action.replace(/_/g, ' '), action));
  let response = null;
  try {
    response = await fetch('/api/auth/me');
  } catch {
    // unreachable: shown as not logged in
  }
  if (!response || !response.ok) {
    $('admin-needed-text').textContent = 'Log in as an admin to manage accounts.';
    $('admin-needed').hidden = false;
    return;
  }
  me = await response.json();
  csrfToken = me.csrf_token;
  $('account-email').textContent = `${me.email} (${me.role})`;
  $('account').hidden = false;
  if (me.role !== 'admin') {
    $('admin-needed-text').textContent = `Logged in as ${me.email}: only admins manage accounts.`;
    $('admin-needed').hidden = false;
    return;
  }
  $('users').hidden = false;
  $('audit').hidden = false;
  await Promise.all([loadUsers(), reloadAudit()]);
}

start();
