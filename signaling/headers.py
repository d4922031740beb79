"""Security headers on every HTTP answer, pages, files and API alike.

The pages load only their own scripts and styles (no inline script or style, no eval),
so the Content-Security-Policy can forbid everything else: an injected ``<script>`` or
``onerror=`` does not run. ``connect-src`` allows WebSockets to any host because a class
may move to another node of the cluster, whose address the page learns at run time.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# A year, as HSTS preload lists ask; sent only when the public address is https.
HSTS = "max-age=31536000"


def add_security_headers(app: web.Application, https: bool) -> None:
    """Set the headers on every response of ``app`` (``https``: its public URL is)."""

    async def on_prepare(_request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers without CSP 2
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        # No version: it tells a scanner which known holes to try.
        headers["Server"] = "PulseRoom"
        if https:
            headers["Strict-Transport-Security"] = HSTS

    app.on_response_prepare.append(on_prepare)
