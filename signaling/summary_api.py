"""After class: summaries, CSV, a participant's own export and deletion.

Every endpoint takes the caller's token as ``Authorization: Bearer TOKEN``: the
instructor's (host) token sees everyone of that class; a participant's *bound* token
(the one the server hands back on join) sees and deletes only that participant's data.
Tokens never go in URLs, where logs and browser history would keep them.
"""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

from aiohttp import web

from storage.audit import Actor, AuditLog
from storage.co_instructors import CoInstructors
from storage.store import ParticipantRecord, Store
from storage.timer_events import TimerEvents
from telemetry.effort import zone_seconds
from telemetry.history import HeartRateHistory
from telemetry.hrv import clean_pairs, rmssd
from telemetry.laps import timer_laps
from telemetry.recovery import hr_recovery
from telemetry.summary import summarize
from telemetry.writer import HeartRateRow, HeartRateWriter
from telemetry.zones import ZONE_NAMES, zone_floors_bpm

from .co_instructors import HOST_REVOKED
from .effort import scheme_of, scheme_out
from .http import attachment, download_name, json_error
from .profiles import profile_of, profile_out
from .tokens import Grant, TokenError, TokenSigner

MAX_SERIES_POINTS = 720  # per participant: a 60-minute class at 5 s resolution


# A spreadsheet reads a cell that begins with one of these as a formula (OWASP: CSV
# injection): a participant named "=HYPERLINK(…)" would run in the instructor's sheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """``cell`` as a spreadsheet shows it as text: a leading apostrophe before a formula."""
    return f"'{cell}" if cell.startswith(_FORMULA_START) else cell


