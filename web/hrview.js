// Showing heart rate in the class page: a badge on each participant's tile (bpm, zone,
// %HRmax, effort points) and, for one's own heart rate, a large readout with a zone bar.
//
// Readings come from `hr` events (batched) and from the join ack's `heart_rates`. The
// server sends everyone's only to the instructor and one's own to oneself, so what this
// page holds is already what it may show. The latest reading per participant is kept
// apart from the tiles, which are rebuilt now and then (gallery on/off, rejoin).

import { ZONE_COLORS, ZONE_NAMES } from './heart.js';

const STALE_MS = 10000;
const LOG_SIZE = 300;

function el(tag, className, testid) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  return node;
}

// What a tile shows instead of a number when the strap's signal is not to be trusted
// (the `hr` reading's `signal`, docs/protocol.md): a confident wrong bpm misleads.
const SIGNAL_CUES = { no_contact: 'no contact', artefacts: 'signal?' };
const SIGNAL_HINTS = {
  no_contact: 'The strap has lost skin contact: moisten the electrodes or tighten it',
  artefacts: 'The strap sends implausible beat intervals: the heart rate may be wrong',
};

/** The cue for a bad signal, or null when the reading can be shown as it is. */
export function signalCue(reading) {
  return SIGNAL_CUES[reading.signal] || null;
}

/** "12.3 pts" (and a tick once the class's target is reached). */
function pointsText(reading) {
  if (reading.effort_points == null) return '';
  return `${reading.effort_points.toFixed(1)} pts${reading.target_progress >= 1 ? ' ✓' : ''}`;
}

export class HeartRateView {
  /** grid: the tiles.js Grid; own: the own-heart-rate section of the page. */
  constructor({ grid, own }) {
    this.grid = grid;
    this.own = own;
    this.selfId = null;
    this.ownMethod = 'hrmax';
    this.latest = new Map(); // participant id -> {reading, at: performance.now() of receipt}
    // For tests and debugging: what this page received, by participant.
    this.stats = { events: 0, readings: {}, log: [] };
    this.buildOwn();
    setInterval(() => this.refreshStale(), 1000);
  }

  buildOwn() {
    const own = this.own;
    own.replaceChildren();
    const main = el('div', 'own-main');
    this.ownBpm = el('span', 'own-bpm', 'own-hr-bpm');
    this.ownBpm.textContent = '--';
    const unit = el('span', 'own-unit');
    this.ownUnit = unit;
    unit.textContent = 'bpm';
    const heart = el('span', 'heart-icon');
    heart.setAttribute('aria-hidden', 'true');
    heart.textContent = '♥';
    main.append(heart, this.ownBpm, unit);
    const detail = el('div', 'own-detail');
    this.ownZone = el('span', 'own-zone', 'own-hr-zone');
    this.ownPct = el('span', 'own-pct', 'own-hr-pct');
    // Effort points so far, and how far towards the class's target (docs/protocol.md).
    this.ownPoints = el('span', 'own-points', 'own-effort');
    // Heart-rate variability (RMSSD over the last minute), for straps that send beat
    // intervals: only this page and the instructor's get it.
    this.ownRmssd = el('span', 'own-rmssd', 'own-hr-rmssd');
    this.ownRmssd.title = 'Heart-rate variability: RMSSD of the beat intervals over the last minute';
    detail.append(this.ownZone, this.ownPct, this.ownPoints, this.ownRmssd);
    // Six segments, zone 0 (under 50 % of max) to 5 (90 % and up), and a marker.
    const bar = el('div', 'zone-bar', 'own-zone-bar');
    bar.setAttribute('aria-hidden', 'true');
    this.segments = ZONE_NAMES.map((name, zone) => {
      const segment = el('span', 'zone-segment');
      segment.style.setProperty('--zone', ZONE_COLORS[zone]);
      segment.title = `Zone ${zone}: ${name}`;
      segment.textContent = String(zone);
      bar.append(segment);
      return segment;
    });
    this.marker = el('span', 'zone-marker');
    bar.append(this.marker);
    this.ownStatus = el('p', 'own-status hint', 'own-hr-status');
    // Screen readers hear the zone when it changes, not every beat.
    this.announcer = el('span', 'sr-only');
    this.announcer.setAttribute('aria-live', 'polite');
    this.announced = null;
    own.append(main, detail, bar, this.ownStatus, this.announcer);
    own.setAttribute('aria-label', 'Your heart rate');
  }

