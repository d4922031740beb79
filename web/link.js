// Class links and tokens (docs/protocol.md, "Links and tokens").
//
// A link is /r/{room_id}#t=TOKEN. The join ack hands back a token *bound* to the joiner;
// it is kept in sessionStorage per class, so a reload of this tab (or a rejoin after a
// network drop) comes back as the same participant, with their heart-rate history.

const BOUND_PREFIX = 'pulseroom.bound.';
const LINK_PREFIX = 'pulseroom.link.';

// What to tell a person whose join was refused, by protocol error code.
const BAD_LINK_BODY = 'Check that you opened the whole link, or ask the instructor to send it again.';
export const JOIN_ERRORS = {
  invalid_token: { title: 'This link is not valid', body: `It is damaged or incomplete. ${BAD_LINK_BODY}` },
  wrong_room: { title: 'This link is not valid', body: `It belongs to another class. ${BAD_LINK_BODY}` },
  token_expired: { title: 'This link has expired', body: 'Ask the instructor for a new link to this class.' },
  room_full: { title: 'This class is full', body: 'No more people can join right now. Try again later, or ask the instructor.' },
  room_ended: { title: 'This class has ended', body: 'The instructor has ended this class. Thanks for coming!' },
  room_not_found: { title: 'Class not found', body: 'This class does not exist. Check the link, or ask the instructor for a new one.' },
  removed: { title: 'You were removed from this class', body: 'The instructor removed you from this class, so you cannot rejoin it.' },
  link_replaced: { title: 'This link was replaced by the instructor', body: 'The instructor made a new link for this class. Ask them for the new one.' },
};
// Refusals one can retry from the join form, in words for people (else the server's message).
export const JOIN_HINTS = {
  room_locked: 'This class is locked: the instructor is not letting anyone new in right now. Ask them to unlock it, then try again.',
};
// A bound token that stopped working (the server's secret changed): join with the link.
export const BOUND_REFUSED = new Set(['invalid_token', 'token_expired', 'wrong_room', 'not_found']);

/**
 * The room id of a class page (or its summary or replay page) and the token in the fragment.
 * The token then leaves the address bar (screen shares, synced history and photos of a
 * screen would show it) and stays in this tab's sessionStorage, where a reload finds it.
 */
export function readLink() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('t') || null;
  const match = location.pathname.match(/^\/r\/([^/]+)(\/summary|\/replay|\/board)?\/?$/);
  if (!match) return { token: fromUrl, roomId: null };
  const key = LINK_PREFIX + match[1] + (match[2] || '');
  let token = fromUrl;
  try {
    if (fromUrl) sessionStorage.setItem(key, fromUrl);
    else token = sessionStorage.getItem(key);
  } catch {
    // storage unavailable: the token stays in the address bar, or a reload would lose it
    return { token, roomId: decodeURIComponent(match[1]) };
  }
  if (fromUrl) history.replaceState(null, '', location.pathname + location.search);
  return { token, roomId: decodeURIComponent(match[1]) };
}

/**
 * The token's payload, unverified (only the server can verify it): used only to say
 * "as the instructor" before joining, or to tell a device link from a class link.
 */
export function peekToken(token) {
  try {
    const body = token.split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    const payload = JSON.parse(atob(body + '='.repeat((4 - (body.length % 4)) % 4)));
    return payload && typeof payload === 'object' ? payload : null;
  } catch {
    return null; // unreadable: let the server say so
  }
}

/** The bound token this tab got for `roomId`, if it came from the same link token. */
export function loadBoundToken(roomId, linkToken) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(BOUND_PREFIX + roomId) || 'null');
    if (saved && saved.token && (linkToken === null || saved.link === linkToken)) return saved.token;
  } catch {
    // storage unavailable or damaged: join with the link
  }
  return null;
}

export function saveBoundToken(roomId, linkToken, token) {
  try {
    sessionStorage.setItem(BOUND_PREFIX + roomId, JSON.stringify({ link: linkToken, token }));
  } catch {
    // private mode: a reload joins as a new participant
  }
}

export function clearBoundToken(roomId) {
  try { sessionStorage.removeItem(BOUND_PREFIX + roomId); } catch { /* nothing kept */ }
}

/** The device link for `pulseroom hr-bridge`, from the join ack's device_token. */
export function deviceLink(roomId, deviceToken) {
  return `${location.origin}/r/${encodeURIComponent(roomId)}#t=${deviceToken}`;
}

/**
 * The token an after-class page reads the class with: the link's, unless it is a
 * participant's class link (which reads nothing), then the bound token this tab got on
 * joining.
 */
export function readingToken(roomId, token) {
  const payload = token ? peekToken(token) : null;
  if (!token || (payload && payload.role !== 'host' && !payload.p)) return (roomId && loadBoundToken(roomId, null)) || token;
  return token;
}

/** The after-class page, with a token that may read the summary. */
export function summaryLink(roomId, token) {
  return `/r/${encodeURIComponent(roomId)}/summary#t=${token}`;
}

/** The replay page of one recording, with a token that may read the summary. */
export function replayLink(roomId, recordingId, token) {
  return `/r/${encodeURIComponent(roomId)}/replay?rec=${encodeURIComponent(recordingId)}#t=${token}`;
}

/**
 * Copy text: the Clipboard API needs a secure context (https or localhost), so fall back
 * to selecting an input's text and execCommand on a plain-http LAN address.
 */
export async function copyText(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    return true;
  } catch {
    input.select();
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
}
