"""Local servers the remote-dataset tests (and benchmarks/remote.py) read from: never the internet.

`http_folder` serves a folder over HTTP with HEAD and single byte-range GETs (the stdlib's
SimpleHTTPRequestHandler ignores Range, so every read would fetch the whole file) and counts the
body bytes it sends and the files asked for (`/cut/PATH`: PATH, but a shard's body only half
sent, then silence with the connection held open; `/slow/PATH`: PATH, a shard's body sent at
1 kB/s (the bytes sent so far in `.trickled`); `/broken/PATH`, or every shard once the server's
`breaking` is set: half of it, then the connection closed; `/mixed/PATH`: train shards as /slow/,
the others as /broken/; `/endless/PATH`: a shard's GET answered 206 with no length and ENDLESS
bytes of zeros, more than any read asks; `/short/PATH`: a shard's range answered 206 with the
first half of the range asked, its headers saying so, as RFC 9110 allows; `/nosize/PATH`: a
shard's size stated nowhere, neither in a Content-Length nor in a Content-Range).
`misbehaving_server` trickles, fails and redirects in a loop. `s3_server` starts moto's S3
server, `upload` copies a folder into a bucket of it.
"""

import http.server
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

#: Bytes an /endless/ answer sends (then closes): enough that reading it whole is plain to see.
ENDLESS = 64 << 20


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    root: Path  # set per server by http_folder

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        relative = unquote(urlparse(self.path).path).lstrip("/")
        route, _, rest = relative.partition("/")
        route = route if route in ("cut", "slow", "broken", "endless", "mixed", "short",
                                   "nosize") else ""
        relative = rest if route else relative
        shard = relative.endswith(".h5")
        route = "broken" if shard and self.server.breaking else route if shard else ""
        if route == "mixed":
            route = "slow" if "/train/" in f"/{relative}" else "broken"
        with self.server.lock:
            self.server.asked[relative] += 1
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, stop, status = 0, size, 200
        asked = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if asked and (asked[1] or asked[2]):
            if asked[1]:
                start = int(asked[1])
                stop = min(size, int(asked[2]) + 1) if asked[2] else size
            else:  # the last N bytes
                start = max(0, size - int(asked[2]))
            status = 206
        if route == "endless" and body:
            self.send_response(206)
            self.end_headers()
            self._send(ENDLESS)
            return
        if route == "short" and status == 206:
            stop = start + max(1, (stop - start) // 2)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if route != "nosize":  # without: the body ends where the connection closes (HTTP/1.0)
            self.send_header("Content-Length", str(stop - start))
        if status == 206:
            stated = "*" if route == "nosize" else size
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{stated}")
        self.end_headers()
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(stop - start)
            data = data[:len(data) // 2] if route in ("cut", "broken") else data
            step = 100 if route == "slow" else max(len(data), 1)
            try:
                for at in range(0, len(data), step):
                    self.wfile.write(data[at:at + step])
                    if route == "slow":
                        self.wfile.flush()
                        with self.server.lock:
                            self.server.trickled[relative] += len(data[at:at + step])
                        time.sleep(0.1)
            except OSError:  # the client gave up on a slow answer
                return
            with self.server.lock:
                self.server.sent += len(data)
            if route == "cut":
                self.wfile.flush()
                self.rfile.read()  # the connection held open until the client gives up

    def _send(self, size: int) -> None:
        """`size` bytes of zeros, or fewer where the client closes first."""
        zeros = bytes(1 << 16)
        try:
            for _ in range(size // len(zeros)):
                self.wfile.write(zeros)
                with self.server.lock:
                    self.server.sent += len(zeros)
        except OSError:  # the client stopped reading
            return

    def log_message(self, *args) -> None:  # quiet
        pass


@contextmanager
def http_folder(root: Path):
    """Serve `root` at http://127.0.0.1:PORT; yields the server: `.url`, `.sent` (body bytes
    sent so far), `.asked` (requests per path, relative to `root`), `.breaking` (set: every
    shard's answer breaks off, as /broken/ does)."""
    handler = type("Handler", (_RangeHandler,), {"root": Path(root)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.sent, server.asked, server.lock = 0, Counter(), threading.Lock()
    server.breaking, server.trickled = False, Counter()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


#: Credentials and endpoint a client needs for the moto server (set them in os.environ).
def s3_environment(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}


@contextmanager
def s3_server():
    """moto's S3 server on a free local port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def upload(endpoint: str, folder: Path, bucket: str, prefix: str) -> str:
    """Every file under `folder` into s3://bucket/prefix/ (bucket created if new); returns the
    dataset's URL."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, **_keys())
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")
    return f"s3://{bucket}/{prefix}"


def _keys() -> dict:
    env = s3_environment("")
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "region_name": env["AWS_DEFAULT_REGION"]}


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """/trickle: a 1 MB answer sent a byte every 50 ms; /burst: 20 kB of it at once, then a
    byte every 50 ms; /cut: 100 bytes of it, then silence with the connection held open;
    /status/N: status N; /loop: a redirect to itself."""

    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = urlparse(self.path).path
        if path.startswith(("/trickle", "/burst", "/cut")):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            first = {"/b": 20_000, "/c": 100}.get(path[:2], 0)
            try:
                if body:
                    self.wfile.write(b" " * first)
                    self.wfile.flush()
                while body and not path.startswith("/cut"):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
                if body:
                    self.rfile.read()  # until the client gives up and closes
            except OSError:  # the client gave up
                return
        elif path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            status = re.fullmatch(r"/status/(\d+)(/.*)?", path)
            self.send_response(int(status[1]) if status else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


@contextmanager
def misbehaving_server():
    """A server that answers as `_Misbehaving` says, at http://127.0.0.1:PORT: yields that URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
