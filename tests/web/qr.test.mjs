// web/qr.js and the QR generator it uses (web/vendor/qrcode-generator.js): the vendored
// file is the npm package's ES module as published, and the matrix is a well-formed code.
// (tests/test_browser_phone.py reads the rendered code back with ZXing.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { qrMatrix } from '../../web/qr.js';

const read = (path) => readFileSync(new URL(path, import.meta.url));

test('the vendored generator is qrcode-generator 2.0.4 as published, licence header and all', () => {
  const pkg = JSON.parse(read('../../node_modules/qrcode-generator/package.json'));
  assert.equal(pkg.version, '2.0.4');
  assert.equal(pkg.license, 'MIT');
  const vendored = read('../../web/vendor/qrcode-generator.js');
  assert.ok(vendored.equals(read('../../node_modules/qrcode-generator/dist/qrcode.mjs')), 'web/vendor/qrcode-generator.js differs from the package: copy dist/qrcode.mjs again');
  assert.match(vendored.toString('utf8', 0, 600), /Copyright \(c\) 2009 Kazuhiko Arase[\s\S]*MIT license/);
});

test('a device link becomes a square matrix with its three finder patterns', () => {
  const link = `https://pulseroom.example/r/ab12cd34ef#t=${'x'.repeat(160)}.${'y'.repeat(43)}`;
  const matrix = qrMatrix(link);
  const size = matrix.length;
  assert.ok(size >= 21 && (size - 17) % 4 === 0, `a QR version's size: ${size}`);
  assert.ok(matrix.every((row) => row.length === size));
  // A finder: a dark 7x7 ring, a light ring inside it, a dark 3x3 core.
  const finder = (top, left) => {
    for (let r = 0; r < 7; r += 1) {
      for (let c = 0; c < 7; c += 1) {
        const ring = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        assert.equal(matrix[top + r][left + c], ring !== 2, `finder at ${top},${left}: module ${r},${c}`);
      }
    }
  };
  finder(0, 0);
  finder(0, size - 7);
  finder(size - 7, 0);
  // The same text, the same code; another text, another code.
  assert.deepEqual(qrMatrix(link), matrix);
  assert.notDeepEqual(qrMatrix(`${link}z`), matrix);
});
