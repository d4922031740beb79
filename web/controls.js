// The instructor's controls (docs/protocol.md, "Class controls"): lock the class, mute one
// or all, remove, spotlight, sort the gallery, class clock and the interval timer.
//
// Built into the host panel of the class page and onto each participant's tile. Every
// change goes to the server, which broadcasts `class_state`; the page shows what the
// server says (apply()), never what it merely asked for.

import { timerPosition } from './timer.js';
import { TileMenu } from './tilemenu.js';
import { icon } from './ui.js';

export const PRESETS = {
  tabata: { title: 'Tabata', work: 20, rest: 10, rounds: 8, label: 'Tabata: 8 × 20 s on / 10 s off' },
  '30-30': { title: '30/30', work: 30, rest: 30, rounds: 10, label: '30/30: 10 × 30 s on / 30 s off' },
  '40-20': { title: '40/20', work: 40, rest: 20, rounds: 8, label: '40/20: 8 × 40 s on / 20 s off' },
  emom: { title: 'EMOM', work: 60, rest: 0, rounds: 10, label: 'Every minute: 10 × 60 s' },
};

/** An interval program (protocol `TimerProgram`) of work and rest phases. */
export function program({ title, work, rest, rounds }) {
  const phases = [{ name: 'Work', seconds: work, kind: 'work' }];
  if (rest > 0) phases.push({ name: 'Rest', seconds: rest, kind: 'rest' });
  return { title, phases, rounds };
}

const SORTS = {
  // Highest effort first; no reading yet sorts last.
  effort: (a, b) => (b.pct ?? -1) - (a.pct ?? -1),
  zone: (a, b) => (b.zone ?? -1) - (a.zone ?? -1) || (b.pct ?? -1) - (a.pct ?? -1),
  name: (a, b) => a.name.localeCompare(b.name),
  // Effort points earned in this class (docs/protocol.md, "Effort points").
  points: (a, b) => (b.points ?? -1) - (a.points ?? -1),
};
const SORT_EVERY_MS = 2000; // tiles do not jump about with every beat

function el(tag, { className, testid, text, type } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  if (text) node.textContent = text;
  if (type) node.type = type;
  return node;
}

function numberField(label, testid, value, min, max) {
  const wrap = el('div', { className: 'timer-field' });
  const input = el('input', { testid, type: 'number' });
  input.id = `timer-${testid}`;
  Object.assign(input, { value: String(value), min: String(min), max: String(max), step: '1', required: true });
  input.inputMode = 'numeric';
  const lab = el('label', { text: label });
  lab.htmlFor = input.id;
  wrap.append(lab, input);
  return { wrap, input };
}

export class HostControls {
  /**
   * panel: the (empty) host panel; grid: the tiles.js Grid; request(event, payload): the
   * page's acked emit; clock: a ServerClock; people(): the participants (Map id -> p);
   * readingOf(id): the latest heart-rate reading of a participant, or undefined;
   * toast(message, kind): a short notice; extras: rows of the instructor's own controls
   * (music mode) shown after the first row.
   */
  constructor({ panel, grid, request, clock, people, readingOf, toast, extras = [] }) {
    Object.assign(this, { panel, grid, request, clock, people, readingOf, toast, extras });
    this.enabled = false;
    this.controls = null;
    this.sort = 'join';
    this.ranks = new Map();
    this.boardRanking = false; // the studio TV's board: tiles ranked by points, no controls
    this.lastSort = 0;
    this.sortTimer = null;
    this.menus = new WeakMap(); // tile element -> {menu: its TileMenu, items, name}
    this.build();
    this.buildRemoveDialog();
    // The grid asks us how to order and decorate tiles (only while we are the host).
    grid.orderOf = (id, self) => this.orderOf(id, self);
    grid.decorate = (tile, p, self) => this.decorate(tile, p, self);
  }

