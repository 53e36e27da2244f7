"""Dataset locations: a local folder, or a URL (https://, http://, s3://, gs://) read through
fsspec, so the same shards serve a laptop, a web server and a bucket.

A remote shard is opened as an fsspec file with a block cache of BLOCK_SIZE blocks (the size of
one HDF5 chunk of 64×64 images) and handed to h5py, so a block read fetches the byte ranges of
the chunks it touches, never the whole shard. With `ETLKIT_CACHE=DIR`, whole files are kept in
DIR (fsspec's `filecache::`) and read from there on later runs. Credentials and endpoints are
fsspec's: s3fs reads the usual AWS variables and files (AWS_ENDPOINT_URL for a non-AWS server),
gcsfs Google's default credentials.
"""

import errno
import hashlib
import os
import posixpath
import re
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import fsspec
from fsspec.exceptions import FSTimeoutError
from fsspec.implementations.cached import CachingFileSystem

from .errors import EtlError

#: URL schemes read through fsspec (s3 needs the [s3] extra, gs the [gcs] extra).
SCHEMES = ("http", "https", "s3", "gs")
#: Bytes fetched per range request and kept per block: one 64×64 chunk of 256 images (1 MiB).
BLOCK_SIZE = 1 << 20
#: Blocks kept per open shard (32 MiB), so a window of block reads stays in memory.
CACHED_BLOCKS = 32
#: The most bytes `read_text` reads (a kanji manifest is a few MB): a larger file, such as a link
#: to /dev/zero or a server's endless answer, is refused rather than read until memory runs out.
TEXT_LIMIT = 1 << 26
#: Seconds a server may take to accept a connection, to answer a fetch (all its requests
#: together), or to send the next bytes of an answer; and the time a body has before MIN_RATE
#: is enforced (`http_bounds`).
READ_TIMEOUT = 60.0
#: Bytes a second a server must keep up over the last READ_TIMEOUT seconds, once READ_TIMEOUT
#: has passed: slower is a trickle that would hold a read for days (a 1 MB manifest at a byte a
#: second, or after a fast start), faster is a slow link that still brings a shard in.
MIN_RATE = 1024
#: Environment variable naming a folder that keeps whole remote files between runs.
CACHE_ENV = "ETLKIT_CACHE"
#: What a path whose symbolic links go round in a loop is.
LINK_LOOP = "a symbolic link loop, which leads to no file"

Where = str | Path  # a local path, or a URL given as a string


class ServerError(EtlError):
    """A URL's server answered so that its file cannot be read (silence, a refusal, an answer
    that broke off, no stated size): a fault of the server or the link, not of the file's
    bytes, so `verify` ends with it rather than calling a shard corrupt."""


