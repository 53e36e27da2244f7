"""The evaluation's confusion figure stays readable at any class count: up to LABELLED classes
every row and column carries its character; beyond, the classes of the most confused pairs
get a labelled matrix of their own under the full one, and a colour scale says what the
shades mean."""

import numpy as np

from train.reports import figures
from train.reports.evaluate import most_confused


def _classes(n):
    return [(chr(0x4E00 + i), 0x88A0 + i) for i in range(n)]


def _blocks(sheet, box, kind):
    """Whole 32×32 blocks of red (kind 0) or blue (kind 2) shading inside `box`."""
    rgb = np.asarray(sheet.crop(box)).astype(int)
    tinted = rgb[..., kind] - rgb[..., 2 - kind] > 20
    return tinted.sum() / 32**2


def test_many_classes_get_a_labelled_matrix_of_their_most_confused_pairs():
    n = 100
    matrix = np.diag(np.full(n, 20))
    matrix[5, 7], matrix[40, 41] = 9, 4  # the only confusions: classes 5, 7, 40 and 41
    pairs = most_confused(matrix)
    sheet = figures.confusion(matrix, _classes(n), pairs, "caption")
    full = 768 // n * n  # the unlabelled full matrix: 7-pixel blocks
    assert sheet.height > full + 4 * 32  # a second matrix follows it
    below = (0, full + 22, full, sheet.height - 22)  # the second matrix, not the side panel
    assert _blocks(sheet, below, 0) == 2  # 5 -> 7 and 40 -> 41, as 32-pixel blocks
    assert _blocks(sheet, below, 2) == 4  # the four classes' diagonal


def test_few_classes_need_no_second_matrix_and_show_a_scale():
    n = 8
    matrix = np.diag(np.full(n, 10))
    matrix[1, 2] = 3
    sheet = figures.confusion(matrix, _classes(n), most_confused(matrix), "caption")
    side = 8 * 32
    assert sheet.height < 2 * side  # one matrix
    legend = np.asarray(sheet.crop((sheet.width - 240, 40, sheet.width, sheet.height))).astype(int)
    red = legend[..., 0] - legend[..., 2] > 100
    blue = legend[..., 2] - legend[..., 0] > 100
    assert red.any() and blue.any()  # the two bars of the scale, at full shade
