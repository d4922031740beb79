// Co-instructors of one class on the instructor's home page: a disclosure that lists who
// else hosts it and lets the class's creator add an instructor by address or take the
// rights back (/api/rooms/{id}/co-instructors, docs/protocol.md "Co-instructors").

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

async function messageOf(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // not JSON
  }
  return `The server could not do that (HTTP ${response.status}).`;
}

/**
 * The "Co-instructors" disclosure for class `classId`. csrf(): the session's CSRF token
 * now (the page may have logged in again since).
 */
export function coInstructorsPanel(classId, title, csrf) {
  const path = `/api/rooms/${encodeURIComponent(classId)}/co-instructors`;
  const panel = element('details', { className: 'co-instructors' });
  panel.dataset.testid = 'co-instructors';
  const list = element('ul', { className: 'co-list' });
  const status = element('p', { className: 'hint', role: 'status' });
  const input = element('input', {
    type: 'email', required: true, autocomplete: 'off', placeholder: 'instructor@example.com',
  });
  input.dataset.testid = 'co-email';
  const label = element('label', { textContent: 'Instructor\'s address' }, input);
  const add = element('button', { type: 'submit', textContent: 'Add co-instructor' });
  const form = element('form', { className: 'co-add' }, label, add);
  panel.append(element('summary', { textContent: 'Co-instructors' }), list, form, status);
  panel.querySelector('summary').setAttribute('aria-label', `Co-instructors of ${title}`);

  async function send(method, url, body) {
    const headers = { 'X-CSRF-Token': csrf() };
    if (body) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(url, { method, headers, body: body && JSON.stringify(body) });
    } catch {
      throw new Error('Could not reach the server. Check your connection and try again.');
    }
    if (!response.ok) throw new Error(await messageOf(response));
    return response.json();
  }

  function show(listing) {
    const people = listing.co_instructors.map((person) => {
      const remove = element('button', { type: 'button', textContent: 'Remove' });
      remove.setAttribute('aria-label', `Remove ${person.email} as co-instructor`);
      remove.addEventListener('click', async () => {
        remove.disabled = true;
        try {
          show(await send('DELETE', `${path}/${encodeURIComponent(person.user_id)}`));
          status.textContent = `${person.email} no longer hosts this class; the links they had stop working.`;
        } catch (error) {
          status.textContent = error.message;
          remove.disabled = false;
        }
      });
      const note = person.disabled ? ' (account disabled)' : '';
      return element('li', {}, element('span', { textContent: person.email + note }), remove);
    });
    list.replaceChildren(...people);
    if (!people.length) list.append(element('li', { className: 'hint', textContent: 'Only you host this class.' }));
  }

  panel.addEventListener('toggle', async () => {
    if (!panel.open || panel.dataset.loaded) return;
    try {
      show(await send('GET', path));
      panel.dataset.loaded = 'true';
    } catch (error) {
      status.textContent = error.message;
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const email = input.value.trim();
    if (!email) return;
    add.disabled = true;
    try {
      show(await send('POST', path, { email }));
      status.textContent = `${email} now hosts this class: it is in their list of classes.`;
      input.value = '';
    } catch (error) {
      status.textContent = error.message;
      input.focus();
    } finally {
      add.disabled = false;
    }
  });
  return panel;
}
