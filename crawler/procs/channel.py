"""The front's channel: pickled messages over one end of a socket pair, on the event loop.

The parent of the front makes a socket pair per child process and hands one
end to the child as a Process argument
(the spawn start method passes its descriptor); each side wraps its end in a
Channel. A frame is a 4-byte big-endian length, then a pickle (protocol 5).

Why not multiprocessing.Queue: it pickles and writes in a feeder thread and
is read by a blocking get, so each side needs a thread and every batch a
thread switch and a wake-up of the loop; a socket is read and written by the
event loop itself, and its end of file says the other side is gone (a child
that died, or a parent that did) after everything it sent has been read.
Writes never block: the transport buffers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")


class Channel:
    """One end of a socket pair; ``open()`` it on the loop that uses it."""

    def __init__(self, end: socket.socket) -> None:
        self._end = end
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._end)

    def send(self, message: Any) -> None:
        """Queue one frame; a closed channel drops it (its peer is gone)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        payload = pickle.dumps(message, protocol=5)
        writer.write(_HEADER.pack(len(payload)) + payload)

    async def receive(self) -> Any | None:
        """The next message, or None once the other side has closed (or died)."""
        assert self._reader is not None
        try:
            header = await self._reader.readexactly(_HEADER.size)
            payload = await self._reader.readexactly(_HEADER.unpack(header)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return pickle.loads(payload)

    async def drain(self) -> None:
        """Wait until what was sent is written to the socket."""
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    def close(self) -> None:
        """Close; what is still queued is written as the loop runs on, if it can be."""
        if self._writer is None:
            self._end.close()
        else:
            self._writer.close()

    async def aclose(self) -> None:
        """Write what is queued, then close."""
        await self.drain()
        self.close()
        if self._writer is not None:
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