class Refused(Exception):
    """A request refused: ``response`` is the JSON error to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = json_error(status, code, message)


def _utc(unix_s: float) -> str:
    """A reading's time as a spreadsheet reads it: ISO 8601, UTC, milliseconds."""
    moment = datetime.datetime.fromtimestamp(unix_s, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _series(rows: list[HeartRateRow]) -> list[list[float]]:
    """``[[unix s, bpm], ...]``, averaged into at most MAX_SERIES_POINTS buckets."""
    if len(rows) <= MAX_SERIES_POINTS:
        return [[round(r.time, 3), r.bpm] for r in rows]
    start, end = rows[0].time, rows[-1].time
    width = (end - start) / MAX_SERIES_POINTS or 1.0
    buckets: dict[int, list[float]] = {}
    for row in rows:
        index = min(MAX_SERIES_POINTS - 1, int((row.time - start) / width))
        bucket = buckets.setdefault(index, [0.0, 0.0, 0.0])
        bucket[0] += row.time
        bucket[1] += row.bpm
        bucket[2] += 1
    return [[round(t / n, 3), round(b / n, 1)] for t, b, n in buckets.values()]


def class_grant(signer: TokenSigner, request: web.Request) -> Grant:
    """What the request's ``Authorization: Bearer`` token grants in the class of its URL:
    the instructor's token, or a participant's bound one (the class summary's rights).
    Raises ``Refused``: 401 without a token, 403 for another class's, a device's, or the
    unbound class link."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise Refused(401, "unauthorized", "send your class token: Authorization: Bearer …")
    room_id = request.match_info["room_id"]
    try:
        grant = signer.verify(header.removeprefix("Bearer ").strip(), room_id=room_id)
    except TokenError as exc:
        raise Refused(403, exc.code, exc.message) from None
    if grant.role == "device":
        raise Refused(403, "forbidden", "a device link cannot read class data")
    if grant.role == "board":  # it shows the class live on a screen, and stores nothing
        raise Refused(403, "forbidden", "a board link cannot read class data")
    if grant.role == "participant" and grant.participant_id is None:
        raise Refused(403, "forbidden", "join the class first: this is the class link, not yours")
    return grant


async def hosting_grant(signer: TokenSigner, hosts: CoInstructors, request: web.Request) -> Grant:
    """``class_grant``, and for a token minted for a co-instructor (``u``), whether that
    account still hosts the class: taking their rights away refuses it (``host_revoked``)."""
    grant = class_grant(signer, request)
    await still_hosting(hosts, grant)
    return grant


async def still_hosting(hosts: CoInstructors, grant: Grant) -> None:
    """Raise ``Refused`` if ``grant`` names a co-instructor who no longer hosts its class."""
    if not await hosts.honours(grant.room_id, grant.user_id):
        raise Refused(403, "host_revoked", HOST_REVOKED)


class SummaryApi:
    """``/api/rooms/{room_id}/summary`` and friends."""

    def __init__(
        self,
        store: Store,
        history: HeartRateHistory,
        writer: HeartRateWriter,
        signer: TokenSigner,
        audit: AuditLog,
    ) -> None:
        self.audit = audit
        self.store = store
        self.history = history
        self.writer = writer
        self.signer = signer
        # The timer as it ran: chart marks, and where the last work interval ended.
        self.timer_events = TimerEvents(store.engine)
        self.hosts = CoInstructors(store.engine)  # whose co-instructor tokens still count

    async def _grant(self, request: web.Request) -> Grant:
        return await hosting_grant(self.signer, self.hosts, request)

    async def _people(self, request: web.Request, grant: Grant) -> list[ParticipantRecord]:
        room = await self.store.get_room(grant.room_id)
        if room is None:
            raise Refused(404, "room_not_found", "this class does not exist")
        people = await self.store.participants(grant.room_id)
        if grant.role == "host":
            wanted = request.query.get("participant")
            return [p for p in people if wanted is None or p.id == wanted]
        return [p for p in people if p.id == grant.participant_id]

    async def _summaries(self, request: web.Request) -> tuple[Grant, list[dict[str, Any]]]:
        grant = await self._grant(request)
        people = await self._people(request, grant)
        return grant, await self.figures(grant.room_id, people)

    async def figures(self, room_id: str, people: list[ParticipantRecord]) -> list[dict[str, Any]]:
        """The summary of each of ``people`` in a class, as ``summary`` answers it (a
        participant account's history uses it for each class of theirs)."""
        await self.writer.flush()  # what was received is in the answer
        scheme = scheme_of(await self.store.effort_settings(room_id))
        events = await self.timer_events.of(room_id)
        laps = timer_laps((e.at, e.action, e.program) for e in events)
        out = []
        for person in people:
            rows = await self.history.readings(room_id, person.id)
            profile = profile_of(person.profile)
            pairs = [(r.time, r.bpm) for r in rows]
            summary = summarize(pairs, profile)
            seconds = zone_seconds(pairs, profile)
            intervals = [(r.time, rr) for r in rows for rr in r.rr_ms]
            out.append(
                {
                    "id": person.id,
                    "name": person.name,
                    "role": person.role,
                    "readings": len(rows),
                    "hr_max": round(profile.hr_max),
                    "resting_hr": profile.resting_hr,
                    "zone_method": profile.method,
                    "zone_floors_bpm": zone_floors_bpm(profile),
                    "summary": {
                        "duration_s": round(summary.duration_s, 1),
                        "average_bpm": summary.average_bpm,
                        "peak_bpm": summary.peak_bpm,
                        "minutes_in_zone": list(summary.minutes_in_zone),
                        "calories_kcal": summary.calories_kcal,
                        "trimp": summary.trimp,
                        "effort_points": scheme.points(seconds),
                        "effort_target_reached": scheme.reached(seconds),
                        "hr_max_used": round(profile.hr_max),
                        "hr_max_learned": profile.max_hr_learned,
                        "rmssd_ms": rmssd(clean_pairs(intervals)),
                        "hr_recovery_bpm": hr_recovery(pairs, laps),
                    },
                    "series": _series(rows),
                }
            )
        return out

    async def summary(self, request: web.Request) -> web.Response:
        """JSON summary per participant, with a heart-rate series for charts."""
        try:
            grant, people = await self._summaries(request)
        except Refused as exc:
            return exc.response
        room = await self.store.get_room(grant.room_id)
        assert room is not None  # checked in _people
        effort = scheme_out(scheme_of(await self.store.effort_settings(grant.room_id)))
        events = await self.timer_events.of(grant.room_id)
        intervals = [
            {"start": lap.start, "end": lap.end, "name": lap.name, "kind": lap.kind}
            for lap in timer_laps((e.at, e.action, e.program) for e in events)
        ]
        return web.json_response(
            {
                "room": {"id": room.id, "title": room.title, "ended_at": room.ended_at},
                "zones": list(ZONE_NAMES),
                "effort": effort,
                "intervals": intervals,
                "participants": people,
            }
        )

    async def summary_csv(self, request: web.Request) -> web.Response:
        """The summaries as CSV, one participant a row."""
        try:
            grant, people = await self._summaries(request)
        except Refused as exc:
            return exc.response
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(
            [
                "participant_id",
                "name",
                "duration_min",
                "average_bpm",
                "peak_bpm",
                *[f"minutes_zone_{i}_{n.replace(' ', '_')}" for i, n in enumerate(ZONE_NAMES)],
                "calories_kcal",
                "trimp",
                "effort_points",
                "effort_target_reached",
                "hr_max_used",
                "hr_max_learned",
                "rmssd_ms",
                "hr_recovery_bpm",
            ]
        )
        for person in people:
            s = person["summary"]
            figures = [
                round(s["duration_s"] / 60, 2), s["average_bpm"], s["peak_bpm"],
                *s["minutes_in_zone"], s["calories_kcal"], s["trimp"], s["effort_points"],
                {True: "yes", False: "no", None: ""}[s["effort_target_reached"]],
                s["hr_max_used"], "yes" if s["hr_max_learned"] else "no",
                "" if s["rmssd_ms"] is None else s["rmssd_ms"],
                "" if s["hr_recovery_bpm"] is None else s["hr_recovery_bpm"],
            ]  # fmt: skip
            # Without readings there is nothing to average: empty cells, not zeros.
            blank = [""] * len(figures)
            name = spreadsheet_safe(person["name"])
            out.writerow([person["id"], name, *(figures if person["readings"] else blank)])
        return await self._csv(grant, buffer, "-summary.csv")

    async def _csv(self, grant: Grant, buffer: io.StringIO, suffix: str) -> web.Response:
        """A CSV download named after the class's date and title."""
        room = await self.store.get_room(grant.room_id)
        assert room is not None  # checked in _people
        name = download_name(room.title, room.created_at, suffix)
        return web.Response(
            text=buffer.getvalue(), content_type="text/csv", headers=attachment(name)
        )

    async def readings_csv(self, request: web.Request) -> web.Response:
        """Every stored reading as CSV (time, participant, bpm, RR, energy, contact)."""
        try:
            grant = await self._grant(request)
            people = await self._people(request, grant)
        except Refused as exc:
            return exc.response
        await self.writer.flush()
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(
            ["time", "time_utc", "participant_id", "name", "seq", "bpm", "rr_ms", "energy_kj",
             "contact"]
        )  # fmt: skip
        for person in people:
            name = spreadsheet_safe(person.name)
            for row in await self.history.readings(grant.room_id, person.id):
                out.writerow(
                    [
                        f"{row.time:.3f}",
                        _utc(row.time),
                        row.participant_id,
                        name,
                        row.seq,
                        row.bpm,
                        " ".join(f"{v:.1f}" for v in row.rr_ms),
                        "" if row.energy_kj is None else row.energy_kj,
                        "" if row.contact is None else int(row.contact),
                    ]
                )
        return await self._csv(grant, buffer, "-heart-rate.csv")

    async def _own(self, request: web.Request) -> Grant:
        grant = await self._grant(request)
        if grant.participant_id is None:
            raise Refused(403, "forbidden", "use the token you got when you joined")
        return grant

    async def export_own(self, request: web.Request) -> web.Response:
        """Everything stored about the caller in this class, as JSON."""
        try:
            grant = await self._own(request)
        except Refused as exc:
            return exc.response
        participant_id = str(grant.participant_id)
        person = await self.store.participant(grant.room_id, participant_id)
        if person is None:
            return json_error(404, "not_found", "nothing is stored about you in this class")
        await self.writer.flush()
        rows = await self.history.readings(grant.room_id, participant_id)
        chat = await self.store.chat_of(grant.room_id, participant_id)
        await self.audit.record(
            "data_exported", Actor(f"{person.name} (participant {participant_id}, by link)"),
            f"class {grant.room_id}", request.remote,
        )  # fmt: skip
        return web.json_response(
            {
                "participant": {
                    "id": person.id,
                    "name": person.name,
                    "role": person.role,
                    "joined_at": person.joined_at,
                    "profile": profile_out(profile_of(person.profile)),
                },
                "heart_rate": [
                    {
                        "time": r.time,
                        "seq": r.seq,
                        "bpm": r.bpm,
                        "rr_ms": list(r.rr_ms),
                        "energy_kj": r.energy_kj,
                        "contact": r.contact,
                    }
                    for r in rows
                ],
                "chat": [{"text": c.text, "sent_at": c.sent_at} for c in chat],
            },
            headers={"Content-Disposition": 'attachment; filename="my-pulseroom-data.json"'},
        )

    async def delete_own(self, request: web.Request) -> web.Response:
        """Delete the caller's heart rate, profile and chat messages in this class."""
        try:
            grant = await self._own(request)
        except Refused as exc:
            return exc.response
        participant_id = str(grant.participant_id)
        # Readings still in flight are written first, so none survives the deletion.
        await self.writer.flush()
        readings = await self.history.delete_participant(grant.room_id, participant_id)
        other = await self.store.forget_participant(grant.room_id, participant_id)
        await self.audit.record(
            "data_deleted", Actor(f"participant {participant_id} (by link)"),
            f"class {grant.room_id}", request.remote, heart_rate=readings, other=other,
        )  # fmt: skip
        return web.json_response({"deleted": {"heart_rate": readings, "other": other}})

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints on ``app``."""
        app.router.add_get("/api/rooms/{room_id}/summary", self.summary)
        app.router.add_get("/api/rooms/{room_id}/summary.csv", self.summary_csv)
        app.router.add_get("/api/rooms/{room_id}/heart-rate.csv", self.readings_csv)
        app.router.add_get("/api/rooms/{room_id}/me/export", self.export_own)
        app.router.add_delete("/api/rooms/{room_id}/me", self.delete_own)
