"""Tests for the pseudo-handwriting renderer behind the synthetic ETL files."""

import dataclasses

import numpy as np
import pytest

from etlkit.render import WriterStyle, _parse_path, has_glyph, render, strokes


def _euc(hi: int, lo: int) -> str | None:
    try:
        return bytes([hi, lo]).decode("euc_jp")
    except UnicodeDecodeError:
        return None


# ETL-1 / ETL-6: JIS X 0201 after conversion to full-width, plus ヰ ヱ.
ETL1 = (list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ¥+-*/=()・,?'\".&:;<>#$%@[]ー。「」、")
        + [chr(c) for c in range(0x30A1, 0x30F4)])
# ETL-4 / ETL-7: hiragana with ゐ ゑ を and the (semi-)voiced sound marks.
ETL7 = [chr(c) for c in range(0x3041, 0x3094)] + ["゛", "゜"]
# ETL-8: 75 hiragana, a sample of JIS level-1 kanji and a few level-2 ones.
ETL8_KANA = [chr(c) for c in range(0x3041, 0x3094) if chr(c) not in "ぁぃぅぇぉゎゐゑ"]
LEVEL1 = [c for hi in range(0xB0, 0xD0) for lo in (0xA1, 0xB5, 0xC9, 0xDD, 0xF1, 0xFE)
          if (c := _euc(hi, lo))]
LEVEL2 = [c for hi in range(0xD0, 0xF5, 6) for lo in (0xA1, 0xCC) if (c := _euc(hi, lo))]
REQUIRED = ETL1 + ETL7 + ETL8_KANA + LEVEL1 + LEVEL2
SHAPES = [(63, 64), (127, 128), (76, 72), (60, 60)]

NEUTRAL = WriterStyle(pen_width=5.0, slant=0.0, scale=1.0, aspect=1.0, dx=0.0, dy=0.0,
                      jitter=1.0, wobble=1.0, ink=1.0)
# Extremes of the sampled ranges: big, bold, slanted, pushed to a corner / small and thin.
BOLD = WriterStyle(pen_width=7.0, slant=0.25, scale=1.05, aspect=1.15, dx=0.08, dy=-0.08,
                   jitter=2.5, wobble=3.0, ink=1.0)
THIN = WriterStyle(pen_width=3.0, slant=-0.25, scale=0.85, aspect=0.85, dx=-0.08, dy=0.08,
                   jitter=0.5, wobble=0.0, ink=0.6)


def _render(char, style=NEUTRAL, shape=(127, 128), seed=0):
    return render(char, style, shape, np.random.default_rng(seed))


def test_sets_are_what_the_etl_documentation_lists():
    assert len(ETL8_KANA) == 75
    assert len(LEVEL1) > 180 and len(LEVEL2) >= 10
    assert {"ヰ", "ヱ", "ヲ", "ッ", "ァ"} <= set(ETL1) and {"ゐ", "ゑ", "を"} <= set(ETL7)


@pytest.mark.parametrize("style", [BOLD, THIN], ids=["bold", "thin"])
@pytest.mark.parametrize("shape", [(63, 64), (60, 60)])
def test_every_required_etl_character_renders_inside_the_frame(style, shape):
    for i, char in enumerate(REQUIRED):
        assert has_glyph(char), char
        img = _render(char, style, shape, seed=i)
        assert img.shape == shape and img.dtype == np.float32, char
        assert img.sum() > 0.002 * img.size, f"{char!r} has almost no ink"
        assert img.mean() < 0.5, f"{char!r} is mostly ink"
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert border.max() == 0, f"{char!r} touches the frame"


def test_same_inputs_give_identical_images_and_other_rng_states_differ():
    for char in "書あア¥#":  # KanjiVG, table and font sources
        a, b = _render(char, seed=5), _render(char, seed=5)
        assert a.tobytes() == b.tobytes(), char
        assert a.tobytes() != _render(char, seed=6).tobytes(), char


def test_style_sample_is_deterministic_and_within_ranges():
    styles = [WriterStyle.sample(np.random.default_rng(s)) for s in range(200)]
    assert WriterStyle.sample(np.random.default_rng(3)) == styles[3]
    assert len(set(styles)) == 200
    pen = np.array([s.pen_width for s in styles])
    ink = np.array([s.ink for s in styles])
    assert pen.min() >= 3 and pen.max() <= 7 and ink.min() >= 0.6 and ink.max() <= 1
    assert max(abs(s.slant) for s in styles) <= 0.25 and max(abs(s.dx) for s in styles) <= 0.08


def test_two_writers_write_visibly_differently():
    rng = np.random.default_rng(1)
    first, second = WriterStyle.sample(rng), WriterStyle.sample(rng)
    for char in "永あ$":
        diff = np.abs(_render(char, first, seed=2) - _render(char, second, seed=2)).mean()
        assert diff > 0.02, char


@pytest.mark.parametrize("char", ["永", "¥", "#"])
def test_thicker_pen_puts_down_more_ink(char):
    thin = _render(char, dataclasses.replace(NEUTRAL, pen_width=3.0))
    thick = _render(char, dataclasses.replace(NEUTRAL, pen_width=7.0))
    assert thick.sum() > 1.4 * thin.sum()


def test_ink_intensity_follows_the_pen():
    assert _render("永", dataclasses.replace(NEUTRAL, ink=0.6)).max() == pytest.approx(0.6)
    assert _render("永").max() == pytest.approx(1.0)


