"""Recording a class: the instructor's ``record`` event, the ``recording`` broadcast, and
the recordings' HTTP API.

``PULSEROOM_RECORDING`` says what a class may do: ``off`` (never recorded),
``on-request`` (the instructor starts and stops it) or ``always`` (recorded from the
instructor's first arrival to the end, and not stopped by hand). Which classes are being
recorded is signaling's state, per class on this node; the SFU writes the file
(``MediaBackend.set_recording``). The media side of a class goes when its last member
leaves, finishing the file; so each instructor join re-arms a recording that is on (the
SFU starts a new file only if it has none), and the class's recordings are its files.

``GET /api/rooms/{id}/recordings`` lists them, ``GET …/recordings/{rec}`` serves one
(byte ranges: seekable), both with the rights of the class's summary (the instructor's
token, or a participant's bound one); ``DELETE …/recordings/{rec}`` is the instructor's.

A ``<video>`` element cannot send an ``Authorization`` header, and a token never goes in
a URL: ``POST …/recordings/{rec}/ticket`` (with the header) answers with a cookie that
only that recording's URL receives (``Path``), ``HttpOnly`` and ``SameSite=Strict``,
holding a summary-only token with the caller's own rights for a few hours. Only the
file's GET reads it: it cannot delete, list, or join anything.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import socketio
from aiohttp import web

from sfu.backend import MediaBackend, SfuError
from storage.audit import Actor, AuditLog
from storage.co_instructors import CoInstructors
from storage.recordings import RecordingFiles, media_type

from .errors import SignalError
from .http import json_error
from .messages import PROTOCOL_VERSION, RecordIn
from .presence import Member
from .summary_api import Refused, class_grant, hosting_grant, still_hosting
from .tokens import Grant, TokenError, TokenSigner

logger = logging.getLogger(__name__)

RecordingMode = Literal["off", "on-request", "always"]
TICKET_COOKIE = "pulseroom_replay"
TICKET_TTL_S = 4 * 3600  # a class's replay, watched (and paused) in one sitting


class Recording:
    """Which classes on this node are being recorded, and the ``record`` event."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        sfu: MediaBackend,
        files: RecordingFiles | None,
        mode: RecordingMode = "on-request",
    ) -> None:
        self._sio = sio
        self._sfu = sfu
        self._files = files
        self.mode: RecordingMode = mode if files is not None else "off"
        self._on: set[str] = set()  # room ids being recorded
        self._started: set[str] = set()  # classes ``always`` has started once
        # The instructor's music and voice are one audio track: a recording that leaves
        # the music out leaves their audio out while an instructor's music mode is on.
        self._without_music: set[str] = set()  # room ids recorded with music "exclude"
        self._music: dict[str, set[str]] = {}  # room id → instructors with music mode on

    def on(self, room_id: str) -> bool:
        """Whether a class is being recorded."""
        return room_id in self._on

    async def record(self, _sid: str, member: Member, msg: RecordIn) -> dict[str, Any]:
        """``record``: the instructor starts (``on``) or stops recording the class."""
        if self.mode == "off":
            raise SignalError("recording_off", "this server does not record classes")
        if not msg.on and self.mode == "always":
            raise SignalError("bad_request", "this server records every class")
        room_id = member.room_id
        if msg.on and msg.music == "exclude":
            self._without_music.add(room_id)
        elif msg.on:
            self._without_music.discard(room_id)
        await self._set(room_id, msg.on)
        return {"recording": msg.on}

    async def music(self, member: Member, on: bool) -> None:
        """An instructor's music mode went on or off: a recording without music follows."""
        room_id = member.room_id
        musicians = self._music.setdefault(room_id, set())
        if on == (member.id in musicians):
            return
        if on:
            musicians.add(member.id)
        else:
            musicians.discard(member.id)
        if room_id in self._on and room_id in self._without_music:
            await self._set(room_id, True)

    def left(self, member: Member) -> None:
        """A member left: an instructor's music leaves with them (their page says it
        again when it rejoins)."""
        musicians = self._music.get(member.room_id)
        if musicians is not None:
            musicians.discard(member.id)
            if not musicians:
                del self._music[member.room_id]

    def _audio(self, room_id: str) -> bool:
        """Whether the instructor's audio goes into the class's recording now."""
        return room_id not in self._without_music or not self._music.get(room_id)

    async def joined(self, member: Member) -> None:
        """A member joined: an instructor (re)starts a recording that is on, or with
        ``always`` the class's first one."""
        if member.role != "host" or self.mode == "off":
            return
        room_id = member.room_id
        try:
            if self.mode == "always" and room_id not in self._started:
                self._started.add(room_id)
                await self._set(room_id, True)
            elif room_id in self._on:
                await self._set(room_id, True)
        except SfuError as exc:
            # The join itself stands: a class that cannot record is still a class.
            logger.error("room %s cannot record: %s", room_id, exc.message)

    async def _set(self, room_id: str, on: bool) -> None:
        assert self._files is not None  # mode "off" without files
        directory = str(self._files.directory(room_id)) if on else None
        await self._sfu.set_recording(room_id, directory, self._audio(room_id))
        if on == (room_id in self._on):
            return
        if on:
            self._on.add(room_id)
        else:
            self._on.discard(room_id)
        logger.info("room %s recording %s", room_id, "started" if on else "stopped")
        await self._sio.emit("recording", {"v": PROTOCOL_VERSION, "on": on}, room=room_id)

    def forget(self, room_id: str) -> None:
        """The class ended (its media side, and so its file, closed with it)."""
        self._on.discard(room_id)
        self._started.discard(room_id)
        self._without_music.discard(room_id)
        self._music.pop(room_id, None)


