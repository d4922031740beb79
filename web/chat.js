// The chat panel: history from the join ack, live `chat` events, and the send box.
// Every message is rendered with textContent, so chat text can never become markup.

const timeFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });

export class Chat {
  /** send(text) must resolve when the server accepted the message and throw otherwise. */
  constructor({ log, form, input, button, send }) {
    this.log = log;
    this.form = form;
    this.input = input;
    this.button = button;
    this.send = send;
    this.seen = new Set(); // message ids: the sender gets its own message as an event too
    this.selfId = null;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  async submit() {
    const text = this.input.value.trim();
    if (!text) return;
    this.button.disabled = true;
    try {
      await this.send(text);
      this.input.value = '';
    } catch {
      // The server's `error` event already shows why in a toast; keep the text to retry.
    } finally {
      this.button.disabled = false;
      this.input.focus();
    }
  }

  /** Replace the log with the join ack's history (oldest first). */
  reset(messages, selfId) {
    this.selfId = selfId;
    this.seen.clear();
    this.log.replaceChildren();
    for (const message of messages) this.add(message);
    if (!messages.length) {
      const empty = document.createElement('li');
      empty.className = 'empty';
      empty.textContent = 'No messages yet. Say hi to the class!';
      this.log.append(empty);
    }
  }

  add(message) {
    if (this.seen.has(message.id)) return;
    this.seen.add(message.id);
    this.log.querySelector('.empty')?.remove();
    // Stay at the bottom only if the reader already was there (do not yank them down).
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;

    const item = document.createElement('li');
    item.dataset.testid = 'chat-message';
    item.dataset.messageId = message.id;
    item.dataset.participantId = message.participant_id;
    if (message.participant_id === this.selfId) item.classList.add('mine');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = message.name;
    item.append(who);
    if (message.role === 'host') {
      // The server says who the instructor is: a participant's name cannot fake this.
      item.classList.add('instructor');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.testid = 'chat-instructor';
      badge.textContent = 'Instructor';
      item.append(badge);
    }
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = timeFormat.format(new Date(message.sent_at * 1000));
    const text = document.createElement('div');
    text.className = 'text';
    text.dataset.testid = 'chat-text';
    text.textContent = message.text;
    item.append(time, text);
    this.log.append(item);

    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  setEnabled(enabled) {
    this.input.disabled = !enabled;
    this.button.disabled = !enabled;
  }
}
