"""The trainer across processes, as users run it: killed and resumed, on several devices, on
several hosts; each a real `etlkit` subprocess."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from runs import run_events, train_args
from tensorboardX.proto.event_pb2 import SessionLog
from typer.testing import CliRunner

from etlkit.cli import app
from train.rundir import Run

runner = CliRunner()


@pytest.fixture(scope="module")
def shards(hiragana_shards):
    return hiragana_shards


@pytest.fixture(scope="module")
def reference(hiragana_run):
    """An uninterrupted run, the session's shared run, made with `train_args(shards, out)`:
    when checkpoints are written changes no metric, so a run killed and resumed from a
    checkpoint after any step must end with its metrics."""
    return hiragana_run


def _cli(args, env=None):
    """The real `etlkit` in a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "etlkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _final(run):
    """What must not depend on interruptions: every epoch's metrics and the test result."""
    keys = ("epoch", "step", "train/epoch_loss", "train/epoch_accuracy", "val/loss",
            "val/accuracy", "epoch/best")
    history = Run(run).history()
    epochs = [{k: r[k] for k in keys} for r in history.epochs]
    test = {k: v for k, v in history.test.items() if not k.startswith("compiles/")}
    return epochs, test


@pytest.mark.slow
def test_resume_after_a_kill_ends_with_the_same_metrics(reference, shards, tmp_path):
    out = tmp_path / "killed"
    args = train_args(shards, out, "--checkpoint-minutes", "0")
    proc = _cli(args)
    deadline = time.monotonic() + 300
    # kill mid-epoch 2, once a mid-epoch checkpoint is on disk
    while proc.poll() is None and (Run(out).checkpoint_step("latest") or 0) < 18:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Run(out).history().test is None  # it did not finish
    killed_at = Run(out).checkpoint_step("latest")
    assert 14 < killed_at < 28
    with open(out / "metrics.jsonl", "a") as f:  # as a kill in the middle of a line leaves it
        f.write('{"epoch": 2, "step": 27, "train/lo')
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"resuming {out} at epoch 2, step {killed_at}" in result.stderr
    assert _final(out) == _final(reference[0])
    # a second event file, which tells TensorBoard to drop what the killed run logged after
    # its checkpoint and then holds the rest of the run
    killed, resumed = run_events(out)
    assert [e.step for e in resumed if e.session_log.status == SessionLog.START] == [
        killed_at + 1]
    assert [e.step for e in resumed if e.summary.value][0] > killed_at


@pytest.mark.slow
def test_two_devices_run_the_same_code(reference, shards, tmp_path):
    out = tmp_path / "two"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    # with the progress bar on, as by default: stdout and stderr are pipes, not terminals, so
    # it draws nothing (it used to leave a blank line per epoch on stdout)
    proc = _cli(train_args(shards, out, epochs=1, progress=True), env=env)
    piped, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert piped == ""
    assert [ln.split(":")[0] for ln in err.splitlines() if ln.startswith("epoch")] == [
        "epoch 1/1"]
    assert "2 device(s)" in err
    assert json.loads((out / "config.json").read_text())["devices"] == 2
    # the global batch is split 8 per device; batch-norm statistics stay global, so the run
    # computes the same function (up to float summation order): the reference's first epoch
    (two,), one = Run(out).history().epochs, Run(reference[0]).history().epochs[0]
    assert two["val/loss"] == pytest.approx(one["val/loss"], rel=1e-3)
    assert two["train/epoch_loss"] == pytest.approx(one["train/epoch_loss"], rel=1e-3)


@pytest.mark.slow
def test_two_processes_train_one_model_through_jax_distributed(tmp_path):
    """FF-baseline on the digits in shards of 400 (train: 400, 400, 350), so that each
    process has shards of its own to read."""
    from etlkit.digits import Options, extract

    shards = tmp_path / "digits"
    extract([], shards, Options(dataset="sklearn-digits", shard_size=400))
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "hosts"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    procs = [_cli(train_args(shards, out, "--distributed", "--coordinator", f"localhost:{port}",
                             "--num-processes", "2", "--process-id", str(i), epochs=1,
                             model="FF-baseline"), env=env)
             for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    # each process reads its own shards (400 + 350 and 400 records) in 25 steps of 16 images
    assert all("25 steps/epoch, 2 device(s)" in e for e in errs), errs
    config = json.loads((out / "config.json").read_text())
    assert (config["processes"], config["devices"]) == (2, 2)
    # one model: both processes report the same metrics, and only process 0 wrote the log
    finals = [[ln for ln in e.splitlines() if ln.startswith(("epoch", "test"))] for e in errs]
    assert finals[0] == finals[1] and len(finals[0]) == 2
    history = Run(out).history()
    assert len(history.epochs) == 1 and history.test is not None
    assert sum(r.startswith("{") for r in (out / "metrics.jsonl").read_text().splitlines()) \
        == len(history.train) + 2
