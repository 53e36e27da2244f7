"""Dataset cards: `etlkit card` on real datasets, read back by the real Hugging Face `datasets`
(offline, in a fresh process with its own cache) and the real `mlcroissant`; `etlkit verify`
catching a card that no longer agrees with manifest.json."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import mlcroissant
import numpy as np
import pytest
import yaml
from assertions import one_error_line
from PIL import Image
from typer.testing import CliRunner

from etlkit import card
from etlkit.cli import app
from etlkit.shards import manifest_digest

runner = CliRunner()

#: Loads each dataset folder given on the command line with `datasets.load_dataset` and prints
#: what a user would check: split sizes, class names, the image feature and the first record.
LOAD = """
import json, sys
import datasets
out = {}
for path in sys.argv[1:]:
    try:
        ds = datasets.load_dataset(path)
    except Exception as err:
        out[path] = {"error": type(err).__name__}
        continue
    train = ds["train"]
    first = train.with_format("numpy")[0]
    out[path] = {
        "splits": {name: split.num_rows for name, split in ds.items()},
        "names": train.features["labels"].names,
        "image_feature": [type(train.features["images"]).__name__,
                          list(train.features["images"].shape), train.features["images"].dtype],
        "stored": str(train.data.column("images").type.value_type),
        "first_image": first["images"].tolist(), "first_label": int(first["labels"]),
    }
