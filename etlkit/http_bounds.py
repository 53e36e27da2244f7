"""How long an HTTP server may take: the aiohttp options of etlkit's fsspec HTTP filesystem.

aiohttp's own timeouts are per read (`sock_read`): a server that sends a byte a second, or
trickles its headers, never trips them, and a whole-answer `total` would cut off a large
shard on an honest slow link. So each answer is bounded twice: its headers must come within
`remote.READ_TIMEOUT` (shared by the requests of one `remote.answer_bound`, as fsspec asks a
file's size with HEAD and then again with GET), and its body must keep up `remote.MIN_RATE`
bytes a second over the last READ_TIMEOUT seconds, once READ_TIMEOUT has passed: a window that
slides, not an average from the request, in which a fast start would buy a later trickle
(bytes sent)/MIN_RATE seconds, hours for a large file. The limits are read from `remote` at
each read, so a test can lower them.

Each body is bounded in size as well: an answer to a range request is read no further than the
bytes asked (and RANGE_SLACK), an answer to a whole-file request no further than the caller's
`remote.answer_bound(most=...)`, so a server that sends without end (a 206 of no stated length,
which fsspec reads whole) is stopped with TooMuch instead of filling memory or the cache's
disk. A body that breaks off (aiohttp's ClientPayloadError) is BrokeOff, with the bytes it
brought and those it said it would.

Imported only when a URL is read: aiohttp is not needed to start etlkit.
"""

import asyncio
import re
import time
from collections import deque

import aiohttp

from . import remote


class TooSlow(Exception):  # noqa: N818 - what the server was, as the error line says
    """A body that stopped after `received` bytes in `seconds`: slower than remote.MIN_RATE,
    or `stalled`: nothing more for READ_TIMEOUT seconds."""

    def __init__(self, received: int, seconds: float, stalled: bool = False):
        super().__init__(f"{received} bytes in {seconds:.0f} s")
        self.received, self.seconds, self.stalled = received, seconds, stalled


#: Bytes past a range a body may bring: fsspec reads the start of a whole-file answer to a range
#: request (a server that ignores Range) in 1 MiB pieces and stops after the range's end.
RANGE_SLACK = 1 << 20


class TooMuch(Exception):  # noqa: N818 - what the server did, as the error line says
    """A body that went on past the `most` bytes asked of it."""

    def __init__(self, most: int):
        super().__init__(f"more than {most} bytes")
        self.most = most


class BrokeOff(Exception):  # noqa: N818 - what the server's answer did
    """A body that ended after `received` bytes had come, before the `stated` length it gave
    (None: it gave none, and its encoding broke)."""

    def __init__(self, received: int, stated: int | None):
        super().__init__(f"{received} of {stated} bytes")
        self.received, self.stated = received, stated


def _asked(request_headers, most: int | None) -> int | None:
    """The most bytes a body may bring: a single range's length (Range: bytes=A-B), else the
    caller's bound `most` (None: none)."""
    asked = re.fullmatch(r"bytes=(\d+)-(\d+)", request_headers.get("Range", ""))
    return int(asked[2]) - int(asked[1]) + 1 if asked else most


class _BoundedResponse(aiohttp.ClientResponse):
    """An aiohttp response whose headers and body are bounded as the module says."""

    async def start(self, connection) -> "aiohttp.ClientResponse":
        asked = time.monotonic()
        wait = remote.answer_time_left()
        try:
            await asyncio.wait_for(super().start(connection), wait)
        except TimeoutError:  # also when an earlier request of the fetch used up the time
            raise aiohttp.ServerTimeoutError(f"no answer within {remote.READ_TIMEOUT:g} s") \
                from None
        stated = self.headers.get("Content-Length")
        self.content = _RateBound(self.content, asked,
                                  _asked(self.request_info.headers, remote.body_bound()),
                                  int(stated) if stated and stated.isdigit() else None)
        return self


class _RateBound:
    """A response body (aiohttp's StreamReader) whose reads stop with TooSlow once the bytes
    received in the last READ_TIMEOUT seconds fall below MIN_RATE a second, from READ_TIMEOUT
    seconds after `asked` on; with TooMuch past `most` bytes (and RANGE_SLACK; None: no bound);
    with BrokeOff where the body breaks off before the `stated` length."""

    def __init__(self, stream: aiohttp.StreamReader, asked: float, most: int | None,
                 stated: int | None):
        self._stream, self._asked, self._received = stream, asked, 0
        self._most, self._stated = most, stated
        #: (when, bytes received by then) of the reads that may still be in the window: those
        #: after the last MIN_RATE * READ_TIMEOUT bytes began, oldest first
        self._arrivals: deque[tuple[float, int]] = deque()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)  # eof, exception(), release: the stream's own

    async def read(self, n: int = -1) -> bytes:
        if n >= 0:
            return await self._bounded(self._stream.read(n))
        parts = []
        while part := await self.readany():
            parts.append(part)
        return b"".join(parts)

    async def readany(self) -> bytes:
        return await self._bounded(self._stream.readany())

    async def _bounded(self, reading) -> bytes:
        deadline = self._deadline()
        heard = self._arrivals[-1][0] if self._arrivals else self._asked
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())) as bound:
                data = await reading
        except TimeoutError:  # the rate's bound, or aiohttp's sock_read: no byte for a while
            # silent: the bound fell READ_TIMEOUT after the last bytes (the two race then)
            silent = not bound.expired() or deadline == heard + remote.READ_TIMEOUT
            raise TooSlow(self._received, time.monotonic() - self._asked,
                          stalled=silent) from None
        except aiohttp.ClientPayloadError:  # raised before the bytes it holds are handed on
            raise BrokeOff(self._stream.total_bytes, self._stated) from None
        if remote.abandoned():  # another file of the same work failed: no one wants the rest
            raise remote.Abandoned()
        if self._most is not None and self._received + len(data) > self._most + RANGE_SLACK:
            raise TooMuch(self._most)
        if data:
            self._received += len(data)
            self._arrivals.append((time.monotonic(), self._received))
        return data

    def _deadline(self) -> float:
        """When the window of the last READ_TIMEOUT seconds will hold fewer than MIN_RATE *
        READ_TIMEOUT bytes if nothing more comes: READ_TIMEOUT after the first read that brought
        any of the last that many bytes (never before READ_TIMEOUT from the request)."""
        window = remote.READ_TIMEOUT
        before = self._received - remote.MIN_RATE * window  # bytes that must have left it
        if before < 0:
            return self._asked + window
        while self._arrivals[0][1] <= before:  # the newest read always stays: it ends above
            self._arrivals.popleft()
        return max(self._asked, self._arrivals[0][0]) + window


def client_options() -> dict:
    """fsspec's HTTP `client_kwargs`: a server that goes silent fails after READ_TIMEOUT
    seconds without a byte (not aiohttp's 5 minutes for a whole answer, which a large shard
    may need), and one that trickles as the module says."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=remote.READ_TIMEOUT,
                                    sock_read=remote.READ_TIMEOUT)
    return {"timeout": timeout, "response_class": _BoundedResponse}
