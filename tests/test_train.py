"""The trainer as users run it: real shards on disk, real JAX compilation, real CLI processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from assertions import one_error_line
from flax import nnx
from typer.testing import CliRunner

from etlkit.cli import app
from train import checkpoint, models
from train.augment import augment
from train.rundir import load_model
from train.steps import Steps

runner = CliRunner()


@pytest.fixture(scope="module")
def shards(hiragana_shards):
    return hiragana_shards


def _args(shards, out, *extra, epochs=3):
    return ["train", str(shards), "--out", str(out), "--model", "M6-1", "--epochs", str(epochs),
            "--log-every", "5", "--no-progress", *extra]


def _cli(args, env=None):
    """The real `etlkit` in a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "etlkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _lines(run, kind):
    text = (run / "metrics.jsonl").read_text()
    return [r for r in map(json.loads, text.splitlines()) if r["kind"] == kind]


def _final(run):
    """What must not depend on interruptions: every epoch's metrics and the test result."""
    keys = ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "best")
    epochs = [{k: r[k] for k in keys} for r in _lines(run, "epoch")]
    test = {k: v for k, v in _lines(run, "test")[0].items() if k != "compiles"}
    return epochs, test


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
    """An uninterrupted run that checkpoints after every step (for the resume test)."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    result = runner.invoke(app, _args(shards, out, "--checkpoint-minutes", "0"))
    assert result.exit_code == 0, result.output
    return out, result


def test_a_run_trains_logs_checkpoints_and_reports_test_accuracy(reference):
    out, result = reference
    test = _lines(out, "test")[0]
    assert f"test accuracy {test['test_accuracy']:.2%}" in result.stderr
    epochs = _lines(out, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and epochs[-1]["step"] == 3 * 14
    steps = [r["step"] for r in _lines(out, "train")]
    assert steps == sorted(steps) and {5, 10, 14, 15, 20, 25, 28}.issubset(steps)
    assert all(np.isfinite(r["loss"]) and r["images_per_s"] > 0 for r in _lines(out, "train"))
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]  # it learns
    config = json.loads((out / "config.json").read_text())
    assert config["parameters"] == models.count_params("M6-1", 75) == 4_279_275
    assert config["config"]["lr"] == 1e-4 and config["config"]["batch_size"] == 16
    assert (config["num_classes"], config["devices"], config["steps_per_epoch"]) == (75, 1, 14)
    # the best checkpoint is the model of the best validation epoch, and gives the test result
    best = max(epochs, key=lambda e: e["val_accuracy"])
    assert test["best_epoch"] == best["epoch"]
    assert checkpoint.peek_step(out / "checkpoints" / "best.msgpack") == best["step"]
    model, _ = load_model(out)
    from etlkit.shards import open_shards
    data = open_shards(config["config"]["shards"], "test").read()
    predicted = np.asarray(model(data["images"] / 255.0, train=False)).argmax(1)
    assert np.mean(predicted == data["labels"]) == pytest.approx(test["test_accuracy"])


def test_epochs_do_not_recompile(reference, shards, tmp_path):
    assert _lines(reference[0], "test")[0]["compiles"] == {"train": 1, "eval": 1, "calibrate": 1}
    # 14 steps in calls of 4 steps: 4 + 4 + 4 + 2, the short call compiled once for all epochs
    out = tmp_path / "scan"
    result = runner.invoke(app, _args(shards, out, "--steps-per-call", "4"))
    assert result.exit_code == 0, result.output
    assert _lines(out, "test")[0]["compiles"] == {"train": 2, "eval": 1, "calibrate": 1}
    for scanned, plain in zip(_lines(out, "epoch"), _lines(reference[0], "epoch"), strict=True):
        assert scanned["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-3)


def test_resume_after_a_kill_ends_with_the_same_metrics(reference, shards, tmp_path):
    out = tmp_path / "killed"
    args = _args(shards, out, "--checkpoint-minutes", "0")
    proc = _cli(args)
    deadline = time.monotonic() + 300
    # kill mid-epoch 2, once a mid-epoch checkpoint is on disk
    while proc.poll() is None and (checkpoint.peek_step(out / "checkpoints" / "latest.msgpack")
                                   or 0) < 18:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _lines(out, "test")  # it did not finish
    killed_at = checkpoint.peek_step(out / "checkpoints" / "latest.msgpack")
    assert 14 < killed_at < 42
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"resuming {out} at epoch 2, step {killed_at}" in result.stderr
    assert _final(out) == _final(reference[0])


def test_eight_devices_run_the_same_code(reference, shards, tmp_path):
    out = tmp_path / "eight"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    proc = _cli(_args(shards, out, "--checkpoint-minutes", "0"), env=env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "8 device(s)" in err
    assert json.loads((out / "config.json").read_text())["devices"] == 8
    # the global batch is split 2 per device; batch-norm statistics stay global, so the run
    # computes the same function (up to float summation order)
    for eight, one in zip(_lines(out, "epoch"), _lines(reference[0], "epoch"), strict=True):
        assert eight["val_loss"] == pytest.approx(one["val_loss"], rel=1e-3)
        assert eight["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)


def test_two_processes_train_one_model_through_jax_distributed(shards, tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "hosts"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    procs = [_cli(_args(shards, out, "--distributed", "--coordinator", f"localhost:{port}",
                        "--num-processes", "2", "--process-id", str(i), epochs=2), env=env)
             for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    # each process reads its own shards (100 + 25 and 100 records) in 12 steps of 8 images
    assert all("12 steps/epoch, 2 device(s)" in e for e in errs)
    config = json.loads((out / "config.json").read_text())
    assert (config["processes"], config["devices"]) == (2, 2)
    # one model: both processes report the same metrics, and only process 0 wrote the log
    finals = [[ln for ln in e.splitlines() if ln.startswith(("epoch", "test"))] for e in errs]
    assert finals[0] == finals[1] and len(finals[0]) == 3
    assert len(_lines(out, "epoch")) == 2 and len(_lines(out, "test")) == 1


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(shards,
                                                                               tmp_path):
    out = tmp_path / "nan"
    # epoch 1 at 1e-4, then the learning rate jumps to 1e32 and the weights overflow
    result = runner.invoke(app, _args(shards, out, "--lr-step-epochs", "1", "--lr-decay", "1e36"))
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "loss became nan" in lines[0], result.stderr
    assert f"{out / 'checkpoints' / 'latest.msgpack'} (step 14)" in lines[0]
    assert [e["epoch"] for e in _lines(out, "epoch")] == [1]
    model, _ = load_model(out, "latest")
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(model))


def test_early_stopping_follows_patience(shards, tmp_path):
    out = tmp_path / "patience"
    result = runner.invoke(app, _args(shards, out, "--patience", "1", "--lr", "1e-9", epochs=8))
    assert result.exit_code == 0, result.output
    epochs = _lines(out, "epoch")
    # training stops after the first epoch that does not beat the best so far
    first_miss = next(i for i, e in enumerate(epochs) if not e["best"])
    assert len(epochs) == first_miss + 1 < 8
    assert "early stop" in result.stderr


def test_bf16_with_augmentation(shards, tmp_path):
    out = tmp_path / "bf16"
    result = runner.invoke(app, _args(shards, out, "--precision", "bf16", "--augment", epochs=1))
    assert result.exit_code == 0, result.output
    (epoch,) = _lines(out, "epoch")
    assert np.isfinite(epoch["train_loss"]) and np.isfinite(epoch["val_loss"])
    assert json.loads((out / "config.json").read_text())["config"]["precision"] == "bf16"


def test_batch_norm_statistics_are_re_estimated_without_dropout():
    model = models.build("M6-1", 75, rngs=nnx.Rngs(0))
    steps = Steps(model, nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param), 0, False)
    rng = np.random.default_rng(0)
    batches = [jnp.asarray(rng.integers(0, 256, (8, 64, 64), dtype=np.uint8)) for _ in range(2)]
    kernel = np.asarray(model.conv_kernels()[0])  # the first conv: no dropout before its BN
    state = steps.recalibrate(steps.state, batches)  # donates steps.state
    means, variances = [], []
    for b in batches:
        x = jnp.asarray(b, jnp.float32)[..., None] / 255.0
        y = np.asarray(jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC")))
        means.append(y.mean(axis=(0, 1, 2)))
        variances.append(y.var(axis=(0, 1, 2)))
    bn = nnx.merge(steps.graphdef, state)[0].layers[0].bn
    np.testing.assert_allclose(bn.mean[...], np.mean(means, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], np.mean(variances, axis=0), rtol=1e-3, atol=1e-6)


def test_augmentation_is_a_random_affine_warp_plus_noise():
    images = np.zeros((4, 64, 64), np.float32)
    images[:, 20:44, 28:36] = 1.0  # a bar
    a = np.asarray(augment(images, jax.random.key(1)))
    assert a.shape == images.shape and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, np.asarray(augment(images, jax.random.key(1))))
    assert not np.array_equal(a, np.asarray(augment(images, jax.random.key(2))))
    # the ink moves but is kept (zoom 0.9-1.1 changes its area by at most ~20 %)
    assert not np.allclose(a, images, atol=0.2)
    ink = (a > 0.5).sum(axis=(1, 2)) / (images > 0.5).sum(axis=(1, 2))
    assert np.all((ink > 0.7) & (ink < 1.3))


@pytest.mark.parametrize("extra, needle", [
    (["--model", "M99"], "unknown model"),
    (["--model", "CNN-93k"], "takes 28×28 images"),
    (["--precision", "fp8"], "--precision must be fp32 or bf16"),
    (["--batch-size", "1000"], "fewer than one batch of 1000"),
])
def test_bad_options_give_one_clear_line(shards, tmp_path, extra, needle):
    one_error_line(runner.invoke(app, [*_args(shards, tmp_path / "bad"), *extra]), needle)


def test_a_run_folder_is_not_overwritten_and_resume_must_repeat_the_options(reference,
                                                                             shards):
    out = reference[0]
    result = runner.invoke(app, _args(shards, out))
    assert result.exit_code == 1 and "pass --resume" in result.stderr
    result = runner.invoke(app, [*_args(shards, out, "--lr", "0.01"), "--resume"])
    assert result.exit_code == 1 and "lr (run: 0.0001, now: 0.01)" in result.stderr
