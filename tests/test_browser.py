"""End to end in a real browser: the web client (web/) in headless Debian Chromium.

A real ``pulseroom serve`` subprocess, real WebRTC to the aiortc SFU, Chromium's fake
camera and microphone. Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import av

from signaling.tokens import TokenSigner
from tests.browser_fixtures import (
    BROWSER_MODULE,
    SECRET,
    TILE,
    Tab,
    assert_video_flowing,
    browser_fixture,  # noqa: F401 (fixture "browser")
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer
from tests.instructor import EMAIL as INSTRUCTOR_EMAIL
from tests.instructor import PASSWORD as INSTRUCTOR_PASSWORD
from tests.sio_client import Client

pytestmark = BROWSER_MODULE


def tile(tab: Tab, participant_id: str) -> Any:
    return tab.page.locator(TILE.format(participant_id))


# Records (window.removedTiles) each participant whose tile leaves the page, however soon
# another takes its place: a participant who rejoins within 30 ms (a dropped WebSocket,
# reconnected at once) has a new tile before a locator polls for the old one's absence.
WATCH_REMOVALS_JS = """(tileSelector) => {
    window.removedTiles = new Set();
    new MutationObserver((mutations) => {
        for (const m of mutations) for (const node of m.removedNodes) {
            if (!(node instanceof Element)) continue;
            const tiles = node.matches(tileSelector) ? [node]
                : [...node.querySelectorAll(tileSelector)];
            // Moved (to the stage, say) is still on the page by the time this runs.
            for (const t of tiles) {
                if (!t.isConnected) window.removedTiles.add(t.dataset.participantId);
            }
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""


async def wait_removed(tab: Tab, participant_id: str, timeout_s: float) -> None:
    """Until the participant's tile was removed from ``tab`` since ``WATCH_REMOVALS_JS``
    ran there (fails after ``timeout_s``)."""
    try:
        await tab.page.wait_for_function(
            "(id) => window.removedTiles.has(id)", arg=participant_id, timeout=timeout_s * 1000
        )
    except Exception:
        raise AssertionError(
            f"{tab.name}: tile of {participant_id} not removed within {timeout_s} s"
        ) from None


async def wait_gone(tab: Tab, participant_id: str, timeout_s: float) -> float:
    """Seconds until the participant's tile is gone from ``tab`` (fails after ``timeout_s``)."""
    start = time.monotonic()
    try:
        await tile(tab, participant_id).wait_for(state="detached", timeout=timeout_s * 1000)
    except Exception:
        raise AssertionError(
            f"{tab.name}: tile of {participant_id} still there after {timeout_s} s"
        ) from None
    return time.monotonic() - start


async def notice(tab: Tab) -> tuple[str, str]:
    """The notice's title and its code (data-code), once it is shown."""
    box = tab.page.get_by_test_id("notice")
    await box.wait_for(state="visible", timeout=15_000)
    title = await tab.page.get_by_test_id("notice-title").text_content()
    return title or "", await box.get_attribute("data-code") or ""


async def test_live_class_host_and_two_participants(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Morning spin")
    host = await open_tab(browser, "host")
    ben = await open_tab(browser, "participant Ben")
    cleo = await open_tab(browser, "participant Cleo")
    tabs = [host, ben, cleo]
    try:
        # The host turns gallery mode on before anyone else arrives, so each participant's
        # first subscribe offer carries several video m-lines at once.
        host_id = await join(host, str(room["host_link"]), "Coach Ana")
        assert await host.page.get_by_test_id("role-badge").is_visible()
        await host.page.get_by_test_id("gallery-button").click()
        await host.page.wait_for_selector(
            '[data-testid=gallery-button][aria-pressed="true"]', timeout=5_000
        )
        ben_id, cleo_id = await asyncio.gather(
            join(ben, str(room["join_link"]), "Ben"), join(cleo, str(room["join_link"]), "Cleo")
        )
        names = {host_id: "Coach Ana", ben_id: "Ben", cleo_id: "Cleo"}
        assert not await ben.page.get_by_test_id("role-badge").is_visible()
        assert await ben.page.get_by_test_id("gallery-banner").is_visible()

        # Everyone has a tile for everyone; the instructor's is the big one.
        for tab in tabs:
            for pid in names:
                await tile(tab, pid).wait_for(state="attached", timeout=10_000)
            assert (
                await tab.page.locator(f"[data-testid=spotlight] {TILE.format(host_id)}").count()
                == 1
            )
            assert await tab.page.get_by_test_id("people-count").text_content() == "3"

        # The instructor records the class (their simulcast video's top layer and audio):
        # every page says so.
        await host.page.get_by_test_id("record-button").click()
        for tab in tabs:
            await tab.page.get_by_test_id("recording-badge").wait_for(timeout=5_000)

        # Video is decoded on every page from everyone else, and keeps coming.
        samples = await asyncio.gather(
            *(
                assert_video_flowing(tab, {pid: n for pid, n in names.items() if pid != me})
                for tab, me in ((host, host_id), (ben, ben_id), (cleo, cleo_id))
            )
        )
        by_page = dict(zip(["host", "Ben", "Cleo"], samples, strict=True))
        print("framesDecoded (before, after 1.5 s):", by_page)
        await screenshot(host, "browser-host")
        await screenshot(ben, "browser-participant")
        await host.page.get_by_test_id("record-button").click()
        for tab in tabs:
            badge = tab.page.get_by_test_id("recording-badge")
            await badge.wait_for(state="hidden", timeout=5_000)
        room_id = str(room["room"]["id"])  # type: ignore[index]
        (recording,) = (browser_server.data_dir / "recordings" / room_id).glob("*.webm")
        with av.open(str(recording)) as container:
            heights = [frame.height for frame in container.decode(video=0)]
        print(f"recorded {len(heights)} pictures of heights {sorted(set(heights))}")
        assert len(heights) >= 10 and max(heights) >= 240

        # Chat reaches all three pages, as text (markup in it stays text).
        message = "Great pace! <b>bold</b> & <img src=x onerror=alert(1)>"
        await ben.page.get_by_test_id("chat-input").fill(message)
        await ben.page.get_by_test_id("chat-send").click()
        for tab in tabs:
            text = tab.page.get_by_test_id("chat-text").filter(has_text="Great pace!")
            await text.wait_for(timeout=5_000)
            assert await text.text_content() == message
            markup = tab.page.locator("[data-testid=chat-log] b, [data-testid=chat-log] img")
            assert await markup.count() == 0

        # Muting shows on the others' pages (participant_updated).
        await ben.page.get_by_test_id("mic-button").click()
        for tab in (host, cleo):
            await tab.page.wait_for_selector(
                f'[data-testid=roster-item][data-participant-id="{ben_id}"][data-audio="false"]',
                timeout=5_000,
            )
        await screenshot(host, "browser-host-chat")

        # A participant who leaves is gone from the other pages within 2 s.
        await cleo.page.get_by_test_id("leave-button").click()
        took = await asyncio.gather(wait_gone(host, cleo_id, 2.0), wait_gone(ben, cleo_id, 2.0))
        print(f"tile of the leaver gone after {max(took):.2f} s")
        title, code = await notice(cleo)
        assert (title, code) == ("You left the class", "left")
        assert await cleo.page.get_by_test_id("notice-action").text_content() == "Rejoin the class"
        await screenshot(cleo, "browser-left")

        # The rejoin link reloads the page (a link to the same URL would only change the
        # fragment); the name is remembered, and the class sees her again.
        await cleo.page.get_by_test_id("notice-action").click()
        await cleo.page.get_by_test_id("join-button").wait_for(state="visible", timeout=10_000)
        assert await cleo.page.get_by_test_id("name-input").input_value() == "Cleo"
        await cleo.page.get_by_test_id("join-button").click()
        await cleo.page.wait_for_function(
            "document.body.dataset.state === 'joined'", timeout=20_000
        )
        cleo_again = await cleo.page.evaluate("window.pulseroom.you.id")
        await tile(host, cleo_again).wait_for(state="attached", timeout=10_000)

        # The phone layout: the same page at 390 px wide.
        await ben.page.set_viewport_size({"width": 390, "height": 844})
        await screenshot(ben, "browser-participant-phone")

        # The host ends the class: everyone sees it.
        await host.page.get_by_test_id("end-button").click()
        await host.page.get_by_test_id("end-confirm").click()
        for tab in (host, ben):
            title, code = await notice(tab)
            assert (title, code) == ("The class has ended", "class_ended"), tab.name
        assert await ben.page.evaluate("window.pulseroom.subscribePc") is None
        for tab in tabs:
            assert not tab.errors, tab.diagnostics()
    except BaseException:
        for tab in tabs:
            print(tab.diagnostics())
        print(browser_server.log()[-4000:])
        raise
    finally:
        for tab in tabs:
            await tab.close()


async def test_the_class_runs_under_the_content_security_policy(
    browser: Any, browser_server: RunningServer
) -> None:
    """Pages as the server sends them, policy enforced (the other tests bypass it for
    Playwright's own waits): join, video, chat, the summary page; nothing is refused.
    Only locator waits and page.evaluate here: Playwright's wait_for_function needs eval."""
    room = browser_server.create_room("Strict")
    host = await open_tab(browser, "host (CSP)", enforce_csp=True)
    ann = await open_tab(browser, "participant (CSP)", enforce_csp=True)
    tabs = [host, ann]
    try:
        joins = ((host, room["host_link"], "Coach"), (ann, room["join_link"], "Ann"))
        for tab, link, name in joins:
            await tab.page.goto(str(link))
            await tab.page.get_by_test_id("name-input").fill(name)
            await tab.page.get_by_test_id("join-button").click()
            await tab.page.locator("body[data-state=joined]").wait_for(timeout=20_000)
        host_id = await host.page.evaluate("window.pulseroom.you.id")
        await tile(ann, host_id).locator("video").wait_for(timeout=10_000)
        deadline = time.monotonic() + 15
        while await ann.page.evaluate(
            f"(document.querySelector('{TILE.format(host_id)} video')"
            "?.getVideoPlaybackQuality().totalVideoFrames ?? 0) < 10"
        ):
            assert time.monotonic() < deadline, ann.diagnostics()
            await asyncio.sleep(0.2)
        await host.page.get_by_test_id("chat-input").fill("Welcome")
        await host.page.get_by_test_id("chat-send").click()
        await ann.page.get_by_test_id("chat-instructor").wait_for(timeout=5_000)
        # The home page and the login page run under the policy too: log in, then the form.
        await host.page.goto(browser_server.url + "/")
        await host.page.get_by_test_id("login-needed").wait_for()
        await host.page.goto(browser_server.url + "/login")
        await host.page.get_by_test_id("email-input").fill(INSTRUCTOR_EMAIL)
        await host.page.get_by_test_id("password-input").fill(INSTRUCTOR_PASSWORD)
        await host.page.get_by_test_id("account-button").click()
        await host.page.get_by_test_id("account-done").wait_for(timeout=10_000)
        await host.page.goto(browser_server.url + "/")
        await host.page.get_by_test_id("title-input").wait_for()
        for tab in tabs:
            assert not tab.errors, tab.diagnostics()
            refused = [line for line in tab.console if "Content Security Policy" in line]
            assert not refused, tab.diagnostics()
    finally:
        for tab in tabs:
            await tab.close()


async def test_ended_class_refuses_to_join(browser: Any, browser_server: RunningServer) -> None:
    room = browser_server.create_room("Short class")
    host = await open_tab(browser, "host")
    late = await open_tab(browser, "latecomer")
    try:
        await join(host, str(room["host_link"]), "Coach")
        await host.page.get_by_test_id("end-button").click()
        await host.page.get_by_test_id("end-confirm").click()
        assert await notice(host) == ("The class has ended", "class_ended")

        await late.page.goto(str(room["join_link"]))  # said as the page opens
        assert await notice(late) == ("This class has ended", "room_ended")
        await screenshot(late, "browser-ended")
        assert not host.errors and not late.errors, host.diagnostics() + late.diagnostics()
    finally:
        await host.close()
        await late.close()


async def test_bad_links_say_so(browser: Any, browser_server: RunningServer) -> None:
    room = browser_server.create_room("Link checks")
    other = browser_server.create_room("Another class")
    base = browser_server.url
    room_id = str(room["room"]["id"])  # type: ignore[index]
    token = str(room["join_link"]).split("#t=", 1)[1]
    other_token = str(other["join_link"]).split("#t=", 1)[1]
    body, mac = token.split(".")
    forged = f"{body}.{mac[:-4]}{'AAAA' if mac[-4:] != 'AAAA' else 'BBBB'}"
    signer = TokenSigner(SECRET.encode(), 60)
    expired, _ = signer.issue(room_id, "participant", now=time.time() - 3600)

    tab = await open_tab(browser, "bad links")
    try:
        # No token at all: said at once, no join form.
        await tab.page.goto(f"{base}/r/{room_id}")
        assert await notice(tab) == ("This link is not valid", "invalid_token")
        assert not await tab.page.get_by_test_id("join-form").is_visible()
        await screenshot(tab, "browser-bad-link")

        invalid, page_url = "This link is not valid", f"{base}/r/{room_id}#t="
        cases = [
            ("forged signature", forged, invalid, "invalid_token"),
            ("garbled", "%%not-a-token%%", invalid, "invalid_token"),
            ("another class's token", other_token, invalid, "wrong_room"),
            ("expired", expired, "This link has expired", "token_expired"),
        ]
        for what, bad_token, want_title, want_code in cases:
            link = page_url + bad_token
            page = await tab.context.new_page()
            sub = Tab(name=what, page=page, context=tab.context)
            page.on("pageerror", lambda error, sub=sub: sub.errors.append(str(error)))
            await page.goto(link)
            # Said as the page opens (its preview request), before anyone types a name.
            assert await notice(sub) == (want_title, want_code), what
            assert not sub.errors, sub.diagnostics()
            await page.close()

        # A link the instructor replaced says so in words (not as a bad link).
        replaced = browser_server.create_room("Replaced link")
        replaced_id = str(replaced["room"]["id"])  # type: ignore[index]
        answer = browser_server.instructor().post(f"/api/rooms/{replaced_id}/links")
        assert answer.status_code == 200, answer.text
        await tab.page.goto(str(replaced["join_link"]))
        want = ("This link was replaced by the instructor", "link_replaced")
        assert await notice(tab) == want
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()


DENY_MEDIA = """
navigator.mediaDevices.getUserMedia = () =>
    Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
"""


async def test_join_without_camera_when_access_is_denied(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("No camera")
    tab = await open_tab(browser, "denied", init_script=DENY_MEDIA)
    try:
        await tab.page.goto(str(room["join_link"]))
        # The pre-join screen names the class (from the link's preview).
        heading = tab.page.get_by_test_id("prejoin-heading")
        await heading.filter(has_text="“No camera”").wait_for(timeout=5_000)
        warning = tab.page.get_by_test_id("media-message")
        await warning.wait_for(state="visible", timeout=5_000)
        assert "Camera/microphone access was denied" in (await warning.text_content() or "")
        await screenshot(tab, "browser-media-denied")
        me = await join(tab, str(room["join_link"]), "Watcher")
        assert await tab.page.get_by_test_id("mic-button").is_disabled()
        assert await tab.page.get_by_test_id("cam-button").is_disabled()
        assert await tab.page.evaluate("window.pulseroom.publishPc") is None
        # The server learns that this person has no microphone or camera.
        await tab.page.wait_for_selector(
            f'[data-testid=roster-item][data-participant-id="{me}"][data-audio="false"][data-video="false"]',
            timeout=5_000,
        )
        # A refusal (here: a participant trying a host-only event) shows as a toast.
        await tab.page.evaluate("window.pulseroom.socket.emit('gallery', {v: 1, enabled: true})")
        toast = tab.page.get_by_test_id("toast").filter(has_text="only the instructor")
        await toast.wait_for(state="visible", timeout=5_000)
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()


async def test_home_page_creates_a_class(browser: Any, browser_server: RunningServer) -> None:
    browser_server.instructor()  # the test instructor's account exists (the first admin)
    tab = await open_tab(browser, "home")
    page = tab.page
    try:
        await page.goto(browser_server.url + "/")
        # Logged out: the page says so and links to the login page, not to a form.
        await page.get_by_test_id("login-needed").wait_for(state="visible", timeout=5_000)
        assert not await page.get_by_test_id("create-form").is_visible()
        await page.get_by_test_id("login-link").click()
        await page.wait_for_url(f"{browser_server.url}/login", timeout=5_000)
        await page.get_by_test_id("email-input").fill(INSTRUCTOR_EMAIL)
        await page.get_by_test_id("password-input").fill(INSTRUCTOR_PASSWORD)
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for(state="visible", timeout=10_000)
        await page.goto(browser_server.url + "/")
        # Logged in: who, a way out, and the form.
        await page.get_by_test_id("create-form").wait_for(state="visible", timeout=5_000)
        who = await page.get_by_test_id("account-email").text_content() or ""
        assert INSTRUCTOR_EMAIL in who
        assert await page.get_by_test_id("logout-button").is_visible()
        assert not await page.get_by_test_id("login-needed").is_visible()
        # The API's refusal is shown as its message.
        await page.get_by_test_id("title-input").fill("Spin\u0007class")
        await page.get_by_test_id("create-button").click()
        error = page.get_by_test_id("create-error")
        await error.wait_for(state="visible", timeout=5_000)
        assert "control characters" in (await error.text_content() or "")

        await page.get_by_test_id("title-input").fill("Evening yoga")
        await page.get_by_test_id("create-button").click()
        await page.get_by_test_id("result").wait_for(state="visible", timeout=5_000)
        host_link = await page.get_by_test_id("host-link").input_value()
        join_link = await page.get_by_test_id("join-link").input_value()
        assert host_link.startswith(f"{browser_server.url}/r/") and "#t=" in host_link
        assert join_link.startswith(f"{browser_server.url}/r/") and join_link != host_link
        assert await page.get_by_test_id("open-host").get_attribute("href") == host_link
        assert not await error.is_visible()
        await screenshot(tab, "browser-home")
        # The link works: the class page opens ready to join.
        response = await page.request.get(host_link.split("#")[0])
        assert response.status == 200
        # A new participant link, from the list: copied, and the old one refused.
        room_id = join_link.split("/r/", 1)[1].split("#")[0]
        item = page.locator(f'[data-testid=class-item][data-class-id="{room_id}"]')
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await item.get_by_test_id("class-replace-link").click()
        await page.wait_for_function(
            "el => el.textContent !== 'New participant link'",
            arg=await item.get_by_test_id("class-replace-link").element_handle(),
            timeout=5_000,
        )
        shown = await item.get_by_test_id("class-replace-link").text_content() or ""
        assert shown == "New link copied!" or shown.startswith(f"{browser_server.url}/r/"), shown
        new_link = await page.get_by_test_id("join-link").input_value()  # the panel too
        assert new_link != join_link and new_link.startswith(f"{browser_server.url}/r/{room_id}#t=")
        eve, fay = Client(browser_server.url), Client(browser_server.url)
        try:
            ack = await (await eve.connect()).join(join_link, "Eve")
            assert ack["error"]["code"] == "link_replaced", ack
            assert (await (await fay.connect()).join(new_link, "Fay"))["ok"]
        finally:
            await eve.close()
            await fay.close()
        # Logging out ends the session: the login prompt is back, and so is the 401.
        await page.get_by_test_id("logout-button").click()
        await page.get_by_test_id("login-needed").wait_for(state="visible", timeout=5_000)
        assert not await page.get_by_test_id("create-form").is_visible()
        me = await page.evaluate("fetch('/api/auth/me').then((r) => r.status)")
        assert me == 401
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()


async def test_the_admin_page_invites_an_instructor_and_shows_the_audit_log(
    browser: Any, browser_server: RunningServer
) -> None:
    browser_server.instructor()  # the first admin exists
    tab = await open_tab(browser, "admin", enforce_csp=True)  # the page runs under the policy
    page = tab.page
    try:
        await page.goto(browser_server.url + "/admin")
        await page.get_by_test_id("admin-needed").wait_for(state="visible", timeout=5_000)
        assert not await page.get_by_test_id("users").is_visible()
        await page.goto(browser_server.url + "/login")
        await page.get_by_test_id("email-input").fill(INSTRUCTOR_EMAIL)
        await page.get_by_test_id("password-input").fill(INSTRUCTOR_PASSWORD)
        await page.get_by_test_id("account-button").click()
        await page.get_by_test_id("account-done").wait_for(state="visible", timeout=10_000)
        await page.goto(browser_server.url + "/")
        await page.get_by_test_id("admin-link").click()
        await page.get_by_test_id("users").wait_for(state="visible", timeout=5_000)
        # A bad address: the API's message, nothing added.
        await page.get_by_test_id("invite-email").fill("not an address")
        await page.get_by_test_id("invite-button").click()
        error = page.get_by_test_id("users-error")
        await error.wait_for(state="visible", timeout=5_000)
        assert "email" in (await error.text_content() or ""), await error.text_content()
        await page.get_by_test_id("invite-email").fill("new.coach@example.com")
        await page.get_by_test_id("invite-button").click()
        await page.get_by_test_id("link-box").wait_for(state="visible", timeout=5_000)
        link = await page.get_by_test_id("new-link").input_value()
        assert link.startswith(f"{browser_server.url}/password#token="), link
        row = page.locator('[data-testid=user-row][data-email="new.coach@example.com"]')
        await row.wait_for(timeout=5_000)
        assert "invited" in (await row.text_content() or "")
        # The audit log shows the invitation by this admin, newest first.
        first = page.get_by_test_id("audit-row").first
        await first.wait_for(timeout=5_000)
        assert await first.get_attribute("data-action") == "user_added"
        text = await first.text_content() or ""
        assert INSTRUCTOR_EMAIL in text and "new.coach@example.com" in text, text
        audit_text = await page.get_by_test_id("audit-table").text_content() or ""
        assert link.split("#token=")[1] not in audit_text, "a secret in the audit log"
        # Disabling from the page: the row says so.
        await row.get_by_test_id("user-disable").click()
        await row.get_by_test_id("user-enable").wait_for(timeout=5_000)
        assert "disabled" in (await row.text_content() or "")
        await screenshot(tab, "browser-admin")
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()


async def test_reconnects_after_the_connection_drops(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Flaky wifi")
    host = await open_tab(browser, "host")
    fay = await open_tab(browser, "participant Fay")
    try:
        host_id = await join(host, str(room["host_link"]), "Coach")
        fay_id = await join(fay, str(room["join_link"]), "Fay")
        await tile(host, fay_id).wait_for(state="attached", timeout=10_000)

        # Drop the WebSocket under the client: the server treats it as leaving (and her
        # tile leaves the host's page, if only for as long as her reconnection takes).
        await host.page.evaluate(WATCH_REMOVALS_JS, "[data-testid=tile]")
        await fay.page.evaluate("window.pulseroom.socket.io.engine.close()")
        await wait_removed(host, fay_id, 5.0)
        # She rejoins by herself, as the same participant (the bound token from her join).
        await tile(host, fay_id).wait_for(state="attached", timeout=20_000)
        await fay.page.wait_for_function("document.body.dataset.state === 'joined'", timeout=20_000)
        assert "Live" in (await fay.page.get_by_test_id("status").text_content() or "")
        fay_again = await fay.page.evaluate("window.pulseroom.you.id")
        assert fay_again == fay_id
        # Media is set up again in both directions.
        await asyncio.gather(
            assert_video_flowing(host, {fay_again: "Fay"}),
            assert_video_flowing(fay, {host_id: "Coach"}),
        )
        assert not host.errors and not fay.errors, host.diagnostics() + fay.diagnostics()
    finally:
        await host.close()
        await fay.close()


CHAT_LOG_JS = """() => {
    const log = document.querySelector('[data-testid=chat-log]');
    return {gap: log.scrollHeight - log.scrollTop - log.clientHeight, height: log.clientHeight};
}"""


async def test_a_late_joiner_sees_the_newest_chat_and_a_cue_for_what_comes_below(
    browser: Any, browser_server: RunningServer
) -> None:
    """At 1366x768 with the instructor's controls open, the chat keeps a readable height,
    opens at its newest message, and says when new ones arrive below where one reads."""
    room = browser_server.create_room("Chatty class")
    clients: list[Client] = []
    tab = await open_tab(browser, "late instructor", viewport=(1366, 768))
    try:
        for i in range(6):  # 30 messages (5 each: the chat's burst per session)
            client = await Client(browser_server.url).connect()
            clients.append(client)
            assert (await client.join(str(room["join_link"]), f"Talker {i}"))["ok"]
            for k in range(5):
                assert (await client.call("chat", {"v": 1, "text": f"message {i}-{k}"}))["ok"]
        await join(tab, str(room["host_link"]), "Coach")
        await tab.page.get_by_test_id("chat-message").nth(29).wait_for()
        await tab.page.wait_for_function(f"() => ({CHAT_LOG_JS})().gap < 40", timeout=5_000)
        assert (await tab.page.evaluate(CHAT_LOG_JS))["height"] >= 150
        # Reading older messages: a new one does not pull the reader down; a cue says so.
        await tab.page.get_by_test_id("chat-log").hover()
        await tab.page.mouse.wheel(0, -3000)
        await tab.page.wait_for_function(f"() => ({CHAT_LOG_JS})().gap > 100", timeout=5_000)
        late = await Client(browser_server.url).connect()
        clients.append(late)
        assert (await late.join(str(room["join_link"]), "Latecomer"))["ok"]
        assert (await late.call("chat", {"v": 1, "text": "hello from below"}))["ok"]
        cue = tab.page.get_by_test_id("chat-unread")
        await cue.wait_for(state="visible", timeout=5_000)
        assert "new message" in (await cue.text_content() or "")
        assert (await tab.page.evaluate(CHAT_LOG_JS))["gap"] > 40  # still where they read
        await cue.click()
        await tab.page.wait_for_function(f"() => ({CHAT_LOG_JS})().gap < 40", timeout=5_000)
        assert await cue.is_hidden()
        await screenshot(tab, "chat-late-joiner-1366")
        assert not tab.errors, tab.diagnostics()
    finally:
        await tab.close()
        for client in clients:
            await client.close()


async def test_keyboard_reaches_the_class_and_its_toolbar(
    browser: Any, browser_server: RunningServer
) -> None:
    """After joining, focus is in the class (not back at the top of the page); a skip
    link takes the keyboard past every tile to the toolbar; headings do not skip levels;
    the red buttons' white text has 4.5:1 contrast."""
    room = browser_server.create_room("Keyboard class")
    host = await open_tab(browser, "keyboard host")
    try:
        await join(host, str(room["host_link"]), "Coach")
        page = host.page
        assert await page.evaluate("document.activeElement.id") == "class-heading"
        levels = await page.evaluate(
            """() => [...document.querySelectorAll('h1, h2, h3, h4')]
                .filter((h) => h.closest('[hidden]') === null)
                .map((h) => Number(h.tagName[1]))"""
        )
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
        # The skip link is the first stop of the page: before the brand link in the header.
        await page.focus(".topbar .brand")
        await page.keyboard.press("Shift+Tab")
        assert await page.evaluate("document.activeElement.dataset.testid") == "skip-link"
        assert await page.get_by_test_id("skip-link").is_visible()
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.dataset.testid") == "mic-button"
        # White on the End class button: the contrast of its computed colours.
        ratio = await page.evaluate(
            """() => {
                const lum = (rgb) => rgb.match(/\\d+/g).slice(0, 3).map(Number).map((c) => {
                    const v = c / 255;
                    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
                }).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
                const style = getComputedStyle(document.querySelector('[data-testid=end-button]'));
                const [a, b] = [lum(style.color), lum(style.backgroundColor)].sort((x, y) => y - x);
                return (a + 0.05) / (b + 0.05);
            }"""
        )
        assert ratio >= 4.5, ratio
        assert not host.errors, host.diagnostics()
    finally:
        await host.close()
