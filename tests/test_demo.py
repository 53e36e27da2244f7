"""`etlkit figures` and `etlkit demo` as users run them, on tiny synthetic data (and
scikit-learn's digits for a network without conv layers)."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from assertions import one_error_line
from flax import nnx
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.shards import open_shards
from train import models
from train.config import Config
from train.experiments import demo
from train.loop import fit
from train.reports import paper_figures
from train.rundir import load_model

runner = CliRunner()
FIGURES = ["fig1-samples.png", "fig2a-styles.png", "fig2b-gray-vs-otsu.png", "fig4-curves.png",
           "fig5-misclassified.png", "fig6-activations.png", "fig7-filters.png"]


@pytest.fixture(scope="module")
def run(hiragana_run):
    """The session's M6-1 run on synthetic ETL-8G hiragana from 5 writers."""
    return hiragana_run[0]


@pytest.fixture(scope="module")
def written(run):
    result = runner.invoke(app, ["figures", str(run)])
    assert result.exit_code == 0, result.output
    return run / "figures", result


def _fresh_model(run):
    _, doc = load_model(run)
    return models.build("M6-1", doc["num_classes"], rngs=nnx.Rngs(1))


def test_figures_writes_every_png_and_names_it(written):
    out, result = written
    for name in FIGURES:
        assert f"wrote {out / name}" in result.output
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert 64 <= image.width <= 4000 and 60 <= image.height <= 4000, name


def test_filter_tiles_are_the_normalised_kernels(written, run):
    model, _ = load_model(run)
    first = np.asarray(model.conv_kernels()[0])[:, :, 0, :]  # (3, 3, out)
    expected = np.moveaxis(first, -1, 0)[:paper_figures.KERNELS]
    low = expected.min(axis=(1, 2), keepdims=True)
    expected = np.rint(255 * (expected - low) / (expected.max(axis=(1, 2), keepdims=True) - low))
    tiles = paper_figures.kernel_tiles(model.conv_kernels()[0])
    np.testing.assert_array_equal(tiles, expected.astype(np.uint8))
    figure = np.asarray(Image.open(written[0] / "fig7-filters.png"))
    # the first tile sits under the first caption, each kernel weight an 8×8 block
    np.testing.assert_array_equal(figure[20:44:8, 4:28:8], tiles[0])


def test_activation_and_filter_figures_follow_the_weights(run, written):
    trained, _ = load_model(run)
    fresh = _fresh_model(run)
    image = np.zeros((64, 64), np.uint8)
    image[16:48, 30:34] = 255
    maps = paper_figures.activation_maps(trained, image)
    assert [name for name, _ in maps] == ["conv1", f"conv{len(trained.conv_kernels())}"]
    assert not np.array_equal(maps[0][1], paper_figures.activation_maps(fresh, image)[0][1])
    assert (np.asarray(paper_figures.filters(trained))
            != np.asarray(paper_figures.filters(fresh))).any()
    figure = np.asarray(Image.open(written[0] / "fig6-activations.png"))
    shown = paper_figures.activation_maps(trained, _first_test_image(run))[0][1][0]
    np.testing.assert_array_equal(figure[108:172, 4:68], shown)  # under the 64-pixel input


def _first_test_image(run):
    shards = json.loads((run / "config.json").read_text())["config"]["shards"]
    return open_shards(shards, "test").read(("images",))["images"][0]


def test_fig2b_is_skipped_with_a_warning_when_the_raw_files_are_gone(run, tmp_path):
    """The shared run's dataset extracted again from a copy of its raw files, the run pointed
    at it (the same records, so the same model fits), then the copy deleted."""
    from etlkit.extract import Options, extract

    shards = Path(json.loads((run / "config.json").read_text())["dataset"])
    shutil.copytree(shards.parent / "raw", tmp_path / "raw")
    extract([tmp_path / "raw"], tmp_path / "hiragana", Options(task="hiragana", shard_size=100))
    moved = tmp_path / "run"
    (moved / "checkpoints").mkdir(parents=True)
    for name in ("metrics.jsonl", "checkpoints/best.msgpack"):
        shutil.copy(run / name, moved / name)
    doc = json.loads((run / "config.json").read_text())
    doc["dataset"] = str(tmp_path / "hiragana")
    doc["config"]["shards"] = doc["dataset"]
    doc["dataset_checksum"] = json.loads((tmp_path / "hiragana" / "manifest.json").read_text(
        "utf-8"))["checksum"]
    (moved / "config.json").write_text(json.dumps(doc))
    shutil.rmtree(tmp_path / "raw")
    result = runner.invoke(app, ["figures", str(moved), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert "warning: Fig. 2b skipped" in result.output
    assert not (tmp_path / "figs" / "fig2b-gray-vs-otsu.png").exists()
    assert (tmp_path / "figs" / "fig7-filters.png").exists()


def test_demo_writes_a_report_with_the_runs_accuracies(tmp_path):
    """The katakana half (`--tasks`; the hiragana half runs the same code on ETL-8G, whose
    synthesis, extraction and M6-1 runs other tests cover), as the report shows each task."""
    out = tmp_path / "demo"
    # 4 writers, the fewest whose writer-disjoint split gives each split one (2/1/1)
    result = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--writers", "4",
                                 "--tasks", "katakana"])
    assert result.exit_code == 0, result.output
    md = (out / "report" / "index.md").read_text("utf-8")
    page = (out / "report" / "index.html").read_text("utf-8")
    assert "synthetic" in md and "KanjiVG" in page and demo.REAL_DATA in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images == re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert "hiragana" not in md and not (out / "data" / "hiragana").exists()
    for name in ("curves.png", "confusion.png", "misclassified.png", "preview.png"):
        assert f"katakana/{name}" in images
    accuracy = json.loads((out / "runs" / "katakana" / "eval.json").read_text())["accuracy"]
    assert f"katakana: test accuracy {accuracy:.2%}" in md
    assert f"katakana: test accuracy {accuracy:.2%}" in result.output
    assert (out / "data" / "katakana" / "manifest.json").exists()
    for src in images:
        with Image.open(out / "report" / src) as image:
            image.verify()


