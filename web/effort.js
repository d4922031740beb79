// Effort points in the class page (docs/protocol.md, "Effort points"): the class's
// target, a leaderboard, a participant's choice to stay off it, and the instructor's
// points per zone and target.
//
// A participant's board is the server's (`leaderboard`: only those who did not opt out,
// sent only while one has not opted out oneself). The instructor's is built here from the
// `hr` readings, which carry everyone's points, so it shows everyone.

import { ZONE_NAMES } from './heart.js';

const HOST_BOARD_SIZE = 5;
const BOARD_EVERY_MS = 2000; // the instructor's list does not jump about with every beat
const MYZONE = [0, 1, 2, 3, 4, 4];

function el(tag, { className, testid, text, type } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  if (text) node.textContent = text;
  if (type) node.type = type;
  return node;
}

/** "12 min in zones 4–5", "30 points", or null without a target. */
export function targetText(target) {
  if (!target) return null;
  if (target.kind === 'points') return `${target.value} points`;
  const zones = target.from_zone >= 5 ? 'zone 5' : `zones ${target.from_zone}–5`;
  return `${target.value} min in ${zones}`;
}

export class EffortPanel {
  /**
   * panel: the (empty) effort section; request(event, payload): the page's acked emit;
   * toast(message, kind, ms); people(): Map id -> participant; readingOf(id): the latest
   * heart-rate reading of a participant, or undefined.
   */
  constructor({ panel, request, toast, people, readingOf }) {
    Object.assign(this, { panel, request, toast, people, readingOf });
    this.isHost = false;
    this.settings = { points_per_minute: MYZONE, target: null };
    this.onBoard = true;
    this.entries = [];
    this.lastBoard = 0;
    this.boardTimer = null;
    this.build();
  }

  build() {
    const title = el('h3', { text: 'Effort points' });
    title.id = 'effort-title';
    this.panel.setAttribute('aria-labelledby', title.id);
    this.targetLine = el('p', { className: 'hint', testid: 'effort-target' });
    this.board = el('ol', { className: 'leaderboard', testid: 'leaderboard' });
    this.board.setAttribute('aria-label', 'Leaderboard');
    this.boardNote = el('p', { className: 'hint', testid: 'leaderboard-note' });
    const toggleRow = el('label', { className: 'row board-toggle' });
    this.toggle = el('input', { testid: 'board-toggle', type: 'checkbox' });
    this.toggle.checked = true;
    this.toggle.addEventListener('change', () => this.setOnBoard(this.toggle.checked));
    toggleRow.append(this.toggle, 'Show me on the class leaderboard');
    this.toggleRow = toggleRow;
    this.form = this.buildForm();
    this.panel.replaceChildren(title, this.targetLine, this.board, this.boardNote, toggleRow, this.form);
  }

