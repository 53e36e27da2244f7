"""The trainer's command line before any work starts: the version, help that shows each
network's recipe and the seed networks' names, and names checked before hours of training."""

from assertions import one_error_line
from typer.testing import CliRunner

from etlkit import __version__
from etlkit.cli import app
from train import recipes
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
