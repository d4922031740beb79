// web/boardgrid.js: the class board's grid sized to the class, and its pages.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PER_PAGE, clampPage, gridShape, onPage, pageCount } from '../../web/boardgrid.js';

// The instructor's stage and the studio TV at 1920×1080 (CSS px, padding taken off).
const TV = [1896, 1056];

test('one tile takes the whole stage', () => {
  assert.deepEqual(gridShape(1, ...TV), { cols: 1, rows: 1, width: 1896, height: 1056 });
});

test('12 participants on a 16:9 screen: 4 columns of 3 rows', () => {
  const shape = gridShape(12, ...TV, { gap: 12 });
  assert.equal(shape.cols, 4);
  assert.equal(shape.rows, 3);
  assert.equal(shape.width, Math.floor((1896 - 3 * 12) / 4));
  assert.equal(shape.height, Math.floor((1056 - 2 * 12) / 3));
});

test('a tall stage stacks tiles in fewer columns', () => {
  assert.deepEqual([gridShape(4, 600, 1400).cols, gridShape(4, 600, 1400).rows], [1, 4]);
  assert.equal(gridShape(2, ...TV).cols, 2);
});

test('every count from 1 to 100 gets enough cells and no empty row or column', () => {
  for (let count = 1; count <= 100; count += 1) {
    const { cols, rows } = gridShape(count, ...TV, { gap: 12 });
    const shown = Math.min(count, PER_PAGE);
    assert.ok(cols * rows >= shown, `${count}: ${cols}×${rows}`);
    assert.ok((rows - 1) * cols < shown, `${count}: an empty row`);
    assert.ok((cols - 1) * rows < shown, `${count}: an empty column`);
  }
});

test('a tile is never smaller than a full page of 25 makes it', () => {
  const page = gridShape(25, ...TV, { gap: 12 });
  assert.deepEqual([page.cols, page.rows], [5, 5]);
  for (let count = 1; count <= 25; count += 1) {
    assert.ok(gridShape(count, ...TV, { gap: 12 }).width >= page.width, `${count}`);
  }
  assert.deepEqual(gridShape(100, ...TV, { gap: 12 }), page);
});

test('no tiles, a zero-sized stage, nonsense: still a 1×1 grid, not NaN', () => {
  assert.deepEqual(gridShape(0, 0, 0), { cols: 1, rows: 1, width: 1, height: 1 });
  assert.equal(gridShape(Number.NaN, ...TV).cols, 1);
});

test('pages of 25: 100 participants take four, the last page is kept in range', () => {
  assert.equal(pageCount(0), 1);
  assert.equal(pageCount(25), 1);
  assert.equal(pageCount(26), 2);
  assert.equal(pageCount(100), 4);
  assert.equal(clampPage(3, 100), 3);
  assert.equal(clampPage(3, 30), 1); // people left: the last page that exists
  assert.equal(clampPage(-1, 30), 0);
  assert.ok(onPage(0, 0) && onPage(24, 0) && !onPage(25, 0) && onPage(25, 1));
});
