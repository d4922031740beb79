// web/lobby.js: the countdown's text.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { countdownText } from '../../web/lobby.js';

test('the countdown shows days and hours, then hours to the second, then minutes', () => {
  assert.equal(countdownText(2 * 86400 + 3 * 3600 + 59), '2 d 3 h');
  assert.equal(countdownText(3600 + 4 * 60 + 5), '1:04:05');
  assert.equal(countdownText(299.2), '5:00');
  assert.equal(countdownText(59), '0:59');
  assert.equal(countdownText(-3), '0:00');
});