  build() {
    const panel = this.panel;
    const title = el('h3', { text: 'Class controls' });
    title.id = 'host-panel-title';
    panel.setAttribute('aria-labelledby', title.id);

    const row = el('div', { className: 'row wrap host-row' });
    this.lockButton = el('button', { testid: 'lock-button', type: 'button', className: 'toggle' });
    this.lockButton.addEventListener('click', () => this.send('lock', { locked: !this.controls?.locked }));
    this.muteAllButton = el('button', { testid: 'mute-all-button', type: 'button', text: 'Mute all' });
    this.muteAllButton.addEventListener('click', () => this.muteAll());
    this.unspotButton = el('button', { testid: 'unspotlight-button', type: 'button', text: 'Spotlight: back to you' });
    this.unspotButton.addEventListener('click', () => this.send('spotlight', { participant_id: null }));
    this.inviteButton = el('button', { testid: 'invite-button', type: 'button', text: 'Copy participant link' });
    this.inviteButton.addEventListener('click', () => this.copyInvite());
    row.append(this.lockButton, this.muteAllButton, this.unspotButton, this.inviteButton);

    const sortRow = el('div', { className: 'row host-row' });
    this.sortSelect = el('select', { testid: 'sort-select' });
    this.sortSelect.id = 'sort-select';
    for (const [value, text] of [['join', 'Join order'], ['effort', 'Effort (% of max HR)'], ['zone', 'Heart-rate zone'], ['points', 'Effort points'], ['name', 'Name']]) {
      const option = el('option', { text });
      option.value = value;
      this.sortSelect.append(option);
    }
    this.sortSelect.addEventListener('change', () => this.setSort(this.sortSelect.value));
    const sortLabel = el('label', { text: 'Sort tiles by' });
    sortLabel.htmlFor = this.sortSelect.id;
    sortRow.append(sortLabel, this.sortSelect);

    const clockRow = el('div', { className: 'row wrap host-row' });
    this.clockButton = el('button', { testid: 'clock-restart-button', type: 'button', text: 'Restart class clock' });
    this.clockButton.addEventListener('click', () => this.send('clock', { action: 'start' }));
    this.clockStop = el('button', { testid: 'clock-stop-button', type: 'button', text: 'Hide clock' });
    this.clockStop.addEventListener('click', () => this.send('clock', { action: 'stop' }));
    clockRow.append(this.clockButton, this.clockStop);

    panel.replaceChildren(title, row, ...this.extras, sortRow, clockRow, this.buildTimerForm());
  }