  setSelf(id) {
    this.selfId = id;
  }

  /** Zones by heart-rate reserve (Karvonen) put the marker mid-zone, not at %HRmax. */
  setOwnMethod(method) {
    this.ownMethod = method || 'hrmax';
  }

  /** A line under one's own heart rate (the strap's state). */
  setOwnStatus(text) {
    this.ownStatus.textContent = text || '';
  }

  /** Show the own panel (a strap is paired) even before its first reading. */
  showOwn(show) {
    this.own.hidden = !show && !this.latest.has(this.selfId);
  }

  /** Readings from an `hr` event (live) or the join ack (may be some seconds old). */
  update(readings, { fromAck = false } = {}) {
    if (!fromAck) this.stats.events += 1;
    const now = performance.now();
    const touched = new Set();
    for (const reading of readings || []) {
      const id = reading.participant_id;
      const previous = this.latest.get(id);
      if (previous && previous.reading.t > reading.t) continue; // an older one, re-sent
      let at = now;
      if (fromAck) at = now - Math.max(0, Date.now() - reading.received_at * 1000);
      this.latest.set(id, { reading, at });
      touched.add(id);
      if (!fromAck) this.stats.readings[id] = (this.stats.readings[id] || 0) + 1;
    }
    for (const id of touched) this.paint(id);
    if (!fromAck && touched.size) {
      const renderedAt = Date.now();
      for (const id of touched) {
        const { reading } = this.latest.get(id);
        this.stats.log.push({ participant_id: id, bpm: reading.bpm, seq: reading.seq, t: reading.t, received_at: reading.received_at, rendered_at: renderedAt });
      }
      if (this.stats.log.length > LOG_SIZE) this.stats.log.splice(0, this.stats.log.length - LOG_SIZE);
    }
  }

  reset() {
    this.latest.clear();
    this.paintOwn(null, false);
  }

  /** After the grid was re-rendered: put every badge back. */
  paintAll() {
    for (const id of this.latest.keys()) this.paint(id);
  }

  paint(id) {
    const entry = this.latest.get(id);
    if (!entry) return;
    const stale = performance.now() - entry.at > STALE_MS;
    const tile = this.grid.tiles.get(id);
    if (tile) this.paintBadge(tile, entry.reading, stale);
    if (id === this.selfId) this.paintOwn(entry.reading, stale);
  }

  paintBadge(tile, reading, stale) {
    let badge = tile.querySelector('.hr-badge');
    if (!badge) {
      badge = el('div', 'hr-badge', 'hr');
      const heart = el('span', 'heart-icon');
      heart.setAttribute('aria-hidden', 'true');
      heart.textContent = '♥';
      const bpm = el('span', 'hr-bpm', 'hr-bpm');
      const unit = el('span', 'hr-unit');
      unit.textContent = 'bpm';
      const zone = el('span', 'hr-zone', 'hr-zone');
      const pct = el('span', 'hr-pct', 'hr-pct');
      badge.append(heart, bpm, unit, zone, pct);
      badge.setAttribute('role', 'img');
      tile.append(badge);
    }
    const zoneName = reading.zone_name || ZONE_NAMES[reading.zone] || '';
    // The whole tile takes the zone's colour on the class board (board.js, style.css).
    tile.dataset.zone = stale ? '' : String(reading.zone);
    tile.style.setProperty('--zone', ZONE_COLORS[reading.zone] || ZONE_COLORS[0]);
    badge.dataset.zone = String(reading.zone);
    badge.dataset.stale = String(stale);
    badge.classList.toggle('stale', stale);
    badge.style.setProperty('--zone', ZONE_COLORS[reading.zone] || ZONE_COLORS[0]);
    const cue = signalCue(reading);
    badge.dataset.signal = reading.signal || 'ok';
    badge.classList.toggle('bad-signal', Boolean(cue));
    badge.querySelector('.hr-bpm').textContent = cue || String(reading.bpm);
    badge.querySelector('.hr-unit').hidden = Boolean(cue);
    const zone = badge.querySelector('.hr-zone');
    const name = el('span', 'zone-name');
    name.textContent = zoneName;
    zone.replaceChildren(`Z${reading.zone}`, name);
    zone.dataset.zone = String(reading.zone);
    badge.querySelector('.hr-pct').textContent = `${reading.pct_max}%`;
    let points = tile.querySelector('.hr-points');
    if (!points) {
      points = el('span', 'hr-points', 'hr-points');
      points.setAttribute('aria-hidden', 'true'); // the badge's label says it
      tile.append(points);
    }
    points.hidden = reading.effort_points == null;
    points.textContent = pointsText(reading);
    points.dataset.points = String(reading.effort_points ?? '');
    points.classList.toggle('target-met', reading.target_progress >= 1);
    const effort = reading.effort_points == null ? '' : `, ${reading.effort_points} effort points`;
    badge.setAttribute('aria-label', cue ? `Heart rate: ${SIGNAL_HINTS[reading.signal]}` : `Heart rate ${reading.bpm} bpm, zone ${reading.zone} (${zoneName}), ${reading.pct_max}% of maximum${effort}${stale ? ', no recent reading' : ''}`);
    badge.title = stale ? 'No reading for more than 10 seconds' : (cue ? SIGNAL_HINTS[reading.signal] : `Zone ${reading.zone}: ${zoneName}`);
  }

