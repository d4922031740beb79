// Home page: create a class (POST /api/rooms) and show its two links.

const form = document.getElementById('create-form');
const titleInput = document.getElementById('title-input');
const createButton = document.getElementById('create-button');
const errorText = document.getElementById('create-error');
const result = document.getElementById('result');

function showError(message) {
  errorText.textContent = message;
  errorText.hidden = false;
}

// The API answers errors as {"error": {"code", "message"}}; anything else is unexpected.
async function readError(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // not JSON: fall through to a generic message
  }
  return `The server could not create the class (HTTP ${response.status}).`;
}

function postRoom(title, headers = {}) {
  return fetch('/api/rooms', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ title }),
  });
}

async function createClass(title) {
  let response;
  try {
    response = await postRoom(title);
    // Logged in (a session cookie): a state change needs the session's CSRF token.
    if (response.status === 403 && (await response.clone().json()).error?.code === 'csrf_failed') {
      const me = await fetch('/api/auth/me');
      if (me.ok) response = await postRoom(title, { 'X-CSRF-Token': (await me.json()).csrf_token });
    }
  } catch {
    throw new Error('Could not reach the server. Check your connection and try again.');
  }
  if (!response.ok) throw new Error(await readError(response));
  return response.json();
}

function showResult(data) {
  document.getElementById('result-title').textContent = `“${data.room.title}” is ready`;
  document.getElementById('host-link').value = data.host_link;
  document.getElementById('join-link').value = data.join_link;
  document.getElementById('open-host').href = data.host_link;
  const expires = new Date(data.expires_at * 1000);
  document.getElementById('expires').textContent =
    `Both links work until ${expires.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}.`;
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
    showResult(await createClass(title));
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
