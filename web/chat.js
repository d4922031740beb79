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
    // Following the newest message until the reader scrolls up; then a cue counts what
    // arrived below, and takes them down when pressed.
    this.pinned = true;
    this.unread = 0;
    this.cue = document.createElement('button');
    this.cue.type = 'button';
    this.cue.className = 'chat-unread';
    this.cue.dataset.testid = 'chat-unread';
    this.cue.hidden = true;
    this.cue.addEventListener('click', () => this.toBottom());
    log.after(this.cue);
    // Only the reader unpins it (wheel, touch, keys, the scrollbar): layout changes that
    // move the log (panels opening above, the window resized) do not.
    this.reading = 0;
    const intent = () => { this.reading = Date.now(); };
    for (const type of ['wheel', 'touchmove', 'keydown', 'pointerdown']) log.addEventListener(type, intent, { passive: true });
    log.addEventListener('scroll', () => {
      if (this.atBottom()) {
        this.pinned = true;
        this.clearUnread();
      } else if (Date.now() - this.reading < 1500) {
        this.pinned = false;
      }
    });
    // The log gets its size only once shown (and again when the window changes): a pinned
    // log goes back to its newest message then, or a late joiner would see the oldest.
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => { if (this.pinned) this.log.scrollTop = this.log.scrollHeight; }).observe(log);
    }
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
    this.pinned = true;
    this.clearUnread();
    for (const message of messages) this.add(message);
    this.toBottom();
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

    // Stay at the bottom only if the reader already was there (do not yank them down).
    if (this.pinned || message.participant_id === this.selfId) this.toBottom();
    else {
      this.unread += 1;
      this.cue.textContent = `${this.unread} new message${this.unread === 1 ? '' : 's'} ↓`;
      this.cue.hidden = false;
    }
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  toBottom() {
    this.log.scrollTop = this.log.scrollHeight;
    this.pinned = true;
    this.clearUnread();
  }

  clearUnread() {
    this.unread = 0;
    this.cue.hidden = true;
  }

  setEnabled(enabled) {
    this.input.disabled = !enabled;
    this.button.disabled = !enabled;
  }
}
