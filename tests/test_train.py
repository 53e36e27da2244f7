"""The trainer as users run it: real shards on disk, real JAX compilation, real CLI processes."""

import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from assertions import one_error_line
from flax import nnx
from runs import run_events, train_args
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.errors import EtlError, EtlWarning
from train import checkpoint, models
from train.augment import augment
from train.rundir import Run, load_model
from train.steps import Steps

runner = CliRunner()


@pytest.fixture(scope="module")
def shards(hiragana_shards):
    return hiragana_shards


def _compiles(run):
    return {k: v for k, v in Run(run).history().test.items() if k.startswith("compiles/")}


def _scalars(run):
    """{tag: [(step, value)]} over all the run's event files."""
    scalars = {}
    for event in (e for events in run_events(run) for e in events):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.fixture(scope="module")
def reference(hiragana_run):
    """The session's shared run (M6-1 on hiragana, 2 epochs), made with
    `train_args(shards, out)`."""
    return hiragana_run


def test_a_run_trains_logs_checkpoints_and_reports_test_accuracy(reference):
    out, result = reference
    history = Run(out).history()
    test, epochs = history.test, history.epochs
    assert f"test accuracy {test['test/accuracy']:.2%}" in result.stderr
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[-1]["step"] == 2 * 14
    steps = [r["step"] for r in history.train]
    assert steps == sorted(steps) and {5, 10, 14, 15, 20, 25, 28}.issubset(steps)
    assert all(np.isfinite(r["train/loss"]) and r["train/images_per_s"] > 0
               for r in history.train)
    assert epochs[-1]["train/epoch_loss"] < epochs[0]["train/epoch_loss"]  # it learns
    config = json.loads((out / "config.json").read_text())
    assert config["parameters"] == models.count_params("M6-1", 75) == 4_279_275
    assert config["config"]["lr"] == 1e-4 and config["config"]["batch_size"] == 16
    assert (config["num_classes"], config["devices"], config["steps_per_epoch"]) == (75, 1, 14)
    # the best checkpoint is the model of the best validation epoch, and gives the test result
    best = max(epochs, key=lambda e: e["val/accuracy"])
    assert test["test/best_epoch"] == best["epoch"]
    assert Run(out).checkpoint_step("best") == best["step"]
    model, _ = load_model(out)
    from etlkit.shards import open_shards
    data = open_shards(config["config"]["shards"], "test").read()
    logits = nnx.jit(lambda m, x: m(x / 255.0, train=False))(model, data["images"])
    predicted = np.asarray(logits).argmax(1)
    assert np.mean(predicted == data["labels"]) == pytest.approx(test["test/accuracy"])


def test_tensorboard_events_hold_the_same_numbers(reference):
    out, _ = reference
    history, scalars = Run(out).history(), _scalars(out)
    assert scalars["test/accuracy"] == [(28, pytest.approx(history.test["test/accuracy"]))]
    assert scalars["val/loss"] == [(e["step"], pytest.approx(e["val/loss"]))
                                   for e in history.epochs]
    assert scalars["train/loss"] == [(r["step"], pytest.approx(r["train/loss"]))
                                     for r in history.train]
    assert scalars["epoch/best"] == [(e["step"], float(e["epoch/best"]))
                                     for e in history.epochs]


def test_a_dataset_without_a_test_split_is_trained_and_nothing_is_called_tested(untested_run):
    """No test records (extract --test-frac 0, or too few writers): train says the best model
    was not tested, rather than "test accuracy 0.00%"; its test record holds null for every
    test number, which TensorBoard leaves out, and evaluate refuses the empty split."""
    run, output = untested_run
    assert output.stderr.splitlines()[-1] == ("no test split: the best model (epoch 1) was not "
                                              "tested")
    assert "test accuracy" not in output.stderr
    test = Run(run).history().test
    assert [test[k] for k in ("test/loss", "test/accuracy", "test/top5", "test/best_epoch")] \
        == [None, None, None, 1]
    scalars = _scalars(run)
    assert "val/accuracy" in scalars
    assert sorted(k for k in scalars if k.startswith("test/")) == ["test/best_epoch"]
    one_error_line(runner.invoke(app, ["evaluate", str(run)]),
                   f"{json.loads((run / 'config.json').read_text())['dataset']}: split test is "
                   "empty")