def test_demo_replaces_only_its_own_folders(tmp_path, monkeypatch):
    """A previous demo is emptied around its marker, which is never removed: a replacement
    cut short (Ctrl-C, kill) left, where a file system lists the marker first, a folder
    without it that every rerun refused (hostile pass 11, P1); it is replaced, never written
    through."""
    mine = tmp_path / "mine"
    (mine / "runs" / "katakana").mkdir(parents=True)
    (mine / demo.MARKER).write_text("")
    (mine / "old.txt").write_text("")
    (mine / "runs" / "katakana" / "metrics.jsonl").write_text("")
    removed = []
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        removed.append(os.path.basename(path))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    demo._fresh(mine)
    monkeypatch.undo()
    assert sorted(removed) == ["metrics.jsonl", "old.txt"]
    assert sorted(p.name for p in mine.iterdir()) == [demo.MARKER]
    # a marker linked to another file is replaced, not written through (pass 12, Q1)
    for link in (os.symlink, os.link):
        victim = tmp_path / f"victim-{link.__name__}.txt"
        victim.write_text("mine")
        (mine / demo.MARKER).unlink()
        link(victim, mine / demo.MARKER)
        demo._fresh(mine)
        assert victim.read_text() == "mine" and not (mine / demo.MARKER).is_symlink()
        assert (mine / demo.MARKER).stat().st_nlink == 1
    # a link to a previous demo: refused by name (it was "Cannot call rmtree on a symbolic
    # link", naming nothing, P2), as a dangling one ("File exists")
    for target in (mine, tmp_path / "gone"):
        link = tmp_path / f"link-{target.name}"
        link.symlink_to(target)
        one_error_line(runner.invoke(app, ["demo", "--out", str(link)]),
                       f"{link}: a symbolic link (to {target}); give the folder itself as --out")
    assert sorted(p.name for p in mine.iterdir()) == [demo.MARKER]
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("")
    result = runner.invoke(app, ["demo", "--out", str(other)])
    assert result.exit_code == 1 and "not a previous demo folder" in result.output
    assert (other / "keep.txt").exists()


@pytest.mark.parametrize("option, value, needle", [
    ("--etl8-writers", "0", "--etl8-writers must be at least 1, not 0"),
    ("--etl8-writers", "-1", "--etl8-writers must be at least 1, not -1"),
    ("--writers", "0", "--writers must be at least 1, not 0"),
    ("--epochs", "0", "--epochs must be at least 1, not 0"),
    ("--tasks", "kanji", "--tasks must name katakana or hiragana, not kanji"),
    ("--tasks", "katakana,", "--tasks has an empty item"),
])
def test_demo_options_are_checked_before_any_work(tmp_path, option, value, needle):
    """Hostile pass 7, H5: `--etl8-writers 0` was refused by synth only after the katakana half
    had trained, and under --writers' name."""
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), option, value])
    one_error_line(result, f"error: {needle}")
    assert "synthesizing" not in result.output and not out.exists()


def test_fig1_has_a_row_per_script_when_there_are_several():
    images = np.zeros((6, 64, 64), np.uint8)
    data = {"images": images, "labels": np.array([0, 0, 1, 1, 2, 2])}
    classes = [("あ", 0x82A0), ("い", 0x82A2), ("ア", 0x8341)]
    assert paper_figures.samples(data, classes).height == 2 * 66  # hiragana, katakana
    one_script = {"images": images[:4], "labels": data["labels"][:4]}
    assert paper_figures.samples(one_script, classes[:2]).height == 2 * 66  # a row per class


def test_a_model_without_conv_layers_skips_figs_6_and_7(digits_shards, tmp_path):
    """FF-baseline (dense layers only) on the session's 28×28 digits: a quick run of a network
    without conv layers; every other figure is still drawn."""
    fit(Config(shards=str(digits_shards), model="FF-baseline", epochs=1), tmp_path / "ff",
        say=lambda _m: None, progress=False)
    result = runner.invoke(app, ["figures", str(tmp_path / "ff")])
    assert result.exit_code == 0, result.output
    assert "warning: Figs. 6-7 skipped: FF-baseline has no conv layers" in result.output
    written = sorted(p.name for p in (tmp_path / "ff" / "figures").iterdir())
    assert written == [n for n in FIGURES if n not in ("fig6-activations.png",
                                                        "fig7-filters.png")]


def test_figures_of_a_run_without_a_test_split_skip_those_of_test_records(untested_run,
                                                                          tmp_path):
    """The figures that show test records are skipped with one warning naming them and why;
    the training curves are still drawn."""
    run, _ = untested_run
    dataset = json.loads((run / "config.json").read_text())["dataset"]
    result = runner.invoke(app, ["figures", str(run), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    warned = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert warned == [f"warning: Figs. 1, 2a, 2b, 5 and 6 skipped: they show test records, and "
                      f"{dataset}'s test split is empty",
                      "warning: Fig. 7 skipped: FF-baseline has no conv layers"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["fig4-curves.png"]
