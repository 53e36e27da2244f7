"""`etlkit table`: a models × tasks grid from raw files, resumable, beside the paper's numbers."""

import json

import pytest
from typer.testing import CliRunner

from etlkit.cli import app
from train.experiments.table import PAPER, markdown
from train.rundir import Run

runner = CliRunner()


@pytest.fixture(scope="module")
def raw(hiragana_shards):
    """The session's synthetic ETL-8G raw files (ETL8G_01, 5 writers): read, never changed."""
    return hiragana_shards.parent / "raw"


@pytest.fixture(scope="module")
def grid(raw, tmp_path_factory):
    """A finished M6-1 grid on hiragana extracted from the raw files with a writer-disjoint
    split, 1 epoch: (folder, the command's arguments, what it printed)."""
    out = tmp_path_factory.mktemp("table") / "grid"
    args = ["table", str(raw), "--out", str(out), "--models", "M6-1", "--tasks", "hiragana",
            "--split", "writer", "--epochs", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, args, result


def _check_cells(out, result, split, models):
    """table.json, table.md and stdout agree with the runs of `models`; synthetic numbers are
    marked and set beside no paper number."""
    doc = json.loads((out / "table.json").read_text())
    assert doc["split"] == split
    assert doc["datasets"]["hiragana"]["classes"] == 75
    assert doc["datasets"]["hiragana"]["synthetic"] is True
    cells = {r["model"]: r for r in doc["results"]}
    assert sorted(cells) == models
    for model, r in cells.items():
        test = Run(out / "runs" / f"hiragana-{model}").history().test
        assert r["test_accuracy"] == test["test/accuracy"]
        assert r["best_epoch"] == test["test/best_epoch"] == 1
        row = f"| {model} | {100 * r['test_accuracy']:.2f}* |"
        assert row in result.stdout and row in (out / "table.md").read_text()
    assert cells["M6-1"]["paper"] == PAPER["M6-1"][1]
    assert "| model | hiragana (synthetic) |" in result.stdout
    assert "not comparable with the paper's" in result.stdout
    return doc, cells


def test_grid_from_raw_files_writes_table_3_and_resumes(grid):
    """The dataset extracted with the split asked for, the network trained with its own
    recipe; the same numbers from AIST's files are set beside the paper's; the command again
    trains nothing."""
    out, args, result = grid
    assert "training M6-1" in result.stderr
    doc, cells = _check_cells(out, result, "writer", ["M6-1"])
    manifest = json.loads((out / "data" / "hiragana" / "manifest.json").read_text())
    assert manifest["options"]["split_method"] == "writer"
    real = {**doc, "datasets": {"hiragana": {**doc["datasets"]["hiragana"], "synthetic": False}}}
    table = markdown(real, ["M6-1"], ["hiragana"])
    assert f"| M6-1 | {100 * cells['M6-1']['test_accuracy']:.2f} (96.13) |" in table
    assert Run(out / "runs" / "hiragana-M6-1").read_config()["config"]["lr"] == 1e-4
    # the same command again reads the finished run back instead of training
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "hiragana-M6-1: done" in again.stderr
    assert "training" not in again.stderr and again.stdout == result.stdout


def test_a_network_the_paper_did_not_train_gets_a_dash_for_its_number():
    doc = {"split": "writer", "epochs": None, "batch_size": None,
           "datasets": {"hiragana": {"synthetic": False, "classes": 75, "train": 225}},
           "results": [{"model": "ResNet-64", "task": "hiragana", "test_accuracy": 0.98765,
                        "best_epoch": 3, "paper": None},
                       {"model": "M6-1", "task": "hiragana", "test_accuracy": 0.5,
                        "best_epoch": 1, "paper": PAPER["M6-1"][1]}]}
    table = markdown(doc, ["M6-1", "ResNet-64"], ["hiragana"])
    assert "| ResNet-64 | 98.77 (—) |" in table and "| M6-1 | 50.00 (96.13) |" in table


@pytest.mark.parametrize("extra, needle", [
    (["--tasks", "kana"], "unknown task 'kana'"),
    (["--shards", "hiragana"], "expected TASK=DIR"),
    (["--tasks", "hiragana", "--models", "M6-1,FF-baseline"],
     "FF-baseline takes 28×28 images; the hiragana task's are 64×64"),
    # hostile pass 7, H4: --split checked with or without --shards, and a given dataset's
    # task and split against the grid's, so none is printed under another task's name
    (["--tasks", "hiragana", "--split", "x"], "--split must be one of random, writer, not 'x'"),
    (["--tasks", "hiragana", "--shards", "hiragana={hiragana}", "--split", "nan"],
     "--split must be one of random, writer, not 'nan'"),
    (["--tasks", "katakana", "--models", "M3", "--shards", "katakana={hiragana}"],
     "{hiragana} is a hiragana dataset, not katakana"),
    (["--tasks", "hiragana", "--models", "FF-baseline", "--shards", "hiragana={digits}"],
     "{digits} is a sklearn-digits dataset, not hiragana"),
    (["--tasks", "hiragana", "--models", "M3", "--shards", "hiragana={hiragana}", "--split",
      "writer"], "{hiragana} has a random split; the grid's --split is writer"),
])
def test_bad_grids_give_one_clear_line(raw, hiragana_shards, digits_shards, tmp_path, extra,
                                       needle):
    """Each before any work: nothing is extracted or trained."""
    given = {"hiragana": hiragana_shards, "digits": digits_shards}
    extra = [arg.format(**given) for arg in extra]
    result = runner.invoke(app, ["table", str(raw), "--out", str(tmp_path / "g"), *extra])
    assert result.exit_code == 1 and needle.format(**given) in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "g").exists()


def test_a_grid_needs_raw_files_or_shards(tmp_path):
    result = runner.invoke(app, ["table", "--out", str(tmp_path / "g"), "--tasks", "kanji"])
    assert result.exit_code == 1 and "no shards for kanji" in result.stderr


def test_a_run_without_a_test_split_is_a_dash_not_a_number(untested_hiragana_shards, tmp_path):
    """A grid on a hiragana dataset without a test split: a dash where our number would be,
    null in table.json, and a note why; the finished run is read back as untested."""
    out = tmp_path / "grid"
    args = ["table", "--out", str(out), "--models", "M6-1", "--tasks", "hiragana", "--shards",
            f"hiragana={untested_hiragana_shards}", "--epochs", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (cell,) = json.loads((out / "table.json").read_text())["results"]
    assert cell["test_accuracy"] is None and cell["best_epoch"] == 1
    for text in (result.stdout, (out / "table.md").read_text()):
        assert "| M6-1 | — |" in text  # synthetic: no paper number either
        assert "— in place of ours: the task's dataset has no test split" in text
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "hiragana-M6-1: done (not tested: no test split)" in again.stderr
    assert "training" not in again.stderr and again.stdout == result.stdout
