"""A headless browser process and its DevTools protocol (CDP) over a pipe.

Why a pipe and no library: Chromium's ``--remote-debugging-pipe`` speaks CDP as
NUL-terminated JSON on file descriptors 3 (to the browser) and 4 (from it), so
no port is opened that another local user could reach, and nothing is
installed but Debian's browser package (Playwright needs its own Node.js and
a browser build it downloads). Measured on this 2-core machine: the headless
shell is ready to take commands in 0.05-0.17 s.

Rules:
1. The browser runs in a session (process group) of its own, so a Ctrl-C at the
   terminal reaches the crawler alone, and ``close()`` ends the whole group.
2. When the crawler dies (even by SIGKILL) its end of the pipe closes, and the
   browser quits on that end of file: no browser outlives its crawler.
3. Every call waits for its answer or for the browser's end: when the browser
   goes, every pending call raises ``BrowserGone`` at once, never hangs.
4. Events go to the handler registered for their session (a tab), if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

# Seconds the browser has to quit on Browser.close before its group is killed.
QUIT_GRACE = 1.0
# A page's requests are all answered by the crawler (Fetch domain); what the
# Fetch domain cannot see (WebSocket, WebRTC) is sent to a proxy that is not
# there, loopback included, so no script reaches the network by itself.
_FLAGS = (
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-sync",
    "--disable-gpu",
    "--mute-audio",
    "--hide-scrollbars",
    "--block-new-web-contents",  # window.open and pop-ups fail: no tab the crawler did not make
    "--proxy-server=http://127.0.0.1:1",
    "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)

Handler = Callable[[str, dict[str, Any]], None]


class BrowserGone(Exception):
    """The browser process ended (crashed, killed, or closed)."""


class CallFailed(Exception):
    """The browser answered a call with an error (a closed tab, a bad argument)."""


class Browser:
    """One browser process and its CDP connection; start with ``await Browser.start()``."""

    def __init__(self, pid: int, profile: str) -> None:
        self.pid = pid
        self._profile = profile
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, Handler] = {}
        self._next_id = 0
        self._buffer = bytearray()
        self._exit: int | None = None
        self.gone = asyncio.get_running_loop().create_future()

    @classmethod
    async def start(cls, path: Path) -> Browser:
        """Start the browser at ``path``; OSError if it cannot be started."""
        profile = tempfile.mkdtemp(prefix="crawler-browser-")
        flags = [*_FLAGS, f"--user-data-dir={profile}"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
        to_browser, from_browser = os.pipe(), os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        try:  # posix_spawn returns once the child exists (vfork): no wait on the loop
            pid = os.posix_spawn(  # noqa: ASYNC221
                str(path),
                [path.name, *flags, "about:blank"],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, null, 0),
                    (os.POSIX_SPAWN_DUP2, null, 1),
                    (os.POSIX_SPAWN_DUP2, null, 2),
                    (os.POSIX_SPAWN_DUP2, to_browser[0], 3),
                    (os.POSIX_SPAWN_DUP2, from_browser[1], 4),
                ],
                setsid=True,
            )
        except OSError:
            for end in (*to_browser, *from_browser):
                os.close(end)
            shutil.rmtree(profile, ignore_errors=True)
            raise
        finally:
            os.close(null)
        os.close(to_browser[0])
        os.close(from_browser[1])
        browser = cls(pid, profile)
        await browser._connect(to_browser[1], from_browser[0])
        return browser

    async def _connect(self, to_browser: int, from_browser: int) -> None:
        loop = asyncio.get_running_loop()
        # The process's end is watched as well as the pipe's (rule 3): a helper of the
        # browser that outlived it would hold the pipe open.
        self._exit = os.pidfd_open(self.pid)
        loop.add_reader(self._exit, self._ended)
        reading = _Reading(self._received, self._ended)
        self._reader, _ = await loop.connect_read_pipe(
            lambda: reading, os.fdopen(from_browser, "rb", 0)
        )
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(to_browser, "wb", 0))
        self._writer = writer

    def alive(self) -> bool:
        return not self.gone.done()

    def on_events(self, session: str, handler: Handler | None) -> None:
        """Send the events of ``session`` to ``handler`` (None: forget the session)."""
        if handler is None:
            self._handlers.pop(session, None)
        else:
            self._handlers[session] = handler

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """One command and its result; BrowserGone or CallFailed when it cannot be had."""
        future = self.send(method, params, session)
        return await future

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """One command sent now; its answer is the future's (nobody need await it)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not self.alive() or self._writer is None or self._writer.is_closing():
            future.set_exception(BrowserGone())
            future.exception()  # a command whose answer no one awaits is no warning
            return future
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._calls[self._next_id] = future
        self._writer.write(orjson.dumps(message) + b"\0")
        return future

    def _received(self, data: bytes) -> None:
        # Only the new bytes are searched for the end of a message: a page's DOM of
        # megabytes comes in many reads.
        start, searched = 0, len(self._buffer)
        self._buffer += data
        while (end := self._buffer.find(b"\0", searched)) >= 0:
            self._dispatch(_message(memoryview(self._buffer)[start:end]))
            start = searched = end + 1
        del self._buffer[:start]

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            future = self._calls.pop(message["id"], None)
            if future is None or future.done():
                return
            if "error" in message:
                future.set_exception(CallFailed(str(message["error"].get("message"))))
                future.exception()  # a failed command whose answer no one awaits
            else:
                future.set_result(message.get("result", {}))
            return
        handler = self._handlers.get(message.get("sessionId", ""))
        if handler is not None:
            handler(message.get("method", ""), message.get("params", {}))

    def _ended(self) -> None:
        if self._exit is not None:
            asyncio.get_running_loop().remove_reader(self._exit)
            os.close(self._exit)
            self._exit = None
        if not self.gone.done():
            self.gone.set_result(None)
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(BrowserGone())
                future.exception()

    async def close(self) -> None:
        """Quit the browser (its whole process group, killed if it lingers)."""
        if self.alive():
            self.send("Browser.close")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(QUIT_GRACE):
                    await asyncio.shield(self.gone)
        for transport in (self._writer, self._reader):
            if transport is not None:
                transport.close()
        self._ended()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        await asyncio.to_thread(_reap, self.pid, self._profile)


def _reap(pid: int, profile: str) -> None:
    """Collect the killed browser's exit status, and delete its profile."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    shutil.rmtree(profile, ignore_errors=True)


def _message(data: memoryview) -> dict[str, Any]:
    """One message of the browser's. A page's text can hold a lone surrogate, which
    the browser writes as an escape orjson refuses and the json module takes."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        message = json.loads(bytes(data))
    return message if isinstance(message, dict) else {}


class _Reading(asyncio.Protocol):
    """The browser's end of the pipe: bytes as they come, and its end of file."""

    def __init__(self, received: Callable[[bytes], None], ended: Callable[[], None]) -> None:
        self._received = received
        self._ended = ended

    def data_received(self, data: bytes) -> None:
        self._received(data)

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()