@pytest.mark.slow
def test_epochs_do_not_recompile(reference, digits_shards, tmp_path):
    assert _compiles(reference[0]) == {"compiles/train": 1, "compiles/eval": 1,
                                       "compiles/calibrate": 1}
    # FF-baseline on the digits, 35 steps an epoch in calls of 4 steps: 8 × 4 + 3, the short
    # call compiled once for both epochs, which compute what single steps compute
    plain, scanned = tmp_path / "plain", tmp_path / "scan"
    for out, extra in ((plain, ()), (scanned, ("--steps-per-call", "4"))):
        result = runner.invoke(app, train_args(digits_shards, out, *extra, model="FF-baseline"))
        assert result.exit_code == 0, result.output
    assert _compiles(plain)["compiles/train"] == 1
    assert _compiles(scanned) == {**_compiles(plain), "compiles/train": 2}
    for fused, single in zip(Run(scanned).history().epochs, Run(plain).history().epochs,
                             strict=True):
        assert fused["val/loss"] == pytest.approx(single["val/loss"], rel=1e-3)


def test_bf16_with_augmentation(digits_shards, tmp_path):
    """A conv network computing in bf16 on distorted images trains from the CLI."""
    out = tmp_path / "bf16"
    result = runner.invoke(app, train_args(digits_shards, out, "--precision", "bf16", "--augment",
                                           epochs=1, model="CNN-93k"))
    assert result.exit_code == 0, result.output
    (epoch,) = Run(out).history().epochs
    assert np.isfinite(epoch["train/epoch_loss"]) and np.isfinite(epoch["val/loss"])
    assert epoch["val/accuracy"] > 0.3  # chance is 0.1
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["precision"], config["augment"]) == ("bf16", True)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
        digits_shards, tmp_path):
    out = tmp_path / "nan"
    # epoch 1 (35 steps) at 1e-3, then the learning rate jumps to 1e33 and the weights overflow
    result = runner.invoke(app, train_args(digits_shards, out, "--lr-step-epochs", "1",
                                           "--lr-decay", "1e36", model="FF-baseline"))
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "loss became nan" in lines[0], result.stderr
    # the cause named is the decay, warned about from the start (it blamed --lr)
    assert lines[0].endswith("; --lr-decay made the learning rate grow to 1e+33: keep it at "
                             "most 1"), lines[0]
    assert ("warning: --lr-decay 1e+36 is above 1: it multiplies the learning rate up every 1 "
            "epoch(s)\n") in result.stderr
    assert json.loads((out / "config.json").read_text())["steps_per_epoch"] == 35
    assert f"{out / 'checkpoints' / 'latest.msgpack'} (step 35)" in lines[0]
    assert [e["epoch"] for e in Run(out).history().epochs] == [1]
    unfinished = "its training stopped after epoch 1 of 2, with no test result"
    with pytest.warns(EtlWarning, match=unfinished):
        model, _ = load_model(out, "latest")
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(model))
    # what is left is usable, and every command that uses it says it is unfinished
    evaluated = runner.invoke(app, ["evaluate", str(out)])
    assert evaluated.exit_code == 0 and f"warning: {out}: {unfinished}" in evaluated.stderr


