// Small view helpers shared by the class page: icons, status line, notices, toasts.
// User-provided text only ever goes through textContent.

const ICON_PATHS = {
  mic: 'M12 14c1.66 0 3-1.34 3-3V5c0-1.66-1.34-3-3-3S9 3.34 9 5v6c0 1.66 1.34 3 3 3zm5.3-3c0 3-2.54 5.1-5.3 5.1S6.7 14 6.7 11H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c3.28-.48 6-3.3 6-6.72h-1.7z',
  micOff: 'M19 11h-1.7c0 .74-.16 1.43-.43 2.05l1.23 1.23c.56-.98.9-2.09.9-3.28zm-4.02.17c0-.06.02-.11.02-.17V5c0-1.66-1.34-3-3-3S9 3.34 9 5v.18l5.98 5.99zM4.27 3L3 4.27l6.01 6.01V11c0 1.66 1.33 3 2.99 3 .22 0 .44-.03.65-.08l1.66 1.66c-.71.33-1.5.52-2.31.52-2.76 0-5.3-2.1-5.3-5.1H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c.91-.13 1.77-.45 2.54-.9L19.73 21 21 19.73 4.27 3z',
  cam: 'M17 10.5V7c0-.55-.45-1-1-1H4c-.55 0-1 .45-1 1v10c0 .55.45 1 1 1h12c.55 0 1-.45 1-1v-3.5l4 4v-11l-4 4z',
  camOff: 'M21 6.5l-4 4V7c0-.55-.45-1-1-1H9.82L21 17.18V6.5zM3.27 2L2 3.27 4.73 6H4c-.55 0-1 .45-1 1v10c0 .55.45 1 1 1h12c.21 0 .39-.08.54-.18L19.73 21 21 19.73 3.27 2z',
  grid: 'M3 3v8h8V3H3zm6 6H5V5h4v4zm-6 4v8h8v-8H3zm6 6H5v-4h4v4zm4-16v8h8V3h-8zm6 6h-4V5h4v4zm-6 4v8h8v-8h-8zm6 6h-4v-4h4v4z',
  heart: 'M12 21.35l-1.45-1.32C5.4 15.36 2 12.28 2 8.5 2 5.42 4.42 3 7.5 3c1.74 0 3.41.81 4.5 2.09C13.09 3.81 14.76 3 16.5 3 19.58 3 22 5.42 22 8.5c0 3.78-3.4 6.86-8.55 11.54L12 21.35z',
  zones: 'M3 17v2h6v-2H3zM3 5v2h10V5H3zm10 16v-2h8v-2h-8v-2h-2v6h2zM7 9v2H3v2h4v2h2V9H7zm14 4v-2H11v2h10zm-6-4h2V7h4V5h-4V3h-2v6z',
  campaign: 'M18 11v2h4v-2h-4zm-2 6.61c.96.71 2.21 1.65 3.2 2.39.4-.53.8-1.07 1.2-1.6-.99-.74-2.24-1.68-3.2-2.4-.4.54-.8 1.08-1.2 1.61zM20.4 5.6c-.4-.53-.8-1.07-1.2-1.6-.99.74-2.24 1.68-3.2 2.4.4.53.8 1.07 1.2 1.6.96-.72 2.21-1.65 3.2-2.4zM4 9c-1.1 0-2 .9-2 2v2c0 1.1.9 2 2 2h1v4h2v-4h1l5 3V6L8 9H4zm11.5 3c0-1.33-.58-2.53-1.5-3.35v6.69c.92-.81 1.5-2.01 1.5-3.34z',
  star: 'M12 17.27L18.18 21l-1.64-7.03L22 9.24l-7.19-.61L12 2 9.19 8.63 2 9.24l5.46 4.73L5.82 21z',
  close: 'M19 6.41L17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z',
  settings: 'M19.14 12.94c.04-.3.06-.61.06-.94 0-.32-.02-.64-.07-.94l2.03-1.58c.18-.14.23-.41.12-.61l-1.92-3.32c-.12-.22-.37-.29-.59-.22l-2.39.96c-.5-.38-1.03-.7-1.62-.94l-.36-2.54c-.04-.24-.24-.41-.48-.41h-3.84c-.24 0-.43.17-.47.41l-.36 2.54c-.59.24-1.13.57-1.62.94l-2.39-.96c-.22-.08-.47 0-.59.22L2.74 8.87c-.12.21-.08.47.12.61l2.03 1.58c-.05.3-.09.63-.09.94s.02.64.07.94l-2.03 1.58c-.18.14-.23.41-.12.61l1.92 3.32c.12.22.37.29.59.22l2.39-.96c.5.38 1.03.7 1.62.94l.36 2.54c.05.24.24.41.48.41h3.84c.24 0 .44-.17.47-.41l.36-2.54c.59-.24 1.13-.56 1.62-.94l2.39.96c.22.08.47 0 .59-.22l1.92-3.32c.12-.22.07-.47-.12-.61l-2.01-1.58zM12 15.6c-1.98 0-3.6-1.62-3.6-3.6s1.62-3.6 3.6-3.6 3.6 1.62 3.6 3.6-1.62 3.6-3.6 3.6z',
  leave: 'M17 7l-1.41 1.41L18.17 11H8v2h10.17l-2.58 2.58L17 17l5-5zM4 5h8V3H4c-1.1 0-2 .9-2 2v14c0 1.1.9 2 2 2h8v-2H4V5z',
};

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An inline SVG icon (fill: currentColor). */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('fill', 'currentColor');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICON_PATHS[name]);
  svg.append(path);
  return svg;
}

