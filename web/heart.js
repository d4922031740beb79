// Heart rate on the wire: the `telemetry` data channel's sender (docs/protocol.md, "Data
// channels") and the zone names and colours shared by the class and summary pages.
//
// The sender mirrors pulseroom/hr_link.py: every reading gets this page's next `seq` and
// `t = Date.now()`, is kept until a `telemetry_ack` names [seq, t], and whatever is not
// acknowledged is sent again, oldest first and at most 15 a second, whenever a channel
// opens. The server stores a re-sent reading once (its key includes seq and t).

export const ZONE_NAMES = ['rest', 'very light', 'light', 'moderate', 'hard', 'maximum'];
export const ZONE_COLORS = ['#8a919e', '#4d9dff', '#3ddc84', '#ffd23f', '#ff8c32', '#ff4d5e'];
export const ZONE_FLOORS = [0.5, 0.6, 0.7, 0.8, 0.9];

const RESEND_PER_SECOND = 15; // under the SFU's 20 messages/s per channel
const MAX_PENDING = 20000; // > 5 h at one reading a second
const MAX_SAVED = 5000; // what a reload can still re-send (sessionStorage is ~5 MB)
const MAX_AGE_MS = 11 * 3600 * 1000; // the server refuses t more than 12 h old
const SAVE_INTERVAL_MS = 5000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A decoded strap measurement as a protocol message, or null if the server would refuse it. */
export function readingMessage(measurement, seq, t) {
  const bpm = measurement.bpm;
  if (!Number.isInteger(bpm) || bpm < 20 || bpm > 300) return null; // no contact reads as 0
  const message = { v: 1, type: 'hr', seq, t, bpm };
  const rr = (measurement.rr_ms || []).filter((ms) => ms > 0 && ms < 5000).slice(-32);
  if (rr.length) message.rr = rr.map((ms) => Math.round(ms * 10) / 10);
  if (Number.isInteger(measurement.energy_kj)) message.energy_kj = measurement.energy_kj;
  if (typeof measurement.contact === 'boolean') message.contact = measurement.contact;
  return message;
}

export class TelemetrySender {
  /** `storageKey`: where this tab keeps its counter and unacknowledged readings (per class). */
  constructor(storageKey) {
    this.storageKey = storageKey;
    this.seq = 0;
    this.owner = null; // the participant the pending readings belong to
    this.pending = new Map(); // "seq:t" -> JSON text, oldest first
    this.channel = null;
    this.dirty = false;
    this.counts = { sent: 0, resent: 0, acked: 0, dropped: 0 };
    this.load();
    this.timer = setInterval(() => this.save(), SAVE_INTERVAL_MS);
    window.addEventListener('pagehide', () => this.save(true));
  }

  /**
   * Whose readings these are (the join ack's `you.id`). Readings kept for someone else
   * (the server gave this tab a new identity) cannot be delivered as theirs: dropped.
   */
  setOwner(participantId) {
    if (this.owner && this.owner !== participantId && this.pending.size) {
      this.counts.dropped += this.pending.size;
      this.pending.clear();
    }
    this.owner = participantId;
    this.dirty = true;
  }

  /** Queue one decoded measurement; sent at once if the channel is open. Returns the message or null. */
  record(measurement) {
    const t = Date.now();
    const message = readingMessage(measurement, this.seq, t);
    if (!message) return null;
    this.seq += 1;
    const text = JSON.stringify(message);
    if (this.pending.size >= MAX_PENDING) {
      this.pending.delete(this.pending.keys().next().value); // the oldest is the least useful
      this.counts.dropped += 1;
    }
    this.pending.set(`${message.seq}:${t}`, text);
    this.dirty = true;
    if (this.trySend(this.channel, text)) this.counts.sent += 1;
    try { sessionStorage.setItem(`${this.storageKey}.seq`, String(this.seq)); } catch { /* private mode */ }
    return message;
  }

  trySend(channel, text) {
    if (!channel || channel.readyState !== 'open') return false;
    try {
      channel.send(text);
      return true;
    } catch {
      return false; // closing under us: it stays pending for the next channel
    }
  }

  /** Use this channel from now on; re-send what is unacknowledged whenever it opens. */
  attach(channel) {
    this.channel = channel;
    const onOpen = () => this.resend(channel);
    if (channel.readyState === 'open') onOpen();
    else channel.addEventListener('open', onOpen, { once: true });
    channel.addEventListener('close', () => {
      if (this.channel === channel) this.channel = null;
    });
  }

  detach() {
    this.channel = null;
  }

  /** Anything sent before this channel opened may never have arrived: send it again. */
  async resend(channel) {
    this.expire();
    for (const [key, text] of [...this.pending]) {
      if (this.channel !== channel || channel.readyState !== 'open') return;
      if (!this.pending.has(key)) continue; // acknowledged meanwhile
      if (this.trySend(channel, text)) this.counts.resent += 1;
      await sleep(1000 / RESEND_PER_SECOND);
    }
  }

  /** A `telemetry_ack`: these readings are durable on the server. */
  ack(pairs) {
    for (const pair of pairs || []) {
      if (Array.isArray(pair) && pair.length === 2 && this.pending.delete(`${pair[0]}:${pair[1]}`)) {
        this.counts.acked += 1;
        this.dirty = true;
      }
    }
  }

  /** The server refuses readings more than 12 h old: never keep re-sending those. */
  expire() {
    const oldest = Date.now() - MAX_AGE_MS;
    for (const key of [...this.pending.keys()]) {
      if (Number(key.split(':')[1]) >= oldest) break;
      this.pending.delete(key);
      this.counts.dropped += 1;
    }
  }

  load() {
    try {
      this.seq = Number(sessionStorage.getItem(`${this.storageKey}.seq`)) || 0;
      const saved = JSON.parse(sessionStorage.getItem(`${this.storageKey}.pending`) || 'null');
      if (saved && Array.isArray(saved.items)) {
        this.owner = saved.owner || null;
        for (const [key, text] of saved.items) this.pending.set(key, text);
      }
    } catch {
      // nothing usable was kept
    }
  }

  save(force = false) {
    if (!this.dirty && !force) return;
    this.dirty = false;
    try {
      sessionStorage.setItem(`${this.storageKey}.seq`, String(this.seq));
      const items = [...this.pending].slice(-MAX_SAVED);
      sessionStorage.setItem(`${this.storageKey}.pending`, JSON.stringify({ owner: this.owner, items }));
    } catch {
      // full or private mode: a reload loses what is unacknowledged (a live page does not)
    }
  }

  /** Forget everything (the class ended: nothing can be delivered any more). */
  clear() {
    this.pending.clear();
    this.channel = null;
    this.dirty = true;
    this.save();
  }

  stats() {
    return { seq: this.seq, pending: this.pending.size, open: this.channel?.readyState === 'open', ...this.counts };
  }
}