def is_url(location: Where) -> bool:
    """Whether `location` is a URL with a scheme fsspec reads for us (not a local path)."""
    if isinstance(location, Path):
        return False
    scheme, sep, _ = str(location).partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def has_scheme(text: str) -> bool:
    """Whether `text` starts like a URL (`scheme://`), whatever the scheme."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) is not None


def check_location(location: str) -> str:
    """A dataset location as typed: a URL with a known scheme (in any case) and a host, or a
    local path. A string with another scheme, or a URL without a host (`http://`, `s3://`),
    is refused in one line rather than looked for as a folder (as_location strips `http://`
    to `http:`)."""
    scheme, sep, _ = location.partition("://")
    if sep and scheme.lower() not in SCHEMES:
        raise EtlError(f"{location}: unknown URL scheme {scheme!r}; etlkit reads "
                       f"{', '.join(s + '://' for s in SCHEMES)} or a local folder")
    if sep:
        try:
            host = urlsplit(location).hostname
        except ValueError as err:  # `http://[::1`: an address left open
            raise EtlError(f"{location}: not a valid URL ({err})") from None
        if not host:
            raise EtlError(f"{location}: a URL needs a host")
    return location


def as_location(location: Where) -> Where:
    """A URL stays a string (Path would fold its `//`); anything else becomes a Path."""
    return str(location).rstrip("/") if is_url(location) else Path(location)


def join(root: Where, relative: str) -> Where:
    """`relative` (a manifest's `a/b.h5`) inside the dataset location `root`."""
    if is_url(root):
        return f"{str(root).rstrip('/')}/{relative}"
    return Path(root) / relative


def leaves_by_name(relative: str) -> bool:
    """A path that is not a relative one without `..` (or holds a NUL): outside any folder
    before a link is followed."""
    return "\0" in relative or Path(relative).is_absolute() or ".." in Path(relative).parts


def inside(root: Where, relative: str) -> bool:
    """A relative path without `..` that stays inside `root` (links followed, on a disk).
    A path whose links go round in a loop leads nowhere: one EtlError line naming it (Python
    3.11's Path.resolve would raise RuntimeError for it)."""
    if leaves_by_name(relative):
        return False
    if is_url(root):
        return True  # a URL has no links to follow
    root, path = Path(root), Path(root) / relative
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise EtlError(f"{path}: {LINK_LOOP}") from None
    return path.resolve().is_relative_to(root.resolve())


def _filesystem(url: str):
    """The fsspec filesystem and path of a URL (cached whole under ETLKIT_CACHE, if set)."""
    cache = os.environ.get(CACHE_ENV)
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()  # schemes are case-insensitive; fsspec knows only `http`, not `HTTP`
    url = f"{scheme}://{rest}"
    options = {}
    if scheme in ("http", "https"):
        from . import http_bounds  # aiohttp, imported only when a URL is read
        options = {"client_kwargs": http_bounds.client_options()}
    try:
        if cache:
            return fsspec.core.url_to_fs(f"filecache::{url}", filecache={"cache_storage": cache},
                                         **{scheme: options})
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as err:
        extra = {"s3": "s3", "gs": "gcs"}.get(scheme, "")
        hint = f"; pip install 'etlkit[{extra}]'" if extra else ""
        raise EtlError(f"{url}: cannot read this location ({err}){hint}") from None


#: When the server's answer to the current fetch must have come (`answer_bound`); None: each
#: request has READ_TIMEOUT. A context variable: fsspec runs the requests in its own thread,
#: in a copy of the asking thread's context.
_answer_deadline: ContextVar[float | None] = ContextVar("answer_deadline", default=None)
#: The most bytes a whole-file answer of the current fetch may bring (`answer_bound`); None: no
#: bound but the length the server states (a range request is bounded by its range).
_body_most: ContextVar[int | None] = ContextVar("body_most", default=None)
#: Set when the work the current fetch is part of has failed elsewhere (`sha256`'s `stop`: another
#: shard of the same verify): its reads end at the next bytes that come (`abandoned`).
_stop: ContextVar[threading.Event | None] = ContextVar("stop", default=None)


class Abandoned(Exception):  # noqa: N818 - what the read was
    """A read given up because the work it was part of failed elsewhere."""


def abandoned() -> bool:
    """Whether the current fetch's work has failed elsewhere, so its reads may stop."""
    stop = _stop.get()
    return stop is not None and stop.is_set()


@contextmanager
def answer_bound(most: int | None = None):
    """The requests made inside share READ_TIMEOUT for their answers: fsspec asks a file's size
    with HEAD and, if that fails, with GET, so a silent server took twice the time it was
    said to have. A whole-file answer brings at most `most` bytes (`http_bounds`)."""
    token = _answer_deadline.set(time.monotonic() + READ_TIMEOUT)
    most_token = _body_most.set(most)
    try:
        yield
    finally:
        _body_most.reset(most_token)
        _answer_deadline.reset(token)


def answer_time_left() -> float:
    """Seconds the current request may wait for the server's answer (its status and headers)."""
    deadline = _answer_deadline.get()
    return READ_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())


