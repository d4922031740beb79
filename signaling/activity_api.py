"""A participant takes their class with them: ``GET /api/rooms/{id}/me/activity.tcx`` and
``.fit``, for Strava, Garmin Connect and TrainingPeaks (``telemetry/activity_export.py``).

Only with the participant's own bound token (as ``me/export``): heart rate is health
data, and the file is theirs. Laps come from the instructor's interval timer as it ran.
"""

from __future__ import annotations

from aiohttp import web

from storage.co_instructors import CoInstructors
from storage.store import Store
from storage.timer_events import TimerEvents
from telemetry.activity_export import lap_figures, tcx
from telemetry.history import HeartRateHistory
from telemetry.laps import covering, timer_laps
from telemetry.writer import HeartRateWriter

from .http import attachment, download_name, json_error
from .profiles import profile_of
from .summary_api import Refused, hosting_grant
from .tokens import TokenSigner

_FORMATS = {
    "tcx": "application/vnd.garmin.tcx+xml",
    "fit": "application/vnd.ant.fit",
}


class ActivityApi:
    """The two downloads."""

    def __init__(
        self,
        store: Store,
        history: HeartRateHistory,
        writer: HeartRateWriter,
        timer_events: TimerEvents,
        signer: TokenSigner,
    ) -> None:
        self.store = store
        self.history = history
        self.writer = writer
        self.timer_events = timer_events
        self.signer = signer
        self.hosts = CoInstructors(store.engine)  # whose co-instructor tokens still count

    async def tcx(self, request: web.Request) -> web.Response:
        """The caller's class as TCX."""
        return await self._activity(request, "tcx")

    async def fit(self, request: web.Request) -> web.Response:
        """The caller's class as FIT."""
        return await self._activity(request, "fit")

    async def _activity(self, request: web.Request, extension: str) -> web.Response:
        """The caller's readings in this class as TCX or FIT, one lap per interval."""
        try:
            grant = await hosting_grant(self.signer, self.hosts, request)
        except Refused as exc:
            return exc.response
        if grant.participant_id is None:
            return json_error(403, "forbidden", "use the token you got when you joined")
        room = await self.store.get_room(grant.room_id)
        person = await self.store.participant(grant.room_id, grant.participant_id)
        if room is None or person is None:
            return json_error(404, "not_found", "nothing is stored about you in this class")
        await self.writer.flush()  # readings still in flight belong in the file
        readings = await self.history.readings(grant.room_id, grant.participant_id)
        if not readings:
            return json_error(404, "not_found", "no heart rate of yours is stored in this class")
        events = await self.timer_events.of(grant.room_id)
        laps = covering(
            timer_laps((e.at, e.action, e.program) for e in events),
            readings[0].time,
            readings[-1].time,
        )
        figures = lap_figures(laps, readings, profile_of(person.profile))
        if extension == "tcx":
            body = tcx(figures, room.title)
        else:
            # On the first FIT download, not at start: fit_tool takes ~0.3 s to import.
            from telemetry.fit_export import fit

            body = fit(figures)
        name = download_name(room.title, readings[0].time, f".{extension}")
        return web.Response(body=body, content_type=_FORMATS[extension], headers=attachment(name))

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints on ``app``."""
        app.router.add_get("/api/rooms/{room_id}/me/activity.tcx", self.tcx)
        app.router.add_get("/api/rooms/{room_id}/me/activity.fit", self.fit)
