"""--warc PATH: every request and response of the crawl as WARC records (warcio),
and each rendered page's DOM as a conversion record (--render).

One gzip member per record, so the
file can be appended to by a resumed crawl (a member torn by a kill is cut
off first) and read by warcio's own tools
(`warcio index`, `warcio check`). The crawler keeps decoded bodies, so a
response record holds the decoded payload: its HTTP headers lose
Content-Encoding and Transfer-Encoding and get the payload's Content-Length.
A body the crawler did not read in full (not HTML, an error page, past
--max-bytes) is marked WARC-Truncated. A request record keeps every header
sent but the values of Authorization, Proxy-Authorization and Cookie, which are
secrets and are written as "[redacted]".
"""

from __future__ import annotations

import errno
import io
import os
import stat
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
_WARC = b"WARC/"
# Request headers that carry a secret (credentials, the session): kept in the
# request record by name, their value replaced.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
REDACTED = "[redacted]"
# Response record ids remembered (a page is rendered right after its fetch).
_REMEMBERED = 1024
_PAYLOAD_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


class WarcRecorder:
    """Appends request/response record pairs to one .warc.gz file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._writer: WARCWriter | None = None
        # The record ids of the last responses, for a rendered page's conversion record.
        self._responses: dict[str, str] = {}

    def __enter__(self) -> WarcRecorder:
        """Open the file to append, never through a symlink, and only if it is new or a
        WARC file to continue (its torn last record cut off): any other file is
        refused, never truncated."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            descriptor = os.open(self.path, flags, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ConfigError(
                    f"--warc {self.path} is a symbolic link: the crawler writes through none"
                ) from None
            raise ConfigError(f"cannot write WARC file {self.path}: {error.strerror}") from None
        file = os.fdopen(descriptor, "r+b")
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise ConfigError(f"--warc {self.path} is not a regular file")
            _cut_torn_member(file, self.path)
        except OSError as error:
            file.close()
            raise ConfigError(f"cannot write WARC file {self.path}: {error.strerror}") from None
        except BaseException:
            file.close()
            raise
        self._file = file
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
            [
                (name, REDACTED if name.lower() in _SECRET_HEADERS else value)
                for name, value in response.request_headers.items()
            ],
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
        self._responses[response.url] = answer.rec_headers.get_header("WARC-Record-ID")
        if len(self._responses) > _REMEMBERED:
            del self._responses[next(iter(self._responses))]

    def conversion(self, url: str, html: bytes) -> None:
        """A page's DOM as its browser rendered it (--render): a conversion record
        that refers to the response it was rendered from."""
        if self._writer is None:
            return
        refers = self._responses.get(url)
        record = self._writer.create_warc_record(
            url,
            "conversion",
            payload=io.BytesIO(html),
            length=len(html),
            warc_content_type="text/html; charset=utf-8",
            warc_headers_dict={"WARC-Refers-To": refers} if refers is not None else {},
        )
        self._writer.write_record(record)
        assert self._file is not None
        self._file.flush()


def _cut_torn_member(file: IO[bytes], path: Path) -> None:
    """Truncate ``file`` after its last complete gzip member: a crawl killed while it
    wrote a record left a torn one, which warcio would stop at (or choke on). The
    file is inflated in bounded chunks, once, when a crawl opens it. A file that is
    not a gzipped WARC file (its first record does not start "WARC/", or something
    that is not gzip follows the records: a torn record is only ever a gzip prefix)
    is not ours to continue: ConfigError, the file untouched."""
    complete = 0  # where the last complete member ends
    consumed = 0  # file offset of data's first byte
    inflate = zlib.decompressobj(wbits=31)
    head = b""  # the first record's first bytes
    data = b""
    file.seek(0)
    while data or (data := file.read(_SCAN_BYTES)):
        try:
            inflated = inflate.decompress(data, _SCAN_BYTES)
        except zlib.error:
            raise _not_a_warc(path) from None
        if complete == 0 and len(head) < len(_WARC):
            head += inflated[: len(_WARC) - len(head)]
            if not _WARC.startswith(head):
                raise _not_a_warc(path)
        consumed += len(data) - len(inflate.unconsumed_tail) - len(inflate.unused_data)
        if inflate.eof:
            complete = consumed
            data = inflate.unused_data
            inflate = zlib.decompressobj(wbits=31)
        else:
            data = inflate.unconsumed_tail
    if complete < os.fstat(file.fileno()).st_size:
        file.truncate(complete)


def _not_a_warc(path: Path) -> ConfigError:
    return ConfigError(
        f"--warc {path} exists and is not a WARC file a crawl wrote: it was left untouched;"
        " give the crawl a new file"
    )
