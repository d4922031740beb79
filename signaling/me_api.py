"""Participant accounts over REST: sign up, the profile kept across classes, the history
of classes attended with a weekly trend, export, and deleting the account with its data.

A participant account is optional: joining a class never needs one. A logged-in
participant's class visits are linked to their account as they join
(``signaling/participant_accounts.py``); these endpoints read and manage what that
linked. Every ``/api/me`` route needs the session cookie of a participant account;
state changes also need its CSRF token (``AccountsApi.csrf_guard``).
"""

from __future__ import annotations

import csv
import datetime
import io
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from storage.accounts import AccountError, AccountStore, UserRecord
from storage.audit import AuditLog
from storage.participant_accounts import ParticipantAccounts, Visit
from storage.passwords import MAX_LENGTH
from telemetry.history import HeartRateHistory
from telemetry.zones import ZONE_NAMES, Profile

from .accounts_api import (
    SESSION,
    SESSION_COOKIE,
    Email,
    NewPassword,
    Token,
    actor_of,
    read_body,
    refusal,
    session_answer,
    set_session_cookie,
)
from .http import WEB_DIR, attachment, json_error
from .login_throttle import FailureWindow
from .messages import ProfileFields
from .profiles import profile_of, profile_out, record_of
from .summary_api import SummaryApi, spreadsheet_safe
from .tokens import TokenError, TokenSigner

logger = logging.getLogger(__name__)

MAX_CLASSES = 500  # a history lists at most this many classes, newest first
TREND_WEEKS = 12  # the weekly trend: this many weeks, up to the current one
HARD_ZONES = (4, 5)  # the trend's minutes: zones 4 and 5 (hard and maximum)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SignupIn(_Strict):
    """``POST /api/auth/signup`` body: a new participant account."""

    email: Email
    password: NewPassword


class DeleteIn(_Strict):
    """``DELETE /api/me`` body: the password again, so a left-open tab cannot do it."""

    password: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]


class ClaimIn(_Strict):
    """``POST /api/me/claim`` body: the summary (or rejoin) token of a class visit."""

    token: Token


def week_start(unix_s: float) -> datetime.date:
    """The Monday (UTC) of the week a moment falls in."""
    day = datetime.datetime.fromtimestamp(unix_s, datetime.UTC).date()
    return day - datetime.timedelta(days=day.weekday())


