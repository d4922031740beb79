// The class clock and the interval timer, as every page shows them.
//
// The server sends absolute times on its clock (the `controls` of the join ack and of
// `class_state`); this page renders them against its estimate of that clock (clock.js),
// so the instructor's page and every participant's show the same phase and second.
// `timerPosition` is the arithmetic of signaling/interval_timer.py, in JavaScript.

const TICK_MS = 100;

/**
 * Where a timer (protocol `Timer`) is at server time `now` (unix s):
 * {round, rounds, phaseIndex, phase, remaining (s), elapsed (s), done, paused}.
 */
export function timerPosition(timer, now) {
  const total = timer.total_s;
  const reference = timer.paused_at != null ? timer.paused_at : now;
  const elapsed = Math.min(Math.max(reference - timer.started_at, 0), total);
  const paused = timer.paused_at != null;
  const phases = timer.phases;
  if (elapsed >= total) {
    const last = phases.length - 1;
    return { round: timer.rounds, rounds: timer.rounds, phaseIndex: last, phase: phases[last], remaining: 0, elapsed, done: true, paused };
  }
  const roundS = phases.reduce((sum, p) => sum + p.seconds, 0);
  const roundIndex = Math.floor(elapsed / roundS);
  let into = elapsed - roundIndex * roundS;
  for (let i = 0; i < phases.length; i += 1) {
    if (into < phases[i].seconds) {
      return { round: roundIndex + 1, rounds: timer.rounds, phaseIndex: i, phase: phases[i], remaining: phases[i].seconds - into, elapsed, done: false, paused };
    }
    into -= phases[i].seconds;
  }
  // Floating-point rounding at a round's very end: the next round's first phase.
  return { round: roundIndex + 2, rounds: timer.rounds, phaseIndex: 0, phase: phases[0], remaining: phases[0].seconds, elapsed, done: false, paused };
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

function el(tag, className, testid) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  return node;
}

/** The bar above the video: class clock, lock state, and the interval timer. */
export class ClassBar {
  /** container: an empty element; clock: a ServerClock. */
  constructor(container, clock) {
    this.container = container;
    this.clock = clock;
    this.controls = null;
    this.ticker = null;
    this.shown = {}; // what is on screen, so a tick changes only what changed

    this.clockBox = el('div', 'class-clock', 'class-clock');
    const clockLabel = el('span', 'class-clock-label');
    clockLabel.textContent = 'Class time';
    this.clockValue = el('time', 'class-clock-value', 'clock-value');
    this.clockBox.append(clockLabel, this.clockValue);

    this.lockBadge = el('span', 'lock-badge', 'lock-badge');
    this.lockBadge.textContent = 'Class locked';

    this.timerBox = el('div', 'timer', 'timer');
    this.timerBox.setAttribute('role', 'timer');
    this.timerBox.setAttribute('aria-label', 'Interval timer');
    const head = el('div', 'timer-head');
    this.phaseEl = el('span', 'timer-phase', 'timer-phase');
    this.roundEl = el('span', 'timer-round', 'timer-round');
    head.append(this.phaseEl, this.roundEl);
    this.remainingEl = el('span', 'timer-remaining', 'timer-remaining');
    const progress = el('div', 'timer-progress');
    progress.setAttribute('aria-hidden', 'true');
    this.progressFill = el('span', 'timer-progress-fill');
    progress.append(this.progressFill);
    // Screen readers hear each new phase, not every second.
    this.announcer = el('span', 'sr-only');
    this.announcer.setAttribute('aria-live', 'polite');
    this.timerBox.append(head, this.remainingEl, progress, this.announcer);

    container.replaceChildren(this.clockBox, this.lockBadge, this.timerBox);
    this.apply(null);
  }

  /** New controls (protocol `ClassState`) from a join ack or `class_state`. */
  apply(controls) {
    this.controls = controls;
    this.shown = {};
    const timer = controls && controls.timer;
    const clockOn = Boolean(controls && controls.clock_started_at != null);
    this.clockBox.hidden = !clockOn;
    this.lockBadge.hidden = !(controls && controls.locked);
    this.timerBox.hidden = !timer;
    this.container.hidden = !clockOn && !timer && !(controls && controls.locked);
    if (!timer) this.announced = null;
    this.tick();
    if ((clockOn || timer) && !this.ticker) this.ticker = setInterval(() => this.tick(), TICK_MS);
    if (!clockOn && !timer && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  stop() {
    clearInterval(this.ticker);
    this.ticker = null;
  }

  tick() {
    const controls = this.controls;
    if (!controls) return;
    const now = this.clock.now();
    if (controls.clock_started_at != null) {
      const text = formatDuration(now - controls.clock_started_at);
      if (text !== this.shown.clock) {
        this.shown.clock = text;
        this.clockValue.textContent = text;
      }
    }
    if (controls.timer) this.paintTimer(controls.timer, timerPosition(controls.timer, now));
  }

  paintTimer(timer, at) {
    const seconds = Math.ceil(at.remaining - 1e-6);
    const state = at.done ? 'done' : at.paused ? 'paused' : 'running';
    const key = `${at.round}|${at.phaseIndex}|${seconds}|${state}`;
    const box = this.timerBox;
    if (key !== this.shown.timer) {
      this.shown.timer = key;
      box.dataset.phase = at.phase.name;
      box.dataset.kind = at.phase.kind;
      box.dataset.remaining = String(seconds);
      box.dataset.round = String(at.round);
      box.dataset.rounds = String(at.rounds);
      box.dataset.state = state;
      // When this second was put on screen (wall clock, ms): what was shown is then
      // comparable across pages even if one page's ticks are late (a starved CPU).
      box.dataset.shownAt = String(Math.round(performance.timeOrigin + performance.now()));
      this.phaseEl.textContent = at.done ? 'Done' : at.phase.name + (at.paused ? ' · paused' : '');
      const title = timer.title ? `${timer.title} · ` : '';
      this.roundEl.textContent = `${title}Round ${at.round}/${at.rounds}`;
      this.remainingEl.textContent = seconds >= 60 ? formatDuration(seconds) : String(seconds);
      this.remainingEl.setAttribute('aria-label', `${seconds} seconds left`);
      const phaseKey = at.done ? 'done' : `${at.round}|${at.phaseIndex}`;
      if (phaseKey !== this.announced) {
        this.announced = phaseKey;
        this.announcer.textContent = at.done
          ? 'Interval timer finished'
          : `${at.phase.name}, ${at.phase.seconds} seconds, round ${at.round} of ${at.rounds}`;
      }
    }
    const fraction = at.done ? 1 : 1 - at.remaining / at.phase.seconds;
    this.progressFill.style.width = `${(fraction * 100).toFixed(1)}%`;
  }

  /** What the timer shows now, for tests and debugging (window.pulseroom.timer). */
  hook() {
    const timer = this.controls && this.controls.timer;
    if (!timer) return null;
    const at = timerPosition(timer, this.clock.now());
    return {
      phase: at.phase.name, kind: at.phase.kind, round: at.round, rounds: at.rounds,
      remaining: at.remaining, done: at.done, paused: at.paused, server_now: this.clock.now(),
    };
  }
}
