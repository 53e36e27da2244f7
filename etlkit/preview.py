"""A labelled grid of decoded records as one PNG, for eyeballing a file's images and labels."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import render
from .records import RecordBatch

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
        char = str(batch.chars[i])
        if char and render.has_glyph(char):
            glyph = render.render(char, _LABEL_STYLE, (18, 18), np.random.default_rng(0))
            sheet.paste(Image.fromarray(255 - (glyph * 255).astype(np.uint8)), (x, y + h + 2))
        elif not char:
            draw.text((x, y + h + 4), "--", fill=0, font=font)
        draw.text((x + 21, y + h + 5), f"{int(batch.codes[i]):X}", fill=0, font=font)
    return sheet
