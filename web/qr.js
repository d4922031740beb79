// A link as a QR code, for a phone to scan: the participant's device link on the class
// page (hrroom.js), so that Chrome on an Android phone pairs the strap for a browser that
// cannot (every iPhone browser). The matrix is qrcode-generator's (web/vendor, MIT).

import qrcode from './vendor/qrcode-generator.js';

const QUIET = 4; // light modules around the code, as the standard asks
const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * The QR matrix of `text`: byte mode, error correction M, the smallest version that
 * holds it. Rows of booleans, true for a dark module.
 */
export function qrMatrix(text) {
  const qr = qrcode(0, 'M');
  qr.addData(text, 'Byte');
  qr.make();
  const size = qr.getModuleCount();
  return Array.from({ length: size }, (_, row) => Array.from({ length: size }, (_, col) => qr.isDark(row, col)));
}

/** An <svg> of `text`'s QR code, dark on white with its quiet zone, named `label` for screen readers. */
export function qrSvg(text, label) {
  const matrix = qrMatrix(text);
  const size = matrix.length + 2 * QUIET;
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.dataset.modules = String(matrix.length);
  const light = document.createElementNS(SVG_NS, 'rect');
  light.setAttribute('width', String(size));
  light.setAttribute('height', String(size));
  light.setAttribute('fill', '#fff'); // scanners want dark on light, whatever the page's theme
  const dark = document.createElementNS(SVG_NS, 'path');
  const moves = [];
  matrix.forEach((cells, row) => cells.forEach((on, col) => {
    if (on) moves.push(`M${col + QUIET} ${row + QUIET}h1v1h-1z`);
  }));
  dark.setAttribute('d', moves.join(''));
  dark.setAttribute('fill', '#000');
  svg.append(light, dark);
  return svg;
}
