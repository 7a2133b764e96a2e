"""A DNS server on loopback for tests and benchmarks: A records from a table, after a
delay; names it was told to drop are never answered; any other name is NXDOMAIN.

Only what a resolver asks: one question a query, A and AAAA (AAAA answered empty).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

_A, _AAAA = 1, 28


@dataclass
class LocalDns(asyncio.DatagramProtocol):
    """``records``: name -> IPv4 address; ``delay``: seconds before each answer;
    ``silent``: names never answered (a dead name server, for them)."""

    records: dict[str, str]
    delay: float = 0.0
    silent: set[str] = field(default_factory=set)
    asked: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _transport: asyncio.DatagramTransport | None = None

    async def start(self) -> LocalDns:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.port = transport.get_extra_info("sockname")[1]
        return self

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | None, int]) -> None:
        try:
            name, qtype, end = _question(data)
        except (IndexError, struct.error, UnicodeError):
            return
        self.asked[name] += 1
        if name in self.silent:
            return
        answer = _answer(data, end, name, qtype, self.records.get(name))
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self._send, answer, addr)

    def _send(self, answer: bytes, addr: tuple[str | None, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(answer, addr)


def _question(data: bytes) -> tuple[str, int, int]:
    labels, at = [], 12
    while data[at]:
        length = data[at]
        labels.append(data[at + 1 : at + 1 + length].decode("ascii").lower())
        at += 1 + length
    qtype, _ = struct.unpack("!HH", data[at + 1 : at + 5])
    return ".".join(labels), qtype, at + 5


def _answer(query: bytes, end: int, name: str, qtype: int, address: str | None) -> bytes:
    ident = query[:2]
    flags = 0x8180 if address is not None else 0x8183  # a response; NXDOMAIN without a record
    answers = b""
    if address is not None and qtype == _A:
        # The name by a pointer to the question (offset 12), class IN, TTL 300.
        answers = struct.pack("!HHHIH", 0xC00C, _A, 1, 300, 4) + socket.inet_aton(address)
    count = 1 if answers else 0
    header = ident + struct.pack("!HHHHH", flags, 1, count, 0, 0)
    return header + query[12:end] + answers
