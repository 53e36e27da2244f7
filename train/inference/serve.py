"""`etlkit serve`: a local page to draw (or upload) a character and see the run's top 5 live.

The model and the run's framing are loaded once, the forward pass is compiled for one image and
warmed up before the first request; each POST /predict (a PNG or JPEG body) goes through the
same loading and preprocessing as `etlkit predict` and is answered
`{"top": [{"char", "sjis", "prob"}, ...]}`, or `{"error": "one line"}` with a 4xx status.
The server binds to loopback only and answers only requests addressed to a loopback name.

What a client can make it hold is bounded: at most `MAX_CONNECTIONS` connections are handled at
once (one more is answered 503 at once, unread), each request must arrive whole within
`READ_TIMEOUT` seconds however slowly its bytes trickle in (408 otherwise), and a body is at
most `MAX_BODY` bytes, so received bodies take at most MAX_CONNECTIONS × MAX_BODY (160 MB), plus
http.server's own limit on header lines (100 of 64 KB) per connection.
"""

import base64
import email.errors
import functools
import html
import io
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from etlkit.errors import EtlError
from etlkit.labels import sjis_hex

from ..reports.figures import label_image
from .predictor import Predictor

MAX_BODY = 5 << 20  # bytes of one uploaded image or drawing
TOP = 5
READ_TIMEOUT = 10  # seconds a client may take to send one request, headers and body
MAX_CONNECTIONS = 32  # handled at once; with MAX_BODY, they bound the bytes held (160 MB)
MAX_PIXELS = 4096 * 4096  # of an upload: its decoded pixels bound a request's memory
DECODERS = 2  # requests decoded at once, so memory stays bounded in total (~0.3 GB)
BUSY_WAIT = 30  # seconds a request waits for a decoder before it is answered 503
#: Sec-Fetch-Site values of a browser's request from this server's own page, or typed by
#: its user (none); same-site is another port or subdomain, refused as its Origin is
FROM_THIS_ORIGIN = ("same-origin", "none")
GLYPH = 48  # pixels: the height of the characters drawn for the page
PAGE = Path(__file__).with_name("static") / "draw.html"


def top(predictor: Predictor, data: bytes) -> list[dict]:
    """PNG or JPEG bytes -> the top-k as dicts with each class drawn as a PNG data URI (the page
    needs no CJK font); EtlError (one line, naming no file) when the bytes are not an image of
    one character."""
    try:
        image = predictor.image(data, "image", max_pixels=MAX_PIXELS)
    except EtlError as err:  # the page shows the message alone
        raise EtlError(str(err).removeprefix("image: ")) from None
    index, prob = predictor.top(image[None])
    return [{"char": char, "sjis": sjis_hex(code), "prob": p, "glyph": glyph_uri(char)}
            for char, code, p in predictor.ranked(index[0], prob[0])]


@functools.lru_cache(maxsize=4096)
def glyph_uri(char: str) -> str:
    """A class drawn as a PNG data URI, by the renderer the figures use."""
    buffer = io.BytesIO()
    label_image(char, GLYPH).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# C0 and C1 control characters as \\xNN and the backslash doubled, as http.server writes its log
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {ord("\\"): "\\\\"}


def log_line(text: str) -> None:
    """Write one line to stderr with its control characters escaped: a request line or an error
    message carries a client's bytes, which must not drive the terminal (escape sequences)."""
    sys.stderr.write(text.translate(_CONTROL) + "\n")


def busy_answer() -> bytes:
    """The 503 a connection over MAX_CONNECTIONS gets, written before its request is read."""
    body = json.dumps({"error": "busy: too many connections, try again"}).encode()
    return (f"HTTP/1.1 503 Service Unavailable\r\nServer: {Handler.server_version}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n\r\n").encode() + body


class DeadlineReader(io.RawIOBase):
    """A connection's bytes, each read given only the time left until the current request's
    deadline: a socket timeout alone restarts at every byte, so a client trickling one byte
    every few seconds would hold the connection (and its body buffer) for ever. At the deadline
    reads end as at the end of the stream and `expired` is set, for the handler to answer 408."""

    def __init__(self, sock: socket.socket):
        self.sock, self.deadline, self.expired = sock, time.monotonic(), False

    def start(self, seconds: float) -> None:
        self.deadline, self.expired = time.monotonic() + seconds, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            return 0
        timeout = self.sock.gettimeout()  # the one writes keep
        self.sock.settimeout(left)
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            return 0
        finally:
            self.sock.settimeout(timeout)


