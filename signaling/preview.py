"""What a class link leads to, before joining: ``GET /api/rooms/{room_id}/preview``.

The page asks with the link's token as it opens, so the pre-join screen shows the
class's title (and its start, if scheduled), and a damaged, expired, replaced or
ended link is said at once, not after the visitor has typed a name. Nothing is
created or changed; the join still checks everything again.
"""

from __future__ import annotations

from aiohttp import web

from storage.co_instructors import CoInstructors
from storage.store import Store

from .co_instructors import HOST_REVOKED
from .http import json_error
from .tokens import TokenError, TokenSigner


class PreviewApi:
    """The one endpoint."""

    def __init__(self, store: Store, signer: TokenSigner) -> None:
        self.store = store
        self.signer = signer
        self.hosts = CoInstructors(store.engine)  # whose co-instructor links still count

    async def preview(self, request: web.Request) -> web.Response:
        """The class a token is for: its title and schedule, or why the link is no good."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return json_error(401, "unauthorized", "send the link's token: Authorization: Bearer …")
        room_id = request.match_info["room_id"]
        try:
            grant = self.signer.verify(header.removeprefix("Bearer ").strip(), room_id=room_id)
        except TokenError as exc:
            return json_error(403, exc.code, exc.message)
        if grant.role == "device" or grant.summary_only:
            # A device link is for the bridge, a summary link for the summary: no class
            # page opens with either (the page says so itself), so nothing to preview.
            return json_error(403, "forbidden", "this link does not open a class")
        room = await self.store.get_room(room_id)
        if room is None:
            return json_error(404, "room_not_found", "this class does not exist")
        # An unbound link of an earlier generation lets no one in (bound tokens: the join
        # decides, an instructor's own keep working after a replacement).
        if grant.participant_id is None and grant.generation != room.generation:
            return json_error(
                403,
                "link_replaced",
                "this link was replaced by the instructor: ask them for the new one",
            )
        if not await self.hosts.honours(room.id, grant.user_id):
            return json_error(403, "host_revoked", HOST_REVOKED)
        ended = room.ended_at is not None and not room.weekly
        if ended:
            return json_error(410, "room_ended", "this class has ended")
        return web.json_response(
            {
                "room": {
                    "id": room.id, "title": room.title, "starts_at": room.starts_at,
                    "weekly": room.weekly, "ended": ended,
                },
                "role": grant.role,
            }
        )  # fmt: skip

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoint on ``app``."""
        app.router.add_get("/api/rooms/{room_id}/preview", self.preview)
