// Keeping a class in a participant account after the fact (POST /api/me/claim): the
// summary page of a participant who was not logged in offers it with their own token.
// Logged in as a participant: one button. Not logged in: the token waits in this tab's
// sessionStorage while they log in or sign up, and /me (me.js) claims it when it opens.

const PENDING_KEY = 'pulseroom.claim';

/** Remember a visit's token for /me to claim after a login or sign-up in this tab. */
export function rememberClaim(token) {
  try { sessionStorage.setItem(PENDING_KEY, token); } catch { /* private mode */ }
}

/** The token waiting to be claimed, taken out of storage (null if none). */
export function takePendingClaim() {
  try {
    const token = sessionStorage.getItem(PENDING_KEY);
    sessionStorage.removeItem(PENDING_KEY);
    return token;
  } catch {
    return null;
  }
}

/** POST /api/me/claim; resolves to the answer, throws Error(the server's message). */
export async function claim(token, csrfToken) {
  const response = await fetch('/api/me/claim', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'X-CSRF-Token': csrfToken },
    body: JSON.stringify({ token }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `The server refused (HTTP ${response.status}).`);
  return body;
}

/**
 * The summary page's offer (`section`, with a text, a button and two links), for a
 * participant's own token. Hidden for a logged-in instructor or admin.
 */
export async function offerClaim(section, token) {
  const text = section.querySelector('[data-role=text]');
  const button = section.querySelector('button');
  const links = section.querySelector('[data-role=links]');
  let me = null;
  try {
    const response = await fetch('/api/auth/me');
    if (response.ok) me = await response.json();
  } catch {
    return; // offline: nothing to offer
  }
  if (me && me.role !== 'participant') return;
  section.hidden = false;
  if (!me) {
    text.textContent = 'Keep this class with your heart-rate zones and your other classes: log in or create a participant account (optional), and it is added.';
    links.hidden = false;
    for (const link of links.querySelectorAll('a')) link.addEventListener('click', () => rememberClaim(token));
    return;
  }
  text.textContent = `Logged in as ${me.email}: add this class to your classes.`;
  button.hidden = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await claim(token, me.csrf_token);
      text.textContent = 'Added to your classes.';
      button.hidden = true;
      links.hidden = false;
      links.replaceChildren(Object.assign(document.createElement('a'), { href: '/me', textContent: 'My classes' }));
    } catch (error) {
      text.textContent = `Not added: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
}