def loopback(host: str) -> str:
    """The host, when it names a loopback address; EtlError otherwise."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        addresses = set()
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                for a in addresses):
        raise EtlError(f"--host {host}: the server only listens on this machine (127.0.0.1, ::1 "
                       "or localhost); it has no authentication to be reachable from others")
    return host


def _host_is_local(header: str | None) -> bool:
    """Whether a Host header names this machine (guards against DNS rebinding)."""
    if not header:
        return False
    name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    if header.startswith("["):
        name = header[1 : header.index("]")] if "]" in header else header
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server: "Server"
    server_version = "etlkit-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # the version a refusal is written in when the request line could not be read: HTTP/0.9,
    # http.server's default, has no status line, so the client would see no error code
    default_request_version = "HTTP/1.1"
    timeout = READ_TIMEOUT  # of each write; reads have the request's deadline (DeadlineReader)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # http.server's reader, replaced by one that keeps the deadline
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        self.reader.start(self.server.read_timeout)  # waiting for the request line counts too
        super().handle_one_request()

    def _too_slow(self) -> bool:
        self._error(HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive within "
                    f"{self.server.read_timeout:g} s", True)
        return False

    def _send(self, status: int, body: bytes, kind: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: dict, close: bool = False) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode(),
                   "application/json; charset=utf-8", close)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        self._json(status, {"error": message}, close)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """http.server's own refusals (a malformed request line, an unknown method, headers
        too long) as one-line JSON too."""
        self._error(code, message or HTTPStatus(code).phrase, close=True)

    def parse_request(self) -> bool:
        """http.server's parse, then a refusal of header lines it would read wrongly: a line
        without a colon silently ends the headers (those after it are lost, a Content-Length
        among them), and a folded line (RFC 9112 forbids obs-fold) joins two lines. A request
        line or headers cut off by the deadline get 408; one empty line before the request line
        is skipped (RFC 9112 2.2), and a request line still empty gets 400 (http.server closed
        the connection without an answer)."""
        if self.raw_requestline in (b"\r\n", b"\n"):
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline and not self.reader.expired:  # the client hung up
                self.close_connection = True
                return False
        # what http.server sets first, for the log line of a refusal sent before its parse
        self.command, self.request_version = None, self.default_request_version
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if self.reader.expired:
            return self._too_slow()
        if not self.requestline.split():  # http.server closes without an answer
            self.send_error(HTTPStatus.BAD_REQUEST, "empty request line")
            return False
        if not super().parse_request():
            return False
        if self.reader.expired:
            return self._too_slow()
        # a line without a colon ends the parse there (what follows becomes a "body"); other
        # defects are about a body the headers announce (a multipart without its boundary)
        if self.headers.get_payload() or any(
                isinstance(d, email.errors.MissingHeaderBodySeparatorDefect)
                for d in self.headers.defects):
            self.send_error(HTTPStatus.BAD_REQUEST, "a header line has no colon")
            return False
        if any("\n" in value for value in self.headers.values()):
            self.send_error(HTTPStatus.BAD_REQUEST, "a header is folded over two lines")
            return False
        expect = self.headers.get("Expect")
        if expect is not None and expect.strip().lower() != "100-continue":  # RFC 9110 10.1.1
            self.send_error(HTTPStatus.EXPECTATION_FAILED, f"cannot meet Expect: {expect[:40]}")
            return False
        return True

    def _local(self) -> bool:
        if _host_is_local(self.headers.get("Host")):
            return True
        self._error(HTTPStatus.FORBIDDEN, "requests must be addressed to localhost", True)
        return False

    def _same_origin(self) -> bool:
        """A POST from another site's page (its Origin is not this server, or the browser's
        Sec-Fetch-Site says it comes from elsewhere) is refused: a page on the web must not use
        this local model through the visitor's browser. Clients that send neither header
        (curl, scripts) are not pages."""
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            self._error(HTTPStatus.FORBIDDEN,
                        f"cross-origin request from {origin[:80]!r} refused", True)
            return False
        for site in self.headers.get_all("Sec-Fetch-Site", []):
            if site.strip().lower() not in FROM_THIS_ORIGIN:
                self._error(HTTPStatus.FORBIDDEN, "cross-origin request (Sec-Fetch-Site: "
                            f"{site[:40]!r}) refused", True)
                return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self._local():
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no page {path}")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self._local() or not self._same_origin():
            return
        if self.path.split("?", 1)[0] != "/predict":
            self._error(HTTPStatus.NOT_FOUND, f"no page {self.path}", True)
            return
        repeated = [h for h in ("Content-Length", "Transfer-Encoding", "Host", "Origin")
                    if len(self.headers.get_all(h, [])) > 1]
        if repeated:  # two lengths or hosts: which one a proxy used is anybody's guess
            self._error(HTTPStatus.BAD_REQUEST, f"the {repeated[0]} header is repeated", True)
            return
        if self.headers.get_content_maintype() == "multipart":  # curl -F, an HTML form
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the image's bytes as the "
                        "body (curl --data-binary @FILE), not a form", True)
            return
        if self.headers.get("Transfer-Encoding"):
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length, not "
                        "chunked", True)
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required", True)
            return
        if not re.fullmatch(r"[0-9]{1,12}", length.strip()):  # ASCII digits: int() takes more
            self._error(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {length[:40]!r}", True)
            return
        size = int(length)
        if size > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"{size / 2**20:.1f} MB, more than the {MAX_BODY >> 20} MB an image of "
                        "one character needs", True)
            return
        if size == 0:
            self._error(HTTPStatus.BAD_REQUEST, "empty image")
            return
        data = self.rfile.read(size)
        if self.reader.expired:
            self._too_slow()
            return
        if len(data) < size:
            self._error(HTTPStatus.BAD_REQUEST, f"the request ended after {len(data)} of its "
                        f"{size} bytes", True)
            return
        if not self.server.decoders.acquire(timeout=BUSY_WAIT):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "busy: try again", True)
            return
        try:
            answer = top(self.server.predictor, data)
        except EtlError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        finally:
            self.server.decoders.release()
        self._json(HTTPStatus.OK, {"top": answer})

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        if not self.server.quiet:
            log_line(f"{self.address_string()} {format % args}")


class Server(ThreadingHTTPServer):
    """The page and /predict, one thread per connection, at most `max_connections` of them at
    once, each request to arrive within `read_timeout` seconds (a test lowers both)."""

    daemon_threads = True
    request_queue_size = 128  # connections waiting to be accepted (the default, 5, drops a burst)

    def __init__(self, address, predictor: Predictor, quiet: bool = False,
                 read_timeout: float = READ_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        families = {info[0] for info in socket.getaddrinfo(address[0], None)}
        if socket.AF_INET not in families:  # ::1
            self.address_family = socket.AF_INET6
        self.predictor, self.quiet, self.read_timeout = predictor, quiet, read_timeout
        self.connections = threading.BoundedSemaphore(max_connections)
        self.decoders = threading.BoundedSemaphore(DECODERS)
        doc = predictor.doc
        about = (f"run {predictor.root.resolve().name}: {doc['config']['model']} on "
                 f"{doc.get('task') or 'its dataset'}, {len(predictor.classes)} classes")
        self.page = PAGE.read_text("utf-8").replace("<!--RUN-->", html.escape(about)).encode()
        super().__init__(address, Handler)

    def process_request(self, request, client_address) -> None:
        """A thread for the connection while fewer than max_connections are open; otherwise a
        503 sent without reading anything (non-blocking: this is the accepting thread)."""
        if self.connections.acquire(blocking=False):
            try:
                super().process_request(request, client_address)
            except BaseException:  # no thread started: none will release the slot
                self.connections.release()
                raise
            return
        try:
            request.setblocking(False)
            request.send(busy_answer())
        except OSError:  # its buffer full or the client gone: closing is answer enough
            pass
        if not self.quiet:
            log_line(f"{client_address[0]} busy: connection refused with 503")
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def handle_error(self, request, client_address) -> None:
        """One line, never a traceback: clients that hang up or stall are not the server's
        fault, and anything else is reported without its stack."""
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):
            return
        log_line(f"error: request from {client_address[0]}: {type(err).__name__}: {err}")


def make_server(run: str | Path, host: str = "127.0.0.1", port: int = 8000,
                which: str = "best", quiet: bool = False) -> Server:
    """The loaded, warmed-up server, bound but not yet serving (port 0: a free port)."""
    loopback(host)
    if not 0 <= port <= 65535:
        raise EtlError(f"--port {port}: not a port number (0-65535)")
    predictor = Predictor(run, which, TOP)
    predictor.top(np.zeros((1, predictor.frame.size, predictor.frame.size), np.uint8))  # compile
    try:
        return Server((host, port), predictor, quiet)
    except OSError as err:
        raise EtlError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def url(server: Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
