"""A small async WebDriver client for the browsers Playwright cannot drive here.

Playwright drives Debian's Chromium, but its own Firefox and WebKit builds cannot be
downloaded on this machine. Debian's browsers speak the W3C protocols themselves:

- Firefox ESR speaks WebDriver BiDi (a WebSocket) when started with
  ``--remote-debugging-port``; no geckodriver is needed. ``firefox()`` starts it.
- WebKitGTK (the engine of Safari) is driven by ``WebKitWebDriver``, classic W3C
  WebDriver over HTTP, which starts its MiniBrowser. MiniBrowser is a GTK 3 program
  with no headless mode, so ``webkit()`` gives it a private Xvfb display.

Both give a ``Page`` with the few things the tests need: open a URL, call a JavaScript
function (awaited; arguments and result travel as JSON), click and type like a person,
read text, take a screenshot, and what the page logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx

FIREFOX = Path("/usr/bin/firefox-esr")
WEBKIT_DRIVER = Path("/usr/bin/WebKitWebDriver")
XVFB = Path("/usr/bin/Xvfb")
START_TIMEOUT_S = 45.0
COMMAND_TIMEOUT_S = 30.0
VIEWPORT = (1280, 800)

# Firefox: a fake camera and microphone that need no prompt, real (not mDNS) host
# candidates that aiortc can use, loopback candidates (the server is on 127.0.0.1),
# media that may play without a click, and no first-run or update noise.
FIREFOX_PREFS: dict[str, bool | int | str] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.loopback": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
}

# MiniBrowser settings (WebKitSettings properties): mock camera and microphone, and
# WebRTC if the build has it.
WEBKIT_ARGS = [
    "--automation",
    "--enable-media-stream=true",
    "--enable-mock-capture-devices=true",
    "--enable-webrtc=true",
    "--media-playback-requires-user-gesture=false",
    "--enable-write-console-messages-to-stdout=true",
]

# The caller's function is pasted into these (not eval'd: a page's CSP cannot stop them);
# its arguments and awaited result travel as JSON text.
CALL_JS = "async (args) => JSON.stringify(await ({fn})(...JSON.parse(args)))"
# Classic WebDriver's execute/async: the last argument is the callback.
CALL_ASYNC_JS = """const [args, done] = arguments;
Promise.resolve()
  .then(() => ({fn})(...JSON.parse(args)))
  .then((value) => done({{ json: JSON.stringify(value) }}),
        (error) => done({{ error: String((error && error.stack) || error) }}));"""
# Classic WebDriver has no log API (and MiniBrowser ignores its console-to-stdout setting
# under automation): record console messages and uncaught errors in the page, from load.
CAPTURE_LOG_JS = """if (!window.__webdriverLog) {
  const log = (window.__webdriverLog = []);
  const text = (value) => (value && value.stack) || String(value);
  for (const level of ['log', 'info', 'warn', 'error']) {
    const original = console[level].bind(console);
    console[level] = (...args) => {
      log.push(`console/${level}: ${args.map(text).join(' ')}`);
      original(...args);
    };
  }
  addEventListener('error', (e) => log.push(`javascript/error: ${e.message}`));
  addEventListener('unhandledrejection',
    (e) => log.push(`javascript/error: unhandled rejection: ${text(e.reason)}`));
}"""
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier


class WebDriverError(Exception):
    """The browser refused a command, or a script threw; the message says which and why."""


class Page(Protocol):
    """The one tab of a driven browser."""

    name: str
    version: str

    async def goto(self, url: str) -> None:
        """Open ``url`` and wait until it has loaded."""

    async def call(self, function: str, *args: Any) -> Any:
        """Call JavaScript ``function`` (its source) with JSON ``args``; its awaited result."""

    async def click(self, selector: str) -> None:
        """Click the element ``selector`` matches, as a person would."""

    async def fill(self, selector: str, text: str) -> None:
        """Clear the input ``selector`` matches and type ``text`` into it."""

    async def screenshot(self, path: Path) -> Path:
        """Save the viewport as a PNG at ``path``."""

    async def logs(self) -> list[str]:
        """What the page logged: ``console/LEVEL: text``, and ``javascript/error: text``
        for an uncaught error or unhandled promise rejection."""


def _save(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _decode_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def text(page: Page, selector: str) -> str:
    """The text of the element ``selector`` matches ('' when there is none)."""
    value = await page.call("(s) => document.querySelector(s)?.textContent ?? ''", selector)
    return str(value)


async def wait_for(page: Page, function: str, *args: Any, timeout: float, what: str) -> Any:
    """Poll ``function`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.call(function, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{page.name}: {what} not within {timeout} s\n"
                + "\n".join((await page.logs())[-20:])
            )
        await asyncio.sleep(0.2)


# -- Firefox: WebDriver BiDi ---------------------------------------------------------------


class BidiPage:
    """A Firefox tab driven over WebDriver BiDi."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        self.ws = ws
        self.name = name
        self.version = ""
        self.context = ""
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._log: deque[str] = deque(maxlen=500)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():  # not timed out meanwhile
                    future.set_result(data)
            elif data.get("method") == "log.entryAdded":
                entry = data["params"]
                self._log.append(f"{entry.get('type')}/{entry.get('level')}: {entry.get('text')}")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(WebDriverError(f"{self.name}: the browser closed the link"))
        self._waiting.clear()

    async def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One BiDi command; its result, or WebDriverError with the browser's reason."""
        self._next_id += 1
        command_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        try:
            await self.ws.send_json({"id": command_id, "method": method, "params": params})
            answer = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        finally:
            self._waiting.pop(command_id, None)
        if answer.get("type") == "error":
            raise WebDriverError(f"{method}: {answer.get('error')}: {answer.get('message')}")
        result: dict[str, Any] = answer["result"]
        return result

    async def start(self, viewport: tuple[int, int]) -> None:
        """New session, the first tab, its size, and its log."""
        session = await self.send("session.new", {"capabilities": {}})
        self.version = str(session["capabilities"].get("browserVersion", ""))
        tree = await self.send("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]
        await self.send(
            "browsingContext.setViewport",
            {"context": self.context, "viewport": {"width": viewport[0], "height": viewport[1]}},
        )
        await self.send("session.subscribe", {"events": ["log.entryAdded"]})

    async def goto(self, url: str) -> None:
        await self.send(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def _call_raw(self, declaration: str, args: list[dict[str, Any]]) -> dict[str, Any]:
        answer = await self.send(
            "script.callFunction",
            {
                "functionDeclaration": declaration,
                "arguments": args,
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "root",
            },
        )
        if answer["type"] == "exception":
            details = answer["exceptionDetails"]
            raise WebDriverError(f"{self.name}: script threw: {details.get('text')}")
        result: dict[str, Any] = answer["result"]
        return result

    async def call(self, function: str, *args: Any) -> Any:
        result = await self._call_raw(
            CALL_JS.format(fn=function), [{"type": "string", "value": json.dumps(args)}]
        )
        return _decode_json(result.get("value"))

    async def _element(self, selector: str) -> dict[str, Any]:
        node = await self._call_raw(
            "(s) => { const e = document.querySelector(s); e?.scrollIntoView({block: 'center'});"
            " return e; }",
            [{"type": "string", "value": selector}],
        )
        if node.get("type") != "node":
            raise WebDriverError(f"{self.name}: nothing matches {selector!r}")
        return {"sharedId": node["sharedId"]}

    async def _actions(self, actions: list[dict[str, Any]]) -> None:
        await self.send("input.performActions", {"context": self.context, "actions": actions})
        await self.send("input.releaseActions", {"context": self.context})

    async def click(self, selector: str) -> None:
        element = await self._element(selector)
        origin = {"type": "element", "element": element}
        await self._actions(
            [
                {
                    "type": "pointer",
                    "id": "mouse",
                    "parameters": {"pointerType": "mouse"},
                    "actions": [
                        {"type": "pointerMove", "x": 0, "y": 0, "origin": origin},
                        {"type": "pointerDown", "button": 0},
                        {"type": "pointerUp", "button": 0},
                    ],
                }
            ]
        )

    async def fill(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.call("(s) => { document.querySelector(s).value = ''; }", selector)
        keys: list[dict[str, Any]] = []
        for char in text:
            keys += [{"type": "keyDown", "value": char}, {"type": "keyUp", "value": char}]
        await self._actions([{"type": "key", "id": "keyboard", "actions": keys}])

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("browsingContext.captureScreenshot", {"context": self.context})
        return await asyncio.to_thread(_save, path, base64.b64decode(shot["data"]))

    async def logs(self) -> list[str]:
        return list(self._log)

    async def close(self) -> None:
        """Close the browser (it exits) and the connection."""
        with contextlib.suppress(WebDriverError, TimeoutError, ConnectionError):
            await self.send("browser.close", {})
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def _drain(stream: asyncio.StreamReader, sink: deque[str]) -> None:
    """Keep a child's pipe empty (a full pipe would block it), keeping the last lines."""
    while line := await stream.readline():
        sink.append(line.decode(errors="replace").rstrip())


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def firefox(
    prefs: dict[str, bool | int | str] | None = None,
    *,
    binary: Path = FIREFOX,
    viewport: tuple[int, int] = VIEWPORT,
) -> AsyncIterator[BidiPage]:
    """Headless Firefox on a temporary profile (``FIREFOX_PREFS`` plus ``prefs``)."""
    with tempfile.TemporaryDirectory(prefix="pulseroom-firefox-") as profile:
        lines = [
            f"user_pref({json.dumps(k)}, {json.dumps(v)});"
            for k, v in {**FIREFOX_PREFS, **(prefs or {})}.items()
        ]
        await asyncio.to_thread(_save, Path(profile, "user.js"), "\n".join(lines).encode())
        process = await asyncio.create_subprocess_exec(
            str(binary), "--headless", "--no-remote", "--profile", profile,
            "--remote-debugging-port", "0", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        output: deque[str] = deque(maxlen=200)
        drain: asyncio.Task[None] | None = None
        session: aiohttp.ClientSession | None = None
        page: BidiPage | None = None
        try:
            url = await _bidi_url(process.stderr, output)
            drain = asyncio.create_task(_drain(process.stderr, output))
            session = aiohttp.ClientSession()
            ws = await session.ws_connect(f"{url}/session", max_msg_size=0)
            page = BidiPage(ws, "Firefox")
            await page.start(viewport)
            yield page
        except BaseException as exc:
            exc.add_note("firefox output:\n" + "\n".join(list(output)[-30:]))
            raise
        finally:
            if page is not None:
                await page.close()
            if session is not None:
                await session.close()
            await _end(process)
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain


async def _bidi_url(stderr: asyncio.StreamReader, output: deque[str]) -> str:
    """Read Firefox's stderr until it says where WebDriver BiDi listens."""
    pattern = re.compile(r"WebDriver BiDi listening on (ws://\S+)")

    async def find() -> str:
        while line := await stderr.readline():
            text = line.decode(errors="replace").rstrip()
            output.append(text)
            if match := pattern.search(text):
                return match.group(1)
        raise WebDriverError("Firefox exited before WebDriver BiDi was listening")

    try:
        return await asyncio.wait_for(find(), START_TIMEOUT_S)
    except TimeoutError:
        raise WebDriverError(
            f"Firefox did not start WebDriver BiDi in {START_TIMEOUT_S} s"
        ) from None


# -- WebKitGTK: classic WebDriver ------------------------------------------------------


class ClassicPage:
    """A MiniBrowser (WebKitGTK) window driven over classic W3C WebDriver."""

    def __init__(self, client: httpx.AsyncClient, log_path: Path, name: str) -> None:
        self.client = client
        self.log_path = log_path
        self.name = name
        self.version = ""
        self.session = ""

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One WebDriver command; its ``value``, or WebDriverError with the driver's reason."""
        url = f"/session/{self.session}{path}" if self.session else path
        response = await self.client.request(method, url, json=body)
        data = response.json()
        value = data.get("value") if isinstance(data, dict) else None
        if response.status_code >= 400:
            error = value if isinstance(value, dict) else {}
            raise WebDriverError(f"{path}: {error.get('error')}: {error.get('message')}")
        return value

    async def start(self, args: list[str], viewport: tuple[int, int]) -> None:
        """New session (starts MiniBrowser with ``args``) and its window size."""
        options = {"webkitgtk:browserOptions": {"args": args}}
        value = await self.send("POST", "/session", {"capabilities": {"alwaysMatch": options}})
        self.session = str(value["sessionId"])
        self.version = str(value["capabilities"].get("browserVersion", ""))
        await self.send("POST", "/window/rect", {"width": viewport[0], "height": viewport[1]})

    async def goto(self, url: str) -> None:
        await self.send("POST", "/url", {"url": url})
        await self.send("POST", "/execute/sync", {"script": CAPTURE_LOG_JS, "args": []})

    async def call(self, function: str, *args: Any) -> Any:
        value = await self.send(
            "POST",
            "/execute/async",
            {"script": CALL_ASYNC_JS.format(fn=function), "args": [json.dumps(args)]},
        )
        if "error" in value:
            raise WebDriverError(f"{self.name}: script threw: {value['error']}")
        return _decode_json(value.get("json"))

    async def _element(self, selector: str) -> str:
        try:
            value = await self.send(
                "POST", "/element", {"using": "css selector", "value": selector}
            )
        except WebDriverError as exc:
            raise WebDriverError(f"{self.name}: nothing matches {selector!r} ({exc})") from None
        return str(value[ELEMENT_KEY])

    async def click(self, selector: str) -> None:
        await self.send("POST", f"/element/{await self._element(selector)}/click", {})

    async def fill(self, selector: str, text: str) -> None:
        element = await self._element(selector)
        await self.send("POST", f"/element/{element}/clear", {})
        await self.send("POST", f"/element/{element}/value", {"text": text})

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("GET", "/screenshot")
        return await asyncio.to_thread(_save, path, base64.b64decode(data))

    async def logs(self) -> list[str]:
        return [str(line) for line in await self.call("() => window.__webdriverLog || []")]

    async def close(self) -> None:
        """End the session (MiniBrowser exits)."""
        if self.session:
            with contextlib.suppress(WebDriverError, httpx.HTTPError):
                await self.send("DELETE", "")
            self.session = ""


def _start_xvfb(size: tuple[int, int]) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb server on a display number it picks itself (``-displayfd``)."""
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [str(XVFB), "-displayfd", str(write_fd), "-nolisten", "tcp",
         "-screen", "0", f"{size[0]}x{size[1]}x24"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        process.kill()
        process.wait()
        raise WebDriverError("Xvfb did not start")
    return process, f":{number}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def webkit(
    args: list[str] | None = None,
    *,
    driver: Path = WEBKIT_DRIVER,
    log_dir: Path,
    viewport: tuple[int, int] = VIEWPORT,
) -> AsyncIterator[ClassicPage]:
    """MiniBrowser (WebKitGTK) under WebKitWebDriver, on a private Xvfb display."""
    xvfb, display = await asyncio.to_thread(_start_xvfb, (viewport[0] + 100, viewport[1] + 200))
    port = _free_port()
    log_path = log_dir / "webkitwebdriver.log"
    process: asyncio.subprocess.Process | None = None
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=COMMAND_TIMEOUT_S)
    page: ClassicPage | None = None
    try:
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                str(driver), f"--port={port}", env={**os.environ, "DISPLAY": display},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/status")).json()["value"]["ready"]:
                    break
            if process.returncode is not None or time.monotonic() > deadline:
                raise WebDriverError("WebKitWebDriver did not start:\n" + log_path.read_text())
            await asyncio.sleep(0.1)
        page = ClassicPage(client, log_path, "WebKitGTK")
        await page.start(WEBKIT_ARGS + (args or []), viewport)
        yield page
    except BaseException as exc:
        # e.g. "Could not create surfaceless EGL display" without Mesa's libgl1-mesa-dri.
        exc.add_note("WebKitWebDriver and browser output:\n" + log_path.read_text()[-3000:])
        raise
    finally:
        if page is not None:
            await page.close()
        await client.aclose()
        if process is not None:
            await _end(process)
        xvfb.terminate()
        try:
            await asyncio.to_thread(xvfb.wait, 10)
        except subprocess.TimeoutExpired:
            xvfb.kill()
            await asyncio.to_thread(xvfb.wait)
