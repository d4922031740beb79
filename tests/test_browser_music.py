"""Music mode in real headless Chromium, through a real ``pulseroom serve``.

The instructor switches music mode on in the controls panel; then (a) the publish
offer and the SFU's answer carry stereo Opus at 128 kbit/s, the microphone runs
without echo cancellation, noise suppression or automatic gain, and its sender is
capped at 128 kbit/s; a participant's subscribe offer and answer say stereo too;
(b) a stereo test tone (440 Hz left, 880 Hz right) arrives at the participant as two
different channels.

Chromium's fake microphone is a mono beep, so the instructor's page gets its audio
from a WebAudio graph instead (``STEREO_TONE_JS``): its getUserMedia still opens the
fake microphone with the constraints the page asked for (kept in ``window.__mics`` to
read their settings), and hands the page the tone in its place.

Tab audio (music mode's "Add tab audio", web/tabaudio.js): a browser tab's stereo sound
mixed with the microphone. getDisplayMedia needs a person at the browser's picker, so
the instructor's page gets a stand-in (``TAB_AND_MIC_JS``), as Chromium's fake camera
stands in for a camera: a synthetic shared tab (a canvas picture, and a WebAudio tone of
440 Hz on the left and 660 Hz on the right) whose sound it can end as the browser's
"Stop sharing" does; the microphone is then a 1 kHz tone. Everything from there is the
page's: the WebAudio mix, the sender's replaceTrack, the SFU, and the participant's
decoder, where an analyser per channel listens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import pytest
import pytest_asyncio

from tests.browser_fixtures import (
    BROWSER_MODULE,
    CHROMIUM,
    CHROMIUM_ARGS,
    Tab,
    browser_server_fixture,  # noqa: F401 (fixture "browser_server")
    join,
    open_tab,
    screenshot,
)
from tests.conftest import RunningServer
from tests.waiting import until

pytestmark = BROWSER_MODULE

STEREO_TONE_JS = """(() => {
  const md = navigator.mediaDevices;
  const open = md.getUserMedia.bind(md);
  window.__mics = [];
  md.getUserMedia = async (constraints = {}) => {
    const stream = await open(constraints);
    const real = stream.getAudioTracks()[0];
    if (!real) return stream;
    window.__mics.push(real); // not stopped: its settings stay readable
    const ctx = new AudioContext({ sampleRate: 48000 });
    const merger = ctx.createChannelMerger(2);
    for (const [hz, channel] of [[440, 0], [880, 1]]) {
      const tone = ctx.createOscillator();
      tone.frequency.value = hz;
      const gain = ctx.createGain();
      gain.gain.value = 0.3;
      tone.connect(gain).connect(merger, 0, channel);
      tone.start();
    }
    const out = ctx.createMediaStreamDestination();
    out.channelCount = 2;
    merger.connect(out);
    stream.removeTrack(real);
    stream.addTrack(out.stream.getAudioTracks()[0]);
    return stream;
  };
})();"""

# The Opus fmtp parameters of each audio m-section, by mid.
OPUS_FMTP_JS = """(sdp) => {
  const out = {};
  for (const section of sdp.split(/(?=^m=)/m)) {
    if (!section.startsWith('m=audio')) continue;
    const mid = (section.match(/^a=mid:(\\S+)/m) || [])[1];
    const pt = (section.match(/^a=rtpmap:(\\d+) opus\\//mi) || [])[1];
    const fmtp = (section.match(new RegExp(`^a=fmtp:${pt} (.*)$`, 'm')) || [])[1] || '';
    out[mid] = Object.fromEntries(fmtp.trim().split(';').map((kv) => kv.trim().split('=')));
  }
  return out;
}"""

INSTRUCTOR_STATE_JS = """() => {
  const pc = window.pulseroom.publishPc;
  if (!pc || !pc.remoteDescription) return null;
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
  const mic = window.__mics[window.__mics.length - 1].getSettings();
  return {
    offer: pc.localDescription.sdp, answer: pc.remoteDescription.sdp,
    maxBitrate: sender.getParameters().encodings[0].maxBitrate ?? null,
    mic: { echoCancellation: mic.echoCancellation, noiseSuppression: mic.noiseSuppression,
           autoGainControl: mic.autoGainControl, channelCount: mic.channelCount },
    mics: window.__mics.length, music: window.pulseroom.music,
  };
}"""

# At the participant: the instructor's audio through a ChannelSplitter into one
# AnalyserNode per channel; returns the mid it found.
LISTEN_JS = """(hostId) => {
  const pr = window.pulseroom;
  const owners = pr.tracks;
  const t = pr.subscribePc.getTransceivers().find((x) => x.receiver.track.kind === 'audio'
    && owners[x.mid] && owners[x.mid].participant_id === hostId);
  if (!t) return null;
  const ctx = new AudioContext({ sampleRate: 48000 });
  const source = ctx.createMediaStreamSource(new MediaStream([t.receiver.track]));
  const split = ctx.createChannelSplitter(2);
  source.connect(split);
  const analysers = [0, 1].map((channel) => {
    const a = ctx.createAnalyser();
    a.fftSize = 8192;
    a.smoothingTimeConstant = 0.5;
    split.connect(a, channel);
    return a;
  });
  window.__listen = { ctx, source, analysers };
  return t.mid;
}"""

# Per channel: the dominant frequency and the level (dB) at 440 and 880 Hz.
SPECTRUM_JS = """() => {
  const { ctx, analysers } = window.__listen;
  return analysers.map((a) => {
    const bins = new Float32Array(a.frequencyBinCount);
    a.getFloatFrequencyData(bins);
    const hz = ctx.sampleRate / a.fftSize;
    let peak = 0;
    for (let i = 1; i < bins.length; i += 1) if (bins[i] > bins[peak]) peak = i;
    const level = (f) => Math.max(...[-1, 0, 1].map((d) => bins[Math.round(f / hz) + d]));
    return { peak_hz: peak * hz, peak_db: bins[peak], db440: level(440), db880: level(880) };
  });
}"""


DEBUG_JS = """() => ({
  toasts: [...document.querySelectorAll('[data-testid=toast]')].map((t) => t.innerText),
  music: window.pulseroom.music, local: window.pulseroom.local, mics: (window.__mics || []).length,
})"""


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="browser")
async def browser_fixture() -> AsyncIterator[Any]:
    """Chromium as in browser_fixtures, with audio allowed to play without a click (the
    participant's tile and both pages' AudioContexts start at once)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
            timeout=30_000,
        )
        try:
            yield instance
        finally:
            await instance.close()


async def instructor_state(tab: Tab, bitrate: int, mics: int) -> dict[str, Any]:
    """The instructor's publish SDP, audio sender cap and microphone settings, once its
    sender is capped at ``bitrate`` and ``mics`` microphones were opened."""
    state: dict[str, Any] | None = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = await tab.page.evaluate(INSTRUCTOR_STATE_JS)
        if state and state["maxBitrate"] == bitrate and state["mics"] >= mics:
            return state
        await asyncio.sleep(0.2)
    raise AssertionError(f"no sender capped at {bitrate} with {mics} microphones: {state}")


async def music_state(tab: Tab, mics: int) -> dict[str, Any]:
    """The instructor's state in music mode (``instructor_state``), checked."""
    state = await instructor_state(tab, 128_000, mics)
    offer = await tab.page.evaluate(OPUS_FMTP_JS, state["offer"])
    answer = await tab.page.evaluate(OPUS_FMTP_JS, state["answer"])
    for name, fmtp in (("publish offer", offer), ("publish answer", answer)):
        (params,) = fmtp.values()
        assert params.get("stereo") == "1", (name, fmtp)
        assert params.get("maxaveragebitrate") == "128000", (name, fmtp)
    assert next(iter(offer.values())).get("sprop-stereo") == "1"
    for setting in ("echoCancellation", "noiseSuppression", "autoGainControl"):
        assert state["mic"][setting] is False, state["mic"]
    assert state["music"]["constraints"]["channelCount"] == 2, state["music"]
    return state


async def listen(tab: Tab, host_id: str) -> str:
    """Start analysing the instructor's audio at ``tab``; check its subscribe SDP says
    stereo for it. Returns the m-line's mid."""
    mid = None
    deadline = time.monotonic() + 15
    while mid is None and time.monotonic() < deadline:
        mid = await tab.page.evaluate(LISTEN_JS, host_id)
        if mid is None:
            await asyncio.sleep(0.3)
    assert mid is not None, "the participant never received the instructor's audio"
    subscribe = await tab.page.evaluate(
        "({ offer: window.pulseroom.subscribePc.remoteDescription.sdp,"
        " answer: window.pulseroom.subscribePc.localDescription.sdp })"
    )
    for name in ("offer", "answer"):
        params = (await tab.page.evaluate(OPUS_FMTP_JS, subscribe[name]))[mid]
        assert params.get("stereo") == "1", (f"subscribe {name}", params)
        assert params.get("maxaveragebitrate") == "128000", (f"subscribe {name}", params)
    return str(mid)


async def assert_two_channels(tab: Tab) -> list[dict[str, float]]:
    """440 Hz dominates the left channel at ``tab``, 880 Hz the right, each at least
    20 dB over the other's tone."""
    spectrum: list[dict[str, float]] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        spectrum = await tab.page.evaluate(SPECTRUM_JS)
        left, right = spectrum
        if abs(left["peak_hz"] - 440) < 12 and abs(right["peak_hz"] - 880) < 12:
            break
    left, right = spectrum
    assert abs(left["peak_hz"] - 440) < 12, spectrum
    assert abs(right["peak_hz"] - 880) < 12, spectrum
    assert left["db440"] - left["db880"] > 20, spectrum
    assert right["db880"] - right["db440"] > 20, spectrum
    return spectrum


async def record_without_music(tab: Tab, server: RunningServer, room_id: str) -> None:
    """The instructor records with "leave music out" ticked, music mode on for 2 s, then
    off for 2 s: the file has pictures from its start and the instructor's audio only
    from when music mode went off."""
    page = tab.page
    await page.get_by_test_id("record-without-music").check()
    await page.get_by_test_id("record-button").click()
    await page.get_by_test_id("recording-badge").wait_for()
    await asyncio.sleep(2.0)
    await page.get_by_test_id("music-button").click()
    await page.wait_for_function(
        "document.querySelector('[data-testid=music-button]').dataset.music === 'off'"
    )
    await asyncio.sleep(2.0)
    await page.get_by_test_id("record-button").click()
    await page.get_by_test_id("recording-badge").wait_for(state="hidden")
    directory = server.data_dir / "recordings" / room_id
    # The file is finished after the stop's ack.
    await until(lambda: list(directory.glob("*.webm")), what="the finished recording")
    (path,) = directory.glob("*.webm")
    firsts: dict[str, float] = {}
    frames = {"audio": 0, "video": 0}
    with av.open(str(path)) as container:
        duration = container.duration / 1_000_000
        for packet in container.demux():
            if packet.pts is not None and packet.size:
                firsts.setdefault(packet.stream.type, float(packet.pts * packet.time_base))
                frames[packet.stream.type] += 1
    print(f"recorded without music: {duration:.2f} s, first audio at {firsts.get('audio')} s")
    assert firsts["video"] == 0.0, firsts
    # Music mode went off ~2 s after the record click (the file starts at the first
    # keyframe after it, within a second); the voice from then to the end, every 20 ms.
    assert 1.0 < firsts["audio"] < duration - 1.0, (firsts, duration)
    assert frames["audio"] > 0.8 * (duration - firsts["audio"]) / 0.02, (frames, firsts)


@pytest.mark.timeout(120)
async def test_music_mode_is_stereo_end_to_end(browser: Any, browser_server: RunningServer) -> None:
    room = browser_server.create_room("Spin to the beat")
    host = await open_tab(browser, "instructor", init_script=STEREO_TONE_JS)
    ben = await open_tab(browser, "participant Ben")
    music_on = "document.querySelector('[data-testid=music-button]').dataset.music === 'on'"
    try:
        host_id = await join(host, str(room["host_link"]), "Coach Ana")
        await join(ben, str(room["join_link"]), "Ben")
        button = host.page.get_by_test_id("music-button")
        assert await button.get_attribute("aria-pressed") == "false"
        assert await ben.page.get_by_test_id("music-button").is_hidden()
        voice = await instructor_state(host, 40_000, mics=1)
        assert voice["mic"]["echoCancellation"] is True, voice
        await button.click()
        await host.page.wait_for_function(music_on)
        # (a) negotiated stereo; the microphone opened again without processing
        await music_state(host, mics=2)
        await listen(ben, host_id)
        # (b) the tone arrives as two channels: 440 Hz on the left, 880 Hz on the right
        await assert_two_channels(ben)
        await screenshot(host, "music-instructor")
        await record_without_music(host, browser_server, str(room["room"]["id"]))
        await button.click()  # music mode back on, for the reload below
        await host.page.wait_for_function(music_on)

        # Music mode stays on for the class in this tab: after a reload the microphone
        # opens without processing straight away.
        await host.page.reload()
        await join(host, str(room["host_link"]), "Coach Ana")
        await host.page.wait_for_function(music_on)
        await music_state(host, mics=1)
    except BaseException:
        for tab in (host, ben):
            print(tab.diagnostics())
            print(await tab.page.evaluate(DEBUG_JS))
        raise
    finally:
        await asyncio.gather(host.close(), ben.close())


TAB_AND_MIC_JS = """(() => {
  const md = navigator.mediaDevices;
  const open = md.getUserMedia.bind(md);
  const tones = (freqs) => {
    const ctx = new AudioContext({ sampleRate: 48000 });
    const merger = ctx.createChannelMerger(freqs.length);
    freqs.forEach((hz, channel) => {
      const tone = ctx.createOscillator();
      tone.frequency.value = hz;
      const gain = ctx.createGain();
      gain.gain.value = 0.25;
      tone.connect(gain).connect(merger, 0, channel);
      tone.start();
    });
    const out = ctx.createMediaStreamDestination();
    out.channelCount = freqs.length;
    merger.connect(out);
    return out.stream.getAudioTracks()[0];
  };
  window.__mics = [];
  md.getUserMedia = async (constraints = {}) => {
    const stream = await open(constraints);
    const real = stream.getAudioTracks()[0];
    if (!real) return stream;
    window.__mics.push(real);
    stream.removeTrack(real);
    stream.addTrack(tones([1000]));  // the voice: one channel
    return stream;
  };
  md.getDisplayMedia = async (options = {}) => {
    const canvas = Object.assign(document.createElement('canvas'), { width: 320, height: 180 });
    canvas.getContext('2d').fillRect(0, 0, 320, 180);
    const video = canvas.captureStream(5).getVideoTracks()[0];
    const audio = tones([440, 660]);
    window.__tab = {
      options, video, audio,
      // What the browser's "Stop sharing" does to the track.
      end() { audio.stop(); audio.dispatchEvent(new Event('ended')); },
    };
    return new MediaStream(options.audio ? [video, audio] : [video]);
  };
})();"""

# Per channel, the level (dB) at the tab's two tones and the microphone's.
LEVELS_JS = """() => {
  const { ctx, analysers } = window.__listen;
  return analysers.map((a) => {
    const bins = new Float32Array(a.frequencyBinCount);
    a.getFloatFrequencyData(bins);
    const hz = ctx.sampleRate / a.fftSize;
    const level = (f) => Math.max(...[-1, 0, 1].map((d) => bins[Math.round(f / hz) + d]));
    return { db440: level(440), db660: level(660), db1000: level(1000) };
  });
}"""

HOST_JS = """() => ({
  tab: window.pulseroom.music.tab,
  sdp: window.pulseroom.publishPc.localDescription.sdp,
  shared: window.__tab
    ? { video: window.__tab.video.readyState, options: window.__tab.options } : null,
})"""

Levels = list[dict[str, float]]


async def levels_until(tab: Tab, wanted: Callable[[Levels], bool], what: str) -> Levels:
    """The participant's levels once ``wanted`` holds for them (fails after 15 s)."""
    levels: Levels = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        levels = await tab.page.evaluate(LEVELS_JS)
        if wanted(levels):
            print(f"{what}: {levels}")
            return levels
    raise AssertionError(f"{what}: never so at the participant: {levels}")


def mixed(levels: Levels) -> bool:
    """The tab's tones, 440 Hz left and 660 Hz right, with the microphone in both."""
    left, right = levels
    return (
        left["db440"] - left["db660"] > 20
        and right["db660"] - right["db440"] > 20
        and min(left["db1000"], right["db1000"]) > -60
    )


def tab_silent(levels: Levels) -> bool:
    """No tab tone in either channel; the microphone still in both."""
    return all(c["db1000"] > -60 and max(c["db440"], c["db660"]) < c["db1000"] - 40 for c in levels)


def mic_silent(levels: Levels) -> bool:
    """The tab's tones without the microphone."""
    left, right = levels
    return (
        left["db440"] - left["db1000"] > 40
        and right["db660"] - right["db1000"] > 40
        and left["db440"] > -60
        and right["db660"] > -60
    )


async def test_tab_audio_is_mixed_with_the_microphone_and_ends_with_the_share(
    browser: Any, browser_server: RunningServer
) -> None:
    room = browser_server.create_room("Spin to a playlist")
    host = await open_tab(browser, "instructor", init_script=TAB_AND_MIC_JS)
    ben = await open_tab(browser, "participant Ben")
    try:
        host_id = await join(host, str(room["host_link"]), "Coach Ana")
        await join(ben, str(room["join_link"]), "Ben")
        page = host.page
        add = page.get_by_test_id("tab-audio-button")
        # Offered in music mode only, and to the instructor only.
        assert await add.is_hidden()
        await page.get_by_test_id("music-button").click()
        await add.wait_for(state="visible")
        assert await ben.page.get_by_test_id("tab-audio-button").is_hidden()
        assert (await page.evaluate(HOST_JS))["tab"]["sent"] == "microphone"
        assert await ben.page.evaluate(LISTEN_JS, host_id), "no audio from the instructor"
        # Each reading on its own (no smoothing): a tone gone is gone from the next one.
        await ben.page.evaluate(
            "window.__listen.analysers.forEach((a) => { a.smoothingTimeConstant = 0; })"
        )
        await levels_until(ben, tab_silent, "the microphone alone")
        before = await page.evaluate(HOST_JS)

        # Add the tab: its picture is stopped at once, the mix takes the sender's place.
        await add.click()
        await page.wait_for_function("window.pulseroom.music.tab.sent === 'mix'")
        state = await page.evaluate(HOST_JS)
        assert state["shared"]["video"] == "ended", state["shared"]
        assert state["shared"]["options"]["audio"]["echoCancellation"] is False, state["shared"]
        # replaceTrack: no new offer was made.
        assert state["sdp"] == before["sdp"]
        assert await page.get_by_test_id("tab-level").is_visible()
        await levels_until(ben, mixed, "the tab's stereo tones with the microphone")
        await screenshot(host, "tab-audio-instructor")

        # The toolbar's Mute silences the microphone only; the tab plays on.
        await page.get_by_test_id("mic-button").click()
        await levels_until(ben, mic_silent, "the tab without the microphone")
        await page.get_by_test_id("mic-button").click()
        await levels_until(ben, mixed, "the microphone back in the mix")
        # The tab's level at 0: the microphone alone is heard.
        await page.get_by_test_id("tab-level").fill("0")
        await levels_until(ben, tab_silent, "the tab's level at 0")
        await page.get_by_test_id("tab-level").fill("100")
        await levels_until(ben, mixed, "the tab's level back at 100")

        # The browser ends the share: the microphone alone again, still no renegotiation.
        await page.evaluate("window.__tab.end()")
        await page.wait_for_function("window.pulseroom.music.tab.sent === 'microphone'")
        await levels_until(ben, tab_silent, "the microphone after the share ended")
        after = await page.evaluate(HOST_JS)
        assert after["sdp"] == before["sdp"]
        assert after["tab"]["mixing"] is False
        assert await add.text_content() == "Add tab audio"
        assert not host.errors, host.diagnostics()
    except BaseException:
        for tab in (host, ben):
            print(tab.diagnostics())
        raise
    finally:
        await asyncio.gather(host.close(), ben.close())


async def test_no_tab_audio_button_without_get_display_media(
    browser: Any, browser_server: RunningServer
) -> None:
    """A browser without getDisplayMedia (a phone's) gets music mode without the button."""
    room = browser_server.create_room("Phone class")
    host = await open_tab(
        browser, "instructor", init_script="delete MediaDevices.prototype.getDisplayMedia;"
    )
    try:
        await join(host, str(room["host_link"]), "Coach Ana")
        await host.page.get_by_test_id("music-button").click()
        await host.page.wait_for_function(
            "document.querySelector('[data-testid=music-button]').dataset.music === 'on'"
        )
        assert await host.page.get_by_test_id("tab-audio-button").is_hidden()
        assert (await host.page.evaluate("window.pulseroom.music.tab"))["available"] is False
    finally:
        await host.close()
