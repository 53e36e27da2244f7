"""Photos or scans of one handwritten line -> its characters, left to right, by a run's model.

Segmentation is deliberately simple, made for lines of separately written characters (digits,
or kana with an ETL model). The image is brought to gray with ink high as `predict` reads it
(paper is the majority of pixels, whatever its colour) and stretched so that paper is 0 and the
darkest ink 255; one global Otsu threshold tells ink from paper; its 8-connected components,
less specks (longer side under SPECK of the tallest component's height), are merged into one
character while their column extents overlap or lie closer than MERGE_GAP of the median
component height, so a kana written in separate strokes or a broken digit stays one character.
Each character's crop is then framed and area-averaged by `predict.to_input`, as an image of one
character is; moved so its centre of mass sits where the training images have theirs when they
are placed that way (MNIST is; without it a 28×28 digit network reads ~82% of held-out digits
instead of 96%), area-averaged to the network's input size (28 or 64), and all are classified
in one batch.

Limits: characters that touch, or whose column extents overlap (a slanted pair, a stroke
reaching over its neighbour), come out as one character: nothing splits them. Strokes of one
character side by side with a clear gap come out as two: of the 92 kana drawn cleanly by
etlkit.render, いかけにはふほり and ツハリル do. One global threshold loses faint ink under
uneven light; underlines, rulings and vertical lines are not handled. Images over
predict.WORK_SIDE pixels a side are reduced first, and boxes are in that reduced image.
"""

import contextlib
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.filters import threshold_otsu

from etlkit import preprocess
from etlkit.errors import EtlError, EtlWarning
from etlkit.shards import CHUNK, open_shards

from . import models, predict
from .evaluate import WHICH, check_choice
from .figures import _label
from .loop import load_model

SPECK = 0.1  # marks smaller than this share of the tallest one are dust, not strokes
MERGE_GAP = 0.05  # pieces closer than this share of the median height are one character
MAX_MARKS = 200  # more separate marks than one line of characters has
RED = (220, 0, 0)
CAPTION = 24  # pixels under the line for the predictions


@dataclass(frozen=True)
class Character:
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive) in the gray image
    top: list[tuple[str, int, float]]  # (class, Shift-JIS code, probability), best first


def ink_of(gray: np.ndarray, name: str | Path) -> np.ndarray:
    """(H, W) gray -> uint8 ink-high image, paper 0 and the darkest ink 255 (predict's rule)."""
    paper, ink = float(np.median(gray)), gray.astype(np.float32)
    if paper > (float(gray.min()) + float(gray.max())) / 2:
        ink, paper = 255 - ink, 255 - paper
    top = float(ink.max())
    if top - paper < 32:
        raise EtlError(f"{name}: no ink found (the image is one flat colour)")
    return np.rint(np.clip((ink - paper) * (255 / (top - paper)), 0, 255)).astype(np.uint8)


