"""`OnnxPredictor`: an exported model.onnx, run by ONNX Runtime, ranking images as `Predictor`
ranks them from the run folder. Imports no JAX (numpy, Pillow, SciPy and onnxruntime), so
`etlkit predict --model` starts fast and runs where JAX is not installed."""

from pathlib import Path

import numpy as np

from etlkit.errors import EtlError

from . import metadata
from .classifier import Classifier

BATCH = 256  # images per session.run


def model_file(path: Path) -> Path:
    """The model.onnx of an export folder (onnx or web), or `path` itself when it is a file."""
    model = path / "model.onnx" if path.is_dir() else path
    if not model.is_file():
        raise EtlError(f"{path}: no such file" if not path.exists() else
                       f"{path}: no model.onnx in it (write one with `etlkit export RUN "
                       "--format onnx --out DIR`)")
    return model


def graph_shape(session, path: Path) -> tuple[int, int]:
    """The image side and class count of an exported graph (`session`, loaded from `path`):
    its `images` input is uint8 (batch, side, side), its `logits` output (batch, classes)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    image, logits = inputs.get(metadata.INPUT), outputs.get(metadata.OUTPUT)
    if (image is None or image.type != "tensor(uint8)" or len(image.shape) != 3
            or not isinstance(image.shape[1], int) or image.shape[1] != image.shape[2]
            or image.shape[1] < 1):
        raise EtlError(f"{path}: not a model exported by `etlkit export` (its input is not "
                       f"{metadata.INPUT}: uint8 (batch, side, side))")
    if (logits is None or len(logits.shape) != 2 or not isinstance(logits.shape[1], int)
            or logits.shape[1] < 1):
        raise EtlError(f"{path}: not a model exported by `etlkit export` (its output is not "
                       f"{metadata.OUTPUT}: (batch, classes))")
    return image.shape[1], logits.shape[1]


class OnnxPredictor(Classifier):
    """The model of an `etlkit export` (its model.onnx or folder), ready to classify images."""

    def __init__(self, path: str | Path, k: int = 5):
        import onnxruntime as ort  # the optional [export] extra

        if k < 1:
            raise EtlError(f"--top must be at least 1, not {k}")
        self.path = model_file(Path(path))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no notes about unused initializers
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime's errors share no public base
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EtlError(f"{self.path}: not a loadable ONNX model ({first})") from None
        self.meta = metadata.from_props(self.session.get_modelmeta().custom_metadata_map,
                                        self.path)
        metadata.check(self.meta, self.path, *graph_shape(self.session, self.path))
        self.classes = [tuple(c) for c in self.meta["classes"]]
        self.k = min(k, len(self.classes))
        self.frame = metadata.framing(self.meta)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 -> (N, classes) float32 logits."""
        return np.concatenate([
            self.session.run([metadata.OUTPUT], {metadata.INPUT: images[s : s + BATCH]})[0]
            for s in range(0, len(images), BATCH)])

    def top(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) uint8 -> class indices and probabilities (N, k), most probable first
        (ties: the lower index first, as `jax.lax.top_k`)."""
        logits = self.logits(images)
        shifted = logits - logits.max(1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        index = np.argsort(-logp, axis=1, kind="stable")[:, : self.k]
        return index, np.exp(np.take_along_axis(logp, index, axis=1))
