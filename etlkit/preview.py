"""A labelled grid of decoded records as one PNG, for eyeballing a file's images and labels."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import digits, formats, preprocess, reader, render
from .errors import EtlError
from .records import RecordBatch
from .shards import ShardSet

_LABEL_STYLE = render.WriterStyle(pen_width=7.0, slant=0.0, scale=1.0, aspect=1.0, dx=0.0,
                                  dy=0.0, jitter=0.0, wobble=0.0, ink=1.0)


def sample(batch: RecordBatch, count: int, seed: int = 0) -> RecordBatch:
    """`count` records spread over the file (sorted, so file order is kept)."""
    if len(batch) <= count:
        return batch
    pick = np.sort(np.random.default_rng(seed).choice(len(batch), count, replace=False))
    return batch[pick]


def grid(batch: RecordBatch, levels: int, columns: int = 12) -> Image.Image:
    """Tiles of dark ink on white, each captioned with its character and code."""
    h, w = batch.images.shape[1:]
    label_h = 22
    rows = -(-len(batch) // columns)
    sheet = Image.new("L", (columns * (w + 4), rows * (h + label_h + 6)), 255)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    scaled = 255 - (batch.images.astype(np.uint16) * 255 // levels).astype(np.uint8)
    for i in range(len(batch)):
        x, y = (i % columns) * (w + 4) + 2, (i // columns) * (h + label_h + 6) + 2
        sheet.paste(Image.fromarray(scaled[i]), (x, y))
        caption = glyph(str(batch.chars[i]), 18)
        if caption is not None:
            sheet.paste(caption, (x, y + h + 2))
        else:
            draw.text((x, y + h + 4), "--", fill=0, font=font)
        draw.text((x + 21, y + h + 5), f"{int(batch.codes[i]):X}", fill=0, font=font)
    return sheet


def glyph(char: str, size: int) -> Image.Image | None:
    """`char` drawn dark on white with the KanjiVG renderer, `size` pixels square, or None when
    it has no glyph: captions that need no CJK font (Pillow's has no kana or kanji)."""
    if not char or not render.has_glyph(char):
        return None
    ink = render.render(char, _LABEL_STYLE, (size, size), np.random.default_rng(0))
    return Image.fromarray(255 - (ink * 255).astype(np.uint8))


def class_grid(shards: ShardSet, per_class: int = 10, max_classes: int = 48,
               seed: int = 0) -> Image.Image:
    """One row per class (up to `max_classes`, spread over the table): its glyph, then samples."""
    data = shards.read(("images", "labels"))
    classes = shards.classes
    rows = np.unique(np.linspace(0, len(classes) - 1, min(max_classes, len(classes))).round())
    rng = np.random.default_rng(seed)
    side = shards.manifest.get("image_size", 64)
    cell, glyph_size = side + 2, min(40, side - 4)  # 66 and 40 for 64×64, 30 and 24 for 28×28
    at = (cell - glyph_size) // 2 - 1
    sheet = Image.new("L", ((per_class + 1) * cell, len(rows) * cell), 255)
    draw = ImageDraw.Draw(sheet)
    for r, c in enumerate(rows.astype(int)):
        name = classes[c][0]
        drawn = glyph(name, glyph_size)
        if drawn is not None:
            sheet.paste(drawn, (at, r * cell + at))
        else:
            draw.text((4, r * cell + cell // 2 - 7), name[:9], fill=0,
                      font=ImageFont.load_default(size=11))
        members = np.flatnonzero(data["labels"] == c)
        picks = rng.choice(members, min(per_class, len(members)), replace=False)
        for k, i in enumerate(np.sort(picks)):
            sheet.paste(Image.fromarray(255 - data["images"][i]),
                        ((k + 1) * cell + 1, r * cell + 1))
    return sheet


def gray_vs_otsu(shards: ShardSet, count: int = 12, seed: int = 0) -> Image.Image:
    """Paper Fig. 2b: gray images (top) and their Otsu binarization (bottom).

    Gray images come from the raw records (or IDX / package files) the shards point to
    (`source`), or from the shards themselves when they were extracted with --binarize none.
    """
    data = shards.read(("images", "source"))
    if not len(data["source"]):
        raise EtlError(f"{shards.root}: split {shards.split} is empty")
    picks = np.sort(np.random.default_rng(seed).choice(len(data["source"]),
                                                       min(count, len(data["source"])), False))
    if shards.manifest["options"]["binarize"] == "none":
        gray = data["images"][picks]
    else:
        gray = _raw_gray(shards.manifest["sources"], data["source"][picks])
    both = np.concatenate([np.concatenate(list(gray), axis=1),
                           np.concatenate(list(preprocess.binarize(gray)), axis=1)], axis=0)
    return Image.fromarray(255 - both)


def _raw_gray(sources: list[dict], picks: np.ndarray) -> np.ndarray:
    """The gray images of (source, record) pairs, each source file read once."""
    gray: list[np.ndarray] = [np.empty(0)] * len(picks)
    for f in np.unique(picks[:, 0]):
        rows = np.flatnonzero(picks[:, 0] == f)
        source, records = sources[f], picks[rows, 1]
        if digits.is_digits_source(source):
            images = digits.source_images(source)[records]
        else:
            path = Path(source["path"])
            if not path.is_file():
                raise EtlError(f"{path}: raw file not found; gray images need the raw files, or "
                               "a dataset extracted with --binarize none")
            fmt = formats.get(source["dataset"])
            images = preprocess.to_size(reader.read_records(path, records, fmt.name).images,
                                        fmt.levels)
        for row, image in zip(rows, images, strict=True):
            gray[row] = image
    return np.stack(gray)