print(json.dumps(out))
"""


def load_datasets(*paths, cache):
    """`datasets.load_dataset` on each folder, offline, in a fresh process."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(cache)}
    done = subprocess.run([sys.executable, "-c", LOAD, *map(str, paths)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def carded(path):
    result = runner.invoke(app, ["card", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def datasets_dir(hiragana_shards, tmp_path_factory):
    """Copies (the session dataset stays as it is) of synthetic hiragana, sklearn-digits and
    sklearn-digits with an empty validation split, each with its card written."""
    root = tmp_path_factory.mktemp("cards")
    shutil.copytree(hiragana_shards, root / "hiragana")
    for name, extra in (("digits", []), ("digits-no-val", ["--val-frac", "0"])):
        result = runner.invoke(app, ["extract", "--dataset", "sklearn-digits", *extra,
                                     "--out", str(root / name)])
        assert result.exit_code == 0, result.output
    for name in ("hiragana", "digits", "digits-no-val"):
        carded(root / name)
    return root


def manifest(path):
    return json.loads((path / "manifest.json").read_text("utf-8"))


def first_train_image(path):
    doc = manifest(path)
    first = sorted(s["path"] for s in doc["shards"] if s["split"] == "train")[0]
    with h5py.File(path / first) as f:
        return f["images"][0], int(f["labels"][0])


def test_load_dataset_gives_the_manifests_splits_classes_and_images(datasets_dir, tmp_path):
    paths = [datasets_dir / n for n in ("hiragana", "digits", "digits-no-val")]
    loaded = load_datasets(*paths, cache=tmp_path / "hf")
    for path in paths:
        got, doc = loaded[str(path)], manifest(path)
        hf_names = {"train": "train", "val": "validation", "test": "test"}
        assert got["splits"] == {hf_names[k]: v for k, v in doc["splits"].items() if v}
        assert got["names"] == [c for c, _ in doc["classes"]]
        side = doc["image_size"]
        assert got["image_feature"] == ["Array2D", [side, side], "uint8"]
        assert got["stored"] == "uint8"
        image, label = first_train_image(path)
        assert np.array_equal(np.array(got["first_image"]), image)
        assert got["first_label"] == label
    assert loaded[str(paths[0])]["names"][:3] == ["あ", "い", "う"]
    assert "validation" not in loaded[str(paths[2])]["splits"]  # datasets refuses empty splits


def test_load_dataset_checks_the_cards_counts(datasets_dir, tmp_path):
    path = tmp_path / "hiragana"
    shutil.copytree(datasets_dir / "hiragana", path)
    card_path = path / "README.md"
    text = card_path.read_text("utf-8")
    card_path.write_text(text.replace("num_examples: 225", "num_examples: 224"), "utf-8")
    loaded = load_datasets(path, cache=tmp_path / "hf")
    assert loaded[str(path)] == {"error": "NonMatchingSplitsSizesError"}


def test_card_front_matter_and_text(datasets_dir, tmp_path):
    synthetic = (datasets_dir / "hiragana" / "README.md").read_text("utf-8")
    assert yaml.safe_load(synthetic.split("---\n")[1])["license"] == "cc-by-sa-3.0"
    path = tmp_path / "real"  # the same dataset as if AIST's files had been extracted
    shutil.copytree(datasets_dir / "hiragana", path)
    doc = {**manifest(path), "synthetic": False}
    doc["checksum"] = manifest_digest(doc)
    (path / "manifest.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    carded(path)
    text = (path / "README.md").read_text("utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["language"] == ["ja"] and front["license"] == "other"
    assert front["license_name"] == "etl-character-database"
    assert "extra_gated_prompt" in front
    assert front["task_categories"] == ["image-classification"]
    assert front["size_categories"] == ["n<1K"]
    files = front["configs"][0]["data_files"]
    assert files[0] == {"split": "train", "path": ["train/shard-00000.h5", "train/shard-00001.h5",
                                                   "train/shard-00002.h5"]}
    doc = manifest(datasets_dir / "hiragana")
    assert doc["command"] in text and doc["sources"][0]["sha256"] in text
    assert all(s["sha256"] in text for s in doc["shards"])
    assert "](preview.png)" in text and "ヰ" in text and "sheet 2672" in text
    assert "| 0 | あ | 0x82A0 |" in text  # per-class counts
    digits_front = yaml.safe_load(
        (datasets_dir / "digits" / "README.md").read_text("utf-8").split("---\n")[1])
    assert digits_front["license"] == "cc-by-4.0" and "language" not in digits_front
    assert "extra_gated_prompt" not in digits_front


def test_card_is_deterministic_and_the_preview_a_png(datasets_dir, tmp_path):
    path = tmp_path / "hiragana"
    shutil.copytree(datasets_dir / "hiragana", path)
    names = ("README.md", "croissant.json", "preview.png")
    before = {n: (path / n).read_bytes() for n in names}
    carded(path)
    assert {n: (path / n).read_bytes() for n in names} == before
    with Image.open(path / "preview.png") as image:
        assert image.format == "PNG" and image.width > 64 * 10


def test_croissant_is_valid_for_mlcroissant(datasets_dir):
    for name in ("hiragana", "digits"):
        path = datasets_dir / name
        dataset = mlcroissant.Dataset(jsonld=path / "croissant.json")
        issues = dataset.metadata.ctx.issues
        assert not issues.errors
        # datePublished is the one recommendation left out: it would make the bytes differ
        assert [w for w in issues.warnings if "datePublished" not in w] == []
        doc = manifest(path)
        objects = {f.content_url: f.sha256 for f in dataset.metadata.distribution
                   if isinstance(f, mlcroissant.FileObject) and f.content_url.endswith(".h5")}
        assert objects == {s["path"]: s["sha256"] for s in doc["shards"]}
        record_sets = {r.id: r for r in dataset.metadata.record_sets}
        assert [row["classes/name"] for row in record_sets["classes"].data] == \
            [c for c, _ in doc["classes"]]
        assert {row["splits/name"]: row["splits/num_examples"]
                for row in record_sets["splits"].data} == doc["splits"]
        fields = {f.id: f for f in record_sets["records"].fields}
        side = doc["image_size"]
        assert fields["records/images"].is_array
        assert fields["records/images"].array_shape == f"{side},{side}"
        jsonld = json.loads((path / "croissant.json").read_text("utf-8"))
        assert [s["sha256"] for s in jsonld["isBasedOn"]] == \
            [s["sha256"] for s in doc["sources"]]
        assert "cannot extract records from HDF5" in jsonld["description"]


def test_verify_checks_that_card_croissant_and_manifest_agree(datasets_dir, tmp_path):
    path = tmp_path / "hiragana"
    shutil.copytree(datasets_dir / "hiragana", path)
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0 and "7 of 7 files ok" in result.output
    assert "README.md" in result.output and "croissant.json" in result.output

    card_path = path / "README.md"
    good = card_path.read_text("utf-8")
    card_path.write_text(good.replace("'1': い", "'1': う"), "utf-8")
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 1
    [line] = [ln for ln in result.output.splitlines() if "mismatch" in ln]
    assert line.startswith("README.md") and "class_label names" in line
    card_path.write_text(good, "utf-8")

    croissant = path / "croissant.json"
    doc = json.loads(croissant.read_text("utf-8"))
    doc["distribution"][1]["sha256"] = "0" * 64
    croissant.write_text(json.dumps(doc), "utf-8")
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 1
    [line] = [ln for ln in result.output.splitlines() if "mismatch" in ln]
    assert line.startswith("croissant.json") and "SHA-256" in line


def test_card_for_a_dataset_without_one(datasets_dir, tmp_path):
    path = tmp_path / "old"
    shutil.copytree(datasets_dir / "digits", path)
    for name in ("README.md", "croissant.json", "preview.png"):
        (path / name).unlink()
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0 and "3 of 3 files ok" in result.output  # shards only
    assert [a.status for a in card.check_card(path)] == ["absent", "absent"]
    carded(path)
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0 and "5 of 5 files ok" in result.output


def test_card_refuses_a_readme_it_did_not_write_and_a_non_dataset(datasets_dir, tmp_path):
    path = tmp_path / "mine"
    shutil.copytree(datasets_dir / "digits", path)
    (path / "README.md").write_text("# my notes\n", "utf-8")
    one_error_line(runner.invoke(app, ["card", str(path)]), str(path / "README.md"),
                   "not an etlkit card")
    assert (path / "README.md").read_text("utf-8") == "# my notes\n"
    one_error_line(runner.invoke(app, ["card", str(tmp_path)]), str(tmp_path),
                   "no manifest.json")
    doc = manifest(path)
    del doc["sources"]
    (path / "manifest.json").write_text(json.dumps(doc), "utf-8")
    (path / "README.md").unlink()
    one_error_line(runner.invoke(app, ["card", str(path)]), str(path / "manifest.json"),
                   "its checksum differs")  # card describes only a dataset that verifies
    doc["checksum"] = manifest_digest({k: v for k, v in doc.items() if k != "checksum"})
    (path / "manifest.json").write_text(json.dumps(doc), "utf-8")
    one_error_line(runner.invoke(app, ["card", str(path)]), str(path / "manifest.json"),
                   "no sources")


def test_synthetic_flag_states_kanjivgs_licence(datasets_dir, tmp_path):
    """For a dataset whose manifest does not say (extracted before etlkit marked synth files)."""
    path = tmp_path / "synthetic"
    shutil.copytree(datasets_dir / "hiragana", path)
    doc = {k: v for k, v in manifest(path).items() if k != "synthetic"}
    doc["checksum"] = manifest_digest(doc)
    (path / "manifest.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    assert runner.invoke(app, ["card", str(path), "--synthetic"]).exit_code == 0
    front = yaml.safe_load((path / "README.md").read_text("utf-8").split("---\n")[1])
    assert front["license"] == "cc-by-sa-3.0" and "extra_gated_prompt" not in front
    assert runner.invoke(app, ["verify", str(path)]).exit_code == 0
    # on a dataset that no ETL file went into, the flag means nothing: refused, not ignored
    digits = tmp_path / "digits"
    shutil.copytree(datasets_dir / "digits", digits)
    before = {p.name: p.read_bytes() for p in digits.iterdir() if p.is_file()}
    one_error_line(runner.invoke(app, ["card", str(digits), "--synthetic"]), str(digits),
                   "--synthetic is for datasets extracted from `etlkit synth`'s raw ETL files; "
                   "this one is from sklearn-digits")
    assert {p.name: p.read_bytes() for p in digits.iterdir() if p.is_file()} == before
