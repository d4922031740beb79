"""Faults on real (namespaced) networks: a lossy, far subscriber; a publisher that drops.

The far subscriber's link is tests/wire.py, a userspace netem (this kernel has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from pulseroom.bot import Bot
from tests.conftest import RunningServer, start_server, stop_server
from tests.netns import Host, netns_host, require_netns
from tests.peers import join, run_bot, start_bot
from tests.wire import Impairment, WireLink

T = TypeVar("T")


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server listening on every address, so namespaced hosts reach it too; one for the
    module (each test makes its own class and counts the server's figures as growth)."""
    require_netns()
    server = start_server(tmp_path_factory.mktemp("chaos"), PULSEROOM_HOST="0.0.0.0")
    yield server
    stop_server(server)


def link_via(link: str, host: Host) -> str:
    """The same link, addressed to the server as ``host`` sees it."""
    port = link.split("/r/")[0].rsplit(":", 1)[1]
    return f"http://{host.gateway}:{port}/r/" + link.split("/r/")[1]


async def bot(link: str, name: str, seconds: float, host: Host | None = None) -> dict[str, Any]:
    return await run_bot(link, name, seconds, prefix=host.command() if host else None)


def coach_video(report: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in report["tracks"] if t["publisher"] == "Coach" and t["kind"] == "video")


# "10 % loss and 200 ms delay", as ``netem delay 200ms loss 10%`` on both ends of the
# subscriber's link: 200 ms and 10 % each way, a 400 ms round trip, NACKs lost too.
BAD_LINK = Impairment(delay_ms=200, loss=0.10)
PHASE_S = 12  # each bot's stay in each phase
# The far subscriber's media is lossy this long from when it starts to flow, then only
# late: a packet lost in the last round trip cannot come back before the subscriber
# leaves, and would count as lost for good however well NACK works. The media starts
# ~2 s (a few round trips) after the join, and the stay lasts PHASE_S from the join.
LOSSY_S = PHASE_S - 4
MEDIA_PPS = 20  # UDP packets a second towards the far subscriber: its media flows


@dataclass
class Phase:
    """Three subscribers' Coach video reports, and what the server and the wire counted."""

    clean1: dict[str, Any]
    clean2: dict[str, Any]
    far: dict[str, Any]
    server: dict[str, int]  # growth of /api/stats counters during the phase
    wire_lost: int = 0  # towards the far subscriber while the link was lossy
    wire_received: int = 0


async def phase(
    server: RunningServer, join_link: str, far: Host, far_name: str, bad: Impairment | None
) -> Phase:
    """Two subscribers on loopback and one on ``far`` stay PHASE_S; ``far``'s link is
    ``bad`` from the start until LOSSY_S after its media began (None: good throughout)."""
    assert far.wire is not None
    before = server.stats()
    if bad is not None:
        await asyncio.to_thread(far.wire.set, down=bad, up=bad)
    stays = asyncio.gather(
        bot(join_link, "Clean1", PHASE_S),
        bot(join_link, "Clean2", PHASE_S),
        bot(link_via(join_link, far), far_name, PHASE_S, host=far),
    )
    wire_before = wire_after = await asyncio.to_thread(far.wire.stats)
    if bad is not None and await media_flowing(far.wire):
        wire_before = await asyncio.to_thread(far.wire.stats)
        await asyncio.sleep(LOSSY_S)
        wire_after = await asyncio.to_thread(far.wire.stats)
        late_only = Impairment(delay_ms=bad.delay_ms, jitter_ms=bad.jitter_ms)
        await asyncio.to_thread(far.wire.set, down=late_only, up=late_only)
    reports = await stays
    after = server.stats()
    counted = {
        name: int(after[name]) - int(before[name])
        for name in ("forwarded_packets", "nacks_received", "retransmitted_packets")
    }
    clean1, clean2, far_report = (coach_video(r) for r in reports)
    return Phase(
        clean1,
        clean2,
        far_report,
        server=counted,
        wire_lost=wire_after.down.lost - wire_before.down.lost,
        wire_received=wire_after.down.received - wire_before.down.received,
    )


