"""A real headless Chromium driven over the Chrome DevTools Protocol (CDP), for the dashboard
test. Only the system browser and aiohttp (already a dependency) are needed: no webdriver, no
Node.js. Debian's ``chromium`` package provides the browser; ``.ci/run`` installs it.

Usage::

    async with Browser.launch(tmp_path) as page:
        await page.goto(url)
        value = await page.eval("document.title")
        png = await page.screenshot()
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["BrowserError", "Page", "chromium_path", "launch"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(Exception):
    pass


def chromium_path() -> str | None:
    """The system Chromium (``$RAFTQ_CHROMIUM`` first), or ``None``."""
    env = os.environ.get("RAFTQ_CHROMIUM")
    if env:
        return env
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab, over its CDP websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.console: list[str] = []  # console messages and uncaught exceptions
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(BrowserError(str(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                text = " ".join(str(a.get("value", a.get("description"))) for a in args)
                self.console.append(text)
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                exc = details.get("exception", {}).get("description") or details.get("text")
                self.console.append(f"uncaught: {exc}")

    async def send(self, method: str, **params: Any) -> Any:
        i = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[i] = fut
        await self._ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def goto(self, url: str) -> None:
        """Navigate and wait until the new document has loaded."""
        r = await self.send("Page.navigate", url=url)
        if r.get("errorText"):
            raise BrowserError(f"cannot open {url}: {r['errorText']}")
        await self.wait_for(
            f"location.href.startsWith({json.dumps(url.split('?', maxsplit=1)[0])}) && "
            "document.readyState === 'complete'"
        )

    async def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value."""
        r = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:80]!r} threw: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                value = await self.eval(expression)
            except BrowserError as e:  # e.g. the old document's context went away mid-load
                value, last_error = None, e
            else:
                last_error = None
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out waiting for {expression!r} (last error: {last_error}); "
                    f"console: {self.console}"
                )
            await asyncio.sleep(0.1)

    async def screenshot(self) -> bytes:
        r = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(r["data"])

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()


@asynccontextmanager
async def launch(profile: Path, *, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    """Start headless Chromium with a fresh profile under ``profile``; yield its first tab.
    The browser is killed (by its pid) on exit."""
    exe = chromium_path()
    if exe is None:
        raise BrowserError("no chromium found (apt-get install chromium)")
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    drainer: list[threading.Thread] = []
    try:
        port = await asyncio.to_thread(_devtools_port, proc, drainer)
        async with aiohttp.ClientSession() as session:
            targets: list[dict[str, Any]] = []
            for _ in range(100):
                async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
                if targets:
                    break
                await asyncio.sleep(0.1)
            if not targets:
                raise BrowserError("chromium opened no page")
            ws = await session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(ws)
            try:
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                yield page
            finally:
                await page.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the browser's helpers too
        proc.wait(10)
        for t in drainer:
            t.join(10)  # it closes stderr at EOF
        if not drainer and proc.stderr is not None:
            proc.stderr.close()


def _devtools_port(proc: subprocess.Popen[bytes], drainer: list[threading.Thread]) -> int:
    assert proc.stderr is not None
    seen: list[str] = []
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        seen.append(line)
        m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if m:
            # Keep draining stderr so the browser never blocks on a full pipe.
            t = threading.Thread(target=_drain, args=(proc.stderr,), daemon=True)
            t.start()
            drainer.append(t)
            return int(m.group(1))
    raise BrowserError("chromium exited before DevTools was up:\n" + "".join(seen[-20:]))


def _drain(stream: Any) -> None:
    for _ in stream:
        pass
    stream.close()
