// Tells the server whose video this page actually shows (docs/protocol.md, `visibility`),
// so the SFU does not send video to a tile that is scrolled away, or to a background tab.

const DEBOUNCE_MS = 300;

/**
 * Watch the remote tiles inside `container` and call `send(ids)` with the participant ids
 * whose tiles are on screen, whenever that set changes.
 */
export function watchVisibility(container, send) {
  const onScreen = new Set();
  const observed = new WeakSet();
  let timer = null;
  let lastSent = null;

  const flush = () => {
    const ids = document.hidden ? [] : [...onScreen].sort();
    const key = ids.join(',');
    if (key === lastSent) return;
    lastSent = key;
    send(ids);
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(flush, DEBOUNCE_MS);
  };

  const io = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const id = entry.target.dataset.participantId;
      if (entry.isIntersecting && entry.target.isConnected) onScreen.add(id);
      else onScreen.delete(id);
    }
    schedule();
  }, { threshold: 0.05 });

  const scan = () => {
    for (const id of [...onScreen]) {
      if (!container.querySelector(`.tile[data-participant-id="${CSS.escape(id)}"]`)) onScreen.delete(id);
    }
    for (const tile of container.querySelectorAll('.tile:not(.self)')) {
      if (!observed.has(tile)) {
        observed.add(tile);
        io.observe(tile);
      }
    }
    schedule();
  };
  new MutationObserver(scan).observe(container, { childList: true, subtree: true });
  document.addEventListener('visibilitychange', schedule);
  scan();

  return {
    /** Send the current set again (after a rejoin the server starts from "everyone"). */
    resend() {
      lastSent = null;
      schedule();
    },
  };
}
