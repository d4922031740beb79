// The server's clock, as this page estimates it (docs/protocol.md, "Class controls").
//
// The class clock and the interval timer are absolute times on the server's clock; every
// page renders them against its estimate, so all of them show the same second. The
// estimate comes from `time` round trips: offset = server_time - (sent + received) / 2,
// off by at most half the round trip, so the sample with the shortest round trip wins.

const SAMPLES = 5;
const SAMPLE_GAP_MS = 150;
const RESYNC_MS = 30000;
// A round trip this long leaves the offset up to half of it off (a busy page or
// network): keep sampling every couple of seconds until one is quicker.
const GOOD_RTT_MS = 250;
const RETRY_MS = 2000;
// A sample this old no longer vouches for the offset (clocks drift, networks change).
const SAMPLE_TTL_MS = 5 * 60 * 1000;

export class ServerClock {
  /** request(event, payload): the page's acked emit (throws on refusal or timeout). */
  constructor(request) {
    this.request = request;
    this.offsetMs = 0; // server time minus local time
    this.best = null; // {rtt, offset, at}
    this.timer = null;
    this.generation = 0;
  }

  /** Server time now, in unix seconds. */
  now() {
    return (Date.now() + this.offsetMs) / 1000;
  }

  /**
   * A server time that came with an event: a first, rough estimate (the event's travel
   * time is in it), used until a round trip gives a better one.
   */
  hint(serverTime) {
    if (typeof serverTime !== 'number' || this.best) return;
    this.offsetMs = serverTime * 1000 - Date.now();
  }

  /** Start estimating: a few round trips now, one more now and then. */
  start() {
    this.stop();
    const generation = ++this.generation;
    const run = async () => {
      for (let i = 0; i < SAMPLES && generation === this.generation; i += 1) {
        await this.sample();
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_GAP_MS));
      }
      const next = async () => {
        if (generation !== this.generation) return;
        await this.sample();
        if (generation !== this.generation) return;
        this.timer = setTimeout(next, this.best && this.best.rtt <= GOOD_RTT_MS ? RESYNC_MS : RETRY_MS);
      };
      if (generation !== this.generation) return;
      this.timer = setTimeout(next, this.best && this.best.rtt <= GOOD_RTT_MS ? RESYNC_MS : RETRY_MS);
    };
    run();
  }

  stop() {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = null;
  }

  async sample() {
    const sent = Date.now();
    let ack;
    try {
      ack = await this.request('time', {}, 5000);
    } catch {
      return; // offline or refused: keep the estimate we have
    }
    const received = Date.now();
    if (typeof ack.server_time !== 'number') return;
    const rtt = received - sent;
    const offset = ack.server_time * 1000 - (sent + received) / 2;
    const stale = this.best && received - this.best.at > SAMPLE_TTL_MS;
    if (!this.best || stale || rtt <= this.best.rtt) {
      this.best = { rtt, offset, at: received };
      this.offsetMs = offset;
    }
  }

  /** For tests and debugging. */
  hook() {
    return { offset_ms: Math.round(this.offsetMs), rtt_ms: this.best ? this.best.rtt : null };
  }
}
