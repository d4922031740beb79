// Client→server events with acks (docs/protocol.md): every request resolves with the
// server's ack or throws, so callers never read `ok` themselves. Knows the socket only
// through the function that returns the current one (it changes on every rejoin).

export const ACK_TIMEOUT_MS = 15000;

export class ProtocolError extends Error {
  constructor(error) {
    super(error?.message || 'the server refused the request');
    this.code = error?.code || 'internal';
  }
}

/**
 * request(event, payload, timeoutMs) for the socket `currentSocket()` returns: emits
 * `{v: 1, ...payload}` and resolves with the ack; throws ProtocolError on refusal.
 */
export function requester(currentSocket) {
  return async function request(event, payload = {}, timeoutMs = ACK_TIMEOUT_MS) {
    const socket = currentSocket();
    if (!socket || !socket.connected) throw new ProtocolError({ code: 'offline', message: 'not connected' });
    const ack = await socket.timeout(timeoutMs).emitWithAck(event, { v: 1, ...payload });
    if (!ack || !ack.ok) throw new ProtocolError(ack && ack.error);
    return ack;
  };
}

/**
 * `join` on `socket` with `{token, name, room}`. The ack carries either the class or the
 * reason for refusal; a timeout or a dropped connection throws. `room` is the page's
 * room: the server refuses a token for another class (wrong_room).
 */
export async function sendJoin(socket, { token, name, room }) {
  let onDrop;
  const dropped = new Promise((_resolve, reject) => {
    onDrop = () => reject(new Error('the connection closed while joining'));
    socket.once('disconnect', onDrop);
  });
  try {
    return await Promise.race([
      socket.timeout(ACK_TIMEOUT_MS).emitWithAck('join', { v: 1, token, name, room }),
      dropped,
    ]);
  } finally {
    socket.off('disconnect', onDrop);
  }
}
