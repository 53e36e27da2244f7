"""Convolution, max-pooling and dropout with the results of the library versions, at a fraction
of their cost on XLA:CPU.

Why: profiling the M-series train step on CPU (docs/benchmarks.md) showed that XLA's gradient of
``lax.reduce_window`` max-pooling (select-and-scatter, with full-size index tensors) and the
threefry bits behind ``jax.random.bernoulli`` took more time than all the convolutions together,
and that XLA:CPU computes a convolution's kernel gradient at less than half its batch-16 speed
once the batch is large.

- ``max_pool_2x2`` keeps the forward pass and the gradient of the library op (the gradient goes
  to the first maximum of each window, in row-major order) but computes both from four strided
  views of the input.
- ``dropout`` draws only as many random bits per element as the rate needs.
- ``conv`` is ``lax.conv_general_dilated`` whose kernel gradient is summed over slices of 16
  images on the CPU; other backends get the plain op.
- ``compiler_options`` moves the CPU's convolutions from YNNPACK, which runs each on one
  thread, to XLA's multi-threaded Eigen kernels.

``cpu_paths`` tells which of these paths a trace takes; ``accelerator_paths`` makes the CPU trace
the GPU/TPU ones (plain convolution, default compiler options, a rolled ``lax.scan`` over the
steps of a call), so CI tests the code an accelerator runs.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from jax import lax

# YNNPACK keeps the matmuls and reductions, where it is the fastest (the default list also
# holds INDIVIDUAL_CONVOLUTION). A 64-channel 3x3 conv on 2 cores: 230 GFLOP/s on YNNPACK, 340
# on Eigen, forward and kernel gradient alike.
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
KERNEL_GRAD_CHUNK = 16  # images per kernel-gradient slice on the CPU (16, 32, 64, unsliced: 16)
_accelerator_forced = False


def cpu_paths() -> bool:
    """Whether traces take the CPU's paths: on the CPU backend, outside `accelerator_paths`."""
    return jax.default_backend() == "cpu" and not _accelerator_forced


@contextlib.contextmanager
def accelerator_paths():
    """Trace (and choose compiler options) as on a GPU or TPU, whatever the backend."""
    global _accelerator_forced
    before, _accelerator_forced = _accelerator_forced, True
    try:
        yield
    finally:
        _accelerator_forced = before


def compiler_options() -> dict[str, str]:
    """XLA options for every jitted model call (``jax.jit(..., compiler_options=...)``): the CPU
    options above, or none on the accelerators' paths and on a jaxlib that does not know them
    (the option is experimental), which then runs at its own default speed."""
    return dict(_CPU_OPTIONS) if cpu_paths() and _cpu_options_known() else {}


@functools.cache
def _cpu_options_known() -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(0.0).compile()
    except Exception:  # noqa: BLE001 - any refusal means: compile without the option
        return False
    return True


def conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding, **options) -> jax.Array:
    """``lax.conv_general_dilated`` (same arguments; ``nnx.Conv(conv_general_dilated=conv)``)
    with, on the CPU, the kernel gradient summed over batch slices of ``KERNEL_GRAD_CHUNK``,
    accumulated in float32. The slices are unrolled: inside a loop XLA:CPU falls back to a
    convolution 20x slower."""

    def plain(x: jax.Array, w: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(x, w, window_strides, padding, **options)

    if not cpu_paths() or lhs.shape[0] <= KERNEL_GRAD_CHUNK:
        return plain(lhs, rhs)

    @jax.custom_vjp
    def chunked(x: jax.Array, w: jax.Array) -> jax.Array:
        return plain(x, w)

    def forward(x: jax.Array, w: jax.Array):
        return plain(x, w), (x, w)

    def backward(saved, g: jax.Array):
        x, w = saved
        dx = jax.vjp(lambda x: plain(x, w), x)[1](g)[0]
        dw = sum(kernel_grad(x[i:i + KERNEL_GRAD_CHUNK], w, g[i:i + KERNEL_GRAD_CHUNK])
                 for i in range(0, x.shape[0], KERNEL_GRAD_CHUNK))
        return dx, dw.astype(w.dtype)

    def kernel_grad(x: jax.Array, w: jax.Array, g: jax.Array) -> jax.Array:
        return jax.vjp(lambda w: plain(x, w), w)[1](g)[0].astype(jnp.float32)

    chunked.defvjp(forward, backward)
    return chunked(lhs, rhs)


def _windows(x: jax.Array) -> list[jax.Array]:
    """The four elements of every 2x2 window of x (B, H, W, C) with even H and W, as four
    (B, H/2, W/2, C) views in row-major window order. The reshape is free (no copy)."""
    b, h, w, c = x.shape
    pairs = x.reshape(b, h // 2, 2, w // 2, 2 * c)
    return [pairs[:, :, i, :, j * c:(j + 1) * c] for i in (0, 1) for j in (0, 1)]


def _window_max(x: jax.Array) -> jax.Array:
    top_left, top_right, bottom_left, bottom_right = _windows(x)
    return jnp.maximum(jnp.maximum(top_left, top_right), jnp.maximum(bottom_left, bottom_right))


@jax.custom_vjp
def _max_pool_even(x: jax.Array) -> jax.Array:
    return _window_max(x)


def _max_pool_even_forward(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    y = _window_max(x)
    return y, (x, y)


def _max_pool_even_backward(saved: tuple[jax.Array, jax.Array], g: jax.Array):
    """Route each output gradient to the first element of its window equal to the maximum."""
    x, y = saved
    taken = jnp.zeros(y.shape, bool)
    parts = []
    for window in _windows(x):
        hit = (window == y) & ~taken
        taken = taken | hit
        parts.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
    top = jnp.concatenate(parts[:2], axis=-1)
    bottom = jnp.concatenate(parts[2:], axis=-1)
    return (jnp.stack([top, bottom], axis=2).reshape(x.shape).astype(x.dtype),)


_max_pool_even.defvjp(_max_pool_even_forward, _max_pool_even_backward)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 and no padding of x (B, H, W, C): equal to
    ``nnx.max_pool(x, (2, 2), strides=(2, 2))``, gradient included; an odd last row or column
    is dropped, as there."""
    _, h, w, _ = x.shape
    return _max_pool_even(x[:, : h - h % 2, : w - w % 2])


_FIELD_BITS = (1, 2, 4, 8)  # fields that tile a 32-bit word


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest by
    1 / (1 - rate), as ``nnx.Dropout`` does.

    When ``rate`` is a multiple of 1/2^b for b in 1, 2, 4, 8, each element gets an exact b-bit
    uniform draw (one bit for 0.5, the paper's rate): 32/b elements per random word instead of
    one. Other rates draw a float per element with ``jax.random.bernoulli``.
    """
    if rate == 0.0:
        return x
    if not 0.0 < rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep_scale = jnp.asarray(1.0 / (1.0 - rate), x.dtype)
    bits = next((b for b in _FIELD_BITS if (rate * 2**b).is_integer()), None)
    if bits is None:
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    else:
        per_word = 32 // bits
        per_example = x[0].size
        words = jax.random.bits(key, (x.shape[0], -(-per_example // per_word)), jnp.uint32)
        shifts = jnp.arange(0, 32, bits, dtype=jnp.uint32)
        fields = (words[:, :, None] >> shifts) & jnp.uint32(2**bits - 1)
        fields = fields.reshape(x.shape[0], -1)[:, :per_example].reshape(x.shape)
        keep = fields >= jnp.uint32(round(rate * 2**bits))
    return jnp.where(keep, x * keep_scale, jnp.zeros((), x.dtype))
