// The lobby of a scheduled class: before the instructor starts it, everyone who joined
// waits here with a countdown to the scheduled start, and sets up camera and strap (the
// page's own tile and controls work as in class). Nothing is sent or received until the
// class starts (`class_state` with `started: true`): then the session publishes and
// this banner goes. The instructor's page has the "Start class" button (`start_class`).

/** "2 d 3 h", "1:04:05", "4:59": the time left, to the second under a day. */
export function countdownText(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = String(s % 60).padStart(2, '0');
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours}:${String(minutes).padStart(2, '0')}:${secs}`;
  return `${minutes}:${secs}`;
}

export class Lobby {
  /**
   * el: the lobby banner (with [data-part] children: countdown, note, description,
   * start); clock: the page's ServerClock; request(event, payload): the acked emit;
   * toast(message, kind, ms).
   */
  constructor({ el, clock, request, toast }) {
    this.el = el;
    this.clock = clock;
    this.request = request;
    this.toast = toast;
    this.part = (name) => el.querySelector(`[data-part="${name}"]`);
    this.startsAt = null;
    this.ticker = null;
    this.part('start').addEventListener('click', () => this.start());
  }

  /** The class's state (join ack or `class_state`): show the lobby while not started. */
  apply(controls, { isHost, description }) {
    const waiting = Boolean(controls) && controls.started === false;
    this.el.hidden = !waiting;
    this.part('start').hidden = !(waiting && isHost);
    this.part('description').textContent = description || '';
    this.startsAt = waiting ? controls.starts_at : null;
    if (waiting) this.tick();
    else this.stop();
    if (waiting && !this.ticker) this.ticker = setInterval(() => this.tick(), 1000);
  }

  tick() {
    if (this.startsAt === null) return;
    const left = this.startsAt - this.clock.now();
    const countdown = this.part('countdown');
    countdown.textContent = left > 0 ? `Starts in ${countdownText(left)}` : 'Starting soon';
    this.part('note').textContent = this.part('start').hidden
      ? 'Set up your camera and heart-rate strap while you wait: the class begins for everyone when the instructor starts it.'
      : 'Participants wait here until you start the class.';
  }

  async start() {
    const button = this.part('start');
    button.disabled = true;
    try {
      await this.request('start_class', {});
    } catch (error) {
      this.toast(`The class could not be started: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  /** Out of the lobby (started, left, ended). */
  stop() {
    clearInterval(this.ticker);
    this.ticker = null;
  }
}