  /** The instructor's points per zone and target. */
  buildForm() {
    const details = el('details', { className: 'effort-settings' });
    details.append(el('summary', { text: 'Points and target', testid: 'effort-settings-toggle' }));
    const form = el('form', { testid: 'effort-form' });
    form.noValidate = true;
    const zones = el('div', { className: 'effort-zones' });
    this.zoneInputs = ZONE_NAMES.map((name, zone) => {
      const input = el('input', { testid: `effort-zone-${zone}`, type: 'number' });
      Object.assign(input, { id: `effort-zone-${zone}`, min: '0', max: '20', step: '0.5', required: true });
      const label = el('label', { text: `Z${zone}` });
      label.htmlFor = input.id;
      label.title = `Zone ${zone}: ${name}`;
      input.setAttribute('aria-label', `Points a minute in zone ${zone} (${name})`);
      const wrap = el('div');
      wrap.append(label, input);
      zones.append(wrap);
      return input;
    });
    this.kind = el('select', { testid: 'effort-target-kind', className: 'target-kind' });
    for (const [value, text] of [['', 'No target'], ['zone_minutes', 'Minutes in zone'], ['points', 'Points']]) {
      const option = el('option', { text });
      option.value = value;
      this.kind.append(option);
    }
    this.kind.setAttribute('aria-label', 'Class target');
    this.value = el('input', { testid: 'effort-target-value', type: 'number' });
    Object.assign(this.value, { min: '0', step: '1', value: '12' });
    this.value.setAttribute('aria-label', 'Target value');
    this.fromZone = el('select', { testid: 'effort-target-zone', className: 'target-zone' });
    for (const zone of [1, 2, 3, 4, 5]) {
      const option = el('option', { text: `from zone ${zone}` });
      option.value = String(zone);
      this.fromZone.append(option);
    }
    this.fromZone.value = '4';
    this.fromZone.setAttribute('aria-label', 'Counted from zone');
    const targetRow = el('div', { className: 'row effort-target' });
    targetRow.append(this.kind, this.value, this.fromZone);
    const save = el('button', { testid: 'effort-save', type: 'submit', text: 'Set', className: 'primary' });
    form.append(el('p', { className: 'hint', text: 'Points a minute in each zone (Myzone: 0, 1, 2, 3, 4, 4).' }), zones, targetRow, save);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.saveSettings();
    });
    this.kind.addEventListener('change', () => this.paintForm());
    details.append(form);
    return details;
  }

  /** After every join ack. */
  joined(ack, isHost) {
    this.isHost = isHost;
    const effort = ack.effort || {};
    this.panel.hidden = false;
    this.form.hidden = !isHost;
    this.toggleRow.hidden = isHost;
    this.onBoard = effort.on_board !== false;
    this.toggle.checked = this.onBoard;
    this.applySettings(effort.settings || this.settings, { fill: true });
    this.entries = effort.leaderboard || [];
    if (isHost) this.refreshHostBoard();
    else this.paintBoard();
  }

  /** An `effort_settings` event: the instructor changed points or target. */
  onSettings(payload) {
    if (payload && payload.settings) this.applySettings(payload.settings, { fill: this.isHost });
  }

  /** A `leaderboard` event (participants who are on it). */
  onLeaderboard(payload) {
    if (this.isHost || !this.onBoard) return;
    this.entries = (payload && payload.entries) || [];
    this.paintBoard();
  }

  applySettings(settings, { fill }) {
    this.settings = settings;
    const target = targetText(settings.target);
    this.targetLine.textContent = target ? `Class target: ${target}` : 'No class target set.';
    if (fill) {
      settings.points_per_minute.forEach((value, zone) => { this.zoneInputs[zone].value = String(value); });
      this.kind.value = settings.target ? settings.target.kind : '';
      if (settings.target) {
        this.value.value = String(settings.target.value);
        this.fromZone.value = String(settings.target.from_zone || 4);
      }
      this.paintForm();
    }
  }

  paintForm() {
    this.value.hidden = !this.kind.value;
    this.fromZone.hidden = this.kind.value !== 'zone_minutes';
  }

  async saveSettings() {
    const points = this.zoneInputs.map((input) => Number(input.value));
    const target = this.kind.value
      ? { kind: this.kind.value, value: Number(this.value.value), ...(this.kind.value === 'zone_minutes' ? { from_zone: Number(this.fromZone.value) } : {}) }
      : null;
    try {
      const ack = await this.request('effort_settings', { points_per_minute: points, target });
      this.applySettings(ack.settings, { fill: true });
      this.toast('Effort points set for this class.', 'info', 2500);
    } catch {
      // The server's refusal was shown as a toast (session.js); the form keeps its values.
    }
  }

  async setOnBoard(on) {
    try {
      const ack = await this.request('leaderboard_opt_out', { opt_out: !on });
      this.onBoard = ack.on_board;
      this.entries = ack.leaderboard || [];
    } catch {
      this.toggle.checked = this.onBoard; // not changed: show what the server has
    }
    this.paintBoard();
  }

  /** New heart-rate readings: the instructor's board may change (at most every 2 s). */
  readingsChanged() {
    if (!this.isHost) return;
    const wait = this.lastBoard + BOARD_EVERY_MS - performance.now();
    if (wait <= 0) this.refreshHostBoard();
    else if (!this.boardTimer) this.boardTimer = setTimeout(() => { this.boardTimer = null; this.refreshHostBoard(); }, wait);
  }

  refreshHostBoard() {
    this.lastBoard = performance.now();
    const rows = [];
    for (const p of this.people().values()) {
      const points = p.role === 'participant' ? this.readingOf(p.id)?.effort_points : undefined;
      if (points != null) rows.push({ participant_id: p.id, name: p.name, points });
    }
    rows.sort((a, b) => b.points - a.points || a.name.localeCompare(b.name));
    this.entries = rows.slice(0, HOST_BOARD_SIZE);
    this.paintBoard();
  }

  paintBoard() {
    const hidden = !this.isHost && !this.onBoard;
    this.board.hidden = hidden || !this.entries.length;
    this.boardNote.textContent = hidden
      ? 'You are not on the leaderboard, and do not see it.'
      : (this.entries.length ? '' : 'No points yet: they start with the first heart-rate reading.');
    this.board.replaceChildren(...(hidden ? [] : this.entries.map((entry) => {
      const li = el('li', { testid: 'leaderboard-item' });
      li.dataset.participantId = entry.participant_id;
      const name = el('span', { className: 'name', text: entry.name });
      const points = el('span', { className: 'points', text: `${entry.points.toFixed(1)} pts` });
      li.append(name, points);
      return li;
    })));
  }

  /** For tests and debugging (window.pulseroom.effort). */
  hook() {
    return { settings: this.settings, onBoard: this.onBoard, entries: this.entries.map((e) => ({ ...e })) };
  }
}
