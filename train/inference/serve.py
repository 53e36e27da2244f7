"""`etlkit serve`: a local page to draw (or upload) a character and see the run's top 5 live.

The model and the run's framing are loaded once, the forward pass is compiled for one image and
warmed up before the first request; each POST /predict (a PNG or JPEG body) goes through the
same loading and preprocessing as `etlkit predict` and is answered
`{"top": [{"char", "sjis", "prob"}, ...]}`, or `{"error": "one line"}` with a 4xx status.
The server binds to loopback only and answers only requests addressed to a loopback name.
"""

import base64
import functools
import html
import io
import ipaddress
import json
import re
import socket
import sys
import threading
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
READ_TIMEOUT = 10  # seconds a client may take to send its request
MAX_PIXELS = 4096 * 4096  # of an upload: its decoded pixels bound a request's memory
DECODERS = 2  # requests decoded at once, so memory stays bounded in total (~0.3 GB)
BUSY_WAIT = 30  # seconds a request waits for a decoder before it is answered 503
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
    timeout = READ_TIMEOUT

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
        among them), and a folded line (RFC 9112 forbids obs-fold) joins two lines."""
        if not super().parse_request():
            return False
        if self.headers.defects or self.headers.get_payload():
            self.send_error(HTTPStatus.BAD_REQUEST, "a header line has no colon")
            return False
        if any("\n" in value for value in self.headers.values()):
            self.send_error(HTTPStatus.BAD_REQUEST, "a header is folded over two lines")
            return False
        return True

    def _local(self) -> bool:
        if _host_is_local(self.headers.get("Host")):
            return True
        self._error(HTTPStatus.FORBIDDEN, "requests must be addressed to localhost", True)
        return False

    def _same_origin(self) -> bool:
        """A POST from another site's page (its Origin is not this server) is refused: a page
        on the web must not use this local model through the visitor's browser."""
        origin = self.headers.get("Origin")
        if origin is None or origin == f"http://{self.headers.get('Host')}":
            return True
        self._error(HTTPStatus.FORBIDDEN, f"cross-origin request from {origin[:80]!r} refused",
                    True)
        return False

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
        try:
            data = self.rfile.read(size)
        except TimeoutError:
            data = b""
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
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # connections waiting to be accepted (the default, 5, drops a burst)

    def __init__(self, address, predictor: Predictor, quiet: bool = False):
        families = {info[0] for info in socket.getaddrinfo(address[0], None)}
        if socket.AF_INET not in families:  # ::1
            self.address_family = socket.AF_INET6
        self.predictor, self.quiet = predictor, quiet
        self.decoders = threading.BoundedSemaphore(DECODERS)
        doc = predictor.doc
        about = (f"run {predictor.root.resolve().name}: {doc['config']['model']} on "
                 f"{doc.get('task') or 'its dataset'}, {len(predictor.classes)} classes")
        self.page = PAGE.read_text("utf-8").replace("<!--RUN-->", html.escape(about)).encode()
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        """One line, never a traceback: clients that hang up or stall are not the server's
        fault, and anything else is reported without its stack."""
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):
            return
        sys.stderr.write(f"error: request from {client_address[0]}: "
                         f"{type(err).__name__}: {err}\n")


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
