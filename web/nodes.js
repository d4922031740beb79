// Finding the node that holds the class (docs/protocol.md, "Several nodes").
//
// With several PulseRoom nodes a class lives on one of them. A `join` that reaches
// another node is answered `moved` with the holder's URL: the page connects there (the
// page itself stays where it was loaded). After a connection is lost, the page tries the
// node it was on, then the other nodes the last join ack named: any live node says
// where the class is now, taking it over if its holder died.

const CONNECT_TIMEOUT_MS = 5000;
const MAX_REDIRECTS = 3;

/** Resolve once `socket` is connected; reject on its connect error or after `ms`. */
function connected(socket, ms = CONNECT_TIMEOUT_MS) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('connect', ok);
      socket.off('connect_error', fail);
    };
    const ok = () => { cleanup(); resolve(); };
    const fail = (error) => { cleanup(); reject(error instanceof Error ? error : new Error(String(error))); };
    const timer = setTimeout(() => fail(new Error('connecting timed out')), ms);
    socket.on('connect', ok);
    socket.on('connect_error', fail);
  });
}

/**
 * Connect to `url` and join there, following `moved` answers to the class's node.
 *
 * makeSocket(url) returns a new, connecting socket with the page's handlers;
 * sendJoin(socket) resolves with the join ack. Resolves { socket, url, ack } (the ack may
 * be a refusal, its socket still open); throws when no node could be reached.
 */
export async function joinFollowing(url, makeSocket, sendJoin) {
  let target = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop += 1) {
    const socket = makeSocket(target);
    let ack;
    try {
      await connected(socket);
      ack = await sendJoin(socket);
    } catch (error) {
      socket.disconnect();
      throw error;
    }
    if (ack && !ack.ok && ack.error?.code === 'moved' && ack.error.url) {
      socket.disconnect();
      target = ack.error.url;
      continue;
    }
    return { socket, url: target, ack };
  }
  throw new Error('the class was moved too many times');
}

/** Where to look for the class: the node we were on, the others it named, this page's origin. */
export function candidates(current, nodes, origin = location.origin) {
  const seen = new Set();
  const list = [];
  for (const url of [current, ...(nodes || []), origin]) {
    const clean = url ? String(url).replace(/\/+$/, '') : null;
    if (clean && !seen.has(clean)) {
      seen.add(clean);
      list.push(clean);
    }
  }
  return list;
}

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
