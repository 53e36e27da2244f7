"""`Classifier`: what every way of running a trained network shares, whatever runs it (JAX for a
run folder, ONNX Runtime for an export): the class table, the framing of a user's image, and
reading images into ranked classes. No JAX here."""

from pathlib import Path

import numpy as np

from etlkit.errors import EtlError

from .images import MAX_PIXELS, Framing, load_gray, to_input


class Classifier:
    """Subclasses set `classes`, `k` and `frame` and compute `top`."""

    classes: list[tuple[str, int]]  # index -> (character, Shift-JIS code)
    k: int  # classes ranked per image
    frame: Framing

    def top(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) uint8 -> class indices and probabilities (N, k), most probable first."""
        raise NotImplementedError

    def image(self, source: Path | bytes, name: str | Path | None = None,
              max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """A PNG or JPEG (file or bytes) as the network's input image."""
        return to_input(load_gray(source, name, max_pixels), self.frame, name or source)

    def ranked(self, index: np.ndarray, prob: np.ndarray) -> list[tuple[str, int, float]]:
        """One image's top-k as (class, Shift-JIS code, probability)."""
        return [(*self.classes[c], float(p)) for c, p in zip(index, prob, strict=True)]

    def predict(self, sources: list[Path]) -> list[list[tuple[str, int, float]] | EtlError]:
        """Per image, its top-k, or the error that kept it from being read: one bad file does
        not stop the others."""
        results: list = []
        for source in sources:
            try:
                results.append(self.image(source))
            except EtlError as err:
                results.append(err)
        good = [i for i, r in enumerate(results) if not isinstance(r, EtlError)]
        if good:
            index, prob = self.top(np.stack([results[i] for i in good]))
            for i, ci, pi in zip(good, index, prob, strict=True):
                results[i] = self.ranked(ci, pi)
        return results
