// Shout-outs: the instructor praises a participant from their tile; the participant's
// page shows it large for a few seconds; moments worth one (`milestone`) are suggested
// to the instructor with a button that sends it. User text only goes through textContent.

import { icon } from './ui.js';

const SHOWN_MS = 6000;

export class ShoutOuts {
  /**
   * request(event, payload): the session's call; you(): our participant id; board():
   * whether this page is the class's TV board (it shows everyone's); toast(text, kind, ms).
   */
  constructor({ request, you, board = () => false, toast }) {
    Object.assign(this, { request, you, board, toast });
    this.banner = document.createElement('div');
    this.banner.className = 'shout-out';
    this.banner.dataset.testid = 'shout-out';
    this.banner.setAttribute('role', 'status');
    this.banner.hidden = true;
    this.text = document.createElement('span');
    const line = document.createElement('p');
    line.className = 'shout-out-text';
    line.append(icon('campaign'), this.text);
    this.from = document.createElement('p');
    this.from.className = 'shout-out-from';
    this.banner.append(line, this.from);
    document.body.append(this.banner);
    this.suggestions = document.createElement('div');
    this.suggestions.className = 'milestones';
    this.suggestions.dataset.testid = 'milestones';
    document.body.append(this.suggestions);
    this.hideTimer = null;
  }

  /** The instructor's tile button: praise this participant. */
  async send(participantId, name) {
    try {
      await this.request('shout_out', { participant_id: participantId });
      this.toast(`Shout-out sent to ${name}.`, 'info', 2500);
    } catch (error) {
      this.toast(error.message || 'The shout-out was not sent.');
    }
  }

  /** The `shout_out` event: ours (or, on the TV board, anyone's) is shown large. */
  onShoutOut({ shout_out: shout }) {
    if (!shout || (shout.participant_id !== this.you() && !this.board())) return;
    this.text.textContent = shout.text;
    this.from.textContent = `— ${shout.from}`;
    this.banner.hidden = false;
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => { this.banner.hidden = true; }, SHOWN_MS);
  }

  /** The `milestone` event (instructor only): a suggestion with a one-click shout-out. */
  onMilestone({ participant_id: id, name, text }) {
    const card = document.createElement('div');
    card.className = 'milestone';
    card.dataset.testid = 'milestone';
    const what = document.createElement('span');
    what.textContent = text;
    const send = document.createElement('button');
    send.type = 'button';
    send.className = 'primary';
    send.dataset.testid = 'milestone-send';
    send.textContent = 'Shout-out';
    send.addEventListener('click', () => {
      card.remove();
      this.send(id, name);
    });
    const dismiss = document.createElement('button');
    dismiss.type = 'button';
    dismiss.textContent = 'Dismiss';
    dismiss.addEventListener('click', () => card.remove());
    card.append(what, send, dismiss);
    this.suggestions.append(card);
    while (this.suggestions.children.length > 3) this.suggestions.firstElementChild.remove();
    setTimeout(() => card.remove(), 20000);
  }
}