/** A small red status icon (muted mic, camera off) with an accessible label. */
export function stateIcon(name, label) {
  const span = document.createElement('span');
  span.className = 'icon';
  span.title = label;
  span.setAttribute('role', 'img');
  span.setAttribute('aria-label', label);
  span.dataset.icon = name;
  span.append(icon(name));
  return span;
}

/** Fill a button with an icon and a label (the label hides at phone width). */
export function setButton(button, iconName, text) {
  const label = document.createElement('span');
  label.className = 'label-text';
  label.textContent = text;
  button.replaceChildren(icon(iconName), label);
  button.title = text;
  button.setAttribute('aria-label', text);
}

const statusEl = () => document.getElementById('status');

/** The status line in the top bar; kind: '' | 'live' | 'warn' | 'bad'. */
export function setStatus(text, kind = '') {
  const el = statusEl();
  el.textContent = text;
  el.className = `status${kind ? ` ${kind}` : ''}`;
  el.dataset.kind = kind;
}

/** Show exactly one of the page's main views: 'notice' | 'prejoin' | 'classroom' | 'strap'. */
export function showView(name) {
  for (const id of ['notice', 'prejoin', 'classroom', 'strap']) {
    document.getElementById(id).hidden = id !== name;
  }
}

/**
 * A full-page message for a state the user cannot continue from in place
 * (bad link, expired, full, ended, left). `action` is an optional {text, href, onClick};
 * `secondary` an optional second, plain link {text, href}.
 */
export function showNotice({ title, body, kind = 'info', code = '', action = null, secondary = null }) {
  const notice = document.getElementById('notice');
  notice.dataset.kind = kind;
  notice.dataset.code = code;
  document.getElementById('notice-title').textContent = title;
  document.getElementById('notice-body').textContent = body;
  const link = document.getElementById('notice-action');
  link.hidden = !action;
  link.onclick = null;
  if (action) {
    link.textContent = action.text;
    link.href = action.href || '#';
    if (action.onClick) {
      link.onclick = (event) => { event.preventDefault(); action.onClick(); };
    }
  }
  const other = document.getElementById('notice-secondary');
  other.hidden = !secondary;
  if (secondary) {
    other.textContent = secondary.text;
    other.href = secondary.href;
  }
  showView('notice');
}

/** A short message at the bottom that goes away by itself. */
export function toast(message, kind = 'error', ms = 5000) {
  const box = document.getElementById('toasts');
  const item = document.createElement('div');
  item.className = `toast ${kind}`;
  item.dataset.testid = 'toast';
  item.textContent = message;
  box.append(item);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => item.remove(), ms);
}