def play_rate(report: dict[str, Any]) -> float:
    """Frames a bot's report counts per second since its first frame (a bot stays
    PHASE_S from the announcement of the track; 0 when it played for under a second)."""
    first = report["time_to_first_frame_s"]
    playing = PHASE_S - first if first is not None else 0.0
    return float(report["frames"]) / playing if playing >= 1.0 else 0.0


async def media_flowing(wire: WireLink, timeout: float = 45.0) -> bool:
    """Wait until UDP goes towards the wire's host at MEDIA_PPS (False: not in time)."""
    last = (await asyncio.to_thread(wire.stats)).down.udp_received
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = (await asyncio.to_thread(wire.stats)).down.udp_received
        if now - last >= MEDIA_PPS / 2:
            return True
        last = now
    return False


@pytest.mark.alone  # delays measured in wall time: not beside the parallel part
@pytest.mark.paired(seconds=40)  # ~0.7 of a core (tests/cpu_log.py): beside one other such test
@pytest.mark.timeout(150)
async def test_lossy_delayed_subscriber_recovers_through_nack_and_does_not_hurt_the_others(
    open_server: RunningServer,
) -> None:
    room = open_server.create_room("Chaos")
    host_link, join_link = str(room["host_link"]), str(room["join_link"])
    coach = await start_bot(host_link, "Coach", 120)
    try:
        with netns_host(link="wire") as far:
            assert far.wire is not None
            await asyncio.sleep(4)  # the coach's stream settles
            # The same three subscribers twice: first all on good links (the baseline),
            # then the far one on a bad link. Only the link differs between the phases.
            good = await phase(open_server, join_link, far, "Near", None)
            bad = await phase(open_server, join_link, far, "Lossy", BAD_LINK)
            wire = await asyncio.to_thread(far.wire.stats)
    finally:
        coach.terminate()
        await coach.wait()
    lossy = bad.far
    print(
        "chaos figures:\n"
        f"  all good: clean {brief(good.clean1)} | {brief(good.clean2)} | far {brief(good.far)};"
        f" server {good.server}\n"
        f"  far bad:  clean {brief(bad.clean1)} | {brief(bad.clean2)} | far {brief(lossy)};"
        f" server {bad.server}\n"
        f"  wire: {bad.wire_lost}/{bad.wire_received} lost towards the far subscriber while "
        f"lossy; late p99 {wire.down.late_ms_p99} ms, max {wire.down.late_ms_max} ms; "
        f"CPU {wire.cpu_s} s"
    )
    assert bad.wire_received > 0, "no media went to the far subscriber"
    # The bad link was bad: ~10 % of what went to the far subscriber never got there
    # (±4.5 sigma of a binomial at ~700 packets), and what did took 200 ms more.
    assert 0.045 <= bad.wire_lost / bad.wire_received <= 0.155, bad
    assert 200 <= lossy["delay_ms"]["p50"] <= 300 + good.far["delay_ms"]["p50"], (lossy, good.far)
    # NACK and RTX brought it back: retransmissions arrived (at least half of the ~10 %
    # lost), nearly nothing stayed lost, and the picture still moved.
    assert bad.server["nacks_received"] > 0 and bad.server["retransmitted_packets"] > 0, bad
    assert lossy["retransmissions"] >= 0.05 * lossy["packets"], lossy
    assert lossy["loss_percent"] < 1.5, lossy
    # Frames per second of play, from each one's first frame: over a link that loses 10 %
    # the far subscriber's connection (DTLS, ICE) and first keyframe may take seconds more
    # (a clean-clone run here: 54 frames against 177, all in its last seconds).
    clean_rate = min(play_rate(bad.clean1), play_rate(bad.clean2))
    assert clean_rate > 0, bad  # else the comparison below would hold of nothing
    assert play_rate(lossy) >= 0.5 * clean_rate, (play_rate(lossy), clean_rate, bad)
    # The others saw nothing of it: no loss, and the frame rate and delay they had with
    # everyone on a good link (margins for a loaded 2-core machine; a subscriber that
    # held the SFU up would cost the others frames and add hundreds of ms).
    for before, after in ((good.clean1, bad.clean1), (good.clean2, bad.clean2)):
        assert before["loss_percent"] == 0.0 and after["loss_percent"] == 0.0, (before, after)
        # (The baseline may be above 15 fps: a coach that fell behind while starting
        # catches up at full speed.)
        nominal = 15 * (PHASE_S - 3)
        assert after["frames"] >= 0.75 * min(before["frames"], nominal), (before, after)
        assert after["delay_ms"]["p50"] <= max(before["delay_ms"]["p50"] + 15, 30), (before, after)
        # The tail moves with the machine's load: a looser bound (stalls behind the far
        # subscriber, ~400 ms each, would break it, and would move the median too).
        tail = before["delay_ms"]["p95"]
        assert after["delay_ms"]["p95"] <= max(2 * tail, tail + 100, 150), (before, after)


