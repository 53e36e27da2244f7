"""Pseudo-handwritten character images for synthetic ETL files.

etlkit cannot ship the ETL Character Database, so ``etlkit synth`` writes look-alike raw files for
tests and demos, and their images come from here. Stroke skeletons are read at run time from the
installed ``kanjivg`` package (KanjiVG, CC BY-SA 3.0, by Ulrich Apel; the data is used, not
copied into etlkit) and drawn with a per-writer pen and style plus per-sample noise. ASCII symbols
that KanjiVG lacks come from Pillow's bundled Aileron font, and the few characters that neither
has come from a small stroke table.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

BOX = 109.0  # side of KanjiVG's viewBox; all stroke coordinates are in these units
_SS = 4  # supersampling factor of the drawing canvas
_STEP = 2.5  # point spacing along a resampled stroke (box units)
_KNOT = 20.0  # spacing of the smooth jitter noise knots along strokes (box units)
_FR = 4  # pixels per box unit of cached font glyphs
_BASELINE, _CAP = 93.0, 78.0  # where KanjiVG's Latin capitals sit, so font glyphs match them
_SVG = "{http://www.w3.org/2000/svg}"
_CMD = re.compile(r"([MmCcSsLlHhVvZz])([^MmCcSsLlHhVvZz]*)")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4}

# Strokes, as polylines, for characters of the ETL sets that KanjiVG and the font lack (¥ ‾ 「 」),
# that the font draws small at x-height unlike box-filling handwriting (+ - * = < >), or that
# KanjiVG draws as a corner diacritic while ETL writers wrote them as a character of their own.
_RING = tuple((54.5 + 12 * math.cos(t), 52 + 12 * math.sin(t)) for t in np.linspace(0, 6.6, 25))
_TABLE: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "¥": (((23.5, 15), (54.5, 54)), ((85.5, 15), (54.5, 54)), ((54.5, 54), (54.5, 93)),
          ((30, 60), (79, 60)), ((30, 75), (79, 75))),
    "‾": (((18, 16), (91, 16)),),
    "「": (((68, 14), (38, 14), (38, 70)),),
    "」": (((71, 39), (71, 95), (41, 95)),),
    "+": (((20, 54.5), (89, 54.5)), ((54.5, 20), (54.5, 89))),
    "-": (((28, 54.5), (81, 54.5)),),
    "*": (((54.5, 22), (54.5, 87)), ((26, 38), (83, 71)), ((83, 38), (26, 71))),
    "=": (((20, 42), (89, 42)), ((20, 67), (89, 67))),
    "<": (((82, 22), (27, 54.5), (82, 87)),),
    ">": (((27, 22), (82, 54.5), (27, 87)),),
    "゛": (((36, 34), (50, 60)), ((57, 28), (71, 54))),
    "゜": (_RING,),
}


@dataclass(frozen=True)
class WriterStyle:
    """How one writer's hand differs from KanjiVG's skeleton; constant across their samples."""

    pen_width: float  # stroke width, box units
    slant: float  # horizontal shear (positive leans right)
    scale: float  # overall glyph size factor
    aspect: float  # x/y stretch
    dx: float  # offset as a fraction of the box
    dy: float
    jitter: float  # smooth per-stroke noise amplitude, box units
    wobble: float  # low-frequency stroke bending amplitude, box units
    ink: float  # peak ink intensity

    @classmethod
    def sample(cls, rng: np.random.Generator) -> WriterStyle:
        """Draw a plausible writer; ranges keep the glyph at roughly 70-90% of the frame."""
        u, n = rng.uniform, rng.normal
        return cls(pen_width=float(u(3.0, 7.0)), slant=float(np.clip(n(0, 0.1), -0.25, 0.25)),
                   scale=float(u(0.85, 1.05)), aspect=float(u(0.88, 1.12)),
                   dx=float(np.clip(n(0, 0.03), -0.08, 0.08)),
                   dy=float(np.clip(n(0, 0.03), -0.08, 0.08)), jitter=float(u(0.5, 2.5)),
                   wobble=float(u(0.0, 3.0)), ink=float(u(0.6, 1.0)))


def has_glyph(char: str) -> bool:
    """Whether :func:`render` can draw ``char`` from any of its three sources."""
    return _source(char) is not None


@cache
def strokes(char: str) -> tuple[np.ndarray, ...]:
    """Stroke polylines of ``char`` in 109-box coordinates; empty for font-drawn characters."""
    source = _source(char)
    if source is None:
        code = f" (U+{ord(char):04X})" if len(char) == 1 else ", not a single character"
        raise KeyError(f"cannot render {char!r}{code}: not in KanjiVG, stroke table or font")
    if source == "font":
        return ()
    if source == "table":
        polylines = [np.array(s, dtype=float) for s in _TABLE[char]]
    else:
        root = ET.parse(_kanji_dir() / f"{ord(char):05x}.svg").getroot()
        group = next(g for g in root.iter(f"{_SVG}g")
                     if g.get("id", "").startswith("kvg:StrokePaths_"))
        paths = sorted(group.iter(f"{_SVG}path"), key=lambda p: int(p.get("id").rsplit("-s", 1)[1]))
        polylines = [poly for p in paths for poly in _parse_path(p.get("d"))]
    out = tuple(_resample(p) for p in polylines)
    for a in out:
        a.flags.writeable = False
    return out


def render(char: str, style: WriterStyle, shape: tuple[int, int],
           rng: np.random.Generator) -> np.ndarray:
    """Float32 ink image of ``char`` (1 = full ink) of ``shape`` = (rows, cols).

    The 109-box is scaled to fit min(rows, cols), centred. Strokes are drawn on a supersampled
    canvas and box-filtered down, so edges are anti-aliased; ``rng`` supplies the per-sample
    variation (stroke noise, pressure, small shift, scale and rotation).
    """
    h, w = shape
    pts = strokes(char)  # raises KeyError for unknown characters
    a, b = _style_affine(style, rng)
    widths = style.pen_width * np.exp(rng.normal(0, 0.08, max(len(pts), 1)))
    margin = widths.max() / 2 + 3.0  # writers keep clear of the frame
    unit = min(h, w) * _SS / BOX  # canvas pixels per box unit
    origin = (np.array([w, h]) * _SS - BOX * unit) / 2
    canvas = Image.new("L", (w * _SS, h * _SS))
    if pts:
        p, knot, basis, bend_dir, sid, splits = _layout(char)
        knots = rng.normal(size=(knot[-1, -1] + 1, 2))
        noise = np.einsum("nk,nkd->nd", basis, knots[knot])
        bend = rng.normal(size=len(pts))[sid, None] * bend_dir
        q = (p + style.jitter * noise + style.wobble * bend) @ a.T + b
        f, t = _fit(q, margin)
        q = (q * f + t) * unit + origin
        _draw_strokes(ImageDraw.Draw(canvas), q, sid, splits, widths * unit)
    else:
        bbox, width = _font_info(char)
        corners = np.array(bbox)[[[0, 1], [2, 1], [0, 3], [2, 3]]] @ a.T + b
        f, t = _fit(corners, margin)
        fwd_b = (b * f + t) * unit + origin
        inv = np.linalg.inv(a * f * unit / _FR)
        off = -inv @ fwd_b
        grow = round(max((style.pen_width - width) / 2, -0.3 * width) * 4) / 4
        canvas = _font_mask(char, grow).transform(
            canvas.size, Image.Transform.AFFINE, (*inv[0], off[0], *inv[1], off[1]),
            Image.Resampling.NEAREST)  # the canvas is supersampled anyway
    # Box-filter downsampling; reduce() equals resize(..., BOX) at this integer ratio, but faster.
    return np.asarray(canvas.reduce(_SS), dtype=np.float32) * np.float32(style.ink / 255)


def _draw_strokes(draw: ImageDraw.ImageDraw, q: np.ndarray, sid: np.ndarray,
                  splits: np.ndarray, widths: np.ndarray) -> None:
    """Draw polylines with round caps, and round joints only where they turn enough to notch."""
    seg = np.diff(q, axis=0)
    norm = np.hypot(*seg.T) + 1e-9
    round_at = np.ones(len(q), dtype=bool)
    round_at[1:-1] = (seg[:-1] * seg[1:]).sum(axis=1) < 0.985 * norm[:-1] * norm[1:]
    round_at[splits] = round_at[splits - 1] = True  # stroke ends: caps
    for line, width in zip(np.split(q, splits), widths, strict=True):
        draw.line(line.ravel().tolist(), fill=255, width=round(width))
    for (x, y), r in zip(q[round_at].tolist(), (widths[sid[round_at]] / 2).tolist(), strict=True):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _style_affine(style: WriterStyle, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Box-to-box affine map (matrix, offset) of the style plus a small per-sample variation."""
    k = style.scale * math.exp(rng.normal(0, 0.03))
    theta = rng.normal(0, 0.03)
    cos, sin = math.cos(theta), math.sin(theta)
    stretch = np.diag([k * math.sqrt(style.aspect), k / math.sqrt(style.aspect)])
    a = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, -style.slant], [0, 1]]) @ stretch
    centre = np.full(2, BOX / 2)
    offset = centre + np.array([style.dx, style.dy]) * BOX + rng.normal(0, 0.015 * BOX, 2)
    return a, offset - a @ centre


