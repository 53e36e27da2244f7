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

from etlkit.preview import glyph_image

from ..rundir import History

BLUE, LIGHT_BLUE, ORANGE, RED = (31, 90, 170), (150, 180, 225), (230, 120, 20), (200, 40, 30)
ARROW = "→"  # drawn as a shape: the font lacks it
SS = 2  # curves are drawn at twice the size and reduced, for smooth lines


def save(image: Image.Image, path: Path) -> None:
    """Write a PNG atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def text_font(size: int = 11) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def label_image(char: str, size: int) -> Image.Image:
    """A class name: its glyph when it is one renderable character, else text."""
    glyph = glyph_image(char, size)
    if glyph is not None:
        return glyph
    font = text_font()
    image = Image.new("L", (math.ceil(font.getlength(char)) + 2, size), 255)
    ImageDraw.Draw(image).text((1, size / 2), char, fill=0, font=font, anchor="lm")
    return image


def _row(items: list, height: int = 20) -> Image.Image:
    """Glyph images, ARROW and text side by side, centred on one line."""
    font = text_font()
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
    """One block per class pair, log(1 + count) shading (blue diagonal, red confusions) with
    its colour scale, rows true and columns predicted in class-table order; the most confused
    pairs beside it. Blocks too small for a character (more than LABELLED classes) leave the
    full matrix unlabelled, so the classes of the most confused pairs follow as a labelled
    matrix of their own."""
    full = _matrix(matrix, classes)
    panel = [_row(["most confused (true", ARROW, "predicted: count)"])]
    panel += [_row([label_image(classes[t][0], 18), ARROW, label_image(classes[p][0], 18),
                    str(k)]) for t, p, k in pairs] or [_row(["none"])]
    parts = [(full, caption)]
    if len(classes) > LABELLED and pairs:
        involved = list(dict.fromkeys(c for t, p, _ in pairs for c in (t, p)))[:LABELLED]
        subset = np.array(sorted(involved))
        parts.append((_matrix(matrix[np.ix_(subset, subset)], [classes[i] for i in subset],
                              scale_max=int(matrix.max())),
                      f"the {len(subset)} classes of the most confused pairs, same shading"))
    legend = _scale(int(matrix.max()))
    right = max(r.width for r in panel)
    width = max(max(im.width for im, _ in parts) + 16 + right,
                max(text_font().getbbox(c)[2] for _, c in parts) + 8)
    height = max(sum(im.height + 22 for im, _ in parts), 22 * len(panel) + legend.height + 12)
    sheet = Image.new("RGB", (width, height), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for im, text in parts:
        sheet.paste(im, (0, y))
        draw.text((4, y + im.height + 4), text, fill=0, font=text_font())
        y += im.height + 22
    x = max(im.width for im, _ in parts) + 16
    for i, row in enumerate(panel):
        sheet.paste(row, (x, 2 + 22 * i))
    sheet.paste(legend, (x, 22 * len(panel) + 12))
    return sheet


LABELLED = 48  # classes up to which each row and column of a matrix carries its character


def _matrix(matrix: np.ndarray, classes: list, scale_max: int | None = None) -> Image.Image:
    """The shaded blocks, with each class's character along both edges when blocks are large
    enough to hold one."""
    c = len(classes)
    block = max(1, min(32, 768 // c))
    top_count = max(int(matrix.max()) if scale_max is None else scale_max, 1)
    shade = np.log1p(matrix) / np.log1p(top_count)
    colour = np.where(np.eye(c, dtype=bool)[..., None], BLUE, RED)
    rgb = np.rint(255 - shade[..., None] * (255 - np.array(colour))).astype(np.uint8)
    cells = Image.fromarray(np.repeat(np.repeat(rgb, block, 0), block, 1))
    labels = [label_image(name, min(block - 2, 20)) for name, _ in classes] if block >= 12 else []
    left = top = max((lab.width for lab in labels), default=0) + 4  # the top ones are turned
    sheet = Image.new("RGB", (left + c * block, top + c * block), "white")
    sheet.paste(cells, (left, top))
    for i, lab in enumerate(labels):
        sheet.paste(lab, (left - 2 - lab.width, top + i * block + (block - lab.height) // 2))
        turned = lab.transpose(Image.Transpose.ROTATE_90)
        sheet.paste(turned, (left + i * block + (block - turned.width) // 2,
                             top - 2 - turned.height))
    return sheet


def _scale(top_count: int, length: int = 160) -> Image.Image:
    """The colour scale: log(1 + count) from 0 to the largest count, right (blue) and wrong
    (red)."""
    top_count = max(top_count, 1)
    shade = np.linspace(0, 1, length)[None, :, None]
    bars = [np.rint(255 - shade * (255 - np.array(colour))).astype(np.uint8).repeat(10, 0)
            for colour in (BLUE, RED)]
    font = text_font()
    margin = 8  # room for the first and last numbers under the bars
    sheet = Image.new("RGB", (length + 2 * margin + 60, 66), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((0, 0), "count (log scale)", fill=0, font=font)
    for i, (bar, name) in enumerate(zip(bars, ("right", "wrong"), strict=True)):
        sheet.paste(Image.fromarray(bar), (margin, 16 + 14 * i))
        draw.text((margin + length + 4, 16 + 14 * i + 5), name, fill=0, font=font, anchor="lm")
    middle = round(np.expm1(np.log1p(top_count) / 2))
    for count in sorted({0, middle, top_count}):
        x = margin + round(np.log1p(count) / np.log1p(top_count) * (length - 1))
        draw.text((x, 46), str(count), fill=0, font=font, anchor="mt")
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
        cap = _row([label_image(true, 18), ARROW, label_image(predicted, 18), f"({prob:.2f})"])
        cap.thumbnail((cell_w - 4, 20))
        sheet.paste(cap, (x + (cell_w - cap.width) // 2, y + 70))
    return sheet


def curves(history: History, steps_per_epoch: int) -> Image.Image:
    """Loss and accuracy against epochs: train per logging step and per epoch, validation per
    epoch; the test result, when there is one, in the title (or that the best model was not
    tested: no test split)."""
    train, epochs, test = history.train, history.epochs, history.test
    x_max = max([r["epoch"] for r in epochs + train] + [1])
    panels = []
    for key in ("loss", "accuracy"):
        series = [([(r["step"] / steps_per_epoch, r[f"train/{key}"]) for r in train],
                   LIGHT_BLUE, 1),
                  ([(r["epoch"], r[f"train/epoch_{key}"]) for r in epochs], BLUE, 2),
                  ([(r["epoch"], r[f"val/{key}"]) for r in epochs
                    if r[f"val/{key}"] is not None], ORANGE, 2)]  # None: no validation split
        values = [y for pts, _, _ in series for _, y in pts if math.isfinite(y)]
        y_max = 1.0 if key == "accuracy" else _nice(max(values + [1e-3]))
        panels.append(_panel(key, series, x_max, y_max))
    title = "training curves"
    if test and test["test/accuracy"] is None:
        title += f"; the best model, epoch {test['test/best_epoch']}, not tested (no test split)"
    elif test:
        title += (f"; test accuracy {test['test/accuracy']:.2%} (top-5 {test['test/top5']:.2%}) "
                  f"with the best model, epoch {test['test/best_epoch']}")
    w, h = panels[0].size
    sheet = Image.new("RGB", (2 * w, h + 60 * SS), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((10 * SS, 8 * SS), title, fill=0, font=text_font(12 * SS))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * w, 28 * SS))
    x = 60 * SS
    for label, colour, width in (("train, per logging step", LIGHT_BLUE, 1),
                                 ("train, epoch mean", BLUE, 2), ("validation", ORANGE, 2)):
        y = h + 42 * SS
        draw.line((x, y, x + 24 * SS, y), fill=colour, width=width * SS)
        draw.text((x + 30 * SS, y), label, fill=0, font=text_font(11 * SS), anchor="lm")
        x += 60 * SS + int(draw.textlength(label, font=text_font(11 * SS)))
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
    font = text_font(11 * SS)

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
    draw.text((x0, 2 * SS), name, fill=0, font=text_font(12 * SS))
    for points, colour, width in series:
        xy = [at(x, y) for x, y in points if math.isfinite(y)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=width * SS, joint="curve")
        if width > 1:
            for px, py in xy:
                draw.ellipse((px - 3 * SS, py - 3 * SS, px + 3 * SS, py + 3 * SS), fill=colour)
    return panel
