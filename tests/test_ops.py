"""train/ops.py: the fast max-pool, dropout and convolution give the library ops' results.

Each is checked against the op it replaces (nnx.max_pool, the plain lax convolution) or, for
dropout, against the distribution it must draw from, jitted and differentiated for real.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from train import ops


def _tied(shape, dtype, seed=0):
    """Values with many exact ties inside the 2x2 windows: small integers."""
    return jnp.asarray(np.random.default_rng(seed).integers(-2, 3, shape), dtype)


@pytest.mark.parametrize("shape", [(3, 8, 8, 5), (2, 7, 9, 4), (1, 2, 2, 1)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_max_pool_equals_library_forward_and_gradient(shape, dtype):
    x = _tied(shape, dtype)
    weights = jnp.asarray(np.random.default_rng(1).standard_normal(
        (shape[0], shape[1] // 2, shape[2] // 2, shape[3])), dtype)

    def library(x):
        return nnx.max_pool(x, (2, 2), strides=(2, 2))

    def loss(pool):
        return jax.jit(jax.grad(lambda x: jnp.sum(pool(x).astype(jnp.float32) * weights)))

    np.testing.assert_array_equal(jax.jit(ops.max_pool_2x2)(x), library(x))
    ours, theirs = loss(ops.max_pool_2x2)(x), loss(library)(x)
    assert ours.dtype == x.dtype and ours.shape == x.shape
    # ties: one element per window gets the gradient, the same one as the library's
    np.testing.assert_array_equal(np.asarray(ours, np.float32), np.asarray(theirs, np.float32))


def test_max_pool_gradient_goes_to_first_maximum_only():
    x = jnp.ones((1, 2, 2, 1))
    g = jax.grad(lambda x: ops.max_pool_2x2(x).sum())(x)
    np.testing.assert_array_equal(g[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.125, 0.3, 0.9])
def test_dropout_draws_the_rate_and_scales_the_rest(rate):
    x = jnp.asarray(np.random.default_rng(0).uniform(1, 2, (8, 32, 32, 24)), jnp.float32)
    y = np.asarray(jax.jit(ops.dropout, static_argnums=1)(x, rate, jax.random.key(3)))
    kept = y != 0
    # 196,608 draws: the kept fraction is within 5 standard deviations of 1 - rate
    sd = np.sqrt(rate * (1 - rate) / kept.size)
    assert abs(kept.mean() - (1 - rate)) < 5 * sd
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / (1 - rate), rtol=1e-6)
    # every position of the packed words and every example draws on its own
    per_lane = kept.reshape(8, -1)[:, : 32 * 192].reshape(-1, 32).mean(axis=0)
    assert np.all(np.abs(per_lane - (1 - rate)) < 6 * np.sqrt(rate * (1 - rate) / 1536))
    assert len({kept[i].tobytes() for i in range(8)}) == 8
    # neighbouring elements are independent: P(both kept) = (1 - rate)^2
    flat = kept.reshape(-1)
    assert abs((flat[:-1] & flat[1:]).mean() - (1 - rate) ** 2) < 0.01


def test_dropout_is_deterministic_per_key_and_keeps_dtype():
    x = jnp.ones((4, 6, 6, 3), jnp.bfloat16)
    a, b = ops.dropout(x, 0.5, jax.random.key(1)), ops.dropout(x, 0.5, jax.random.key(1))
    c = ops.dropout(x, 0.5, jax.random.key(2))
    assert a.dtype == jnp.bfloat16
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(np.asarray(a, np.float32))) == {0.0, 2.0}


def test_dropout_rate_zero_is_identity_and_bad_rates_are_refused():
    x = jnp.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(ops.dropout(x, 0.0, jax.random.key(0)), x)
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match="dropout rate"):
            ops.dropout(x, rate, jax.random.key(0))


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 2e-5), (jnp.bfloat16, 2e-2)])
def test_conv_kernel_gradient_in_chunks_equals_whole_batch(dtype, rtol):
    """40 images: two full slices of 16 and a remainder of 8."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((40, 12, 12, 6)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, 6, 8)) * 0.2, dtype)
    dims = ("NHWC", "HWIO", "NHWC")

    def loss(conv):
        return jax.jit(jax.grad(
            lambda x, w: jnp.sum(conv(x, w, (1, 1), "SAME", dimension_numbers=dims)
                                 .astype(jnp.float32) ** 2), argnums=(0, 1)))

    ours, theirs = loss(ops.conv)(x, w), loss(lax.conv_general_dilated)(x, w)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=rtol, atol=rtol * float(jnp.abs(b).max()))
    np.testing.assert_array_equal(
        ops.conv(x, w, (1, 1), "SAME", dimension_numbers=dims),
        lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims))


def test_compiler_options_compile_and_keep_results():
    """Whatever options this jaxlib accepts, a model call compiled with them computes what
    the default compile computes."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 16, 16, 8)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 8, 8)), jnp.float32)

    def f(x, w):
        y = lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y, axis=(1, 2)) @ w[0, 0]

    options = ops.compiler_options()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in options.items())
    np.testing.assert_allclose(jax.jit(f, compiler_options=options)(x, w), jax.jit(f)(x, w),
                               rtol=1e-5, atol=1e-3)
