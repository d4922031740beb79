// The class board's arithmetic: how many columns and rows of tiles fill a stage, and
// which tiles are on which page. Pure functions (tested with `node --test`), used by the
// Grid (tiles.js) on the instructor's page and the studio TV's board.

/** At most this many tiles on one page: past it a 1080p screen's tiles get too small to read. */
export const PER_PAGE = 25;
const VIDEO_ASPECT = 16 / 9;

/**
 * The grid for `count` tiles on a `width` × `height` stage (CSS pixels) with `gap`
 * between tiles: {cols, rows, width, height} with the largest 16:9 picture per tile.
 * Past `perPage` tiles, the shape is a full page's (the rest go to further pages).
 */
export function gridShape(count, width, height, { gap = 0, perPage = PER_PAGE } = {}) {
  const n = Math.max(1, Math.min(Math.floor(count) || 0, perPage));
  const w = Math.max(1, width);
  const h = Math.max(1, height);
  let best = null;
  for (let cols = 1; cols <= n; cols += 1) {
    const rows = Math.ceil(n / cols);
    if (cols > 1 && (cols - 1) * rows >= n) continue; // a column fewer holds them all
    const cellW = Math.max(1, (w - gap * (cols - 1)) / cols);
    const cellH = Math.max(1, (h - gap * (rows - 1)) / rows);
    // The 16:9 picture that fits the cell: what a person sees of the video.
    const pictureW = Math.min(cellW, cellH * VIDEO_ASPECT);
    if (!best || pictureW > best.pictureW + 0.5) best = { cols, rows, pictureW, width: cellW, height: cellH };
  }
  return { cols: best.cols, rows: best.rows, width: Math.floor(best.width), height: Math.floor(best.height) };
}

/** How many pages `count` tiles take (at least one). */
export function pageCount(count, perPage = PER_PAGE) {
  return Math.max(1, Math.ceil(Math.max(0, count) / perPage));
}

/** The page to show after the count changed: the same one if it still exists, else the last. */
export function clampPage(page, count, perPage = PER_PAGE) {
  return Math.min(Math.max(0, Math.floor(page) || 0), pageCount(count, perPage) - 1);
}

/** Whether the tile at `index` (in the board's order) is on `page`. */
export function onPage(index, page, perPage = PER_PAGE) {
  return index >= page * perPage && index < (page + 1) * perPage;
}
