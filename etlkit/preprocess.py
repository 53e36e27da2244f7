"""Raw ETL images -> 64×64 uint8 with ink = 255, optionally Otsu-binarized, whole batches at once.

Every native size is first padded to a square (centred; an odd extra row goes at the bottom, so
64×63 gains one blank bottom row as in Tsai 2016), then reduced by area averaging: a block sum
when the side is a multiple of 64 (128×127 → 64×64), a separable area-weight matrix otherwise
(76×76, 60×60). Block sums stay in raw-level units until the end, where one lookup table maps
them to 0..255; Otsu runs on those small integer images with the table's values, which gives
exactly scikit-image's `threshold_otsu` on the 0..255 image from a histogram 4× smaller.
"""

from functools import cache

import numpy as np

from .formats import Format, pixels

SIZE = 64
BINARIZE = ("otsu", "none")  # Otsu's threshold, or the gray levels kept
_LANES = 4  # separate counters per image, see _histogram_keys


def prepare(fmt: Format, raw: np.ndarray, otsu: bool) -> np.ndarray:
    """(N, record_size) raw records of one format -> (N, 64, 64) uint8 training images.

    4-bit 128×127 images (the G family, most of the data) are block-summed straight from their
    packed bytes; other formats are unpacked first.
    """
    layout = fmt.layout
    if layout.family == "G":
        sums, top = pixels.block_sums4(layout.payload(raw), layout.shape), 4 * fmt.levels
    else:
        sums, top = block_sums(layout.decode(raw)[1], fmt.levels)
    return finish(sums, top, otsu)


def to_size(images: np.ndarray, levels: int) -> np.ndarray:
    """(N, H, W) raw levels 0..levels -> (N, 64, 64) uint8, 0..255, anti-aliased."""
    return finish(*block_sums(images, levels), otsu=False)


def block_sums(images: np.ndarray, levels: int) -> tuple[np.ndarray, int]:
    """(N, H, W) raw levels -> (N, 64, 64) area sums and the largest possible sum.

    Integer factors sum f×f blocks in integers (~10x faster than a float mean over strided
    axes); other sizes are area-averaged in float and returned already as 0..255.
    """
    square = _pad_square(images)
    side = square.shape[1]
    if side == SIZE:
        return square, levels
    if side == 2 * SIZE and levels * 2 <= 255:
        rows = np.add(square[:, 0::2], square[:, 1::2], dtype=np.uint8)  # row pairs: contiguous
        pairs = rows.view("<u2")  # then the two horizontal neighbours in each uint16
        return (pairs & 0xFF) + (pairs >> 8), levels * 4
    if side % SIZE == 0:
        f = side // SIZE
        total = square.astype(np.uint16)
        rows = sum(total[:, i::f] for i in range(f))
        sums = _level_table(levels * f * f)[sum(rows[:, :, j::f] for j in range(f))]
        return sums, 255
    weights = _area_weights(side)
    mean = weights @ square.astype(np.float32) @ weights.T
    return np.floor(mean * np.float32(255 / levels) + np.float32(0.5)).astype(np.uint8), 255


def finish(sums: np.ndarray, top: int, otsu: bool) -> np.ndarray:
    """Block sums (0..top) -> 0..255 images, or {0, 255} thresholded at each image's Otsu."""
    table = _level_table(top)
    if not otsu:
        return table[sums]
    thresholds = otsu_thresholds(sums, table).astype(sums.dtype)  # same dtype: 20x faster compare
    return (sums > thresholds[:, None, None]).view(np.uint8) * np.uint8(255)


@cache
def _level_table(top: int) -> np.ndarray:
    """Sum of raw levels (0..top) -> 0..255, rounded half up (strictly increasing)."""
    return np.floor(np.arange(top + 1) * 255 / top + 0.5).astype(np.uint8)


def otsu_thresholds(images: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Per-image `skimage.filters.threshold_otsu` of (N, H, W) integer images, as int (N,).

    With `values`, a strictly increasing table, pixels are indices whose intensity is
    `values[pixel]` and the thresholds come back as indices: `pixel > t` splits exactly as
    scikit-image splits `values[pixel]`, because empty bins between occupied ones never win its
    first-maximum argmax.
    """
    values = np.arange(256) if values is None else np.asarray(values, np.int64)
    bins, n = len(values), len(images)
    flat = images.reshape(n, images.shape[1] * images.shape[2])
    counts = np.empty((n, bins), np.intp)
    block, keys = _histogram_keys(bins, flat.shape[1])
    for start in range(0, n, block):  # one bincount per block of images: keys stay in cache
        rows = flat[start : start + block]
        hist = np.bincount(np.add(rows, keys[: len(rows)], dtype=np.uint16).ravel(),
                           minlength=len(rows) * _LANES * bins)
        counts[start : start + block] = hist.reshape(-1, _LANES, bins).sum(axis=1)
    weight1 = np.cumsum(counts, axis=1)
    weight2 = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean1 = np.cumsum(counts * values, axis=1) / weight1
        mean2 = (np.cumsum((counts * values)[:, ::-1], axis=1) / weight2[:, ::-1])[:, ::-1]
        variance = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    occupied = counts > 0
    lo, hi = np.argmax(occupied, axis=1), bins - 1 - np.argmax(occupied[:, ::-1], axis=1)
    # scikit-image histograms only [min, max]; outside it the terms above are 0/0
    index = np.arange(bins - 1)
    inside = (index[None, :] >= lo[:, None]) & (index[None, :] < hi[:, None])
    variance = np.where(inside, variance, -np.inf)
    if not n:
        return np.empty(0, np.int64)
    return np.where(lo == hi, lo, np.argmax(variance, axis=1)).astype(np.int64)


@cache
def _histogram_keys(bins: int, pixels: int) -> tuple[int, np.ndarray]:
    """Images per bincount, and the uint16 key offset of each (image, pixel) in a block.

    Pixel j of image i counts into bin (i * _LANES + j % _LANES) * bins + value: neighbouring
    pixels (mostly the same background value) land in different counters, so bincount's
    increments do not wait on each other (~1.4x faster), and the lanes are summed after.
    """
    block = min(256, (1 << 16) // (_LANES * bins))
    image = np.arange(block)[:, None] * _LANES * bins
    lane = (np.arange(pixels) % _LANES * bins)[None, :]
    return block, (image + lane).astype(np.uint16)


def binarize(images: np.ndarray) -> np.ndarray:
    """Otsu per 0..255 image: pixels above the image's threshold become 255, the rest 0."""
    return finish(images, 255, otsu=True)


def _pad_square(images: np.ndarray) -> np.ndarray:
    n, h, w = images.shape
    side = max(h, w)
    if h == w:
        return images
    top, left = (side - h) // 2, (side - w) // 2
    out = np.zeros((n, side, side), images.dtype)
    out[:, top : top + h, left : left + w] = images
    return out


@cache
def _area_weights(side: int) -> np.ndarray:
    """(64, side) float32: output pixel i averages input pixels by their overlap with its span."""
    scale = side / SIZE
    edges = np.arange(SIZE + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(side)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return (overlap / scale).astype(np.float32)
