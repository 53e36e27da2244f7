"""How long an HTTP server may take: the aiohttp options of etlkit's fsspec HTTP filesystem.

aiohttp's own timeouts are per read (`sock_read`): a server that sends a byte a second, or
trickles its headers, never trips them, and a whole-answer `total` would cut off a large
shard on an honest slow link. So each answer is bounded twice: its headers must come within
`remote.READ_TIMEOUT` (shared by the requests of one `remote.answer_bound`, as fsspec asks a
file's size with HEAD and then again with GET), and its body must keep up `remote.MIN_RATE`
bytes a second, averaged from the request, once READ_TIMEOUT has passed. The limits are read
from `remote` at each request, so a test can lower them.

Imported only when a URL is read: aiohttp is not needed to start etlkit.
"""

import asyncio
import time

import aiohttp

from . import remote


class TooSlow(Exception):  # noqa: N818 - what the server was, as the error line says
    """A body that stopped after `received` bytes in `seconds`: slower than remote.MIN_RATE,
    or `stalled`: nothing more for READ_TIMEOUT seconds."""

    def __init__(self, received: int, seconds: float, stalled: bool = False):
        super().__init__(f"{received} bytes in {seconds:.0f} s")
        self.received, self.seconds, self.stalled = received, seconds, stalled


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
        self.content = _RateBound(self.content, asked)
        return self


class _RateBound:
    """A response body (aiohttp's StreamReader) whose reads stop with TooSlow once the bytes
    received fall below MIN_RATE a second since `asked`, after READ_TIMEOUT seconds."""

    def __init__(self, stream: aiohttp.StreamReader, asked: float):
        self._stream, self._asked, self._received = stream, asked, 0

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
        # the bytes so far buy time at MIN_RATE; never less than READ_TIMEOUT from the request
        deadline = self._asked + max(remote.READ_TIMEOUT, (self._received + 1) / remote.MIN_RATE)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())) as bound:
                data = await reading
        except TimeoutError:  # the rate's bound, or aiohttp's sock_read: no byte for a while
            raise TooSlow(self._received, time.monotonic() - self._asked,
                          stalled=not bound.expired()) from None
        self._received += len(data)
        return data


def client_options() -> dict:
    """fsspec's HTTP `client_kwargs`: a server that goes silent fails after READ_TIMEOUT
    seconds without a byte (not aiohttp's 5 minutes for a whole answer, which a large shard
    may need), and one that trickles as the module says."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=remote.READ_TIMEOUT,
                                    sock_read=remote.READ_TIMEOUT)
    return {"timeout": timeout, "response_class": _BoundedResponse}
