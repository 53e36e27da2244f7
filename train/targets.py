"""Training targets and inputs mixed across a batch: label smoothing, mixup and cutmix.

Each turns a batch of (images, integer labels) into (images, soft targets) inside the jitted
train step, on the device; the loss is then the cross-entropy against the soft targets. With
all of them off, `loss` is the plain integer-label cross-entropy the paper's recipe uses.
"""

import jax
import jax.numpy as jnp
import optax


def mix(images: jax.Array, labels: jax.Array, num_classes: int, key: jax.Array, *,
        smoothing: float, mixup: float, cutmix: float) -> tuple[jax.Array, jax.Array]:
    """(images, soft targets (B, C)). Mixup (Zhang et al. 2018) blends every image with the
    image at a random permutation of the batch by lam ~ Beta(mixup, mixup); cutmix (Yun et al.
    2019) pastes a box of area 1 - lam from it, lam ~ Beta(cutmix, cutmix), and weighs the
    targets by the pasted area; with both on each step draws one of the two."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    if not (mixup or cutmix):
        return images, targets
    k_perm, k_choice, k_mixup, k_cutmix, k_box = jax.random.split(key, 5)
    perm = jax.random.permutation(k_perm, images.shape[0])
    other_images, other_targets = images[perm], targets[perm]
    candidates = []
    if mixup:
        lam = jax.random.beta(k_mixup, mixup, mixup)
        candidates.append((lam * images + (1 - lam) * other_images, lam))
    if cutmix:
        inside = _box(k_box, images.shape[1:], jax.random.beta(k_cutmix, cutmix, cutmix))
        lam = 1 - inside.mean()
        candidates.append((jnp.where(inside, other_images, images), lam))
    if len(candidates) == 2:
        use_cutmix = jax.random.bernoulli(k_choice)
        mixed = jnp.where(use_cutmix, candidates[1][0], candidates[0][0])
        lam = jnp.where(use_cutmix, candidates[1][1], candidates[0][1])
    else:
        mixed, lam = candidates[0]
    return mixed, lam * targets + (1 - lam) * other_targets


def _box(key: jax.Array, shape: tuple[int, int], lam: jax.Array) -> jax.Array:
    """(H, W) mask of a box of about (1 - lam) of the image, centred at a random pixel and
    clipped at the borders."""
    h, w = shape
    k_y, k_x = jax.random.split(key)
    cut = jnp.sqrt(1 - lam)
    cy, cx = jax.random.randint(k_y, (), 0, h), jax.random.randint(k_x, (), 0, w)
    half_h, half_w = jnp.round(cut * h / 2), jnp.round(cut * w / 2)
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    return (rows >= cy - half_h) & (rows < cy + half_h) & (cols >= cx - half_w) & (
        cols < cx + half_w)


def loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy of logits against soft targets."""
    return optax.softmax_cross_entropy(logits, targets).mean()