def segment(ink: np.ndarray, name: str | Path) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Characters left to right: each one's (rows, columns) box and its crop of `ink`, in which
    the ink of other marks is blanked and paper surrounds the character."""
    labels, _ = ndimage.label(ink > threshold_otsu(ink), np.ones((3, 3), bool))
    boxes = ndimage.find_objects(labels)
    heights = np.array([r.stop - r.start for r, _ in boxes])
    widths = np.array([c.stop - c.start for _, c in boxes])
    marks = np.flatnonzero(np.maximum(heights, widths) >= SPECK * heights.max())
    if len(marks) > MAX_MARKS:
        raise EtlError(f"{name}: {len(marks)} separate marks, more than the {MAX_MARKS} of one "
                       "line of characters")
    gap = MERGE_GAP * float(np.median(heights[marks]))
    groups: list[tuple[list[int], int]] = []  # per character: its marks, its right edge
    for m in sorted(marks, key=lambda m: boxes[m][1].start):
        left, right = boxes[m][1].start, boxes[m][1].stop
        if groups and left - groups[-1][1] < gap:
            groups[-1] = (groups[-1][0] + [m], max(groups[-1][1], right))
        else:
            groups.append(([m], right))
    characters = []
    for members, right in groups:
        rows = slice(min(boxes[m][0].start for m in members),
                     max(boxes[m][0].stop for m in members))
        box = (rows, slice(min(boxes[m][1].start for m in members), right))
        owned = np.isin(labels[box], [0, *(m + 1 for m in members)])
        crop = np.where(owned, ink[box], 0)
        characters.append((box, np.pad(crop, max(crop.shape))))  # paper: the majority
    return characters


@dataclass(frozen=True)
class Framing:
    fill: float  # the share of the side that a character's longer ink extent takes
    # where its centre of mass goes (row, column, as shares of the side), or None: its ink box
    # is centred, as predict does
    mass_at: tuple[float, float] | None


def framing(doc: dict) -> Framing:
    """How the run's training images frame characters, measured on predict's fixed sample: the
    median fill (as `predict.fill_fraction`, but of the images' own side, 28 or 64), and whether
    they are placed by centre of mass (MNIST is: its digits' lie within half a pixel of one
    point) rather than by ink box (ETL), whichever varies less."""
    try:
        shards = open_shards(doc["config"]["shards"], "train")
    except EtlError as err:
        warnings.warn(f"{err}; framing characters at {predict.DEFAULT_FILL:.0%} of the side",
                      EtlWarning, stacklevel=2)
        return Framing(predict.DEFAULT_FILL, None)
    with contextlib.closing(shards.blocks(seed=0, fields=("images",))) as blocks:
        sample = [b["images"] for b in itertools.islice(blocks, -(-predict.SAMPLE // CHUNK))]
    images = np.concatenate(sample)[: predict.SAMPLE] if sample else np.zeros((0, 1, 1))
    images = images[images.max((1, 2)) >= predict.INK]
    if not len(images):
        return Framing(predict.DEFAULT_FILL, None)
    side = images.shape[-1]
    fill = float(np.median(predict.ink_extent(images))) / side
    at = np.arange(side) + 0.5
    weight = images.sum((1, 2), dtype=np.float64)
    mass = np.stack([images.sum(2) @ at, images.sum(1) @ at], 1) / weight[:, None]
    ink = images >= predict.INK
    box = np.stack([_middle(ink.any(2)), _middle(ink.any(1))], 1)
    spread = [np.mean(np.hypot(*(c - np.median(c, 0)).T)) for c in (mass, box)]
    centre = tuple(float(v) for v in np.median(mass, 0) / side)
    return Framing(fill, centre if spread[0] < spread[1] else None)


def _middle(seen: np.ndarray) -> np.ndarray:
    """(N, L) bool -> the middle of each row's True run, in pixels from the start."""
    first, last = seen.argmax(1), seen.shape[1] - seen[:, ::-1].argmax(1)
    return (first + last) / 2


def inputs(crops: list[np.ndarray], doc: dict, name: str | Path) -> np.ndarray:
    """Crops -> (N, S, S) uint8 as the run's network takes them: `predict.to_input`'s 64×64,
    moved to put the centre of mass where the training images have theirs when that is how
    they are framed, area-averaged to S when the network takes 28×28, and Otsu-binarized when
    the dataset was."""
    frame = framing(doc)
    images = np.stack([predict.to_input(crop, frame.fill, False, name) for crop in crops])
    if frame.mass_at:
        for image in images:
            mass = np.array(ndimage.center_of_mass(image)) + 0.5
            move = np.rint(np.array(frame.mass_at) * preprocess.SIZE - mass)
            image[:] = ndimage.shift(image, move, order=0)
    size = models.spec(doc["config"]["model"]).input_size
    if size != preprocess.SIZE:
        images = np.stack([np.asarray(Image.fromarray(im).resize((size, size),
                                                                 Image.Resampling.BOX))
                           for im in images])
    otsu = doc["preprocessing"].get("binarize") == "otsu"
    return preprocess.binarize(images) if otsu else images


def recognize(root: str | Path, path: Path, which: str = "best", k: int = 3
              ) -> tuple[np.ndarray, list[Character]]:
    """The image as read (gray) and its characters, left to right, each with its top-k."""
    check_choice("which", which, WHICH)
    gray = predict.load_gray(path)
    characters = segment(ink_of(gray, path), path)
    model, doc = load_model(root, which)
    index, prob = predict.top_k(model, inputs([c for _, c in characters], doc, path), k)
    return gray, [Character((cols.start, rows.start, cols.stop, rows.stop),
                            [(*doc["classes"][c], float(p)) for c, p in zip(ci, pi, strict=True)])
                  for ((rows, cols), _), ci, pi in zip(characters, index, prob, strict=True)]


def draw(gray: np.ndarray, characters: list[Character]) -> Image.Image:
    """The line with a red box round each character and its most probable class under it."""
    h, w = gray.shape
    sheet = Image.new("RGB", (w, h + CAPTION), "white")
    sheet.paste(Image.fromarray(gray).convert("RGB"))
    pen = ImageDraw.Draw(sheet)
    for c in characters:
        left, top, right, bottom = c.box
        pen.rectangle((left, top, right - 1, bottom - 1), outline=RED)
        label = _label(c.top[0][0], CAPTION - 4)
        sheet.paste(label, ((left + right - label.width) // 2, h + 2))
    return sheet
