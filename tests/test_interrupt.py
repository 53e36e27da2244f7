"""Ctrl-C stops a long command within about a second, every time, with one `error:` line and
exit status 130 (a KeyboardInterrupt landing in a finalizer used to be swallowed, and the
extraction went on to exit 0); `train`'s line says how to resume."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from servers import http_folder
from typer.testing import CliRunner

from etlkit.cli import app

INTERRUPTED = 130


def _interrupt_when(args, marker: str) -> tuple[int, str, float]:
    """Start `etlkit ARGS`, send SIGINT once stderr shows `marker`; (status, stderr, seconds
    from the signal to the exit)."""
    process = subprocess.Popen([sys.executable, "-m", "etlkit", *args], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if marker in line:
            break
    else:
        pytest.fail(f"{marker!r} never shown: {''.join(seen)}")
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        rest = process.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running 60 s after Ctrl-C: {''.join(seen)}")
    return process.returncode, "".join(seen) + rest, time.monotonic() - sent


def _python(code: str) -> subprocess.CompletedProcess:
    """`code` run by a fresh interpreter, its output captured."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_ctrl_c_stops_extract_in_pass_2_every_time(hiragana_shards, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    records = np.fromfile(hiragana_shards.parent / "raw" / "ETL8G_01", np.uint8).reshape(-1, 8199)
    for n in range(1, 9):  # eight writer-major files: a pass 2 of about 35,000 images
        records[:, 12] = n  # serial data numbers of each file's own: extract refuses repeats
        records.tofile(raw / f"ETL8G_{n:02d}")
    for attempt in range(3):
        status, err, seconds = _interrupt_when(
            ["extract", str(raw), "--task", "kanji", "--out", str(tmp_path / f"out{attempt}")],
            "pass 2: ETL8G_02")
        assert status == INTERRUPTED, err
        assert err.splitlines()[-1] == "error: interrupted" and "Traceback" not in err
        assert seconds < 5, seconds  # the watchdog's half second, plus a loaded machine's lag


