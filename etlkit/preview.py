"""A labelled grid of decoded records as one PNG, for eyeballing a file's images and labels."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import digits, formats, preprocess, reader, render
from .errors import EtlError
from .records import RecordBatch
from .shards import ShardSet

#: Most tiles per row of a raw file's grid: 100 of ETL-8G's 128×127 images are 13,200 pixels.
MAX_COLUMNS = 100
#: Most records in a raw file's grid: 1,000 of ETL-8G's captioned tiles are 20 Mpx, under a
#: quarter of the 89 Mpx above which Pillow warns of a decompression bomb when the PNG is
#: opened (a whole file's 4,780 records were 98 Mpx).
MAX_COUNT = 1000
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
        glyph = glyph_image(str(batch.chars[i]), 18)
        if glyph is not None:
            sheet.paste(glyph, (x, y + h + 2))
        else:
            draw.text((x, y + h + 4), "--", fill=0, font=font)
        draw.text((x + 21, y + h + 5), f"{int(batch.codes[i]):X}", fill=0, font=font)
    return sheet


def glyph_image(char: str, size: int) -> Image.Image | None:
    """A caption for `char` drawn with the KanjiVG renderer (Pillow's font has no kana or kanji)."""
    if not char or not render.has_glyph(char):
        return None
    ink = render.render(char, _LABEL_STYLE, (size, size), np.random.default_rng(0))
    return Image.fromarray(255 - (ink * 255).astype(np.uint8))


def titled(image: Image.Image, title: str) -> Image.Image:
    """`image` under a line of text that says what it shows."""
    font = ImageFont.load_default(size=12)
    width = max(image.width, int(font.getlength(title)) + 8)
    sheet = Image.new(image.mode, (width, image.height + TITLE), "white")
    ImageDraw.Draw(sheet).text((4, TITLE // 2), title, fill="black", font=font, anchor="lm")
    sheet.paste(image, (0, TITLE))
    return sheet


TITLE = 20  # pixels of a figure's title line


def class_grid(shards: ShardSet, per_class: int = 10, max_classes: int = 48,
               seed: int = 0) -> Image.Image:
    """One row per class (up to `max_classes`, spread over the table): its glyph, then samples;
    the title says how many of the classes are shown."""
    labels = shards.read(("labels",))["labels"]  # then only the images shown are read
    classes = shards.classes
    rows = np.unique(np.linspace(0, len(classes) - 1, min(max_classes, len(classes))).round())
    rng = np.random.default_rng(seed)
    picks = {int(c): np.sort(rng.choice(np.flatnonzero(labels == c),
                                        min(per_class, int((labels == c).sum())), replace=False))
             for c in rows.astype(int)}
    images = _images_at(shards, np.unique(np.concatenate([np.empty(0, int), *picks.values()])))
    side = shards.info.image_size
    cell, glyph_size = side + 2, min(40, side - 4)  # 66 and 40 for 64×64, 30 and 24 for 28×28
    at = (cell - glyph_size) // 2 - 1
    sheet = Image.new("L", ((per_class + 1) * cell, len(rows) * cell), 255)
    draw = ImageDraw.Draw(sheet)
    for r, c in enumerate(rows.astype(int)):
        name = classes[c][0]
        glyph = glyph_image(name, glyph_size)
        if glyph is not None:
            sheet.paste(glyph, (at, r * cell + at))
        else:
            draw.text((4, r * cell + cell // 2 - 7), name[:9], fill=0,
                      font=ImageFont.load_default(size=11))
        for k, i in enumerate(picks[c]):
            sheet.paste(Image.fromarray(255 - images[i]), ((k + 1) * cell + 1, r * cell + 1))
    shown = (f"all {len(classes)} classes" if len(rows) == len(classes) else
             f"{len(rows)} of {len(classes)} classes, evenly spread over the class table")
    return titled(sheet, f"{shards.split}: {shown}; up to {per_class} samples each")


def _images_at(shards: ShardSet, records: np.ndarray) -> dict[int, np.ndarray]:
    """record number in the split -> its image, reading only those records' chunks."""
    ends = np.cumsum(shards.counts())
    found = {}
    with shards.open(range(len(ends))) as files:
        for shard in np.unique(np.searchsorted(ends, records, side="right")):
            mine = records[np.searchsorted(ends, records, side="right") == shard]
            start = ends[shard - 1] if shard else 0
            read = files.read_rows(int(shard), mine - start, ("images",))["images"]
            found.update(zip(mine.tolist(), read, strict=True))
    return found


def gray_vs_otsu(shards: ShardSet, count: int = 12, seed: int = 0) -> Image.Image:
    """Paper Fig. 2b: gray images (the row named gray) and their Otsu binarization (Otsu).

    Gray images come from the raw records (or IDX / package files) the shards point to
    (`source`), or from the shards themselves when they were extracted with --binarize none.
    """
    data = shards.read(("images", "source"))
    if not len(data["source"]):
        raise EtlError(f"{shards.root}: split {shards.split} is empty")
    picks = np.sort(np.random.default_rng(seed).choice(len(data["source"]),
                                                       min(count, len(data["source"])), False))
    if not shards.info.binarized:
        gray = data["images"][picks]
    else:
        gray = _raw_gray(shards.manifest["sources"], data["source"][picks])
    rows = [np.concatenate(list(gray), axis=1),
            np.concatenate(list(preprocess.binarize(gray)), axis=1)]
    side, left = gray.shape[1], 44
    sheet = Image.new("L", (left + rows[0].shape[1], 2 * side), 255)
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=12)
    for r, (name, row) in enumerate(zip(("gray", "Otsu"), rows, strict=True)):
        draw.text((4, r * side + side // 2), name, fill=0, font=font, anchor="lm")
        sheet.paste(Image.fromarray(255 - row), (left, r * side))
    return titled(sheet, f"{len(picks)} {shards.split} images: gray as read, then "
                         "Otsu-binarized (paper Fig. 2b)")


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
