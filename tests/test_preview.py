"""``GET /api/rooms/{room_id}/preview`` (issue 18, item 9: the pre-join screen names the
class, and a bad link is said before anyone types a name), on a real server in this
event loop: what a good link leads to, and the refusal for every kind of bad one.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from signaling.tokens import TokenSigner
from tests.loopback import loopback_server
from tests.sio_client import Client

SECRET = "preview-secret-" + "b" * 40


async def test_a_link_is_previewed_and_a_bad_one_refused(tmp_path: Path) -> None:
    async with loopback_server(tmp_path, PULSEROOM_SECRET=SECRET) as server:
        room = await server.create_room("Evening yoga")
        other = await server.create_room("Another")
        room_id = room["room"]["id"]
        token = str(room["join_link"]).split("#t=", 1)[1]
        signer = TokenSigner(SECRET.encode(), 60)

        async def preview(bearer: str | None, where: str = room_id) -> httpx.Response:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                return await http.get(f"/api/rooms/{where}/preview", headers=headers)

        good = await preview(token)
        assert good.status_code == 200, good.text
        assert good.json() == {
            "room": {"id": room_id, "title": "Evening yoga", "starts_at": None,
                     "weekly": False, "ended": False},
            "role": "participant",
        }  # fmt: skip
        host = await preview(str(room["host_link"]).split("#t=", 1)[1])
        assert host.json()["role"] == "host"
        device, _ = signer.issue(room_id, "device", participant_id="someone")
        summary, _ = signer.issue(room_id, "host", summary_only=True)
        for bearer in (device, summary):  # no class page opens with these
            assert (await preview(bearer)).json()["error"]["code"] == "forbidden"

        expired, _ = signer.issue(room_id, "participant", now=time.time() - 3600)
        body, mac = token.split(".")
        forged = f"{body}.{mac[:-4]}{'AAAA' if mac[-4:] != 'AAAA' else 'BBBB'}"
        other_token = str(other["join_link"]).split("#t=", 1)[1]
        nowhere, _ = signer.issue("nosuchclass0", "participant")
        for bearer, where, status, code in [
            (None, room_id, 401, "unauthorized"),
            (forged, room_id, 403, "invalid_token"),
            ("garbled", room_id, 403, "invalid_token"),
            (expired, room_id, 403, "token_expired"),
            (other_token, room_id, 403, "wrong_room"),
            (nowhere, "nosuchclass0", 404, "room_not_found"),
        ]:
            answer = await preview(bearer, where)
            assert answer.status_code == status, (code, answer.text)
            assert answer.json()["error"]["code"] == code, answer.text

        # A replaced link, then an ended class.
        replaced = await server.instructor.client.post(
            f"/api/rooms/{room_id}/links", headers={"X-CSRF-Token": server.instructor.csrf_token}
        )
        assert replaced.status_code == 200, replaced.text
        assert (await preview(token)).json()["error"]["code"] == "link_replaced"
        fresh = replaced.json()["join_link"].split("#t=", 1)[1]
        assert (await preview(fresh)).status_code == 200
        coach = await Client(server.url).connect()
        try:
            assert (await coach.join(replaced.json()["host_link"], "Coach"))["ok"]
            assert (await coach.call("end_class", {"v": 1}))["ok"]
        finally:
            await coach.close()
        ended = await preview(fresh)
        assert ended.status_code == 410 and ended.json()["error"]["code"] == "room_ended"
