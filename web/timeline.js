// The replay's two clocks: a recording's own time (the <video>'s currentTime, seconds from
// the file's first picture) and the class's wall clock (unix seconds), on which the
// heart-rate readings are stamped. The server keeps when each file's zero was
// (`started_at` in GET /api/rooms/{id}/recordings); the file holds any pause of the
// instructor's in real time, so one offset maps the whole file.

const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/;
export const HOLD_S = 30; // a reading stands for the heart rate this long (chart.js's gap)

/**
 * When a recording's zero was (unix s): its `started_at`, else (a file from before the
 * server kept it) the UTC stamp of its id, when the recording was asked for: a second or
 * two early.
 */
export function recordingStart(recording) {
  if (typeof recording.started_at === 'number' && recording.started_at > 0) return recording.started_at;
  const match = STAMP.exec(recording.id || '');
  if (!match) return null;
  const [, y, mo, d, h, mi, s] = match.map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, s) / 1000;
}

/** The wall-clock time (unix s) of a recording's moment `videoTime` (s). */
export function wallTime(startedAt, videoTime) {
  return startedAt + videoTime;
}

/** The recording's moment (s) of a wall-clock time, clamped to [0, duration]. */
export function videoTime(startedAt, wall, duration = Infinity) {
  return Math.min(Math.max(wall - startedAt, 0), duration);
}

/**
 * The heart rate at wall-clock time `t` in `series` ([[unix s, bpm], …], in time order):
 * the latest reading at or before `t`, if it is at most HOLD_S old; else null.
 */
export function bpmAt(series, t) {
  let lo = 0;
  let hi = series.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (series[mid][0] <= t) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0) return null;
  const [at, bpm] = series[lo - 1];
  return t - at <= HOLD_S ? bpm : null;
}

/** The finished recordings of a listing, and the one to show: `wanted` if it is one, else the latest. */
export function pickRecording(recordings, wanted) {
  const finished = recordings.filter((r) => r.complete);
  const chosen = finished.find((r) => r.id === wanted) || finished[finished.length - 1] || null;
  return { finished, chosen };
}
