// Tells the server whose video this page actually shows and how big (docs/protocol.md,
// `visibility`): the SFU sends no video to a tile that is scrolled away or to a
// background tab, and picks each publisher's simulcast layer by the drawn height.

const DEBOUNCE_MS = 300;
// A tile out of view counts as gone only after this long: one the page moves (to the
// stage when spotlighted, into a new layout) is out of view for a frame or two, and
// telling the server would stop its video and restart it at a keyframe (a stall).
const HIDE_MS = 1500;
const MAX_HEIGHT = 4320;
// A tile growing or shrinking by less than this keeps its layer: not worth a message.
const SIZE_TOLERANCE = 0.1;

/** The height in device pixels at which a <video> is drawn, clamped to 0..4320. */
export function renderedHeight(video, ratio = globalThis.devicePixelRatio || 1) {
  const height = Math.round((video?.clientHeight || 0) * ratio);
  return Math.min(Math.max(height, 0), MAX_HEIGHT);
}

/** Whether any height moved by more than the tolerance since `before` was sent. */
export function sizesChanged(before, after, tolerance = SIZE_TOLERANCE) {
  return Object.entries(after).some(([id, height]) => {
    const old = before[id];
    if (old === undefined) return true;
    if (old === 0) return height !== 0;
    return Math.abs(height - old) / old > tolerance;
  });
}

/**
 * Watch the remote tiles inside `container` and call `send({visible, sizes})` with the
 * participant ids whose tiles are on screen and their drawn heights, whenever the set
 * changes or a height changes noticeably.
 */
export function watchVisibility(container, send) {
  const onScreen = new Set();
  const leaving = new Map(); // id -> timer: out of view, still counted for HIDE_MS
  const observed = new Set(); // tiles, let go once they leave the page
  let timer = null;
  let last = null; // {key, sizes} as last sent

  const videoOf = (id) => container.querySelector(`.tile[data-participant-id="${CSS.escape(id)}"] video`);
  const flush = () => {
    clearTimeout(timer);
    timer = null;
    const visible = document.hidden ? [] : [...onScreen].sort();
    const key = visible.join(',');
    const sizes = Object.fromEntries(visible.map((id) => [id, renderedHeight(videoOf(id))]));
    if (last && last.key === key && !sizesChanged(last.sizes, sizes)) return;
    last = { key, sizes };
    send({ visible, sizes });
  };
  // At most DEBOUNCE_MS after the first change, however many follow: a grid whose text
  // changes more often than that (heart rates, points, a speaking cue) must not put the
  // report off for ever, or a participant never asks for a video that came into view.
  const schedule = () => {
    if (timer === null) timer = setTimeout(flush, DEBOUNCE_MS);
  };

  const gone = (id) => {
    leaving.delete(id);
    onScreen.delete(id);
    schedule();
  };
  const io = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const id = entry.target.dataset.participantId;
      if (entry.isIntersecting && entry.target.isConnected) {
        clearTimeout(leaving.get(id));
        leaving.delete(id);
        onScreen.add(id);
      } else if (onScreen.has(id) && !leaving.has(id)) {
        leaving.set(id, setTimeout(() => gone(id), HIDE_MS));
      }
    }
    schedule();
  }, { threshold: 0.05 });
  // Tiles change size with the window, the layout (spotlight, strip) and zoom.
  const resizes = typeof ResizeObserver === 'function' ? new ResizeObserver(schedule) : null;

  const scan = () => {
    for (const id of [...onScreen]) {
      if (!container.querySelector(`.tile[data-participant-id="${CSS.escape(id)}"]`)) {
        clearTimeout(leaving.get(id));
        gone(id);
      }
    }
    for (const tile of [...observed]) {
      if (tile.isConnected) continue;
      observed.delete(tile);
      io.unobserve(tile);
      resizes?.unobserve(tile.querySelector('video'));
    }
    for (const tile of container.querySelectorAll('.tile:not(.self)')) {
      if (!observed.has(tile)) {
        observed.add(tile);
        io.observe(tile);
        resizes?.observe(tile.querySelector('video'));
      }
    }
    schedule();
  };
  new MutationObserver(scan).observe(container, { childList: true, subtree: true });
  document.addEventListener('visibilitychange', schedule);
  scan();

  return {
    /**
     * Send the current state again: after a rejoin (the server starts from "everyone"),
     * or at once (`now`) when what goes with it changed (the viewer's quality cap).
     */
    resend({ now = false } = {}) {
      last = null;
      if (now) flush();
      else schedule();
    },
  };
}