  paintOwn(reading, stale) {
    if (!reading) {
      this.ownBpm.textContent = '--';
      this.ownZone.textContent = 'Waiting for your strap…';
      this.ownPct.textContent = '';
      this.ownPoints.textContent = '';
      this.ownRmssd.textContent = '';
      this.own.dataset.zone = '';
      this.marker.hidden = true;
      for (const segment of this.segments) segment.classList.remove('active');
      return;
    }
    this.own.hidden = false;
    this.own.dataset.zone = String(reading.zone);
    this.own.dataset.stale = String(stale);
    this.own.classList.toggle('stale', stale);
    this.own.style.setProperty('--zone', ZONE_COLORS[reading.zone] || ZONE_COLORS[0]);
    const cue = signalCue(reading);
    this.own.dataset.signal = reading.signal || 'ok';
    this.ownBpm.textContent = cue || String(reading.bpm);
    const name = reading.zone_name || ZONE_NAMES[reading.zone] || '';
    this.ownZone.textContent = stale ? 'No recent reading' : (cue ? SIGNAL_HINTS[reading.signal] : `Zone ${reading.zone} · ${name}`);
    this.ownRmssd.textContent = reading.rmssd_ms == null ? '' : `HRV ${Math.round(reading.rmssd_ms)} ms`;
    // A bad signal's %max and zone would be as wrong as its bpm.
    this.ownUnit.hidden = Boolean(cue);
    this.ownPct.textContent = cue ? '' : `${reading.pct_max}% of max`;
    this.ownPoints.textContent = reading.effort_points == null ? '' : `${pointsText(reading)}${reading.target_progress == null ? '' : ` · target ${Math.round(reading.target_progress * 100)}%`}`;
    this.segments.forEach((segment, zone) => segment.classList.toggle('active', !cue && zone === reading.zone));
    if (!stale && !cue && reading.zone !== this.announced) {
      this.announced = reading.zone;
      this.announcer.textContent = `Zone ${reading.zone}, ${name}`;
    }
    // The bar spans 40-100 % of max: ten points per segment, zone 0 from 40 to 50.
    let position;
    if (this.ownMethod === 'karvonen') position = ((reading.zone + 0.5) / 6) * 100;
    else position = Math.min(100, Math.max(0, ((reading.pct_max - 40) / 60) * 100));
    this.marker.hidden = Boolean(cue);
    this.marker.style.left = `${position}%`;
  }

  refreshStale() {
    const now = performance.now();
    for (const [id, entry] of this.latest) {
      const stale = now - entry.at > STALE_MS;
      const tile = this.grid.tiles.get(id);
      const badge = tile && tile.querySelector('.hr-badge');
      if ((badge && badge.dataset.stale !== String(stale)) || (id === this.selfId && this.own.dataset.stale !== String(stale))) {
        this.paint(id);
      }
    }
  }
}