def brief(report: dict[str, Any]) -> str:
    """One subscriber's figures on one line."""
    delay = report["delay_ms"] or {}
    return (
        f"{report['packets']} pkts ({report['retransmissions']} RTX), {report['frames']} frames, "
        f"loss {report['loss_percent']} %, delay p50 {delay.get('p50')} p95 {delay.get('p95')} ms"
    )


def joins(coach: Bot, name: str) -> list[tuple[float, str]]:
    """(when, participant id) of each time the coach saw ``name`` join."""
    return [
        (t, who)
        for t, kind, who in coach.timeline
        if kind == "participant_joined" and coach.names.get(who) == name
    ]


def first_video_frame(coach: Bot, publisher_id: str) -> float | None:
    """When the coach decoded the first video frame from ``publisher_id``."""
    return next(
        (
            t.first_frame_at
            for t in coach.tracks.values()
            if t.publisher_id == publisher_id and t.kind == "video" and t.first_frame_at
        ),
        None,
    )


def left_at(coach: Bot, participant_id: str) -> float | None:
    """When the coach saw ``participant_id`` leave."""
    return next(
        (
            t
            for t, kind, who in coach.timeline
            if kind == "participant_left" and who == participant_id
        ),
        None,
    )


def kill_if_running(process: asyncio.subprocess.Process) -> None:
    """SIGKILL ``process`` unless it has ended (a test that failed half-way)."""
    if process.returncode is None:
        process.kill()


async def until(check: Callable[[], T | None], timeout: float) -> T | None:
    """Poll ``check`` until it gives something other than None (None: not in time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_publisher_that_drops_and_rejoins_is_seen_again_within_3s(
    open_server: RunningServer,
) -> None:
    room = open_server.create_room("Drop")
    coach = await join(str(room["host_link"]), "Coach")
    try:
        # A phone on a mobile network: 40 ms each way.
        with netns_host(link="wire", delay_ms=40) as phone, contextlib.ExitStack() as stack:
            link = link_via(str(room["join_link"]), phone)
            first = await start_bot(link, "Ann", 60, prefix=phone.command())
            stack.callback(kill_if_running, first)

            def first_session_video() -> float | None:
                return next((first_video_frame(coach, w) for _, w in joins(coach, "Ann")), None)

            seen = await until(first_session_video, timeout=40)
            assert seen is not None, f"Ann's first session never showed: {coach.timeline}"
            first.send_signal(signal.SIGKILL)  # the phone's app dies mid-class
            await first.wait()
            ((_, first_id),) = joins(coach, "Ann")
            left = await until(lambda: left_at(coach, first_id), timeout=10)
            assert left is not None, "the dropped publisher was not removed"
            second = asyncio.create_task(bot(link, "Ann", 8, host=phone))
            rejoined = await until(lambda: joins(coach, "Ann")[1:] or None, timeout=40)
            assert rejoined, f"Ann never rejoined: {coach.timeline}"
            joined_at, new_id = rejoined[0]
            frame_at = await until(lambda: first_video_frame(coach, new_id), timeout=6)
            assert frame_at is not None, "the rejoined publisher's video never arrived"
            print(f"rejoined publisher's video seen {frame_at - joined_at:.2f} s after it rejoined")
            assert frame_at - joined_at < 3.0
            await second
    finally:
        await coach.stop()
