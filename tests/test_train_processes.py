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

from train.rundir import Run


@pytest.fixture(scope="module")
def shards(hiragana_shards):
    return hiragana_shards


@pytest.fixture(scope="module")
def reference(hiragana_run):
    """An uninterrupted one-device run, the session's shared run, made with
    `train_args(shards, out)`."""
    return hiragana_run


def _cli(args, env=None):
    """The real `etlkit` in a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "etlkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_two_devices_killed_and_resumed_compute_the_one_device_run(reference, shards, tmp_path):
    """Data parallelism and resumption together, as on a multi-GPU machine: one process on two
    devices, killed mid-epoch and resumed on two devices again, computes what the reference
    computed on one device. The global batch is split 8 per device and batch-norm statistics
    stay global, so only the float summation order differs; a resumed run ends with the
    metrics of an uninterrupted one exactly (as tests/test_modern_recipe.py checks)."""
    out = tmp_path / "two"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    # a checkpoint every 0.6 s: a few mid-epoch ones (one per step writes 50 MB a step)
    args = train_args(shards, out, "--checkpoint-minutes", "0.01", epochs=1)
    proc = _cli(args, env=env)
    deadline = time.monotonic() + 300
    # kill mid-epoch 1 (14 steps), once a mid-epoch checkpoint is on disk
    while proc.poll() is None and (Run(out).checkpoint_step("latest") or 0) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert Run(out).history().test is None  # it did not finish
    killed_at = Run(out).checkpoint_step("latest")
    assert 0 < killed_at < 14
    with open(out / "metrics.jsonl", "a") as f:  # as a kill in the middle of a line leaves it
        f.write('{"epoch": 1, "step": 13, "train/lo')
    # with the progress bar on, as by default: stdout and stderr are pipes, not terminals, so
    # it draws nothing (it used to leave a blank line per epoch on stdout)
    resumed = _cli([*[a for a in args if a != "--no-progress"], "--resume"], env=env)
    piped, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert piped == ""
    assert f"resuming {out} at epoch 1, step {killed_at}" in err
    assert [ln.split(":")[0] for ln in err.splitlines() if ln.startswith("epoch")] == [
        "epoch 1/1"]
    assert "2 device(s)" in err
    assert json.loads((out / "config.json").read_text())["devices"] == 2
    (two,), one = Run(out).history().epochs, Run(reference[0]).history().epochs[0]
    for key in ("train/epoch_loss", "val/loss"):
        assert two[key] == pytest.approx(one[key], rel=1e-3)
    assert Run(out).history().test is not None
    # a second event file, which tells TensorBoard to drop what the killed run logged after
    # its checkpoint and then holds the rest of the run
    killed, resumed = run_events(out)
    assert [e.step for e in resumed if e.session_log.status == SessionLog.START] == [
        killed_at + 1]
    assert [e.step for e in resumed if e.summary.value][0] > killed_at


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
