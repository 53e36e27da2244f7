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