def _fit(points: np.ndarray, margin: float) -> tuple[float, np.ndarray]:
    """Scale and shift (p -> f p + t) that bring the points within ``margin`` of the box edges."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    f = min(1.0, *((BOX - 2 * margin) / np.maximum(hi - lo, 1e-9)))
    return f, np.maximum(margin - f * lo, 0) + np.minimum(BOX - margin - f * hi, 0)


@lru_cache(maxsize=1)
def _kanji_dir() -> Path:
    """Where the installed kanjivg package keeps its SVG files."""
    return Path(str(importlib.metadata.distribution("kanjivg").locate_file("kanji")))


@cache
def _source(char: str) -> str | None:
    """Which source draws ``char``: 'kanjivg', 'table', 'font' or None."""
    if len(char) != 1:
        return None
    if char in _TABLE:
        return "table"
    if (_kanji_dir() / f"{ord(char):05x}.svg").is_file():
        return "kanjivg"
    glyph = _font_glyph(char)
    if glyph.getbbox() is None or glyph.tobytes() == _font_glyph("\uffff").tobytes():
        return None  # blank, or the notdef box the font draws for characters it lacks
    return "font"


def _parse_path(d: str) -> list[np.ndarray]:
    """Sampled polylines, one per subpath, of SVG path data made of M, L, H, V, C, S, Z.

    Coordinates stay Python floats until a subpath's Béziers are evaluated at once: numpy
    arrays of two numbers per command cost more than the arithmetic (a third of synth's time
    on a kanji file)."""
    polylines: list[np.ndarray] = []
    segs: list[tuple[float, ...]] = []  # cubic Béziers (x0, y0, ..., x3, y3) of the subpath
    px = py = sx = sy = cx = cy = 0.0  # pen, subpath start, last control point
    for cmd, args in _CMD.findall(d):
        up = cmd.upper()
        if up == "Z":
            segs.append((px, py, px, py, sx, sy, sx, sy))
            px, py = cx, cy = sx, sy
            continue
        nums = [float(v) for v in _NUM.findall(args)]
        n = _NARGS[up]
        if len(nums) % n:
            raise ValueError(f"SVG path command {cmd!r} takes {n} numbers at a time: {args!r}")
        for k in range(0, len(nums), n):
            a = nums[k : k + n]
            rx, ry = (px, py) if cmd.islower() else (0.0, 0.0)
            if up == "M":
                if segs:
                    polylines.append(_bezier(segs))
                    segs = []
                px, py = cx, cy = sx, sy = rx + a[0], ry + a[1]
                up = "L"  # further coordinate pairs are implicit linetos
            elif up == "C" or up == "S":
                c = [(rx + a[j], ry + a[j + 1]) for j in range(0, n, 2)]
                c1 = c[0] if up == "C" else (2 * px - cx, 2 * py - cy)  # S reflects the last
                segs.append((px, py, *c1, *c[-2], *c[-1]))
                (px, py), (cx, cy) = c[-1], c[-2]
            else:
                if up == "L":
                    ex, ey = rx + a[0], ry + a[1]
                elif up == "H":
                    ex, ey = rx + a[0], py
                else:
                    ex, ey = px, ry + a[0]
                segs.append((px, py, px, py, ex, ey, ex, ey))
                px, py = cx, cy = ex, ey
    if segs:
        polylines.append(_bezier(segs))
    return polylines


#: Bernstein weights of the 16 points sampled along each cubic Bézier (t = 1/16 ... 1).
_T = np.linspace(0, 1, 17)[1:, None]
_BEZIER_BASIS = np.hstack([(1 - _T) ** 3, 3 * _T * (1 - _T) ** 2, 3 * _T**2 * (1 - _T), _T**3])


def _bezier(segs: list[tuple[float, ...]]) -> np.ndarray:
    """Points along a chain of cubic Béziers, evaluated for all segments at once."""
    ctrl = np.array(segs).reshape(-1, 4, 2)
    return np.vstack([ctrl[0, :1], np.einsum("tk,nkd->ntd", _BEZIER_BASIS, ctrl).reshape(-1, 2)])


def _resample(p: np.ndarray) -> np.ndarray:
    """Points evenly spaced along the polyline, so noise and drawing cost follow stroke length."""
    s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(p, axis=0).T))])
    at = np.linspace(0, s[-1], max(2, math.ceil(s[-1] / _STEP) + 1))
    return np.column_stack([np.interp(at, s, p[:, 0]), np.interp(at, s, p[:, 1])])


@cache
def _layout(char: str) -> tuple[np.ndarray, ...]:
    """All stroke points concatenated with what the noise needs, precomputed once per char.

    Returns the points; for each point the indices (N, 4) and weights of the cubic B-spline
    knots of its smooth noise (strokes several knots apart, so their noise is independent); its
    bending direction (normal to the chord, zero at the stroke ends, weaker on short strokes);
    its stroke index; and the split indices between strokes.
    """
    polys = strokes(char)
    u, bend, start = [], [], 0.0
    for p in polys:
        s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(p, axis=0).T))])
        u.append(start + s / _KNOT)
        start = math.floor(u[-1][-1]) + 4.0
        chord = p[-1] - p[0]
        normal = np.array([-chord[1], chord[0]]) / max(np.hypot(*chord), 1e-9)
        if not normal.any():
            normal = np.array([0.0, 1.0])  # closed strokes bend along an arbitrary direction
        reach = np.sin(np.pi * s / max(s[-1], 1e-9)) * min(1.0, s[-1] / 40)
        bend.append(reach[:, None] * normal)
    lens = [len(p) for p in polys]
    sid = np.repeat(np.arange(len(polys)), lens)
    knot_pos = np.concatenate(u)
    f = (knot_pos % 1)[:, None]
    basis = np.hstack([(1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1,
                       f**3]) / 6
    knot = knot_pos.astype(int)[:, None] + np.arange(4)
    return np.vstack(polys), knot, basis, np.vstack(bend), sid, np.cumsum(lens)[:-1]


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    """Aileron sized so that its capitals match KanjiVG's Latin letters at _FR px per unit."""
    top, bottom = ImageFont.load_default(size=100).getbbox("H")[1::2]
    return ImageFont.load_default(size=round(100 * _CAP * _FR / (bottom - top)))


