"""Photos or scans of one handwritten line -> its characters, left to right, by a run's model.

Segmentation is deliberately simple, made for lines of separately written characters (digits,
or kana with an ETL model). The image is brought to gray with ink high by `images.ink_high`
(paper is the majority of pixels, whatever its colour) and stretched so that paper is 0 and the
darkest ink 255; one global Otsu threshold tells ink from paper; its 8-connected components,
less specks (longer side under SPECK of the tallest component's height), are merged into one
character while their column extents overlap or lie closer than MERGE_GAP of the median
component height, so a kana written in separate strokes or a broken digit stays one character.
Each character's crop is then brought to the network's input by `images.to_input`, as an image
of one character is (framed as the training images are: by centre of mass for MNIST, by ink box
for ETL; area-averaged to the network's input size, 28 or 64), and all are classified in one
batch.

Limits: characters that touch, or whose column extents overlap (a slanted pair, a stroke
reaching over its neighbour), come out as one character: nothing splits them. Strokes of one
character side by side with a clear gap come out as two: of the 92 kana drawn cleanly by
etlkit.render, いかけにはふほり and ツハリル do. One global threshold loses faint ink under
uneven light; underlines, rulings and vertical lines are not handled. Images over
images.WORK_SIDE pixels a side are reduced first, and boxes are in that reduced image.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.filters import threshold_otsu

from etlkit.errors import EtlError

from ..reports.figures import label_image
from .images import ink_high, load_gray, to_input
from .predictor import Predictor

SPECK = 0.1  # marks smaller than this share of the tallest one are dust, not strokes
MERGE_GAP = 0.05  # pieces closer than this share of the median height are one character
MAX_MARKS = 200  # more separate marks than one line of characters has
RED = (220, 0, 0)
CAPTION = 24  # pixels under the line for the predictions


@dataclass(frozen=True)
class Character:
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive) in the gray image
    top: list[tuple[str, int, float]]  # (class, Shift-JIS code, probability), best first


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


def recognize(root: str | Path, path: Path, which: str = "best", k: int = 3
              ) -> tuple[np.ndarray, list[Character]]:
    """The image as read (gray) and its characters, left to right, each with its top-k."""
    predictor = Predictor(root, which, k)
    gray = load_gray(path)
    characters = segment(ink_high(gray, path), path)
    images = np.stack([to_input(crop, predictor.frame, path) for _, crop in characters])
    index, prob = predictor.top(images)
    return gray, [Character((cols.start, rows.start, cols.stop, rows.stop),
                            predictor.ranked(ci, pi))
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
        label = label_image(c.top[0][0], CAPTION - 4)
        sheet.paste(label, ((left + right - label.width) // 2, h + 2))
    return sheet