def body_bound() -> int | None:
    """The most bytes a whole-file answer of the current fetch may bring (None: no bound)."""
    return _body_most.get()


def _failed(url: str, err: Exception) -> ServerError:
    """One line naming the URL and what went wrong, whatever the filesystem raised."""
    from . import http_bounds
    if isinstance(err, http_bounds.TooSlow) and err.stalled:
        return ServerError(f"{url}: nothing from the server for {READ_TIMEOUT:g} s after "
                           f"{err.received} bytes")
    if isinstance(err, http_bounds.TooSlow):
        return ServerError(f"{url}: under {MIN_RATE / 1024:g} KiB/s from the server; "
                           f"stopped after {round(err.seconds, 1):g} s ({err.received} bytes)")
    if isinstance(err, http_bounds.TooMuch):
        return ServerError(f"{url}: the server sent more than the {err.most} bytes asked")
    if isinstance(err, http_bounds.BrokeOff):
        of = f" of {err.stated}" if err.stated is not None else ""
        return ServerError(f"{url}: the server's answer broke off after {err.received}{of} "
                           "bytes")
    if isinstance(err, (TimeoutError, FSTimeoutError)):  # aiohttp's are TimeoutErrors too
        return ServerError(f"{url}: no answer within {READ_TIMEOUT:g} s")
    if (said := _server_said(err)) is not None:
        return ServerError(f"{url}: {said}")
    detail = " ".join(str(err).split())[:200] or type(err).__name__
    if type(err).__module__.startswith("aiohttp") and not isinstance(err, OSError):
        # reached (aiohttp's connection errors are OSErrors) and answered badly
        return ServerError(f"{url}: the server's answer failed ({type(err).__name__}: {detail})")
    return ServerError(f"{url}: unreachable ({type(err).__name__}: {detail})")


def _server_said(err: Exception) -> str | None:
    """The HTTP status a server answered with, in words, where it refused (not 404 or 410,
    which say the file is not there)."""
    status = getattr(err, "status", None)
    if type(err).__name__ == "TooManyRedirects":  # aiohttp's, after 10 redirects
        return "too many redirects"
    if type(err).__module__.startswith("aiohttp") and isinstance(status, int) \
            and status not in (404, 410):
        return f"HTTP {status} from the server"
    return None


def _not_found(url: str, err: FileNotFoundError) -> Exception:
    """What fsspec's "not found" was: the file is not there (the error itself, for the caller
    to name), or the server never answered, or answered with an error status (one EtlError
    line): fsspec raises FileNotFoundError from whatever failed as it asked the file's size."""
    cause = err.__cause__
    if isinstance(cause, Exception) and (isinstance(cause, TimeoutError)
                                         or _server_said(cause) is not None
                                         or _never_answered(cause)):
        return _failed(url, cause)
    return err


def open_binary(url: str) -> BinaryIO:
    """A remote file opened for reading through a block cache (what h5py reads a shard from).

    Raises FileNotFoundError for a file that is not there; other failures to reach the URL, at
    the open or in any later read (an answer that breaks off, stalls or goes on past the bytes
    asked), are one EtlError line naming it."""
    fs, inner = _filesystem(url)
    try:
        with answer_bound(_whole_file_bound(url, fs, inner)):
            f = fs.open(inner, "rb", block_size=BLOCK_SIZE, cache_type="blockcache",
                        cache_options={"maxblocks": CACHED_BLOCKS})
    except FileNotFoundError as err:
        raise _not_found(url, err) from None
    except EtlError:
        raise
    except Exception as err:  # noqa: BLE001 - aiohttp, botocore and gcsfs raise their own types
        raise _failed(url, err) from None
    if getattr(f, "size", 0) is None:  # fsspec's HTTPStreamFile: read from the start only
        f.close()
        raise ServerError(f"{url}: the server states no size, so its byte ranges cannot be "
                          "read")
    return _NamedReads(f, url)


