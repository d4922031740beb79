// Calls to a class's REST API (docs/protocol.md, "REST") with a class token, as the
// summary and replay pages make them. The token goes in the Authorization header, never
// in a URL.

/**
 * A `call(path, options)` for /api/rooms/{roomId}{path}: fetch with the token; throws
 * Error(the API's message), with `.status` and `.code`, on a refusal.
 */
export function classApi(roomId, token) {
  const base = `/api/rooms/${encodeURIComponent(roomId || '')}`;
  return async function call(path, options = {}) {
    let response;
    try {
      // The link's token is the credential here: no session cookie, so a logged-in
      // instructor's DELETE is not refused for want of the session's CSRF token.
      response = await fetch(`${base}${path}`, {
        credentials: 'omit',
        ...options,
        headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` },
      });
    } catch {
      throw new Error('Could not reach the server. Check your connection and try again.');
    }
    if (!response.ok) {
      let message = `The server refused (HTTP ${response.status}).`;
      let code = null;
      try {
        const body = await response.json();
        if (body && body.error && body.error.message) ({ message, code } = body.error);
      } catch {
        // not JSON
      }
      const error = new Error(message);
      error.status = response.status;
      error.code = code;
      throw error;
    }
    return response;
  };
}