class RecordingsApi:
    """``/api/rooms/{room_id}/recordings``: list, fetch, delete."""

    def __init__(
        self,
        files: RecordingFiles,
        signer: TokenSigner,
        audit: AuditLog,
        hosts: CoInstructors,
        secure_cookies: bool = False,
    ) -> None:
        self.hosts = hosts  # whose co-instructor tokens still count
        self.files = files
        self.audit = audit
        self.signer = signer
        self.secure_cookies = secure_cookies

    async def list(self, request: web.Request) -> web.Response:
        """The class's recordings, oldest first."""
        try:
            grant = await hosting_grant(self.signer, self.hosts, request)
        except Refused as exc:
            return exc.response
        recordings = [
            {
                "id": r.id, "bytes": r.bytes, "complete": r.complete,
                "modified_at": r.modified_at, "started_at": r.started_at,
                "content_type": r.media_type,
            }
            for r in self.files.list(grant.room_id)
        ]  # fmt: skip
        return web.json_response({"recordings": recordings})

    async def get(self, request: web.Request) -> web.StreamResponse:
        """One finished recording (``Range`` requests answered with 206), for the
        ``Authorization`` header or the recording's ticket cookie."""
        try:
            grant = self._file_grant(request)
            await still_hosting(self.hosts, grant)
        except Refused as exc:
            return exc.response
        path = self.files.path(grant.room_id, request.match_info["recording_id"])
        if path is None:
            return json_error(404, "not_found", "no finished recording with this id")
        return web.FileResponse(path, headers={"Content-Type": media_type(path)})

    def _file_grant(self, request: web.Request) -> Grant:
        ticket = request.cookies.get(TICKET_COOKIE)
        if "Authorization" in request.headers or not ticket:
            return class_grant(self.signer, request)
        try:
            grant = self.signer.verify(ticket, room_id=request.match_info["room_id"])
        except TokenError as exc:
            raise Refused(403, exc.code, exc.message) from None
        if not grant.summary_only or grant.role == "device":
            raise Refused(403, "forbidden", "not a replay ticket")
        return grant

    async def ticket(self, request: web.Request) -> web.Response:
        """The cookie that lets this browser's ``<video>`` fetch one recording."""
        try:
            grant = await hosting_grant(self.signer, self.hosts, request)
        except Refused as exc:
            return exc.response
        room_id, recording_id = grant.room_id, request.match_info["recording_id"]
        if self.files.path(room_id, recording_id) is None:
            return json_error(404, "not_found", "no finished recording with this id")
        expires_at = min(grant.expires_at, int(time.time()) + TICKET_TTL_S)
        token, _ = self.signer.issue(
            room_id, grant.role, participant_id=grant.participant_id, expires_at=expires_at,
            summary_only=True, user_id=grant.user_id,
        )  # fmt: skip
        response = web.json_response({"expires_at": expires_at})
        response.set_cookie(
            TICKET_COOKIE, token, max_age=max(0, expires_at - int(time.time())),
            path=f"/api/rooms/{room_id}/recordings/{recording_id}", httponly=True,
            samesite="Strict", secure=self.secure_cookies,
        )  # fmt: skip
        return response

    async def delete(self, request: web.Request) -> web.Response:
        """Delete a finished recording: the instructor only."""
        try:
            grant = await hosting_grant(self.signer, self.hosts, request)
        except Refused as exc:
            return exc.response
        if grant.role != "host":
            return json_error(403, "forbidden", "only the instructor deletes a recording")
        recording_id = request.match_info["recording_id"]
        if self.files.in_progress(grant.room_id, recording_id):
            return json_error(409, "in_progress", "stop recording before deleting it")
        if not self.files.delete(grant.room_id, recording_id):
            return json_error(404, "not_found", "no finished recording with this id")
        logger.info("recording %s of room %s deleted", recording_id, grant.room_id)
        await self.audit.record(
            "recording_deleted", Actor(f"host of class {grant.room_id} (by link)"),
            f"recording {recording_id} of class {grant.room_id}", request.remote,
        )  # fmt: skip
        return web.json_response({})

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints on ``app``."""
        app.router.add_get("/api/rooms/{room_id}/recordings", self.list)
        app.router.add_get("/api/rooms/{room_id}/recordings/{recording_id}", self.get)
        app.router.add_post("/api/rooms/{room_id}/recordings/{recording_id}/ticket", self.ticket)
        app.router.add_delete("/api/rooms/{room_id}/recordings/{recording_id}", self.delete)