def test_nan_loss_before_any_checkpoint_says_none_was_saved(digits_shards, tmp_path):
    """It named the latest checkpoint's path "(none saved yet)", a file that is not there."""
    out = tmp_path / "nan"
    result = runner.invoke(app, train_args(digits_shards, out, "--lr", "1e30", epochs=1,
                                           model="FF-baseline"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == ("error: loss became nan at step 5 (epoch 1); "
                                              "stopped. No checkpoint was saved before it; try "
                                              "a lower --lr")
    assert not (out / "checkpoints" / "latest.msgpack").exists()


@pytest.mark.parametrize("extra", [["--lr-step-epochs", "100000000000"],
                                   ["--schedule", "cosine", "--warmup-epochs", "1e308"]])
def test_schedule_periods_longer_than_the_run_change_nothing_in_it(digits_shards, tmp_path,
                                                                     extra):
    """They overflowed the step count compiled as int32: OverflowError tracebacks."""
    out = tmp_path / "long"
    result = runner.invoke(app, train_args(digits_shards, out, *extra, epochs=1,
                                           model="FF-baseline"))
    assert result.exit_code == 0, result.output
    (epoch,) = Run(out).history().epochs  # the step decay never came; the warm-up took the run
    assert epoch["epoch/lr"] == pytest.approx(Run(out).read_config()["config"]["lr"], rel=1e-6)


def test_early_stopping_follows_patience(digits_shards, tmp_path):
    out = tmp_path / "patience"
    result = runner.invoke(app, train_args(digits_shards, out, "--patience", "1", "--lr", "1e-9",
                                           epochs=8, model="FF-baseline"))
    assert result.exit_code == 0, result.output
    epochs = Run(out).history().epochs
    # training stops after the first epoch that does not beat the best so far
    first_miss = next(i for i, e in enumerate(epochs) if not e["epoch/best"])
    assert len(epochs) == first_miss + 1 < 8
    assert "early stop" in result.stderr


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
    one_error_line(runner.invoke(app, [*train_args(shards, tmp_path / "bad"), *extra]), needle)
    assert not (tmp_path / "bad").exists()


def test_a_batch_larger_than_an_evaluation_batch_trains(digits_shards, tmp_path):
    """The batch-norm calibration takes whole training batches: at least one, even when a
    training batch is larger than --eval-batch-size (it used to become 0 images)."""
    out = tmp_path / "big"
    result = runner.invoke(app, train_args(digits_shards, out, "--batch-size", "1150", epochs=1,
                                           model="FF-baseline"))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["steps_per_epoch"] == 1
    (epoch,) = Run(out).history().epochs
    assert np.isfinite(epoch["train/epoch_loss"]) and 0 <= epoch["val/accuracy"] <= 1


def test_a_run_folder_is_not_overwritten_and_resume_must_repeat_the_options(reference,
                                                                             shards):
    out = reference[0]
    result = runner.invoke(app, train_args(shards, out))
    assert result.exit_code == 1 and "pass --resume" in result.stderr
    result = runner.invoke(app, [*train_args(shards, out, "--lr", "0.01"), "--resume"])
    assert result.exit_code == 1 and "lr (run: 0.0001, now: 0.01)" in result.stderr


def test_a_checkpoint_of_another_model_names_the_parameter(tmp_path):
    path = tmp_path / "c.msgpack"
    saved = models.build("M6-1", 75, rngs=nnx.Rngs(0))
    checkpoint.save(path, nnx.state(saved), {"step": 3})

    def shapes(model, classes):  # the state's shapes, as `fit` restores `best` into
        return nnx.state(nnx.eval_shape(lambda: models.build(model, classes,
                                                             rngs=nnx.Rngs(0))))

    with pytest.raises(EtlError, match=re.escape(
            "parameter ['layers'][12]['linear']['bias'].value has shape (75,), the model "
            "needs (10,)")):
        checkpoint.load(path, shapes("M6-1", 10))
    with pytest.raises(EtlError, match=re.escape("has no parameter ['layers'][0]['linear']")):
        checkpoint.load(path, shapes("M3", 75))
    state, meta = checkpoint.load(path, nnx.state(models.build("M6-1", 75, rngs=nnx.Rngs(1))))
    assert meta == {"step": 3}
    np.testing.assert_array_equal(state["layers"][0]["conv"]["kernel"][...],
                                  saved.conv_kernels()[0])


def test_the_step_is_read_from_the_header_alone(reference, tmp_path):
    """A checkpoint whose arrays are cut off or garbage still tells its step; loading it
    says it is unreadable."""
    whole = (reference[0] / "checkpoints" / "latest.msgpack").read_bytes()
    cut = tmp_path / "run"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copy(reference[0] / "config.json", cut)
    (cut / "checkpoints" / "latest.msgpack").write_bytes(whole[:600] + b"\xc1" * 100_000)
    assert Run(cut).checkpoint_step("latest") == 28 == Run(reference[0]).checkpoint_step("latest")
    like = nnx.state(models.build("M6-1", 75, rngs=nnx.Rngs(0)))
    with pytest.raises(EtlError, match="unreadable checkpoint"):
        Run(cut).load("latest", like)
    (cut / "checkpoints" / "latest.msgpack").write_bytes(b"\x00" * 100)
    with pytest.raises(EtlError, match="not an etlkit checkpoint"):
        Run(cut).checkpoint_step("latest")
    assert Run(tmp_path / "none").checkpoint_step("latest") is None


def test_metrics_records_drop_only_a_cut_off_last_line(tmp_path):
    run = Run(tmp_path)
    record = {"step": 1, "epoch": 1, "train/loss": 2.5, "train/accuracy": 0.5}
    run.metrics.write_text(json.dumps(record) + '\n{"step": 2, "ep')
    assert run.records() == [record]
    run.metrics.write_text(json.dumps(record) + '\n{"step": \n' + json.dumps(record) + "\n")
    with pytest.raises(EtlError, match="metrics.jsonl: line 2 is not JSON"):
        run.records()

