// The viewer's video quality cap (the Devices dialog's "Video quality"): the largest
// video height this page wants from the SFU, sent as `max_height` with `visibility`.
// "Auto" leaves it to the tile sizes; 180p is the data saver. Remembered per browser.

const KEY = 'pulseroom.maxHeight';

/** The cap a select value stands for: a height in pixels, or null (Auto). */
export function parseMaxHeight(value) {
  const height = Number.parseInt(value, 10);
  return Number.isInteger(height) && height > 0 ? height : null;
}

export class QualityPicker {
  /** select: the <select> (its options are in room.html); onChange(maxHeight) when chosen. */
  constructor({ select, onChange }) {
    this.select = select;
    let saved = '';
    try { saved = localStorage.getItem(KEY) || ''; } catch { /* private mode */ }
    // A value from another version of the page that no option offers means Auto.
    if ([...select.options].some((o) => o.value === saved)) select.value = saved;
    select.addEventListener('change', () => {
      try { localStorage.setItem(KEY, select.value); } catch { /* private mode */ }
      onChange(this.maxHeight);
    });
  }

  get maxHeight() {
    return parseMaxHeight(this.select.value);
  }
}
