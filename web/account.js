// The account page: /setup (first admin, from the link the server logs at start),
// /password (a one-time link from `pulseroom user add|reset`), /login and /signup (a
// participant account, unless the server turned sign-up off), /forgot (a reset link by
// mail, where the server sends mail).
// The link's token is in the fragment (#token=…), so it never reaches server logs.

const page = location.pathname.replace(/\/+$/, '').split('/').pop();
const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
// Drop the token from the address bar (and from history) once read.
if (token) history.replaceState(null, '', location.pathname);

const form = document.getElementById('account-form');
const emailInput = document.getElementById('email-input');
const passwordInput = document.getElementById('password-input');
const button = document.getElementById('account-button');
const errorText = document.getElementById('account-error');

const PAGES = {
  setup: {
    title: 'Create the admin account',
    lead: 'This server has no admin yet. The first account made with this link becomes its admin.',
    button: 'Create admin',
    email: true,
    url: '/api/auth/setup',
    body: () => ({ token, email: emailInput.value, password: passwordInput.value }),
    done: (data) => [`You are the admin, logged in as ${data.email}.`, '/'],
  },
  password: {
    title: 'Set your password',
    lead: 'This link works once.',
    button: 'Set password',
    email: false,
    url: '/api/auth/password',
    body: () => ({ token, password: passwordInput.value }),
    done: (data) => [`Password set for ${data.email}. You can log in now.`, '/login'],
  },
  signup: {
    title: 'Create a participant account',
    lead: 'Optional: classes need no account. With one, your heart-rate zones follow you from class to class, and your classes are kept with their figures on your page.',
    button: 'Create account',
    email: true,
    url: '/api/auth/signup',
    body: () => ({ email: emailInput.value, password: passwordInput.value }),
    done: (data) => [`Account created: you are logged in as ${data.email}. Join classes by their links while logged in.`, '/me'],
  },
  forgot: {
    title: 'Forgot your password?',
    lead: 'Give the address of your account: a link to set a new password is mailed to it.',
    button: 'Mail me a link',
    email: true,
    password: false,
    url: '/api/auth/forgot',
    body: () => ({ email: emailInput.value }),
    done: (data) => [data.message, '/login'],
  },
  login: {
    title: 'Log in',
    lead: '',
    button: 'Log in',
    email: true,
    url: '/api/auth/login',
    body: () => ({ email: emailInput.value, password: passwordInput.value }),
    // A participant's place is their own page; instructors and admins start classes.
    done: (data) => [`Logged in as ${data.email} (${data.role}).`, data.role === 'participant' ? '/me' : '/'],
  },
};
const mode = PAGES[page] || PAGES.login;

document.getElementById('account-title').textContent = mode.title;
document.getElementById('account-lead').textContent = mode.lead;
document.getElementById('email-field').hidden = !mode.email;
document.getElementById('password-field').hidden = mode.password === false;
document.getElementById('password-hint').hidden = page === 'login';
passwordInput.autocomplete = page === 'login' ? 'current-password' : 'new-password';
button.textContent = mode.button;

function showError(message) {
  errorText.textContent = message;
  errorText.hidden = false;
}

// Between logging in and signing up, a link to the other.
if (page === 'login' || page === 'signup') {
  const other = document.getElementById('account-other');
  const link = document.createElement('a');
  link.href = page === 'login' ? '/signup' : '/login';
  link.textContent = page === 'login' ? 'Create a participant account' : 'Log in';
  other.append(page === 'login' ? 'Taking part in classes? ' : 'Have an account? ', link,
    page === 'login' ? ' (optional).' : '.');
  other.hidden = false;
}

if (!['login', 'signup', 'forgot'].includes(page) && !token) showError('This page needs the whole link, with its #token=… part.');

// Single sign-on: a "Sign in with …" button when the server has a provider configured.
async function showSingleSignOn() {
  try {
    const response = await fetch('/api/auth/sso');
    const sso = response.ok ? await response.json() : {};
    if (!sso.enabled) return;
    const link = document.getElementById('sso-button');
    link.textContent = `Sign in with ${sso.name}`;
    link.href = sso.start;
    document.getElementById('sso').hidden = false;
  } catch {
    // No button then: the password form still works.
  }
}
if (page === 'login') showSingleSignOn();

// With mail configured (PULSEROOM_SMTP_URL), a forgotten password is reset by mail.
async function offerReset() {
  try {
    const response = await fetch('/api/auth/forgot');
    if (!response.ok || !(await response.json()).available) return;
    const link = document.createElement('a');
    link.href = '/forgot';
    link.dataset.testid = 'forgot-link';
    link.textContent = 'Forgot your password?';
    const other = document.getElementById('account-other');
    other.append(' ', link);
    other.hidden = false;
  } catch {
    // Without it the admin hands out password links, as without mail.
  }
}
if (page === 'login') offerReset();

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  errorText.hidden = true;
  button.disabled = true;
  try {
    const response = await fetch(mode.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(mode.body()),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      showError((data.error && data.error.message) || `The server refused (HTTP ${response.status}).`);
      return;
    }
    const [text, next] = mode.done(data);
    document.getElementById('account-done-text').textContent = text;
    document.getElementById('account-next').href = next;
    form.hidden = true;
    document.getElementById('account-done').hidden = false;
  } catch {
    showError('Could not reach the server. Check your connection and try again.');
  } finally {
    button.disabled = false;
  }
});
