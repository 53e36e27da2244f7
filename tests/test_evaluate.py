"""`etlkit evaluate` and `etlkit predict` on a real run (the session's CNN-93k on mnist-5k; its
framing against the session's M6-1 run on ETL hiragana): the numbers agree with what fit logged
and add up, the figures are written the same every time, photos of test images get the test
images' predictions, and bad input gets one error line."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from assertions import one_error_line
from images import broken_pngs, dots_png, jpeg_scan_bomb, png_header
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.digits import Options, extract
from etlkit.shards import DatasetInfo, open_shards
from train.inference import images as predict_images
from train.reports import evaluate, figures
from train.rundir import Run

runner = CliRunner()
OUTPUTS = ("eval.json", "confusion.png", "misclassified.png", "curves.png")


@pytest.fixture(scope="module")
def run(digits_run, tmp_path_factory):
    """A copy of the session's CNN-93k run on mnist-5k (~96% test accuracy: a model that has
    learned something, so its predictions are worth comparing), which evaluate writes into."""
    return shutil.copytree(digits_run, tmp_path_factory.mktemp("eval") / "run")


def _dataset(run: Path) -> Path:
    """The dataset the run trained on (the session's, read only)."""
    return Path(json.loads((run / "config.json").read_text())["dataset"])


@pytest.fixture(scope="module")
def evaluated(run):
    """The test-split evaluation as the CLI writes it, and the outputs' bytes."""
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    return result, {name: (run / name).read_bytes() for name in OUTPUTS}


def test_evaluation_matches_fit_and_adds_up(run, evaluated):
    result, outputs = evaluated
    doc = json.loads(outputs["eval.json"])
    test = Run(run).history().test
    assert doc["split"] == "test" and doc["model"] == "best"
    assert doc["count"] == len(open_shards(_dataset(run), "test"))
    assert doc["accuracy"] == test["test/accuracy"] and doc["top5_accuracy"] == test["test/top5"]
    assert doc["loss"] == pytest.approx(test["test/loss"], rel=1e-5)
    assert f"accuracy {doc['accuracy']:.2%}" in result.stdout
    assert all(str(run / name) in result.stdout for name in OUTPUTS)

    per_class = doc["per_class"]
    config = json.loads((run / "config.json").read_text())
    assert [[c["char"], c["sjis_int"]] for c in per_class] == config["classes"]
    assert all(c["sjis"] == f"0x{c['sjis_int']:04X}" for c in per_class)
    assert sum(c["count"] for c in per_class) == doc["count"]
    assert sum(c["correct"] for c in per_class) / doc["count"] == doc["accuracy"]
    assert all(c["accuracy"] == c["correct"] / c["count"] for c in per_class)

    ev = evaluate.evaluate(run, "test")
    matrix = evaluate.confusion(ev)
    assert matrix.sum() == doc["count"] == len(ev.labels)
    assert np.trace(matrix) / matrix.sum() == doc["accuracy"]
    assert matrix.sum(1).tolist() == [c["count"] for c in per_class]
    wrong = doc["count"] - np.trace(matrix)
    assert len(ev.wrong_images) == len(ev.wrong) == wrong
    pairs = doc["most_confused"]  # the 20 largest off-diagonal counts of the matrix
    off = matrix - np.diag(np.diag(matrix))
    assert [p["count"] for p in pairs] == sorted(off[off > 0].tolist(), reverse=True)[:20]
    assert sum(p["count"] for p in pairs) <= wrong and all(p["true"] != p["predicted"]
                                                         for p in pairs)


def test_figures(evaluated):
    _, outputs = evaluated
    classes = len(json.loads(outputs["eval.json"])["per_class"])
    images = {name: Image.open(io.BytesIO(outputs[name])) for name in OUTPUTS[1:]}
    assert all(im.format == "PNG" for im in images.values())
    assert min(images["confusion.png"].size) >= classes * 32  # 32-pixel blocks at 10 classes
    assert images["misclassified.png"].width == 8 * 104  # 8 tiles a row
    pixels = np.asarray(images["curves.png"].convert("RGB")).reshape(-1, 3).astype(int)
    for colour in (figures.BLUE, figures.ORANGE):  # the train and validation lines
        assert (np.abs(pixels - colour).sum(1) < 30).sum() > 50


def test_each_split_keeps_its_own_files_and_reruns_are_identical(run, evaluated):
    """The best checkpoint is the epoch with the highest validation accuracy; evaluating the
    val split or the latest model writes files of their own and leaves the test split's alone;
    evaluating the test split again rewrites the same bytes."""
    for split, which in (("val", "best"), ("test", "latest")):
        result = runner.invoke(app, ["evaluate", str(run), "--split", split, "--which", which])
        assert result.exit_code == 0, result.output
        own = [f"eval-{split}-{which}.json", f"confusion-{split}-{which}.png",
               f"misclassified-{split}-{which}.png", "curves.png"]
        assert result.stdout.splitlines()[-1] == "wrote " + ", ".join(str(run / n) for n in own)
        assert {name: (run / name).read_bytes() for name in OUTPUTS} == evaluated[1]
    doc = json.loads((run / "eval-val-best.json").read_text())
    best = max(Run(run).history().epochs, key=lambda r: r["val/accuracy"])
    assert doc["split"] == "val" and doc["accuracy"] == best["val/accuracy"]
    latest = json.loads((run / "eval-test-latest.json").read_text())
    assert (latest["split"], latest["model"]) == ("test", "latest")
    assert runner.invoke(app, ["evaluate", str(run)]).exit_code == 0
    assert {name: (run / name).read_bytes() for name in OUTPUTS} == evaluated[1]


def test_predict_agrees_with_the_evaluation_of_the_originals(run, tmp_path):
    """Test images as photos would come: dark ink on white, 200×180, PNG (gray) and JPEG
    (colour), every third one white ink on dark blue, every third PNG 16-bit; their top-1 must
    mostly be the evaluation's top-1 of the original 64×64 images."""
    data = open_shards(_dataset(run), "test").read(("images",))["images"]
    predicted = evaluate.evaluate(run, "test").predicted
    paths, expected = [], []
    for i in range(0, 48, 2):
        paper = Image.fromarray(255 - data[i]).resize((200, 180), Image.Resampling.BICUBIC)
        if i % 3 == 0:
            ink = np.asarray(paper)[..., None] / 255
            paper = Image.fromarray(np.uint8((1 - ink) * 255 + ink * [20, 30, 90]))
        wide = Image.fromarray(np.asarray(paper, np.uint16) * 257) if i % 3 == 1 else paper
        wide.save(tmp_path / f"{i}.png")
        paper.convert("RGB").save(tmp_path / f"{i}.jpg", quality=90)
        paths += [tmp_path / f"{i}.png", tmp_path / f"{i}.jpg"]
        expected += [predicted[i]] * 2
    result = runner.invoke(app, ["predict", str(run), *map(str, paths), "--top", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 * len(paths)
    classes = json.loads((run / "config.json").read_text())["classes"]
    index = {char: i for i, (char, _) in enumerate(classes)}
    top1 = []
    for n, path in enumerate(paths):
        assert lines[4 * n] == str(path)
        ranked = [ln.split() for ln in lines[4 * n + 1 : 4 * n + 4]]
        assert [r[0] for r in ranked] == ["1.", "2.", "3."]
        assert all(r[2] == f"0x{classes[index[r[1]]][1]:04X}" for r in ranked)
        probs = [float(r[3]) for r in ranked]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.001
        top1.append(index[ranked[0][1]])
    agreement = np.mean(np.array(top1) == np.array(expected))
    assert agreement >= 0.8, agreement


def test_framing_is_measured_from_the_training_shards(hiragana_run):
    """ETL images are centred by ink box, at the median fill of their 64-pixel side: measured
    when the run trained, kept in config.json."""
    run, _ = hiragana_run
    doc = json.loads((run / "config.json").read_text())
    images = open_shards(_dataset(run), "train").read(("images",))["images"]
    frame = predict_images.framing(doc)
    # fewer than SAMPLE images: all of them
    assert frame.fill == np.median(predict_images.ink_extent(images)) / 64
    assert 0.3 < frame.fill < 1
    assert frame.mass_at is None and frame.size == 64
    # the run folder carries the dataset's facts as the manifest has them: Otsu, 64, random
    info = DatasetInfo.from_json(doc, run / "config.json")
    assert info == open_shards(_dataset(run), "train").info
    assert frame.otsu and info.binarized and info.image_size == 64
    assert info.split_method == "random" and info.preprocessing["binarize"] == "otsu"


def test_predict_reports_each_bad_file_in_one_line(run, tmp_path, monkeypatch):
    good = tmp_path / "good.png"
    Image.fromarray(255 - open_shards(_dataset(run), "test").read(("images",))["images"][0]
                    ).save(good)
    bad = {
        "white.png": (Image.new("L", (120, 90), 255), "no ink found"),
        "white.jpg": (Image.new("RGB", (120, 90), "white"), "no ink found"),
        "dots.png": (dots_png(2100, 1), "no ink left after reducing it from 2100×2100 to 700×700"),
        "notes.png": (b"not an image at all\n", "not a PNG or JPEG image"),
        "huge.png": (png_header(9000, 9000), "9000×9000 pixels"),
        "bomb.png": (png_header(30000, 30000), "pixels allowed"),
        "empty.png": (b"", "empty file"),
        "cut.png": (good.read_bytes()[:120], "PNG cut off"),
        "big.png": (bytes(8192), "MB"),
        "gone.png": (None, "no such file"),
        "scans.jpg": (jpeg_scan_bomb(8, predict_images.MAX_JPEG_SCANS + 1),  # 1.6 KB
                      f"more than the {predict_images.MAX_JPEG_SCANS} allowed"),
        **{f"hostile-{i}.png": (body, "unreadable image (ValueError")  # under 4096 bytes
           for i, body in enumerate(broken_pngs()[2:])},
    }
    monkeypatch.setattr(predict_images, "MAX_BYTES", 4096)  # big.png stands for a > 50 MB file
    for name, (content, _) in bad.items():
        if isinstance(content, Image.Image):
            content.save(tmp_path / name)
        elif content is not None:
            (tmp_path / name).write_bytes(content)
    paths = [good, *(tmp_path / name for name in bad)]
    result = runner.invoke(app, ["predict", str(run), *map(str, paths), "--top", "2"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == str(good) and len(result.stdout.splitlines()) == 3
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad) and "Traceback" not in result.output
    for line, (name, (_, needle)) in zip(errors, bad.items(), strict=True):
        assert line.startswith(f"error: {tmp_path / name}: ") and needle in line, line


def test_usage_errors_are_one_line(run, tmp_path):
    image = tmp_path / "a.png"
    Image.new("L", (10, 10)).save(image)
    one_error_line(runner.invoke(app, ["evaluate", str(tmp_path)]), str(tmp_path),
                    "not a training run")
    one_error_line(runner.invoke(app, ["evaluate", str(tmp_path / "nope")]),
                    "not a training run")
    one_error_line(runner.invoke(app, ["predict", str(tmp_path), str(image)]),
                    "not a training run")
    # the run folder forgotten: it said "a.png/config.json: Not a directory" (hostile pass 13)
    one_error_line(runner.invoke(app, ["predict", str(image), str(image)]),
                    f"{image}: not a training run (a file, not a run folder)")
    one_error_line(runner.invoke(app, ["evaluate", str(run), "--split", "dev"]),
                    "--split must be one of test, val, train, not 'dev'")
    one_error_line(runner.invoke(app, ["evaluate", str(run), "--which", "last"]),
                    "--which must be one of best, latest")
    one_error_line(runner.invoke(app, ["predict", str(run), str(image), "--top", "0"]),
                    "--top must be at least 1")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.json", bare / "config.json")
    one_error_line(runner.invoke(app, ["evaluate", str(bare)]), "best.msgpack",
                    "no checkpoint")
    one_error_line(runner.invoke(app, ["evaluate", str(bare), "--which", "latest"]),
                    "latest.msgpack", "no checkpoint")


def test_a_run_folder_travels(run, tmp_path, monkeypatch):
    """Everything inference needs is in the run folder: predict from another directory, with
    the shards gone, prints what it printed beside them; evaluate needs the shards and says so."""
    image = tmp_path / "a.png"
    sample = open_shards(_dataset(run), "test").read(("images",))["images"][0]
    Image.fromarray(255 - sample).save(image)
    here = runner.invoke(app, ["predict", str(run), str(image)])
    assert here.exit_code == 0, here.output
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(run, moved)
    doc = json.loads((moved / "config.json").read_text())
    assert Path(doc["dataset"]).is_absolute() and doc["framing"]["size"] == doc["image_size"]
    doc["dataset"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(doc))
    monkeypatch.chdir(moved.parent)
    result = runner.invoke(app, ["predict", "moved", str(image)])
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert result.stdout.splitlines()[1:] == here.stdout.splitlines()[1:]
    one_error_line(runner.invoke(app, ["evaluate", "moved"]), "no manifest.json")
    del doc["framing"]  # a run folder from before framing was kept
    (moved / "config.json").write_text(json.dumps(doc))
    one_error_line(runner.invoke(app, ["predict", "moved", str(image)]), "no framing",
                   "train the run again")


def test_evaluate_refuses_a_dataset_extracted_again(run, tmp_path):
    """A dataset replaced in place (`extract --force`, another seed) would mix training
    records into the evaluated split: the run's config.json keeps the manifest's checksum."""
    data, moved = tmp_path / "kana", tmp_path / "run"
    shutil.copytree(_dataset(run), data)
    shutil.copytree(run, moved)
    doc = json.loads((moved / "config.json").read_text())
    doc["dataset"] = str(data)
    (moved / "config.json").write_text(json.dumps(doc))
    assert runner.invoke(app, ["evaluate", str(moved), "--split", "val"]).exit_code == 0
    extract([], data, Options(dataset="mnist-5k", seed=3), force=True)
    one_error_line(runner.invoke(app, ["evaluate", str(moved), "--split", "val"]),
                   "not the dataset", "extracted again")