  buildTimerForm() {
    const form = el('form', { className: 'timer-form', testid: 'timer-form' });
    form.noValidate = true;
    form.setAttribute('aria-label', 'Interval timer');
    const head = el('h4', { text: 'Interval timer' });
    this.presetSelect = el('select', { testid: 'timer-preset' });
    this.presetSelect.id = 'timer-preset';
    for (const [value, preset] of Object.entries(PRESETS)) {
      const option = el('option', { text: preset.label });
      option.value = value;
      this.presetSelect.append(option);
    }
    const custom = el('option', { text: 'Custom…' });
    custom.value = 'custom';
    this.presetSelect.append(custom);
    const presetLabel = el('label', { text: 'Program' });
    presetLabel.htmlFor = this.presetSelect.id;

    this.customBox = el('div', { className: 'timer-custom', testid: 'timer-custom' });
    this.work = numberField('Work (s)', 'timer-work', 30, 1, 3600);
    this.rest = numberField('Rest (s)', 'timer-rest', 15, 0, 3600);
    this.rounds = numberField('Rounds', 'timer-rounds', 8, 1, 100);
    this.customBox.append(this.work.wrap, this.rest.wrap, this.rounds.wrap);
    this.customBox.hidden = true;
    this.presetSelect.addEventListener('change', () => {
      this.customBox.hidden = this.presetSelect.value !== 'custom';
    });
    this.formError = el('p', { className: 'error-text', testid: 'timer-error' });
    this.formError.setAttribute('role', 'alert');
    this.formError.hidden = true;

    const buttons = el('div', { className: 'row wrap host-row' });
    this.startButton = el('button', { testid: 'timer-start', type: 'submit', className: 'primary', text: 'Start timer' });
    this.pauseButton = el('button', { testid: 'timer-pause', type: 'button', text: 'Pause' });
    this.pauseButton.addEventListener('click', () => {
      const paused = this.controls?.timer?.paused_at != null;
      this.send('timer', { action: paused ? 'resume' : 'pause' });
    });
    this.stopButton = el('button', { testid: 'timer-stop', type: 'button', text: 'Stop' });
    this.stopButton.addEventListener('click', () => this.send('timer', { action: 'stop' }));
    buttons.append(this.startButton, this.pauseButton, this.stopButton);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.startTimer();
    });
    form.append(head, presetLabel, this.presetSelect, this.customBox, this.formError, buttons);
    return form;
  }

  buildRemoveDialog() {
    const dialog = el('dialog', { testid: 'remove-dialog' });
    dialog.setAttribute('aria-labelledby', 'remove-title');
    const title = el('h3', { text: 'Remove from the class?' });
    title.id = 'remove-title';
    this.removeText = el('p');
    const row = el('div', { className: 'row' });
    const cancel = el('button', { testid: 'remove-cancel', type: 'button', text: 'Cancel' });
    const confirm = el('button', { testid: 'remove-confirm', type: 'button', className: 'danger', text: 'Remove' });
    cancel.addEventListener('click', () => dialog.close());
    confirm.addEventListener('click', () => {
      dialog.close();
      if (this.removing) this.send('remove', { participant_id: this.removing });
    });
    row.append(cancel, confirm);
    dialog.append(title, this.removeText, row);
    document.body.append(dialog);
    this.removeDialog = dialog;
  }

  /** Show the controls (host) or hide them (participant); after every join. */
  setEnabled(enabled) {
    this.enabled = enabled;
    this.panel.hidden = !enabled;
    if (!enabled) this.ranks.clear();
  }

  /** The class's controls (protocol `ClassState`), from a join ack or `class_state`. */
  apply(controls) {
    this.controls = controls;
    if (!this.enabled || !controls) return;
    const locked = Boolean(controls.locked);
    this.lockButton.setAttribute('aria-pressed', String(locked));
    this.lockButton.textContent = locked ? 'Class locked: unlock' : 'Lock class';
    this.lockButton.title = locked ? 'No one new can join. Click to let people in again.' : 'Stop anyone new from joining';
    this.unspotButton.hidden = !controls.spotlight;
    this.clockStop.hidden = controls.clock_started_at == null;
    this.clockButton.textContent = controls.clock_started_at == null ? 'Start class clock' : 'Restart class clock';
    const timer = controls.timer;
    const at = timer ? timerPosition(timer, this.clock.now()) : null;
    this.pauseButton.hidden = !timer || at.done;
    this.pauseButton.textContent = timer && timer.paused_at != null ? 'Resume' : 'Pause';
    this.stopButton.hidden = !timer;
    const running = Boolean(timer && !at.done);
    this.startButton.textContent = running ? 'Restart timer' : 'Start timer';
    // While a timer runs, restarting it is not the obvious next step: not the primary button.
    this.startButton.classList.toggle('primary', !running);
    for (const tile of this.grid.tiles.values()) this.paintTileButtons(tile);
  }

  /** The class link for participants (the join ack's `join_token`), to the clipboard. */
  async copyInvite() {
    if (!this.inviteLink) return;
    try {
      await navigator.clipboard.writeText(this.inviteLink);
      this.toast('Participant link copied: share it with your class.', 'info', 3000);
    } catch {
      // No clipboard (http, or refused): show it to copy by hand.
      window.prompt('The participant link of this class:', this.inviteLink);
    }
  }

  /** Send a control event; a refusal arrives as an `error` event (a toast). */
  async send(event, payload) {
    try {
      return await this.request(event, payload);
    } catch (error) {
      if (error.code === 'offline') this.toast('Not connected: try again in a moment.');
      return null;
    }
  }

  async muteAll() {
    const ack = await this.send('mute', { participant_id: null });
    if (ack) this.toast(ack.muted.length ? `Muted ${ack.muted.length} participant${ack.muted.length === 1 ? '' : 's'}.` : 'No participant to mute.', 'info', 3000);
  }

  startTimer() {
    this.formError.hidden = true;
    let spec = PRESETS[this.presetSelect.value];
    if (!spec) {
      const values = [this.work.input, this.rest.input, this.rounds.input].map((input) => Number(input.value));
      const [work, rest, rounds] = values;
      const bad = (v, min, max) => !Number.isInteger(v) || v < min || v > max;
      for (const input of [this.work.input, this.rest.input, this.rounds.input]) input.removeAttribute('aria-invalid');
      const problems = [];
      if (bad(work, 1, 3600)) problems.push([this.work.input, 'work 1–3600 s']);
      if (bad(rest, 0, 3600)) problems.push([this.rest.input, 'rest 0–3600 s']);
      if (bad(rounds, 1, 100)) problems.push([this.rounds.input, '1–100 rounds']);
      if (!problems.length && (work + rest) * rounds > 4 * 3600) problems.push([this.rounds.input, 'four hours at most in all']);
      if (problems.length) {
        for (const [input] of problems) input.setAttribute('aria-invalid', 'true');
        this.formError.textContent = `Check the timer: ${problems.map(([, text]) => text).join(', ')}.`;
        this.formError.hidden = false;
        problems[0][0].focus();
        return;
      }
      spec = { title: 'Custom', work, rest, rounds };
    }
    this.send('timer', { action: 'start', program: program(spec) });
  }

  // -- tiles ------------------------------------------------------------------------

  /**
   * Give a participant's tile its one menu button (host only): spotlight, shout-out,
   * mute and remove behind "⋯ Actions for NAME" (tilemenu.js), one keyboard stop a tile.
   */
  decorate(tile, p, self) {
    const wanted = this.enabled && !self && p.role === 'participant';
    if (!wanted) {
      tile.querySelector('.tile-actions')?.remove();
      this.menus.delete(tile);
      return;
    }
    let entry = this.menus.get(tile);
    if (!entry || !tile.contains(entry.menu.root)) {
      const menu = new TileMenu(`tile-menu-${p.id}`);
      const items = {
        spot: menu.add({
          testid: 'tile-spotlight', text: 'Spotlight', icon: icon('star'), checkable: true,
          select: () => this.send('spotlight', { participant_id: this.controls?.spotlight === p.id ? null : p.id }),
        }),
        shout: menu.add({
          testid: 'tile-shout-out', text: 'Shout-out', icon: icon('campaign'),
          select: async () => {
            if (await this.send('shout_out', { participant_id: p.id })) this.toast(`Shout-out sent to ${entry.name}.`, 'info', 2500);
          },
        }),
        mute: menu.add({ testid: 'tile-mute', text: 'Mute', icon: icon('micOff'), select: () => this.send('mute', { participant_id: p.id }) }),
        remove: menu.add({
          testid: 'tile-remove', text: 'Remove from the class', icon: icon('close'), danger: true,
          select: () => this.confirmRemove(tile.dataset.participantId),
        }),
      };
      entry = { menu, items, name: p.name };
      tile.append(menu.root);
      this.menus.set(tile, entry);
    }
    entry.name = p.name;
    this.paintTileButtons(tile);
  }

  paintTileButtons(tile) {
    const entry = this.menus.get(tile);
    if (!entry) return;
    const { menu, name, items: { spot, mute } } = entry;
    menu.setLabel(`Actions for ${name}`);
    const on = this.controls?.spotlight === tile.dataset.participantId;
    spot.setAttribute('aria-checked', String(on));
    TileMenu.setText(spot, on ? 'Stop the spotlight' : 'Spotlight for everyone');
    const muted = tile.dataset.audio === 'false';
    mute.setAttribute('aria-disabled', String(muted));
    TileMenu.setText(mute, muted ? `${name} is muted` : 'Mute');
  }

  confirmRemove(id) {
    const p = this.people().get(id);
    if (!p) return;
    this.removing = id;
    this.removeText.textContent = `${p.name} leaves the class at once and cannot come back with their link while it runs.`;
    this.removeDialog.showModal();
  }

  // -- sorting ----------------------------------------------------------------------

  setSort(key) {
    this.sort = key;
    this.lastSort = 0;
    this.resort();
  }

  /** Heart rate changed: sort again, at most every couple of seconds. */
  readingsChanged() {
    if (!this.ranking || this.sort === 'join' || this.sort === 'name') return;
    const wait = this.lastSort + SORT_EVERY_MS - performance.now();
    if (wait <= 0) this.resort();
    else if (!this.sortTimer) this.sortTimer = setTimeout(() => { this.sortTimer = null; this.resort(); }, wait);
  }

  resort() {
    this.lastSort = performance.now();
    this.ranks.clear();
    const compare = SORTS[this.sort];
    if (this.ranking && compare) {
      const rows = [...this.people().values()].map((p, index) => {
        const reading = this.readingOf(p.id);
        return { id: p.id, name: p.name, index, pct: reading?.pct_max, zone: reading?.zone, points: reading?.effort_points };
      });
      rows.sort((a, b) => compare(a, b) || a.index - b.index);
      rows.forEach((row, rank) => this.ranks.set(row.id, rank + 1));
    }
    if (this.boardRanking) this.showRanks();
    this.grid.reorder();
  }

  /** Whether tiles are sorted: the instructor's choice, or the board's leaderboard. */
  get ranking() {
    return this.enabled || this.boardRanking;
  }

  /**
   * The studio TV's board is a live leaderboard: the tiles ordered by effort points,
   * highest first, each with its place (those without points yet have none).
   */
  rankForBoard(on) {
    this.boardRanking = on;
    if (on) this.sort = 'points';
    this.lastSort = 0;
    this.resort();
  }

  showRanks() {
    for (const [id, rank] of this.ranks) {
      const tile = this.grid.tiles.get(id);
      if (!tile) continue;
      const points = this.readingOf(id)?.effort_points;
      const label = tile.querySelector('.label');
      if (points == null) delete tile.dataset.rank;
      else tile.dataset.rank = String(rank);
      // The place is drawn from the label's own attribute (CSS attr() reads the element).
      if (label) label.dataset.rank = tile.dataset.rank || '';
    }
  }

  /** The CSS order of a tile in the strip: yourself first, then the chosen sort. */
  orderOf(id, self) {
    if (self) return 0;
    return this.ranks.get(id) ?? 1;
  }

  /** For tests and debugging (window.pulseroom.controls). */
  hook() {
    return { sort: this.sort, ranks: Object.fromEntries(this.ranks), controls: this.controls, inviteLink: this.inviteLink };
  }
}
