"""On-device augmentation: a random rotation, shift and zoom per image, then pixel noise.

It runs inside the jitted train step on the whole batch (one bilinear resampling per image), so
it costs no host time and no transfer; keys come from the step number, so resumed runs repeat it.
"""

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

ROTATE_DEGREES = 10.0
SHIFT_FRACTION = 0.08
ZOOM = 0.1
NOISE = 0.05


def augment(images: jax.Array, key: jax.Array) -> jax.Array:
    """(B, H, W) float images in [0, 1] -> randomly transformed copies, still in [0, 1]."""
    b, h, w = images.shape
    k_angle, k_zoom, k_shift, k_noise = jax.random.split(key, 4)
    angle = jnp.deg2rad(jax.random.uniform(k_angle, (b,), minval=-ROTATE_DEGREES,
                                           maxval=ROTATE_DEGREES))
    scale = jax.random.uniform(k_zoom, (b,), minval=1 - ZOOM, maxval=1 + ZOOM)
    shift = jax.random.uniform(k_shift, (b, 2), minval=-SHIFT_FRACTION,
                               maxval=SHIFT_FRACTION) * jnp.array([h, w])
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                              indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2

    def warp(image, a, s, d):
        # where each output pixel comes from: the inverse of rotate-about-centre, zoom, shift
        y, x = rows - cy - d[0], cols - cx - d[1]
        src_y = (jnp.cos(a) * y + jnp.sin(a) * x) / s + cy
        src_x = (-jnp.sin(a) * y + jnp.cos(a) * x) / s + cx
        return map_coordinates(image, [src_y, src_x], order=1, mode="constant", cval=0.0)

    out = jax.vmap(warp)(images, angle, scale, shift)
    out = out + NOISE * jax.random.normal(k_noise, out.shape, out.dtype)
    return jnp.clip(out, 0.0, 1.0)


def distort(images: jax.Array, key: jax.Array, affine: float, elastic: float) -> jax.Array:
    """(B, H, W) float images in [0, 1] -> copies under a random affine map and an elastic
    displacement field, resampled once (bilinear); no noise. ``affine`` scales the ranges of
    rotation (±15°), shear (±15°), zoom (±15 %) and shift (±10 % of the side); ``elastic`` is
    Simard et al. 2003's amplitude alpha (uniform [-1, 1] displacements smoothed by a Gaussian
    of sigma 4), both in pixels of a 28-pixel image and scaled with the side. 0 turns either
    off; the keys are fixed per part, so turning one on does not change the other's draws."""
    b, h, w = images.shape
    k_angle, k_shear, k_zoom, k_shift, k_field = jax.random.split(key, 5)
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                              indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = jnp.broadcast_to(rows - cy, (b, h, w)), jnp.broadcast_to(cols - cx, (b, h, w))
    if affine:
        angle = jnp.deg2rad(15 * affine) * jax.random.uniform(k_angle, (b, 1, 1), minval=-1)
        shear = jnp.deg2rad(15 * affine) * jax.random.uniform(k_shear, (b, 1, 1), minval=-1)
        scale = 1 + 0.15 * affine * jax.random.uniform(k_zoom, (b, 1, 1), minval=-1)
        shift = 0.1 * affine * jax.random.uniform(k_shift, (b, 2, 1, 1), minval=-1) * h
        y, x = y - shift[:, 0], x - shift[:, 1]
        # the inverse map: un-rotate, un-shear, un-zoom each output pixel's offset
        y, x = jnp.cos(angle) * y + jnp.sin(angle) * x, -jnp.sin(angle) * y + jnp.cos(angle) * x
        x = x - jnp.tan(shear) * y
        y, x = y / scale, x / scale
    if elastic:
        y, x = y + _field(k_field, 0, (b, h, w), elastic), x + _field(k_field, 1, (b, h, w),
                                                                       elastic)

    def warp(image, src_y, src_x):
        return map_coordinates(image, [src_y + cy, src_x + cx], order=1, mode="constant",
                               cval=0.0)

    return jax.vmap(warp)(images, y, x)


def _field(key: jax.Array, axis: int, shape: tuple[int, int, int], alpha: float) -> jax.Array:
    """One axis of an elastic displacement field: uniform noise smoothed by a separable
    Gaussian (sigma 4 pixels per 28 of side) times alpha (pixels per 28 of side)."""
    b, h, w = shape
    side = max(h, w) / 28
    sigma = 4 * side
    radius = int(3 * sigma)
    taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / sigma) ** 2)
    taps = taps / taps.sum()
    noise = jax.random.uniform(jax.random.fold_in(key, axis), shape, minval=-1.0, maxval=1.0)
    smooth = jax.vmap(jax.vmap(lambda r: jnp.convolve(r, taps, mode="same")))(noise)
    smooth = jax.vmap(jax.vmap(lambda c: jnp.convolve(c, taps, mode="same"), in_axes=1,
                               out_axes=1))(smooth)
    return alpha * side * smooth
