// One menu button per tile ("⋯ Actions for Ben") in place of a row of buttons, so that
// the keyboard crosses a class of N tiles in N stops (issue 18, item 9).
//
// The WAI-ARIA menu button pattern: the button has aria-haspopup="menu" and
// aria-expanded; Enter, Space or ↓ opens the menu on its first item, ↑ on its last;
// in the menu ↑/↓ (wrapping), Home and End move, Enter or Space activates, Escape closes
// it and focus goes back to the button, Tab closes it and goes on from the button. The
// menu is a popover in the top layer where the browser has them: a tile clips what
// overflows it, and a thumbnail is shorter than the menu.

/** One tile's actions: `root` holds the menu button and its menu. */
export class TileMenu {
  /** id: unique in the page (the menu's id is made from it). */
  constructor(id) {
    this.root = document.createElement('div');
    this.root.className = 'tile-actions';
    this.root.dataset.testid = 'tile-actions';
    this.button = document.createElement('button');
    this.button.type = 'button';
    this.button.className = 'tile-action tile-menu-button';
    this.button.dataset.testid = 'tile-menu-button';
    this.button.id = `${id}-button`;
    this.button.setAttribute('aria-haspopup', 'menu');
    this.button.setAttribute('aria-expanded', 'false');
    this.button.title = 'Actions';
    const dots = document.createElement('span');
    dots.setAttribute('aria-hidden', 'true');
    dots.textContent = '⋯';
    this.button.append(dots);
    this.menu = document.createElement('div');
    this.menu.className = 'tile-menu';
    this.menu.dataset.testid = 'tile-menu';
    this.menu.id = `${id}-menu`;
    this.menu.setAttribute('role', 'menu');
    this.menu.setAttribute('aria-labelledby', this.button.id);
    this.popover = typeof this.menu.showPopover === 'function';
    if (this.popover) this.menu.popover = 'manual';
    this.menu.hidden = !this.popover;
    this.button.setAttribute('aria-controls', this.menu.id);
    this.items = [];
    this.root.append(this.button, this.menu);
    this.button.addEventListener('click', () => (this.isOpen ? this.close() : this.open(0)));
    this.button.addEventListener('keydown', (event) => this.onButtonKey(event));
    this.menu.addEventListener('keydown', (event) => this.onMenuKey(event));
    // Keyboard focus moving elsewhere closes it; a pointer outside it too (below).
    this.root.addEventListener('focusout', (event) => {
      if (event.relatedTarget && !this.root.contains(event.relatedTarget)) this.close();
    });
    this.outside = (event) => { if (!this.root.contains(event.target)) this.close(); };
    this.frame = 0;
  }

  /**
   * Add an item: `text` after an optional `icon` (an aria-hidden svg); select() when it is
   * activated. Returns its element (role menuitem, or menuitemcheckbox when checkable).
   */
  add({ testid, text, select, icon = null, danger = false, checkable = false }) {
    const item = document.createElement('button');
    item.type = 'button';
    item.className = `tile-menu-item${danger ? ' danger' : ''}`;
    item.dataset.testid = testid;
    item.setAttribute('role', checkable ? 'menuitemcheckbox' : 'menuitem');
    item.tabIndex = -1;
    const label = document.createElement('span');
    label.textContent = text;
    item.append(...(icon ? [icon] : []), label);
    item.addEventListener('click', () => {
      if (item.getAttribute('aria-disabled') === 'true') return;
      this.close({ focus: true });
      select();
    });
    this.items.push(item);
    this.menu.append(item);
    return item;
  }

  /** Change an item's text. */
  static setText(item, text) {
    item.querySelector('span').textContent = text;
  }

  /** The button's accessible name ("Actions for Ben"). */
  setLabel(label) {
    this.button.setAttribute('aria-label', label);
  }

  get isOpen() {
    return this.button.getAttribute('aria-expanded') === 'true';
  }

  /** Open the menu with focus on item `index` (-1: the last). */
  open(index) {
    if (!this.isOpen) {
      this.button.setAttribute('aria-expanded', 'true');
      if (this.popover) this.menu.showPopover();
      else this.menu.hidden = false;
      this.follow();
      document.addEventListener('pointerdown', this.outside, true);
    }
    this.focusItem(index < 0 ? this.items.length - 1 : index);
  }

  /** Close the menu; with `focus`, focus goes back to its button. */
  close({ focus = false } = {}) {
    if (this.isOpen) {
      this.button.setAttribute('aria-expanded', 'false');
      document.removeEventListener('pointerdown', this.outside, true);
      cancelAnimationFrame(this.frame);
      if (this.popover) {
        if (this.menu.matches(':popover-open')) this.menu.hidePopover();
      } else {
        this.menu.hidden = true;
      }
    }
    if (focus) this.button.focus();
  }

  /**
   * Keep the menu by its button while open: tiles move (a sort by effort reorders them
   * every few seconds, the page scrolls); a tile hidden (another board page) closes it.
   */
  follow() {
    if (!this.isOpen) return;
    if (!this.button.getClientRects().length) {
      this.close();
      return;
    }
    this.place();
    this.frame = requestAnimationFrame(() => this.follow());
  }

  /** Under the button, its right edges aligned (above it when there is no room below). */
  place() {
    if (!this.popover) return; // inside the tile, placed by the style sheet
    const at = this.button.getBoundingClientRect();
    const height = this.menu.offsetHeight;
    const below = at.bottom + 4 + height <= window.innerHeight;
    this.menu.style.top = `${Math.max(4, below ? at.bottom + 4 : at.top - 4 - height)}px`;
    this.menu.style.left = `${Math.max(4, at.right - this.menu.offsetWidth)}px`;
  }

  focusItem(index) {
    const count = this.items.length;
    if (!count) return;
    this.items[((index % count) + count) % count].focus();
  }

  onButtonKey(event) {
    const first = { ArrowDown: 0, ArrowUp: -1 }[event.key];
    if (first === undefined) return;
    event.preventDefault();
    this.open(first);
  }

  onMenuKey(event) {
    const at = this.items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: this.items.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      this.focusItem(moves[event.key]);
    } else if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation(); // a dialog around it stays open
      this.close({ focus: true });
    } else if (event.key === 'Tab') {
      // From the button, the browser's Tab (not prevented) goes on to what follows it.
      this.close({ focus: true });
    }
  }
}
