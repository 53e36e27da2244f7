"""The modern recipe's options (docs/beyond.md): schedule, AdamW, distortion, mixing, EMA and
test-time augmentation, each on real arrays, real compiled steps and real runs of the CLI."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import fields

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from assertions import one_error_line
from flax import nnx
from typer.testing import CliRunner

from etlkit.cli import app
from train import ema, recipes, targets
from train.augment import distort as distort_op_by_op
from train.config import RECIPE_OPTIONS, Config, build, optimizer
from train.rundir import Run, load_model
from train.steps import StepOptions, Steps

runner = CliRunner()


@pytest.fixture(scope="module")
def digits(digits_shards):
    """scikit-learn's 1,797 digits at 28×28: 1,150 train, 287 val, 360 test."""
    return digits_shards


#: Compiled once per setting, as the train step runs it, rather than operation by operation.
distort = jax.jit(distort_op_by_op, static_argnums=(2, 3))


def _ink(size=28, batch=4):
    """Images with a bar of ink away from the border: distortions keep most of it in frame."""
    x = np.zeros((batch, size, size), np.float32)
    x[:, size // 4: 3 * size // 4, size // 2 - 2: size // 2 + 2] = 1.0
    return jnp.asarray(x)


def test_the_paper_and_seed_recipes_leave_every_modern_option_off():
    for name in ("M7-2", "M3", "LeNet-5", "MNIST-CNN-3", "CNN-93k"):
        c = Config(shards="", model=name).with_recipe()
        assert (c.schedule, c.warmup_epochs, c.weight_decay, c.label_smoothing, c.mixup,
                c.cutmix, c.affine, c.elastic, c.ema) == ("step", 0, 0, 0, 0, 0, 0, 0, 0)
        assert StepOptions.of(c) == StepOptions()
    c = Config(shards="", model="ResNet-28").with_recipe()
    assert {k: getattr(c, k) for k in RECIPE_OPTIONS} == {
        k: getattr(recipes.MODERN_28, k) for k in RECIPE_OPTIONS}
    assert (c.affine, c.elastic) == (0.5, 0.0)  # gentler than the 64×64 network's
    assert c.optimizer == "adamw" and c.schedule == "cosine" and c.ema > 0
    table = recipes.recipe_table()
    assert "ResNet-28, WideResNet-28: adamw lr 0.003, batch 64, 30 epochs, cosine" in table
    assert "ResNet-64: adamw lr 0.003, batch 64, 15 epochs, cosine" in table


def test_cosine_schedule_warms_up_then_decays_to_zero():
    config = Config(shards="", model="CNN-93k", schedule="cosine", warmup_epochs=2, lr=1e-2,
                    epochs=10).with_recipe()
    _, schedule = optimizer(build(config, 10), config, steps_per_epoch=5)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-3)  # half-way up the warm-up
    assert float(schedule(10)) == pytest.approx(1e-2)  # the peak, after 2 epochs
    assert float(schedule(30)) == pytest.approx(5e-3, rel=1e-5)  # half-way down the cosine
    assert float(schedule(50)) == pytest.approx(0.0, abs=1e-9)


def test_adamw_decays_kernels_but_not_biases_or_batch_norm():
    config = Config(shards="", model="ResNet-28", lr=0.5, weight_decay=0.1, schedule="step",
                    lr_step_epochs=0).with_recipe()
    model = build(config, 10)
    opt, _ = optimizer(model, config, steps_per_epoch=1)
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    zeros = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    nnx.jit(lambda o, m, g: o.update(m, g))(opt, model, zeros)  # compiled, as in training
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    flat_before = jax.tree_util.tree_flatten_with_path(before)[0]
    for (path, b), a in zip(flat_before, jax.tree.leaves(after), strict=True):
        if b.ndim > 1:  # zero gradient: only the decay, lr x wd = 5 % of the weight
            np.testing.assert_allclose(a, 0.95 * b, rtol=1e-6, err_msg=str(path))
        else:
            np.testing.assert_array_equal(a, b, err_msg=str(path))


