"""The evaluation's confusion figure stays readable at any class count: up to LABELLED classes
every row and column carries its character; beyond, the classes of the most confused pairs
get a labelled matrix of their own under the full one, and a colour scale says what the
shades mean. `etlkit figures` of a run pointed at another dataset writes nothing."""

import json
import shutil

import numpy as np
import pytest
from assertions import one_error_line
from typer.testing import CliRunner

from etlkit.cli import app
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


@pytest.mark.parametrize("other", ["another-dataset", "no-test-split"])
def test_figures_of_a_run_pointed_at_another_dataset_are_refused_before_any_write(
        digits_run, tmp_path, request, other):
    """config.json's dataset set to another one with the run's classes: figures wrote Figs. 1,
    2a, 2b and 4 of its records before Fig. 5's evaluation refused it, and with one without a
    test split exited 0. Now it refuses both at once, as evaluate does."""
    dataset = (request.getfixturevalue("digits_shards") if other == "another-dataset" else
               request.getfixturevalue("untested_run")[0].parent / "digits")
    run = shutil.copytree(digits_run, tmp_path / "run")
    doc = json.loads((run / "config.json").read_text("utf-8"))
    doc["dataset"] = str(dataset)
    (run / "config.json").write_text(json.dumps(doc), "utf-8")
    needle = f"{dataset}: not the dataset {run} was trained on"
    runner = CliRunner()
    one_error_line(runner.invoke(app, ["figures", str(run)]), needle)
    one_error_line(runner.invoke(app, ["evaluate", str(run)]), needle)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in digits_run.iterdir())