def weekly_trend(classes: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Per week (the last TREND_WEEKS, oldest first): classes attended, minutes in
    zones 4-5 and effort points, summed from each class's figures."""
    last = week_start(now)
    weeks = [last - datetime.timedelta(weeks=n) for n in range(TREND_WEEKS - 1, -1, -1)]
    sums: dict[datetime.date, list[float]] = {w: [0, 0.0, 0.0] for w in weeks}
    for item in classes:
        bucket = sums.get(week_start(item["joined_at"]))
        if bucket is None:
            continue
        summary = item["summary"]
        bucket[0] += 1
        bucket[1] += sum(summary["minutes_in_zone"][z] for z in HARD_ZONES)
        bucket[2] += summary["effort_points"] or 0
    return [
        {"week": w.isoformat(), "classes": int(n), "hard_minutes": round(hard, 1),
         "effort_points": round(points, 1)}
        for w, (n, hard, points) in sums.items()
    ]  # fmt: skip


def summary_link(room_id: str, token: str) -> str:
    """The class summary page with a token that reads it (as ``web/link.js`` makes it)."""
    return f"/r/{room_id}/summary#t={token}"


Handler = Callable[[web.Request, UserRecord], Awaitable[web.StreamResponse]]


class MeApi:
    """``/api/auth/signup``, ``/api/me/*`` and the ``/me`` and ``/signup`` pages."""

    def __init__(
        self,
        accounts: AccountStore,
        audit: AuditLog,
        summaries: SummaryApi,
        history: HeartRateHistory,
        signer: TokenSigner,
        signup: bool = True,
        secure_cookies: bool = False,
        signups_per_address: int = 10,
        window: float = 15 * 60,
    ) -> None:
        self.accounts = accounts
        self.audit = audit
        self.summaries = summaries
        self.store = summaries.store
        self.history = history
        self.signer = signer
        self.signup_open = signup
        self.secure_cookies = secure_cookies
        self.visits = ParticipantAccounts(accounts.engine)
        # Sign-ups per address, each counted (an account is cheap to make): as a login
        # failure is, so a script cannot fill the users table.
        self._signups = FailureWindow(signups_per_address, window)
        self._deletes = FailureWindow(5, window)  # wrong passwords per account

    # -- sign up --------------------------------------------------------------------

    async def signup(self, request: web.Request) -> web.Response:
        """Create a participant account and log it in (``PULSEROOM_PARTICIPANT_SIGNUP``)."""
        if not self.signup_open:
            return json_error(403, "signup_disabled", "this server does not take sign-ups")
        payload = await read_body(request, SignupIn)
        if isinstance(payload, web.Response):
            return payload
        wait = self._signups.attempt(request.remote or "unknown")
        if wait:
            response = json_error(429, "rate_limited", "too many sign-ups: wait a while")
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        try:
            user = await self.accounts.create_user(payload.email, "participant", payload.password)
        except AccountError as exc:
            return refusal(exc)
        await self.visits.set_profile(user.id, record_of(Profile()))
        await self.audit.record("signup", actor_of(user), user.email, request.remote)
        logger.info("participant account created: %s", user.email)
        secret, session = await self.accounts.create_session(user)
        return set_session_cookie(session_answer(session, status=201), secret, self.secure_cookies)

    # -- the account's own data -----------------------------------------------------

    def _participant(self, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        """``handler`` for a logged-in participant account only."""

        async def checked(request: web.Request) -> web.StreamResponse:
            if SESSION not in request:
                return json_error(401, "unauthorized", "log in first")
            user = request[SESSION].user
            if user.role != "participant":
                return json_error(
                    403, "forbidden", "only participant accounts keep a class history"
                )
            return await handler(request, user)

        return checked

    async def get_profile(self, _request: web.Request, user: UserRecord) -> web.Response:
        """The account's zone profile."""
        return web.json_response(
            {"profile": profile_out(profile_of(await self.visits.profile(user.id)))}
        )

    async def put_profile(self, request: web.Request, user: UserRecord) -> web.Response:
        """Replace the account's zone profile (used from the next class joined)."""
        payload = await read_body(request, ProfileFields)
        if isinstance(payload, web.Response):
            return payload
        if (
            payload.resting_hr is not None
            and payload.max_hr is not None
            and payload.resting_hr >= payload.max_hr
        ):
            return json_error(400, "bad_request", "resting_hr: must be below max_hr")
        profile = Profile(
            age=payload.age, max_hr=payload.max_hr, resting_hr=payload.resting_hr,
            weight_kg=payload.weight_kg, sex=payload.sex, method=payload.zone_method,
        )  # fmt: skip
        await self.visits.set_profile(user.id, record_of(profile))
        return web.json_response({"profile": profile_out(profile)})

    async def _classes(self, user: UserRecord) -> list[tuple[Visit, dict[str, Any]]]:
        """Each class of the account (newest first) with its figures from the class
        summary's own code (``SummaryApi.figures``)."""
        out = []
        for visit in (await self.visits.visits(user.id))[:MAX_CLASSES]:
            person = await self.store.participant(visit.room.id, visit.participant_id)
            if person is None:
                continue
            [figures] = await self.summaries.figures(visit.room.id, [person])
            out.append((visit, figures))
        return out

    def _class_out(self, visit: Visit, figures: dict[str, Any]) -> dict[str, Any]:
        room = visit.room
        token, _expires = self.signer.issue(
            room.id, "participant", participant_id=visit.participant_id, summary_only=True,
            generation=room.generation,
        )  # fmt: skip
        return {
            "room_id": room.id,
            "title": room.title,
            "joined_at": visit.joined_at,
            "ended_at": room.ended_at,
            "participant_id": visit.participant_id,
            "name": visit.name,
            "readings": figures["readings"],
            "hr_max": figures["hr_max"],
            "summary": figures["summary"],
            "summary_link": summary_link(room.id, token),
        }

    async def history_of(self, request: web.Request, user: UserRecord) -> web.Response:
        """The account's profile, classes attended (figures, summary link) and trend."""
        classes = [self._class_out(v, f) for v, f in await self._classes(user)]
        return web.json_response(
            {
                "email": user.email,
                "profile": profile_out(profile_of(await self.visits.profile(user.id))),
                "zones": list(ZONE_NAMES),
                "classes": classes,
                "weeks": weekly_trend(classes, datetime.datetime.now(datetime.UTC).timestamp()),
            }
        )

    async def export(self, request: web.Request, user: UserRecord) -> web.StreamResponse:
        """Everything the account holds: ``?format=json`` (default) or ``csv``."""
        kind = request.query.get("format", "json")
        if kind not in ("json", "csv"):
            return json_error(400, "bad_request", "format: json or csv")
        classes = await self._classes(user)
        await self.audit.record(
            "data_exported", actor_of(user), user.email, request.remote, format=kind,
            classes=len(classes),
        )  # fmt: skip
        if kind == "csv":
            return web.Response(
                text=_classes_csv(classes), content_type="text/csv",
                headers=attachment("my-pulseroom-classes.csv"),
            )  # fmt: skip
        out = []
        for visit, figures in classes:
            rows = await self.history.readings(visit.room.id, visit.participant_id)
            chat = await self.store.chat_of(visit.room.id, visit.participant_id)
            item = self._class_out(visit, figures)
            del item["summary_link"]  # a live token has no place in a file kept for years
            item["heart_rate"] = [
                {"time": r.time, "bpm": r.bpm, "rr_ms": list(r.rr_ms), "energy_kj": r.energy_kj,
                 "contact": r.contact} for r in rows
            ]  # fmt: skip
            item["chat"] = [{"text": c.text, "sent_at": c.sent_at} for c in chat]
            out.append(item)
        profile = profile_out(profile_of(await self.visits.profile(user.id)))
        return web.json_response(
            {
                "account": {"email": user.email, "role": user.role, "created_at": user.created_at},
                "profile": profile,
                "classes": out,
            },
            headers=attachment("my-pulseroom-data.json"),
        )

    async def delete(self, request: web.Request, user: UserRecord) -> web.Response:
        """Delete the account and all its data: in every class linked to it, the
        readings (TimescaleDB's per-minute aggregate refreshed over them), profile and
        chat; then the user, their sessions, profile and links."""
        payload = await read_body(request, DeleteIn)
        if isinstance(payload, web.Response):
            return payload
        wait = self._deletes.attempt(user.id)
        if wait:
            return json_error(429, "rate_limited", "too many wrong passwords: wait a while")
        try:
            await self.accounts.authenticate(user.email, payload.password)
        except AccountError as exc:
            return refusal(exc)
        self._deletes.forgive(user.id, everything=True)
        visits = await self.visits.visits(user.id)
        await self.summaries.writer.flush()  # readings in flight go too
        readings = other = 0
        for visit in visits:
            readings += await self.history.delete_participant(visit.room.id, visit.participant_id)
            other += await self.store.forget_participant(visit.room.id, visit.participant_id)
        await self.visits.delete_user(user.id)
        await self.audit.record(
            "account_deleted", actor_of(user), user.email, request.remote, classes=len(visits),
            heart_rate=readings, other=other,
        )  # fmt: skip
        logger.info("participant account deleted with its data: %s", user.email)
        response = web.json_response(
            {"deleted": {"classes": len(visits), "heart_rate": readings, "other": other}}
        )
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def claim(self, request: web.Request, user: UserRecord) -> web.Response:
        """Add a class visit made without logging in to the account, by its token."""
        payload = await read_body(request, ClaimIn)
        if isinstance(payload, web.Response):
            return payload
        try:
            grant = self.signer.verify(payload.token)
        except TokenError as exc:
            return json_error(403, exc.code, exc.message)
        if grant.role != "participant" or grant.participant_id is None:
            return json_error(403, "forbidden", "send the token of your own class visit")
        person = await self.store.participant(grant.room_id, grant.participant_id)
        if person is None:
            return json_error(404, "not_found", "nothing is stored about that visit")
        owner = await self.visits.owner(grant.room_id, grant.participant_id)
        if owner is not None and owner != user.id:
            return json_error(409, "already_claimed", "that visit belongs to another account")
        await self.visits.link(user.id, grant.room_id, grant.participant_id)
        await self.audit.record(
            "visit_claimed", actor_of(user), f"class {grant.room_id}", request.remote,
            participant=grant.participant_id,
        )  # fmt: skip
        return web.json_response({"room_id": grant.room_id, "participant_id": person.id})

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints and pages on ``app``."""

        async def me_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "me.html")

        async def signup_page(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "account.html")

        app.router.add_get("/me", me_page)
        app.router.add_get("/signup", signup_page)
        app.router.add_post("/api/auth/signup", self.signup)
        app.router.add_get("/api/me/history", self._participant(self.history_of))
        app.router.add_get("/api/me/profile", self._participant(self.get_profile))
        app.router.add_put("/api/me/profile", self._participant(self.put_profile))
        app.router.add_get("/api/me/export", self._participant(self.export))
        app.router.add_post("/api/me/claim", self._participant(self.claim))
        app.router.add_delete("/api/me", self._participant(self.delete))


def _classes_csv(classes: list[tuple[Visit, dict[str, Any]]]) -> str:
    """One row per class attended: when, which, and the summary's figures."""
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(
        ["class_id", "title", "date_utc", "participant_id", "name", "duration_min",
         "average_bpm", "peak_bpm",
         *[f"minutes_zone_{i}_{n.replace(' ', '_')}" for i, n in enumerate(ZONE_NAMES)],
         "calories_kcal", "trimp", "effort_points", "hr_max_used"]
    )  # fmt: skip
    for visit, figures in classes:
        s = figures["summary"]
        when = datetime.datetime.fromtimestamp(visit.joined_at, datetime.UTC)
        values = [
            round(s["duration_s"] / 60, 2), s["average_bpm"], s["peak_bpm"],
            *s["minutes_in_zone"], s["calories_kcal"], s["trimp"], s["effort_points"],
            s["hr_max_used"],
        ]  # fmt: skip
        out.writerow(
            [visit.room.id, spreadsheet_safe(visit.room.title), when.isoformat(timespec="seconds"),
             visit.participant_id, spreadsheet_safe(visit.name),
             *(values if figures["readings"] else [""] * len(values))]
        )  # fmt: skip
    return buffer.getvalue()