def test_distort_is_identity_when_off_and_a_seeded_warp_when_on():
    x = _ink()
    np.testing.assert_array_equal(distort(x, jax.random.key(0), 0.0, 0.0), x)
    for affine, elastic in ((1.0, 0.0), (0.0, 30.0), (1.0, 30.0)):
        a = distort(x, jax.random.key(1), affine, elastic)
        np.testing.assert_array_equal(a, distort(x, jax.random.key(1), affine, elastic))
        assert not np.allclose(a, distort(x, jax.random.key(2), affine, elastic))
        assert not np.allclose(a, x, atol=0.2)
        assert float(a.min()) >= 0 and float(a.max()) <= 1
        ink = a.sum(axis=(1, 2)) / x.sum(axis=(1, 2))  # zoom ±15 %: area within ~±35 %
        assert np.all((ink > 0.6) & (ink < 1.45)), ink
    b = distort(_ink(64, 2), jax.random.key(3), 1.0, 30.0)  # scaled to the side
    ink = b.sum(axis=(1, 2)) / _ink(64, 2).sum(axis=(1, 2))
    assert b.shape == (2, 64, 64) and np.all((ink > 0.6) & (ink < 1.45)), ink


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixed_images_and_targets_agree(mixup, cutmix):
    # image i is the constant i + 1, so a mixed image's mean is its targets times (1..4)
    b, c = 4, 4
    images = jnp.broadcast_to(jnp.arange(1.0, b + 1)[:, None, None], (b, 28, 28))
    labels = jnp.arange(b)
    for seed in range(5):
        mixed, soft = targets.mix(images, labels, c, jax.random.key(seed), smoothing=0.0,
                                  mixup=mixup, cutmix=cutmix)
        np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(mixed.mean(axis=(1, 2)), soft @ jnp.arange(1.0, c + 1),
                                   rtol=1e-4)  # float32 means of 784 pixels
    smoothed_images, smoothed = targets.mix(images, labels, c, jax.random.key(0),
                                            smoothing=0.2, mixup=0.0, cutmix=0.0)
    np.testing.assert_array_equal(smoothed_images, images)
    np.testing.assert_allclose(smoothed, 0.8 * np.eye(c) + 0.05, rtol=1e-6)


def test_the_average_follows_the_weights_with_a_warming_up_decay():
    config = Config(shards="", model="CNN-93k", lr=1e-2, ema=0.9).with_recipe()
    model = build(config, 10)
    start = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))  # copies
    opt, _ = optimizer(model, config, steps_per_epoch=10)
    steps = Steps(model, opt, 0, False, StepOptions.of(config))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (1, 32, 28, 28), np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (1, 32)), jnp.int32)
    state, _ = steps.train_call(steps.state, images, labels, jnp.int32(0))
    trained = nnx.to_pure_dict(nnx.filter_state(state[0][0], nnx.Param))
    averaged = nnx.to_pure_dict(nnx.filter_state(steps.eval_state(state), nnx.Param))
    # step 0: rate min(0.9, 1 / 10) = 0.1 of the start, 0.9 of the trained weights
    for s, t, a in zip(jax.tree.leaves(start), jax.tree.leaves(trained),
                       jax.tree.leaves(averaged), strict=True):
        np.testing.assert_allclose(a, 0.1 * s + 0.9 * t, rtol=1e-5, atol=1e-7)
        assert not np.allclose(a, t)