@lru_cache(maxsize=256)
def _font_glyph(char: str) -> Image.Image:
    """``char`` drawn with the font on the 109-box at _FR px per unit, ink centred horizontally."""
    side = round(BOX * _FR)
    img = Image.new("L", (side, side))
    ImageDraw.Draw(img).text((side / 2, _BASELINE * _FR), char, 255, _font(), "ms")
    bbox = img.getbbox()  # the anchor centres the advance, not the ink
    return img if bbox is None else ImageChops.offset(img, round((side - bbox[0] - bbox[2]) / 2), 0)


@cache
def _font_info(char: str) -> tuple[tuple[float, ...], float]:
    """Ink bounding box of the font glyph and its mean stroke width (2 area / perimeter), units."""
    ink = np.asarray(_font_glyph(char)) > 127
    edges = np.count_nonzero(ink[1:] != ink[:-1]) + np.count_nonzero(ink[:, 1:] != ink[:, :-1])
    width = 2 * ink.sum() / (edges * math.pi / 4)  # pi/4: mean Manhattan-to-true perimeter ratio
    return tuple(v / _FR for v in _font_glyph(char).getbbox()), float(width) / _FR


@lru_cache(maxsize=512)
def _font_mask(char: str, grow: float) -> Image.Image:
    """The font glyph with strokes moved outwards by ``grow`` box units (blur, then threshold)."""
    sigma = 1.0
    level = 255 * 0.5 * math.erfc(grow / (sigma * math.sqrt(2)))
    blurred = _font_glyph(char).filter(ImageFilter.GaussianBlur(sigma * _FR))
    return blurred.point([255 * (v > level) for v in range(256)])