def _info(fs, inner: str) -> dict:
    """fsspec's details of a file (size, type) as the server gives them: under ETLKIT_CACHE
    from the filesystem the cache wraps (the cache's own `info` lists the parent folder, which a
    web server cannot, and calls every file missing)."""
    return (fs.fs if isinstance(fs, CachingFileSystem) else fs).info(inner)


def _whole_file_bound(url: str, fs, inner: str) -> int | None:
    """Under ETLKIT_CACHE a file is fetched whole, in one answer: it may bring no more than the
    size the server states (which it must state: an answer of no stated end would be written
    to the cache until the disk is full). None without a cache: each read is a range request,
    bounded by its range."""
    if not os.environ.get(CACHE_ENV):
        return None
    size = _info(fs, inner).get("size")
    if size is None:
        raise ServerError(f"{url}: the server states no size for it, so it "
                          f"cannot be kept in {CACHE_ENV}")
    return size


class _NamedReads:
    """An open remote file whose failed reads are one EtlError line naming its URL: h5py hands
    an exception from its file object's reads up as it is, and the transfer's own (aiohttp's,
    http_bounds') name no file."""

    def __init__(self, f: BinaryIO, url: str):
        self._f, self._url = f, url

    def __getattr__(self, name: str):
        return getattr(self._f, name)  # seek, tell, size, close: the file's own

    def read(self, size: int = -1) -> bytes:
        with self._named():
            return self._f.read(size)

    def readinto(self, buffer) -> int:
        """What h5py reads through. A server may answer a range with fewer bytes than asked
        (and say so consistently); fsspec passes the short answer on and h5py fills the rest
        with zeros, then fails on that as damaged metadata, or reads zeros as images: fewer
        bytes than the file holds from here is the server's fault, named as such."""
        with self._named():
            start = self._f.tell()
            got = self._f.readinto(buffer)
        size = getattr(self._f, "size", None)
        asked = len(memoryview(buffer).cast("B"))
        if size is not None and got < min(asked, size - start):
            raise ServerError(f"{self._url}: the server answered a byte range short "
                              f"({got} of the {min(asked, size - start)} bytes from byte "
                              f"{start} came)")
        return got

    @contextmanager
    def _named(self):
        try:
            yield
        except EtlError:
            raise
        except Exception as err:  # noqa: BLE001 - see open_binary
            raise _failed(self._url, err) from None

    def __enter__(self) -> "_NamedReads":
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def read_text(path: Where) -> str:
    """A small file's text (a manifest, a card, a run's config.json), local or remote. Raises
    FileNotFoundError and UnicodeDecodeError for the caller to name; a local path that is not a
    regular file (a FIFO would block, a device never end), or a file or answer of more than
    TEXT_LIMIT bytes, is one EtlError line naming it."""
    stated = None  # the length a server gives before anything is fetched
    if not is_url(path):
        path = Path(path)
        if path.exists() and not path.is_file():
            raise EtlError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            data = f.read(TEXT_LIMIT + 1)
    else:
        fs, inner = _filesystem(str(path))
        try:
            with answer_bound(TEXT_LIMIT + 1):  # the cache's whole-file fetch stops there too
                f = fs.open(inner, "rb")
            with f:
                stated = getattr(f, "size", None)
                # an answer of no stated length is read no further than the limit
                data = b"" if (stated or 0) > TEXT_LIMIT else _read_at_most(f, TEXT_LIMIT + 1)
        except FileNotFoundError as err:
            raise _not_found(str(path), err) from None  # not there: the caller names it
        except Exception as err:  # noqa: BLE001 - see open_binary
            raise _failed(str(path), err) from None
    if max(len(data), stated or 0) > TEXT_LIMIT:
        raise EtlError(f"{path}: larger than {TEXT_LIMIT >> 20} MiB, so not a file etlkit wrote")
    return data.decode("utf-8")


def _never_answered(cause: Exception) -> bool:
    """Whether an error under fsspec's "not found" is aiohttp's for a server it could not reach
    (a connection error has no HTTP status)."""
    return type(cause).__module__.startswith("aiohttp") and getattr(cause, "status", None) is None


