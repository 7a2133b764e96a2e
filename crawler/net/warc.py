"""--warc PATH: every request and response of the crawl as WARC records (warcio).

One gzip member per record, so the
file can be appended to by a resumed crawl (a member torn by a kill is cut
off first) and read by warcio's own tools
(`warcio index`, `warcio check`). The crawler keeps decoded bodies, so a
response record holds the decoded payload: its HTTP headers lose
Content-Encoding and Transfer-Encoding and get the payload's Content-Length.
A body the crawler did not read in full (not HTML, an error page, past
--max-bytes) is marked WARC-Truncated.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler.errors import ConfigError
from crawler.net.fetcher import Response, header_text

# How much of a WARC file is read (and inflated) at a time when it is checked.
_SCAN_BYTES = 1 << 20
_PAYLOAD_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


class WarcRecorder:
    """Appends request/response record pairs to one .warc.gz file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._writer: WARCWriter | None = None

    def __enter__(self) -> WarcRecorder:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _cut_torn_member(self.path)
            self._file = self.path.open("ab")
        except OSError as error:
            raise ConfigError(f"cannot write WARC file {self.path}: {error.strerror}") from None
        self._writer = WARCWriter(self._file, gzip=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def record(self, response: Response) -> None:
        """The request and, if one came, the response of one fetch."""
        if self._writer is None or response.status is None:
            return
        parts = urlsplit(response.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request_headers = StatusAndHeaders(
            f"{response.method} {target} HTTP/1.1",
            list(response.request_headers.items()),
            is_http_request=True,
        )
        request = self._writer.create_warc_record(
            response.url, "request", http_headers=request_headers
        )
        headers = [
            (name, header_text(value) or "")
            for name, value in response.headers.items()
            if name.lower() not in _PAYLOAD_HEADERS
        ]
        headers.append(("Content-Length", str(len(response.body))))
        # warcio writes the status line as ASCII: another reason phrase had it raise.
        reason = response.reason.encode("ascii", "replace").decode("ascii")
        http_headers = StatusAndHeaders(f"{response.status} {reason}", headers, protocol="HTTP/1.1")
        warc_headers = {}
        if not response.complete:
            warc_headers["WARC-Truncated"] = "length"
        answer = self._writer.create_warc_record(
            response.url,
            "response",
            payload=io.BytesIO(response.body),
            length=len(response.body),
            http_headers=http_headers,
            warc_headers_dict=warc_headers,
        )
        self._writer.write_request_response_pair(request, answer)
        assert self._file is not None
        self._file.flush()


def _cut_torn_member(path: Path) -> None:
    """Truncate ``path`` after its last complete gzip member: a crawl killed while it
    wrote a record left a torn one, which warcio would stop at (or choke on). The
    file is inflated in bounded chunks, once, when a crawl opens it."""
    if not path.is_file():
        return
    complete = 0  # where the last complete member ends
    consumed = 0  # file offset of data's first byte
    inflate = zlib.decompressobj(wbits=31)
    data = b""
    with path.open("rb") as file:
        while data or (data := file.read(_SCAN_BYTES)):
            try:
                inflate.decompress(data, _SCAN_BYTES)
            except zlib.error:
                break  # not gzip from here on: cut at the last complete member
            consumed += len(data) - len(inflate.unconsumed_tail) - len(inflate.unused_data)
            if inflate.eof:
                complete = consumed
                data = inflate.unused_data
                inflate = zlib.decompressobj(wbits=31)
            else:
                data = inflate.unconsumed_tail
    if complete < path.stat().st_size:
        with path.open("rb+") as file:
            file.truncate(complete)
