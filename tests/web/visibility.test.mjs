// web/visibility.js and web/quality.js: what the page tells the SFU about the tiles it shows.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseMaxHeight } from '../../web/quality.js';
import { renderedHeight, sizesChanged } from '../../web/visibility.js';

test('the drawn height, in device pixels, clamped', () => {
  assert.equal(renderedHeight({ clientHeight: 180 }, 2), 360);
  assert.equal(renderedHeight({ clientHeight: 100.4 }, 1.5), 151);
  assert.equal(renderedHeight(null, 2), 0);
  assert.equal(renderedHeight({ clientHeight: 10_000 }, 1), 4320);
});

test('a size change is worth a message only past the tolerance, or for a new tile', () => {
  assert.equal(sizesChanged({ a: 360 }, { a: 390 }), false);
  assert.equal(sizesChanged({ a: 360 }, { a: 400 }), true);
  assert.equal(sizesChanged({ a: 360 }, { a: 360, b: 180 }), true);
  assert.equal(sizesChanged({ a: 0 }, { a: 0 }), false);
  assert.equal(sizesChanged({ a: 0 }, { a: 1 }), true);
  assert.equal(sizesChanged({ a: 360, b: 180 }, { a: 360 }), false, 'a tile gone changes the visible set instead');
});

test('the quality cap: a height or Auto', () => {
  assert.deepEqual(['720', '180', '', 'auto', '-5', '0'].map(parseMaxHeight), [720, 180, null, null, null, null]);
});