def _read_at_most(f: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes of `f`: a stream's read can return fewer than asked before its end."""
    parts, left = [], size
    while left and (part := f.read(left)):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def is_file(path: Where) -> bool:
    """Whether a file is there (for a URL: the server answers for it)."""
    if not is_url(path):
        return Path(path).is_file()
    fs, inner = _filesystem(str(path))
    try:
        with answer_bound():  # fs.info, not fs.isfile, which says False for any failure
            return _info(fs, inner)["type"] == "file"
    except FileNotFoundError as err:
        if isinstance(failure := _not_found(str(path), err), EtlError):
            raise failure from None
        return False
    except Exception as err:  # noqa: BLE001 - see open_binary
        raise _failed(str(path), err) from None


def stated_size(path: Where) -> int | None:
    """The size in bytes of a file that is there: a URL's as its server states it (None where
    it does not say)."""
    if not is_url(path):
        return Path(path).stat().st_size
    fs, inner = _filesystem(str(path))
    try:
        with answer_bound():
            return _info(fs, inner).get("size")
    except Exception as err:  # noqa: BLE001 - see open_binary
        raise _failed(str(path), err) from None


def listing(root: Where, folder: str, pattern: str) -> list[str] | None:
    """Names matching `pattern` in `root/folder`; None where the location cannot be listed
    (a web server has no listing etlkit can rely on)."""
    if not is_url(root):
        return sorted(p.name for p in (Path(root) / folder).glob(pattern))
    if str(root).partition("://")[0].lower() in ("http", "https"):
        return None
    fs, inner = _filesystem(str(join(root, folder)))
    try:
        return sorted(posixpath.basename(p) for p in fs.glob(f"{inner}/{pattern}"))
    except FileNotFoundError:
        return []
    except Exception as err:  # noqa: BLE001 - see open_binary
        raise _failed(str(root), err) from None


def sha256(path: Where, chunk: int = 1 << 22, most: int | None = None,
           stop: threading.Event | None = None) -> str:
    """SHA-256 of a file, streamed in `chunk`-byte reads (a URL is read once, start to end).
    Raises FileNotFoundError for a file that is not there; a URL that fails mid-stream, or a
    file that goes on past `most` bytes (a server's endless answer of no stated size), is one
    EtlError line naming it. Once `stop` is set (another file of the same work failed) the
    reads end at the next bytes that come, with Abandoned: a slow server's shard is not read
    to its end for a result that is no longer wanted."""
    token = _stop.set(stop)
    try:
        return _sha256(path, chunk, most)
    finally:
        _stop.reset(token)


def _sha256(path: Where, chunk: int, most: int | None) -> str:
    """`sha256` within its `stop`."""
    h = hashlib.sha256()

    def update(blocks) -> None:
        total = 0
        for block in blocks:
            if abandoned():
                raise Abandoned(path)
            total += len(block)
            if most is not None and total > most:
                raise EtlError(f"{path}: more than {most} bytes, more than it can be; not read "
                               "further")
            h.update(block)

    if not is_url(path):
        with open(path, "rb") as f:
            update(iter(lambda: f.read(chunk), b""))
        return h.hexdigest()
    fs, inner = _filesystem(str(path))
    try:
        with answer_bound(_whole_file_bound(str(path), fs, inner)):
            f = fs.open(inner, "rb", block_size=chunk, cache_type="none")
        with f:
            update(iter(lambda: f.read(chunk), b""))
    except FileNotFoundError as err:
        raise _not_found(str(path), err) from None
    except (EtlError, Abandoned):
        raise
    except Exception as err:  # noqa: BLE001 - see open_binary
        if abandoned():  # the read's own Abandoned, as fsspec passes it on
            raise Abandoned(path) from None
        raise _failed(str(path), err) from None
    return h.hexdigest()
