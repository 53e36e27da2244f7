"""The evaluation's PNGs: confusion matrix, misclassified gallery (paper Fig. 5) and training
curves (paper Fig. 4), drawn with Pillow, so the trainer needs no plotting library.

Pillow's bundled font has no kana or kanji, so characters are drawn with the KanjiVG renderer
the previews use; nothing depends on installed fonts or the clock, so the same inputs give the
same bytes.
"""

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from etlkit.preview import glyph

BLUE, LIGHT_BLUE, ORANGE, RED = (31, 90, 170), (150, 180, 225), (230, 120, 20), (200, 40, 30)
ARROW = "→"  # drawn as a shape: the font lacks it
SS = 2  # curves are drawn at twice the size and reduced, for smooth lines


def save(image: Image.Image, path: Path) -> None:
    """Write a PNG atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _font(size: int = 11) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _label(char: str, size: int) -> Image.Image:
    """A class name: its glyph when it is one renderable character, else text."""
    drawn = glyph(char, size)
    if drawn is not None:
        return drawn
    font = _font()
    image = Image.new("L", (math.ceil(font.getlength(char)) + 2, size), 255)
    ImageDraw.Draw(image).text((1, size / 2), char, fill=0, font=font, anchor="lm")
    return image


def _row(items: list, height: int = 20) -> Image.Image:
    """Glyph images, ARROW and text side by side, centred on one line."""
    font = _font()
    widths = [it.width if isinstance(it, Image.Image) else
              14 if it == ARROW else math.ceil(font.getlength(it)) for it in items]
    row = Image.new("L", (sum(widths) + 3 * len(items), height), 255)
    draw = ImageDraw.Draw(row)
    x, mid = 0, height // 2
    for it, w in zip(items, widths, strict=True):
        if isinstance(it, Image.Image):
            row.paste(it, (x, (height - it.height) // 2))
        elif it == ARROW:
            draw.line((x + 1, mid, x + w - 4, mid), fill=0, width=1)
            draw.polygon([(x + w, mid), (x + w - 5, mid - 3), (x + w - 5, mid + 3)], fill=0)
        else:
            draw.text((x, mid), it, fill=0, font=font, anchor="lm")
        x += w + 3
    return row


def confusion(matrix: np.ndarray, classes: list, pairs: list, caption: str) -> Image.Image:
    """One block per class pair, log(1 + count) shading (blue diagonal, red confusions), rows
    true and columns predicted in class-table order; the most confused pairs beside it."""
    c = len(classes)
    block = max(1, min(32, 768 // c))
    shade = np.log1p(matrix) / np.log1p(max(int(matrix.max()), 1))
    colour = np.where(np.eye(c, dtype=bool)[..., None], BLUE, RED)
    rgb = np.rint(255 - shade[..., None] * (255 - colour)).astype(np.uint8)
    cells = Image.fromarray(np.repeat(np.repeat(rgb, block, 0), block, 1))
    labels = [_label(name, min(block - 2, 20)) for name, _ in classes] if block >= 12 else []
    left = top = max((lab.width for lab in labels), default=0) + 4  # the top ones are turned
    side = c * block
    panel = [_row(["most confused (true", ARROW, "predicted: count)"])]
    panel += [_row([_label(classes[t][0], 18), ARROW, _label(classes[p][0], 18), str(k)])
              for t, p, k in pairs] or [_row(["none"])]
    width = max(left + side + 16 + max(r.width for r in panel), _font().getbbox(caption)[2] + 8)
    height = max(top + side, 22 * len(panel)) + 22
    sheet = Image.new("RGB", (width, height), "white")
    sheet.paste(cells, (left, top))
    for i, lab in enumerate(labels):
        y = top + i * block + (block - lab.height) // 2
        sheet.paste(lab, (left - 2 - lab.width, y))
        turned = lab.transpose(Image.Transpose.ROTATE_90)
        x = left + i * block + (block - turned.width) // 2
        sheet.paste(turned, (x, top - 2 - turned.height))
    for i, row in enumerate(panel):
        sheet.paste(row, (left + side + 16, 2 + 22 * i))
    ImageDraw.Draw(sheet).text((4, height - 16), caption, fill=0, font=_font())
    return sheet


def gallery(images: np.ndarray, captions: list[tuple[str, str, float]], heading: str,
            columns: int = 8) -> Image.Image:
    """Tiles of dark ink on white, each captioned "true → predicted (probability)"."""
    cell_w, cell_h = 104, 94
    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("L", (columns * cell_w, 24 + rows * cell_h), 255)
    sheet.paste(_row([f"{heading}; captions: true", ARROW, "predicted (its probability)"]),
                (4, 2))
    for i, (image, (true, predicted, prob)) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * cell_w, 24 + (i // columns) * cell_h
        sheet.paste(Image.fromarray(255 - image), (x + (cell_w - 64) // 2, y + 2))
        cap = _row([_label(true, 18), ARROW, _label(predicted, 18), f"({prob:.2f})"])
        cap.thumbnail((cell_w - 4, 20))
        sheet.paste(cap, (x + (cell_w - cap.width) // 2, y + 70))
    return sheet


def curves(records: list[dict], steps_per_epoch: int) -> Image.Image:
    """Loss and accuracy against epochs: train per logging step and per epoch, validation per
    epoch; the test line, when there is one, in the title."""
    train = [r for r in records if r.get("kind") == "train"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    test = [r for r in records if r.get("kind") == "test"]
    x_max = max([r["epoch"] for r in epochs + train] + [1])
    panels = []
    for name, key in (("loss", "loss"), ("accuracy", "accuracy")):
        series = [([(r["step"] / steps_per_epoch, r[key]) for r in train], LIGHT_BLUE, 1),
                  ([(r["epoch"], r[f"train_{key}"]) for r in epochs], BLUE, 2),
                  ([(r["epoch"], r[f"val_{key}"]) for r in epochs
                    if r[f"val_{key}"] is not None], ORANGE, 2)]  # None: no validation split
        values = [y for pts, _, _ in series for _, y in pts if math.isfinite(y)]
        y_max = 1.0 if key == "accuracy" else _nice(max(values + [1e-3]))
        panels.append(_panel(name, series, x_max, y_max))
    title = "training curves"
    if test:
        t = test[-1]
        title += (f"; test accuracy {t['test_accuracy']:.2%} (top-5 {t['test_top5']:.2%}) "
                  f"with the best model, epoch {t['best_epoch']}")
    w, h = panels[0].size
    sheet = Image.new("RGB", (2 * w, h + 60 * SS), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((10 * SS, 8 * SS), title, fill=0, font=_font(12 * SS))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * w, 28 * SS))
    x = 60 * SS
    for label, colour, width in (("train, per logging step", LIGHT_BLUE, 1),
                                 ("train, epoch mean", BLUE, 2), ("validation", ORANGE, 2)):
        y = h + 42 * SS
        draw.line((x, y, x + 24 * SS, y), fill=colour, width=width * SS)
        draw.text((x + 30 * SS, y), label, fill=0, font=_font(11 * SS), anchor="lm")
        x += 60 * SS + int(draw.textlength(label, font=_font(11 * SS)))
    return sheet.resize((sheet.width // SS, sheet.height // SS), Image.Resampling.LANCZOS)


def _nice(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^n that is at least `value`."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _panel(name: str, series: list, x_max: float, y_max: float) -> Image.Image:
    """One plot, at SS× scale: axes, ticks, grid and the series as lines with epoch dots."""
    w, h = 460 * SS, 300 * SS
    x0, x1, y0, y1 = 56 * SS, w - 16 * SS, 20 * SS, h - 36 * SS
    panel = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(panel)
    font = _font(11 * SS)

    def at(x, y):
        return (x0 + (x1 - x0) * x / x_max,
                y1 - (y1 - y0) * min(max(y, 0.0), y_max) / y_max)

    step = max(1, _nice(x_max / 8))
    for e in np.arange(0, x_max + 1e-9, step):
        px = at(e, 0)[0]
        draw.line((px, y0, px, y1), fill=(232, 232, 232))
        draw.text((px, y1 + 6 * SS), f"{e:g}", fill=0, font=font, anchor="mt")
    for i in range(6):
        v = y_max * i / 5
        py = at(0, v)[1]
        draw.line((x0, py, x1, py), fill=(232, 232, 232))
        draw.text((x0 - 6 * SS, py), f"{v:.3g}", fill=0, font=font, anchor="rm")
    draw.rectangle((x0, y0, x1, y1), outline=0, width=SS)
    draw.text(((x0 + x1) / 2, h - 4 * SS), "epoch", fill=0, font=font, anchor="mb")
    draw.text((x0, 2 * SS), name, fill=0, font=_font(12 * SS))
    for points, colour, width in series:
        xy = [at(x, y) for x, y in points if math.isfinite(y)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=width * SS, joint="curve")
        if width > 1:
            for px, py in xy:
                draw.ellipse((px - 3 * SS, py - 3 * SS, px + 3 * SS, py + 3 * SS), fill=colour)
    return panel