def test_ctrl_c_just_after_the_dataset_is_in_place_says_it_is_complete(tmp_path):
    """A real SIGINT sent by an audit hook on the first file operation after manifest.json is
    renamed into place (the empty staging folder's removal), before the `wrote` line: the
    command used to say only "interrupted" of a complete dataset."""
    out = tmp_path / "digits"
    code = ("import os, signal, sys\n"
            "renamed = []\n"
            "def hook(event, args):\n"
            "    if event == 'os.rename' and str(args[1]).endswith('manifest.json'):\n"
            "        renamed.append(args[1])\n"
            "    elif renamed and event == 'os.rmdir':\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.addaudithook(hook)\n"
            "from etlkit.entry import main\n"
            "sys.argv = ['etlkit', 'extract', '--dataset', 'sklearn-digits', '--out',"
            f" {str(out)!r}]\n"
            "main()\n")
    result = _python(code)
    assert result.returncode == INTERRUPTED, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: interrupted after {out} was written in full (etlkit verify {out} checks it)")
    assert "wrote" not in result.stdout
    verified = subprocess.run([sys.executable, "-m", "etlkit", "verify", str(out)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the same command again keeps it (it used to say "already holds a dataset; --force")
    again = CliRunner().invoke(app, ["extract", "--dataset", "sklearn-digits", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"kept {out} (already there): task sklearn-digits")


def test_a_ctrl_c_a_worker_thread_takes_stops_verify_of_a_url_at_once(digits_shards):
    """Hostile pass 9, K3: the kernel may hand SIGINT to any thread. Here it is sent to every
    thread but the main one (the hash pool's, fsspec's event loop) while a shard streams in at
    1 kB/s: the main thread waited on the hash pool untimed, so Python's handler never ran and
    Ctrl-C was ignored until the server was given up on a minute later."""
    code = ("import os, signal, sys, threading, time\n"
            "def interrupt_the_other_threads():\n"
            "    while not any(t.name.startswith('ThreadPoolExecutor')\n"
            "                  for t in threading.enumerate()):\n"
            "        time.sleep(0.02)\n"
            "    time.sleep(0.3)  # the hash under way\n"
            "    for t in threading.enumerate():\n"
            "        if t not in (threading.main_thread(), threading.current_thread()):\n"
            "            signal.pthread_kill(t.ident, signal.SIGINT)\n"
            "threading.Thread(target=interrupt_the_other_threads, daemon=True).start()\n"
            "from etlkit.entry import main\n"
            "sys.argv = ['etlkit', 'verify', sys.argv[1]]\n"
            "main()\n")
    with http_folder(digits_shards) as server:
        try:
            result = subprocess.run([sys.executable, "-c", code, f"{server.url}/slow"],
                                    capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C ignored: still running 15 s later")
    assert (result.returncode, result.stderr) == (INTERRUPTED, "error: interrupted\n")


def test_ctrl_c_stops_train_and_says_how_to_resume(digits_shards, tmp_path):
    out = tmp_path / "run"
    # a thousand epochs of about 0.1 s each: still training when the signal comes
    status, err, _ = _interrupt_when(["train", str(digits_shards), "--out", str(out),
                                      "--model", "FF-baseline", "--no-progress",
                                      "--epochs", "1000"],
                                     "training FF-baseline")
    assert status == INTERRUPTED, err
    assert err.splitlines()[-1] == (f"error: interrupted; the same command with --resume "
                                    f"continues {out} from its latest checkpoint")


def test_ctrl_c_during_the_exit_after_a_command_ends_the_process_by_the_signal():
    """A Ctrl-C that lands after the command's work, in an exit hook (where JAX's run), used
    to be printed as "Exception ignored" and end with status 0. Here an exit hook sends the
    SIGINT itself, then would take five seconds."""
    code = ("import atexit, os, signal, sys, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n"
            "from etlkit.entry import main\n"
            "sys.argv = ['etlkit', '--version']\n"
            "main()\n")
    start = time.monotonic()
    result = _python(code)
    assert result.returncode == -signal.SIGINT, result.stderr
    assert result.stdout.startswith("etlkit ") and result.stderr == ""
    assert time.monotonic() - start < 5


def test_ctrl_c_before_the_work_starts_is_one_line_and_status_130(digits_shards, tmp_path):
    """A real SIGINT 0.2 s after the entry point starts: `train` is still importing JAX, before its
    own Ctrl-C handling. That used to end with status 130 and nothing said."""
    code = ("import os, signal, sys, threading\n"
            "from etlkit.entry import main\n"
            "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            f"sys.argv = ['etlkit', 'train', {str(digits_shards)!r}, '--model', 'FF-baseline',"
            f" '--out', {str(tmp_path / 'run')!r}]\n"
            "main()\n")
    result = _python(code)
    assert result.returncode == INTERRUPTED, result.stderr
    assert result.stderr.splitlines() == ["error: interrupted"], result.stderr
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_the_command_loads_is_one_line_and_status_130():
    """A real SIGINT 20 ms after the entry point starts, while it imports numpy, typer and
    the CLI: that used to be a KeyboardInterrupt traceback from the import."""
    code = ("import os, signal, sys, threading\n"
            "from etlkit.entry import main\n"
            "threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            "sys.argv = ['etlkit', '--version']\n"
            "main()\n")
    result = _python(code)
    assert (result.returncode, result.stdout, result.stderr) == (
        INTERRUPTED, "", "error: interrupted\n")


def test_ctrl_c_stops_serve_with_one_line_and_status_130(digits_run):
    """Ctrl-C is how `serve` is stopped; it used to end with status 0 and nothing said, unlike
    every other command."""
    status, err, seconds = _interrupt_when(["serve", str(digits_run), "--port", "0"],
                                           "serving http://")
    assert status == INTERRUPTED, err
    assert err.splitlines()[-1] == "error: stopped by Ctrl-C" and "Traceback" not in err
    assert seconds < 5, seconds


def test_a_ctrl_c_swallowed_by_a_finalizer_still_ends_the_command_with_130():
    """The interrupt lands in a weakref or __del__ finalizer, which prints "Exception ignored"
    and goes on; the command then finished with status 0 when its work was short enough to
    end before the half-second watchdog."""
    code = ("import os, signal, sys\n"
            "from etlkit.cli import _reported\n"
            "class Finalized:\n"
            "    def __del__(self):\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "        sum(range(100_000))  # the handler runs here, inside the finalizer\n"
            "with _reported():\n"
            "    Finalized()\n"
            "print('finished')\n")
    result = _python(code)
    assert result.returncode == INTERRUPTED, result.stderr
    # nothing but the line: the finalizer's "Exception ignored ... KeyboardInterrupt" report
    # is not printed either
    assert (result.stderr, result.stdout) == ("error: interrupted\n", "")
