"""The trainer's command line before any work starts: the version, help that shows each
network's recipe and the seed networks' names, and names checked before hours of training."""

import pytest
from assertions import one_error_line
from typer.testing import CliRunner

from etlkit import __version__
from etlkit.cli import app
from train import recipes
from train.config import AFFINE_MAX, BETA_RANGE, ELASTIC_MAX, WEIGHT_DECAY_MAX
from train.experiments.seeds import SEED_NETWORKS

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"etlkit {__version__}\n"


def _help(command: str) -> str:
    """`etlkit COMMAND --help` as a terminal 400 columns wide shows it, spaces collapsed."""
    done = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400"}, prog_name="etlkit")
    assert done.exit_code == 0, done.output
    shown = " ".join(done.stdout.replace("│", " ").split())
    assert shown.startswith(f"Usage: etlkit {command} [OPTIONS]"), shown
    return shown


def test_train_help_lists_every_recipe():
    shown = _help("train")
    for line in recipes.recipe_table().splitlines():
        assert line in shown, line
    assert "M7-2" in recipes.recipe_table() and "Tsai 2016" in recipes.recipe_table()


def test_train_help_states_the_ranges_the_options_are_checked_against():
    shown = _help("train")
    low, high = BETA_RANGE
    assert shown.count(f"Beta(a, a), a from {low:g} to {high:g}; 0: off") == 2  # mixup, cutmix
    assert f"at most {AFFINE_MAX:g}. 0: off" in shown
    assert f"at most {ELASTIC_MAX:g}. 0: off" in shown
    assert f"weight decay, on kernels, up to {WEIGHT_DECAY_MAX:g}." in shown


def test_seeds_help_names_every_seed_network():
    help_text = _help("seeds")
    named = {"MNIST-CNN-1 … MNIST-CNN-6"} | {n for n in SEED_NETWORKS if "MNIST-CNN" not in n}
    assert all(name in help_text for name in named), help_text


def test_unknown_names_are_refused_before_any_work(tmp_path):
    out = tmp_path / "seeds"
    one_error_line(runner.invoke(app, ["seeds", "--models", "CNN-93k,NoSuchNet", "--out",
                                       str(out)]), "unknown seed network 'NoSuchNet'", "LeNet-5")
    assert not out.exists()  # not even the digits were imported
    grid = tmp_path / "table"
    one_error_line(runner.invoke(app, ["table", "--models", "M6-1,M7", "--shards",
                                       f"hiragana={tmp_path}", "--out", str(grid)]),
                   "unknown model 'M7'", "M7-2")
    assert not grid.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["seeds", "--models", ""], "--models is empty"),
    (["seeds", "--models", " , "], "--models is empty"),
    (["table", "--models", ""], "--models is empty"),
    (["table", "--tasks", ""], "--tasks is empty"),
    (["table", "--models", "M6-1,"], "--models has an empty item"),
    (["synth", "--dataset", "ETL1", "--files", ""], "--files is empty"),
    (["extract", "raw", "--scripts", ""], "--scripts is empty"),
])
def test_an_empty_list_option_is_refused_not_read_as_every_item(tmp_path, args, message):
    """Hostile pass 5: `seeds --models ""` trained every default seed network."""
    out = tmp_path / "out"
    result = runner.invoke(app, [*args, "--out", str(out)])
    one_error_line(result, message)
    assert result.stderr.strip() == f"error: {message}" and not out.exists()


@pytest.mark.parametrize("command", [
    ["preview", "raw"], ["synth", "--dataset", "ETL1"], ["extract", "raw"], ["train", "data"],
    ["export", "run"], ["recognize", "run", "line.png"], ["table"], ["seeds"],
    ["figures", "run"], ["demo"],
])
def test_an_empty_out_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch,
                                                                command):
    """Hostile pass 5: `figures RUN --out ""` wrote into the current folder."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--out", ""])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out' / '-o': is empty; name the file or folder to write" in \
        " ".join(result.output.replace("│", " ").split())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--seed", "-1", "--seed must be a non-negative integer up to 9223372036854775807, not -1"),
    ("--steps-per-call", "-1", "--steps-per-call must be a non-negative integer, not -1"),
    ("--patience", "-1", "--patience must be a non-negative integer, not -1"),
    ("--lr-step-epochs", "-1", "--lr-step-epochs must be a non-negative integer, not -1"),
    ("--conv-dropout", "1", "--conv-dropout must be in [0, 1), not 1.0"),
    ("--conv-dropout", "-0.5", "--conv-dropout must be in [0, 1), not -0.5"),
    ("--fc-dropout", "nan", "--fc-dropout must be in [0, 1), not nan"),
    ("--lr-decay", "nan", "--lr-decay must be a finite positive number, not nan"),
    ("--lr-decay", "-1", "--lr-decay must be a finite positive number, not -1.0"),
    ("--momentum", "nan", "--momentum must be in [0, 1), not nan"),
    ("--cutmix", "nan", "--cutmix must be 0 (off) or in [0.01, 10], not nan"),
    # distortions and mixing past any use: a 4 % run, or a NaN loss blamed on --lr
    ("--cutmix", "11", "--cutmix must be 0 (off) or in [0.01, 10], not 11.0"),
    ("--mixup", "1e308", "--mixup must be 0 (off) or in [0.01, 10], not 1e+308"),
    ("--mixup", "1e-300", "--mixup must be 0 (off) or in [0.01, 10], not 1e-300"),
    ("--affine", "1e20", "--affine must be in [0, 4], not 1e+20"),
    ("--weight-decay", "1e308", "--weight-decay must be in [0, 1], not 1e+308"),
    ("--affine", "4.5", "--affine must be in [0, 4], not 4.5"),
    ("--elastic", "1000", "--elastic must be in [0, 100], not 1000.0"),
    ("--warmup-epochs", "nan", "--warmup-epochs must be a finite non-negative number, not nan"),
    ("--checkpoint-minutes", "-1", "--checkpoint-minutes must be a finite non-negative number"),
    ("--checkpoint-minutes", "nan", "--checkpoint-minutes must be a finite non-negative number"),
    ("--lr", "inf", "--lr must be a finite positive number, not inf"),
    ("--lr", "nan", "--lr must be a finite positive number, not nan"),
])
def test_numbers_out_of_range_are_refused_before_any_work(digits_shards, tmp_path, option,
                                                          value, message):
    """NaN would reach config.json (not even JSON) and a negative count trains nothing."""
    out = tmp_path / "run"
    one_error_line(runner.invoke(app, ["train", str(digits_shards), "--model", "FF-baseline",
                                       "--epochs", "1", "--no-progress", "--out", str(out),
                                       option, value]), message)
    assert not out.exists()
