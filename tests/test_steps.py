"""The accelerator's code paths, run on the CPU: CI has no GPU, so the code a GPU or TPU runs
(K optimizer steps in one rolled `lax.scan`, the plain convolution gradient, XLA's default
compiler options) is traced here under `ops.accelerator_paths()` and must train exactly the
function the CPU's paths train (unrolled steps, 16-image kernel-gradient slices, Eigen
convolutions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train import ops
from train.config import Config, build, optimizer
from train.steps import Steps

K, BATCH = 4, 32  # a batch above ops.KERNEL_GRAD_CHUNK, so the CPU path slices its gradient
MODEL = "LeNet-5"  # two convolutions: the smallest network whose gradient the CPU slices


def _train(precision: str, accelerator: bool, images, labels):
    """K steps of MODEL from the same start: one K-step call on the accelerator's
    paths, K one-step calls on the CPU's (as `fit` groups them on each); the losses and the
    trained parameters."""
    config = Config(shards="", model=MODEL, precision=precision, lr=1e-3,
                    batch_size=BATCH).with_recipe()
    model = build(config, 10)
    opt, _ = optimizer(model, config, steps_per_epoch=100)
    steps = Steps(model, opt, seed=0, augmented=False)
    state, losses = steps.state, []
    if accelerator:
        with ops.accelerator_paths():
            assert not ops.cpu_paths() and ops.compiler_options() == {}
            hlo = steps.train_call.lower(state, images, labels, jnp.int32(0)).as_text()
            state, metrics = steps.train_call(state, images, labels, jnp.int32(0))
        assert "while" in hlo  # a rolled scan: one loop body, as an accelerator compiles it
        losses = [float(metrics["loss_sum"])]
    else:
        assert ops.cpu_paths()
        for i in range(K):
            state, metrics = steps.train_call(state, images[i : i + 1], labels[i : i + 1],
                                              jnp.int32(i))
            losses.append(float(metrics["loss_sum"]))
        losses = [sum(losses)]
    assert steps.traces["train"] == 1
    return losses, jax.tree.leaves(nnx.to_pure_dict(state[0]))


@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-4), ("bf16", 2e-2)])
def test_accelerator_paths_train_the_same_function_as_the_cpu_paths(precision, tolerance):
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (K, BATCH, 28, 28), np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (K, BATCH)), jnp.int32)
    cpu_loss, cpu_params = _train(precision, False, images, labels)
    acc_loss, acc_params = _train(precision, True, images, labels)
    assert acc_loss == pytest.approx(cpu_loss, rel=tolerance)
    for a, c in zip(acc_params, cpu_params, strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(c, np.float32),
                                   rtol=tolerance, atol=tolerance)
    assert ops.cpu_paths()  # the context manager restores the CPU's paths


def test_only_the_cpu_paths_slice_the_kernel_gradient():
    x = jnp.ones((BATCH, 8, 8, 3))
    w = jnp.ones((3, 3, 3, 4))

    def grad_hlo():
        return jax.jit(jax.grad(lambda w: ops.conv(x, w, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC")
                                                   ).sum())).lower(w).as_text()

    sliced = grad_hlo().count("convolution")
    with ops.accelerator_paths():
        plain = grad_hlo().count("convolution")
    assert sliced > plain >= 1  # two 16-image slices against one whole-batch gradient