def test_horizontal_stroke_is_a_band_and_vertical_strokes_are_columns():
    rows, cols = _render("一").sum(axis=1), _render("一").sum(axis=0)
    assert np.count_nonzero(rows > 0.05 * rows.max()) < 0.2 * rows.size  # peaked row profile
    assert np.count_nonzero(cols > 0.05 * cols.max()) > 0.6 * cols.size  # flat column profile
    rows, cols = _render("川").sum(axis=1), _render("川").sum(axis=0)
    assert np.count_nonzero(rows > 0.05 * rows.max()) > 0.6 * rows.size
    assert np.count_nonzero(cols > 0.05 * cols.max()) < 0.5 * cols.size


def _quadrants(img):
    h, w = img.shape[0] // 2, img.shape[1] // 2
    return img[:h, :w].sum(), img[:h, w:].sum(), img[h:, :w].sum(), img[h:, w:].sum()


@pytest.mark.parametrize(("char", "heavy", "light"),
                         [("「", 0, 3), ("」", 3, 0), ("/", 1, 0), ("ノ", 1, 3), ("ア", 1, 3)])
def test_glyphs_keep_their_orientation(char, heavy, light):
    quadrants = _quadrants(_render(char))  # top-left, top-right, bottom-left, bottom-right
    assert quadrants[heavy] > 2 * quadrants[light]


@pytest.mark.parametrize("shape", SHAPES)
def test_etl_shapes_give_float_images_with_a_centred_glyph(shape):
    img = _render("十", shape=shape)
    assert img.shape == shape and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    rows, cols = np.indices(shape)
    centre = np.array([(rows * img).sum(), (cols * img).sum()]) / img.sum()
    assert np.abs(centre - (np.array(shape) - 1) / 2).max() < 0.08 * min(shape)
    extent = np.flatnonzero(img.sum(axis=0) > 0)
    assert 0.6 * min(shape) < extent[-1] - extent[0] < 0.95 * min(shape)


@pytest.mark.parametrize("char", ["永", "#"])
def test_non_square_frame_centres_the_square_box(char):
    tall, square = _render(char, shape=(76, 72)), _render(char, shape=(72, 72))
    assert np.array_equal(tall[2:74], square)  # same rng state: the same glyph, 2 rows lower
    assert tall[:2].max() == 0 and tall[74:].max() == 0


@pytest.mark.parametrize("field", ["jitter", "wobble"])
def test_stroke_noise_changes_the_strokes(field):
    steady = dataclasses.replace(NEUTRAL, jitter=0.0, wobble=0.0)
    for char in "永あ":
        calm = _render(char, steady, seed=4)
        shaky = _render(char, dataclasses.replace(steady, **{field: 3.0}), seed=4)
        assert np.abs(calm - shaky).mean() > 0.01, char


def test_one_writers_samples_vary_more_with_a_shakier_hand():
    def spread(style):
        return np.mean([np.abs(_render("永", style, seed=s) - _render("永", style, seed=s + 99))
                        .mean() for s in range(5)])
    steady = dataclasses.replace(NEUTRAL, jitter=0.0, wobble=0.0)
    assert spread(dataclasses.replace(NEUTRAL, jitter=2.5, wobble=3.0)) > 1.2 * spread(steady)


def test_style_moves_the_glyph():
    left = _render("十", dataclasses.replace(NEUTRAL, dx=-0.08))
    right = _render("十", dataclasses.replace(NEUTRAL, dx=0.08))
    cols = np.arange(left.shape[1])
    assert (cols * right.sum(0)).sum() / right.sum() > (cols * left.sum(0)).sum() / left.sum() + 8


def test_unknown_characters_raise_key_error_naming_them():
    for char in ["\U0001F600", "\uffff", " "]:
        assert not has_glyph(char)
        with pytest.raises(KeyError, match=f"U\\+{ord(char):04X}"):
            render(char, NEUTRAL, (63, 64), np.random.default_rng(0))
    with pytest.raises(KeyError, match="single character"):
        strokes("ab")


def test_strokes_come_from_kanjivg_table_or_font():
    assert [len(strokes(c)) for c in "一あ書¥"] == [1, 3, 10, 5]
    assert strokes("#") == () and has_glyph("#")  # drawn with the font
    assert strokes("書") is strokes("書")  # cached
    for line in strokes("書"):
        assert line.ndim == 2 and line.shape[1] == 2 and line.dtype == np.float64
        assert line.min() >= 0 and line.max() <= 109


def test_path_parser_handles_relative_implicit_and_smooth_commands():
    (square,) = _parse_path("M10,10h20v20H10z")
    corners = {(10, 10), (30, 10), (30, 30), (10, 30)}
    assert corners <= {tuple(p) for p in square.round(6).tolist()}
    # relative cubic with an implicit repeat, numbers separated only by signs
    (curve,) = _parse_path("M0,0c0,0,10,0,10,0 0,0 10,0 10,0l-5-5")
    np.testing.assert_allclose(curve[[0, -1]], [[0, 0], [15, -5]])
    assert curve[:, 0].max() == pytest.approx(20)
    # S reflects the previous control point: a symmetric arch peaks in the middle
    (arch,) = _parse_path("M0,0C0,-10,10,-10,10,0S20,10,20,0")
    np.testing.assert_allclose(arch[-1], [20, 0])
    assert arch[:, 1].min() < -5 and arch[:, 1].max() > 5
    assert len(_parse_path("M0,0L1,1M5,5L6,6")) == 2