ALL_OPTIONS = ["--model", "CNN-93k", "--optimizer", "adamw", "--weight-decay", "1e-3",
               "--schedule", "cosine", "--warmup-epochs", "0.5", "--label-smoothing", "0.1",
               "--mixup", "0.4", "--cutmix", "1.0", "--affine", "1.0", "--elastic", "30",
               "--ema", "0.9", "--epochs", "2", "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def modern_run(digits, tmp_path_factory):
    """CNN-93k with every modern option on, 2 epochs."""
    out = tmp_path_factory.mktemp("modern") / "run"
    result = runner.invoke(app, ["train", str(digits), "--out", str(out), *ALL_OPTIONS])
    assert result.exit_code == 0, result.output
    return out


def test_every_option_together_trains_and_evaluates_the_average(modern_run):
    history = Run(modern_run).history()
    assert history.test["test/accuracy"] > 0.3  # chance 0.1; 2 epochs of 17 heavily mixed steps
    config = json.loads((modern_run / "config.json").read_text())["config"]
    assert (config["mixup"], config["cutmix"], config["ema"]) == (0.4, 1.0, 0.9)
    # latest holds the raw weights and their average; load_model uses the average
    raw, average = Run(modern_run).load("latest", _latest_like(modern_run))[0]
    latest, _ = load_model(modern_run, "latest")
    latest_params = jax.tree.leaves(nnx.state(latest, nnx.Param))
    for a, b in zip(jax.tree.leaves(average), latest_params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(r, b) for r, b in zip(
        jax.tree.leaves(nnx.filter_state(raw[0], nnx.Param)), latest_params, strict=True))
    # best holds the model that was tested: its accuracy is the run's test accuracy
    best, doc = load_model(modern_run, "best")
    from etlkit.shards import open_shards
    data = open_shards(doc["config"]["shards"], "test").read()
    predicted = np.asarray(best(data["images"] / 255.0, train=False)).argmax(1)
    assert np.mean(predicted == data["labels"]) == pytest.approx(history.test["test/accuracy"])


def _latest_like(run):
    """The shape of a run's `latest` state with --ema: (train state, average)."""
    doc = Run(run).read_config()
    names = {f.name for f in fields(Config)}
    config = Config(**{k: v for k, v in doc["config"].items() if k in names}).with_recipe()
    model = build(config, doc["num_classes"])
    opt, _ = optimizer(model, config, doc["steps_per_epoch"])
    return nnx.state((model, opt)), ema.initial(model)


def test_resume_after_a_kill_with_every_option_ends_with_the_same_metrics(modern_run, digits,
                                                                          tmp_path):
    out = tmp_path / "killed"
    args = ["train", str(digits), "--out", str(out), *ALL_OPTIONS, "--checkpoint-minutes", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "etlkit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and (Run(out).checkpoint_step("latest") or 0) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-epoch 2 (17 steps an epoch)
    proc.wait()
    assert Run(out).history().test is None
    assert 17 < Run(out).checkpoint_step("latest") < 34
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    keys = ("epoch", "step", "train/epoch_loss", "val/loss", "val/accuracy")
    assert [{k: e[k] for k in keys} for e in Run(out).history().epochs] == [
        {k: e[k] for k in keys} for e in Run(modern_run).history().epochs]
    assert Run(out).history().test["test/accuracy"] == Run(modern_run).history().test[
        "test/accuracy"]


def test_evaluate_with_test_time_augmentation(modern_run):
    result = runner.invoke(app, ["evaluate", str(modern_run), "--tta", "4"])
    assert result.exit_code == 0, result.output
    assert "4 views" in result.output
    doc = json.loads((modern_run / "eval-tta4.json").read_text())
    assert doc["tta_views"] == 4 and doc["count"] == 360
    again = runner.invoke(app, ["evaluate", str(modern_run), "--tta", "4"])
    assert again.exit_code == 0
    assert json.loads((modern_run / "eval-tta4.json").read_text()) == doc
    plain = runner.invoke(app, ["evaluate", str(modern_run)])
    assert plain.exit_code == 0
    single = json.loads((modern_run / "eval.json").read_text())
    assert single["tta_views"] == 1
    assert single["accuracy"] == pytest.approx(Run(modern_run).history().test["test/accuracy"])
    assert doc["loss"] != single["loss"]  # the averaged probabilities are not one view's


@pytest.mark.parametrize("extra, needle", [
    (["--schedule", "linear"], "--schedule must be step or cosine"),
    (["--weight-decay", "0.1", "--optimizer", "adam"], "--weight-decay needs --optimizer adamw"),
    (["--ema", "1.0"], "--ema must be in [0, 1)"),
    (["--mixup", "-1"], "--mixup must be 0 (off) or in [0.01, 10], not -1.0"),
])
def test_bad_modern_options_give_one_clear_line(digits, tmp_path, extra, needle):
    result = runner.invoke(app, ["train", str(digits), "--out", str(tmp_path / "r"),
                                 "--model", "CNN-93k", "--no-progress", *extra])
    one_error_line(result, needle)


@pytest.mark.parametrize("views", ["0", "65", "100000000000000000000"])
def test_evaluate_refuses_a_tta_out_of_range(modern_run, views):
    """10^20 views ran for ever without a word."""
    one_error_line(runner.invoke(app, ["evaluate", str(modern_run), "--tta", views]),
                   f"--tta must be from 1 to 64, not {views}")
