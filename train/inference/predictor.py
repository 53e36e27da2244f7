"""`Predictor`: a run's model, class table and framing, loaded once, with one jitted forward pass.

Every use of a trained model goes through it: `etlkit predict`, `recognize`, `serve` and
`evaluate`. The forward pass is `steps.evaluate_batch`, the function `fit` tests with, so a
prediction and an evaluation of the same image agree with the training run's own numbers.
Batches are padded to a power of two (at most BATCH), so any number of images compiles a
handful of shapes, not one per count.
"""

import functools
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from etlkit.errors import EtlError, check_choice

from .. import ops
from ..rundir import CHECKPOINTS, load_model
from ..steps import evaluate_batch
from .classifier import Classifier
from .images import Framing, framing

BATCH = 256  # images per forward call
#: The most test-time views: each one is a forward pass over the whole split, and averaging
#: more than a few dozen distortions changes nothing (docs/beyond.md measured 8).
TTA_MAX = 64


class Predictor(Classifier):
    """The `which` checkpoint of the run in `root`, ready to classify images; ``views`` > 1
    averages each image's probabilities over it and ``views`` - 1 distorted copies
    (test-time augmentation, `steps.evaluate_batch`)."""

    def __init__(self, root: str | Path, which: str = "best", k: int = 5, views: int = 1):
        check_choice("which", which, CHECKPOINTS)
        if k < 1:
            raise EtlError(f"--top must be at least 1, not {k}")
        if not 1 <= views <= TTA_MAX:
            raise EtlError(f"--tta must be from 1 to {TTA_MAX}, not {views}")
        model, self.doc = load_model(root, which)
        self.root, self.which = Path(root), which
        self.classes: list[tuple[str, int]] = [tuple(c) for c in self.doc["classes"]]
        self.k = min(k, len(self.classes))
        graphdef, self._state = nnx.split(model)
        self._call = jax.jit(
            lambda state, images, labels, mask: evaluate_batch(
                nnx.merge(graphdef, state), images, labels, mask, self.k, views),
            compiler_options=ops.compiler_options())

    @functools.cached_property
    def frame(self) -> Framing:
        """How a user's image is framed to look like the training images (measured once)."""
        return framing(self.doc)

    def scores(self, images: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict:
        """`evaluate_batch`'s sums and per-record top-k for one batch, on the host."""
        return jax.device_get(self._call(self._state, images, labels, mask))

    def top(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) uint8 -> class indices and probabilities (N, k), most probable first."""
        index, prob = [], []
        for s in range(0, len(images), BATCH):
            part = images[s : s + BATCH]
            n = len(part)
            size = min(BATCH, 1 << (n - 1).bit_length())
            padded = np.zeros((size, *part.shape[1:]), np.uint8)
            padded[:n] = part
            out = self.scores(padded, np.zeros(size, np.int32), np.arange(size) < n)
            index.append(out["top_index"][:n])
            prob.append(out["top_prob"][:n])
        return np.concatenate(index), np.concatenate(prob)
