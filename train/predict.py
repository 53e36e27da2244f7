"""Photos or scans of single characters -> the run's top-k classes.

An image is brought to what the network saw in training: gray, ink high (paper is taken to be
the majority of pixels, whatever its colour), stretched so paper is 0 and the darkest ink 255,
cropped to the ink's bounding box and centred in a square in which the character takes the
share of the side that training images' characters take (the median over the run's training
shards), area-averaged to 64×64 with etlkit's own code, then Otsu-binarized exactly when the
run's dataset was.
"""

import contextlib
import itertools
import math
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from etlkit import preprocess
from etlkit.errors import EtlError, EtlWarning
from etlkit.shards import CHUNK, open_shards

from .evaluate import WHICH, check_choice
from .loop import load_model

MAX_BYTES = 50 << 20
MAX_PIXELS = 8000 * 8000
WORK_SIDE = 1024  # larger images are box-reduced to this first: plenty for a 64×64 result
INK = 128  # a pixel at or above half the full ink counts as ink, in training images too
SAMPLE = 4096  # training images measured for the framing
DEFAULT_FILL = 0.7  # median of synthetic ETL-1 and ETL-8G shards, used when the shards are gone


def load_gray(path: Path) -> np.ndarray:
    """A PNG or JPEG as (H, W) uint8 gray, upright (EXIF), transparency over white."""
    if not path.is_file():
        raise EtlError(f"{path}: {'a folder, not an image' if path.is_dir() else 'no such file'}")
    size = path.stat().st_size
    if size == 0:
        raise EtlError(f"{path}: empty file")
    if size > MAX_BYTES:
        raise EtlError(f"{path}: {size / 2**20:.0f} MB, more than the {MAX_BYTES >> 20} MB an "
                       "image of one character needs")
    try:
        with Image.open(path, formats=("PNG", "JPEG")) as image:
            if image.width * image.height > MAX_PIXELS:
                raise EtlError(f"{path}: {image.width}×{image.height} pixels, more than the "
                               f"{MAX_PIXELS:,} allowed")
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I"):  # 16-bit gray, which convert("L") would clip
                image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
            if "A" in image.getbands() or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            gray = image.convert("L")
    except UnidentifiedImageError:
        raise EtlError(f"{path}: not a PNG or JPEG image") from None
    except Image.DecompressionBombError:
        raise EtlError(f"{path}: more than the {MAX_PIXELS:,} pixels allowed") from None
    except OSError as err:  # truncated or corrupt data
        raise EtlError(f"{path}: unreadable image ({err})") from None
    factor = math.ceil(max(gray.size) / WORK_SIDE)
    return np.asarray(gray.reduce(factor) if factor > 1 else gray)


def to_input(gray: np.ndarray, fill: float, otsu: bool, name: str | Path) -> np.ndarray:
    """(H, W) gray image of one character -> the (64, 64) uint8 training-like image."""
    paper = float(np.median(gray))
    ink = gray.astype(np.float32)
    if paper > (float(gray.min()) + float(gray.max())) / 2:
        ink = 255 - ink  # dark ink on light paper
        paper = 255 - paper
    top = float(ink.max())
    if top - paper < 32:
        raise EtlError(f"{name}: no ink found (the image is one flat colour)")
    ink = np.clip((ink - paper) * (255 / (top - paper)), 0, 255)
    rows, cols = np.flatnonzero((ink >= INK).any(1)), np.flatnonzero((ink >= INK).any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = math.ceil(max(crop.shape) / fill)
    canvas = np.zeros((side, side), np.uint8)
    y, x = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[y : y + crop.shape[0], x : x + crop.shape[1]] = np.rint(crop)
    factor = math.ceil(side / 256)  # keeps block_sums' integer sums within uint16
    if factor > 1:
        canvas = np.asarray(Image.fromarray(canvas).reduce(factor))
    sums, full = preprocess.block_sums(canvas[None], 255)
    return preprocess.finish(sums, full, otsu)[0]


def ink_extent(images: np.ndarray) -> np.ndarray:
    """(N, H, W) ink-high images -> the longer side of each one's ink bounding box (0: none)."""
    ink = images >= INK
    extents = []
    for axis in (2, 1):
        seen = ink.any(axis)
        first, last = seen.argmax(1), seen.shape[1] - seen[:, ::-1].argmax(1)
        extents.append(np.where(seen.any(1), last - first, 0))
    return np.maximum(*extents)


def fill_fraction(doc: dict) -> float:
    """The median share of the 64-pixel side that characters take in the run's training
    images, from up to SAMPLE of them (a fixed sample); DEFAULT_FILL, with a warning, when the
    shards are no longer where the run found them."""
    try:
        shards = open_shards(doc["config"]["shards"], "train")
    except EtlError as err:
        warnings.warn(f"{err}; framing characters at {DEFAULT_FILL:.0%} of the side",
                      EtlWarning, stacklevel=2)
        return DEFAULT_FILL
    with contextlib.closing(shards.blocks(seed=0, fields=("images",))) as blocks:
        sample = [b["images"] for b in itertools.islice(blocks, -(-SAMPLE // CHUNK))]
    extent = ink_extent(np.concatenate(sample)[:SAMPLE]) if sample else np.zeros(0)
    extent = extent[extent > 0]
    return float(np.median(extent)) / preprocess.SIZE if len(extent) else DEFAULT_FILL


def top_k(model, images: np.ndarray, k: int, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(N, 64, 64) uint8 -> class indices and probabilities (N, k), most probable first."""
    index, prob = [], []
    for s in range(0, len(images), batch):
        logits = model(jnp.asarray(images[s : s + batch], jnp.float32) / 255.0, train=False)
        p, i = jax.lax.top_k(jax.nn.softmax(logits), min(k, logits.shape[-1]))
        index.append(np.asarray(i))
        prob.append(np.asarray(p))
    return np.concatenate(index), np.concatenate(prob)


def predict(root: str | Path, paths: list[Path], which: str = "best", k: int = 5
            ) -> list[list[tuple[str, int, float]] | EtlError]:
    """Per path, its top-k (class, Shift-JIS code, probability), or the error that kept it
    from being read; one bad file does not stop the others."""
    check_choice("which", which, WHICH)
    if k < 1:
        raise EtlError(f"--top must be at least 1, not {k}")
    model, doc = load_model(root, which)
    fill, otsu = fill_fraction(doc), doc["preprocessing"].get("binarize") == "otsu"
    results: list = []
    for path in paths:
        try:
            results.append(to_input(load_gray(path), fill, otsu, path))
        except EtlError as err:
            results.append(err)
    good = [i for i, r in enumerate(results) if not isinstance(r, EtlError)]
    if good:
        index, prob = top_k(model, np.stack([results[i] for i in good]), k)
        for i, ci, pi in zip(good, index, prob, strict=True):
            results[i] = [(*doc["classes"][c], float(p)) for c, p in zip(ci, pi, strict=True)]
    return results
