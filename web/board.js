// The class board: the participants' tiles fill the stage in a grid sized to the class
// (gridShape, boardgrid.js), in pages of PER_PAGE, with the instructor's tiles small in a
// corner. The instructor's page uses it while no participant is spotlighted; the studio
// TV's board page (/r/{id}/board) always does.
//
// A tile off the current page is hidden, not removed: visibility.js then reports it out
// of view and the server stops its video, and every shown tile reports the height it is
// drawn at, so the SFU sends the layer that size needs.

import { PER_PAGE, clampPage, gridShape, onPage, pageCount } from './boardgrid.js';

const GAP = 12; // px between tiles, as .grid.board .strip's CSS gap

export class BoardLayout {
  /** grid: the tiles.js Grid; container: the #grid element holding its spotlight and strip. */
  constructor(grid, container) {
    this.grid = grid;
    this.container = container;
    this.on = false;
    this.page = 0;
    this.frame = 0;
    this.shape = null; // the last applied {cols, rows, width, height, count, pages}
    this.pager = this.buildPager();
    container.append(this.pager);
    grid.onChange = () => this.schedule();
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => this.schedule()).observe(container);
  }

  buildPager() {
    const pager = document.createElement('nav');
    pager.className = 'pager';
    pager.dataset.testid = 'board-pager';
    pager.setAttribute('aria-label', 'Pages of tiles');
    pager.hidden = true;
    const button = (text, label, step) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = text;
      b.setAttribute('aria-label', label);
      b.dataset.testid = step < 0 ? 'board-prev' : 'board-next';
      b.addEventListener('click', () => this.turn(step));
      return b;
    };
    this.prev = button('‹', 'Previous page', -1);
    this.next = button('›', 'Next page', 1);
    this.label = document.createElement('span');
    this.label.dataset.testid = 'board-page';
    pager.append(this.prev, this.label, this.next);
    return pager;
  }

  /** Board mode on or off (the page's role decides; a spotlight suspends it). */
  setOn(on) {
    this.on = Boolean(on);
    this.schedule();
  }

  turn(step) {
    this.page += step;
    this.apply();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.apply();
    });
  }

  /** The strip's tiles in the board's order: their CSS order (the sort), then join order. */
  tiles() {
    const tiles = [...this.grid.strip.children].filter((el) => el.classList.contains('tile'));
    const position = new Map(tiles.map((tile, index) => [tile, index]));
    return tiles.sort((a, b) => (Number(a.style.order) || 0) - (Number(b.style.order) || 0) || position.get(a) - position.get(b));
  }

  apply() {
    const { container, grid } = this;
    const active = this.on && !grid.spotlightsParticipant();
    container.classList.toggle('board', active);
    const strip = grid.strip;
    const tiles = this.tiles();
    if (!active) {
      for (const tile of tiles) tile.hidden = false;
      strip.style.removeProperty('grid-template-columns');
      strip.style.removeProperty('grid-template-rows');
      this.pager.hidden = true;
      this.shape = null;
      return;
    }
    const pages = pageCount(tiles.length);
    this.page = clampPage(this.page, tiles.length);
    tiles.forEach((tile, index) => { tile.hidden = !onPage(index, this.page); });
    const shown = Math.min(PER_PAGE, tiles.length - this.page * PER_PAGE);
    this.pager.hidden = pages <= 1;
    this.label.textContent = `${this.page + 1} / ${pages}`;
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page === pages - 1;
    const style = getComputedStyle(container);
    const width = container.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const pagerHeight = this.pager.hidden ? 0 : this.pager.offsetHeight + GAP;
    const height = container.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom) - pagerHeight;
    const shape = gridShape(shown, width, height, { gap: GAP });
    strip.style.gridTemplateColumns = `repeat(${shape.cols}, minmax(0, 1fr))`;
    strip.style.gridTemplateRows = `repeat(${shape.rows}, minmax(0, 1fr))`;
    this.shape = { ...shape, count: tiles.length, pages, page: this.page };
  }

  /** For tests: the applied layout. */
  hook() {
    return { on: this.container.classList.contains('board'), ...(this.shape || {}) };
  }
}
