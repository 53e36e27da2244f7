"""`etlkit verify` on edited and corrupt datasets, and `train`'s check of the dataset before its
first step: real shards on disk, real CLI invocations."""

import json
import os
import shutil

import h5py
import pytest
from assertions import one_error_line
from typer.testing import CliRunner

from etlkit import verify
from etlkit.card import write_card
from etlkit.cli import app
from etlkit.shards import manifest_digest, sha256

runner = CliRunner()


@pytest.fixture
def dataset(hiragana_shards, tmp_path):
    """A private copy of the synthetic hiragana dataset (3 train shards, 1 val, 1 test)."""
    return shutil.copytree(hiragana_shards, tmp_path / "hiragana")


@pytest.fixture
def digits(digits_shards, tmp_path):
    """A private copy of the sklearn digits dataset (one shard per split), for a real training
    run that takes seconds."""
    return shutil.copytree(digits_shards, tmp_path / "digits")


def _manifest(root):
    return json.loads((root / "manifest.json").read_text("utf-8"))


def _write(root, doc):
    (root / "manifest.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")


def _failed_rows(result):
    """verify's table rows that are not ok."""
    rows = result.stdout.splitlines()[1:-1]
    return [r for r in rows if r.split()[2] not in ("ok", "unverified-count")]


def test_a_fresh_dataset_verifies_and_carries_its_own_checksum(dataset):
    doc = _manifest(dataset)
    assert doc["checksum"] == manifest_digest(doc)
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "7 of 7 files ok" and not result.stderr  # + card


def _swap_classes(doc):
    doc["classes"][0], doc["classes"][1] = doc["classes"][1], doc["classes"][0]


@pytest.mark.parametrize("edit, needles", [
    (_swap_classes, ["checksum differs", "classes differ"]),
    (lambda d: d["shards"].pop(0), ["splits.train is 225, its shards list 125", "unlisted"]),
    (lambda d: d["shards"].append(d["shards"][0]), ["duplicate", "its shards list 325"]),
    (lambda d: d["splits"].update(train=226), ["splits.train is 226, its shards list 225"]),
    (lambda d: d.update(num_classes=76), ["num_classes is 76, the class table has 75"]),
    (lambda d: d.update(classes=d["classes"][:-1]), ["class table has 74", "classes differ"]),
    (lambda d: d["options"].update(binarize="none"), ["checksum differs"]),
    (lambda d: d["options"].update(seed=1), ["checksum differs"]),
])
def test_edited_manifests_fail_verify(dataset, edit, needles):
    doc = _manifest(dataset)
    edit(doc)
    _write(dataset, doc)
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = "\n".join(_failed_rows(result))
    for needle in needles:
        assert needle in failed, result.stdout


@pytest.mark.parametrize("doc, needle", [
    (None, "a JSON null"), ([], "a JSON list"), ({}, "no 'shards' list"),
    ("drop shards", "no 'shards' list"), ("drop splits", "'splits' is not a map"),
    ("bad entry", "shards[1] is not a {path, split, count, sha256} entry"),
])
def test_a_manifest_without_the_structure_is_one_error_line(dataset, doc, needle):
    real = _manifest(dataset)
    if doc == "bad entry":
        doc = {**real, "shards": [real["shards"][0], ["train/shard-00001.h5"]]}
    elif isinstance(doc, str):
        doc = {k: v for k, v in real.items() if k != doc.split()[1]}
    _write(dataset, doc)
    one_error_line(runner.invoke(app, ["verify", str(dataset)]),
                   str(dataset / "manifest.json"), needle)
    one_error_line(runner.invoke(app, ["preview", str(dataset), "-o", str(dataset / "p")]),
                   str(dataset / "manifest.json"), "not an etlkit manifest")


@pytest.mark.parametrize("outside", ["../elsewhere/shard-00000.h5", "absolute"])
def test_a_shard_path_outside_the_folder_is_refused_unread(dataset, tmp_path, outside):
    """The outside file is a true copy with the listed SHA-256: were it read, it would pass."""
    doc = _manifest(dataset)
    (tmp_path / "elsewhere").mkdir()
    copy = shutil.copy(dataset / "train" / "shard-00000.h5", tmp_path / "elsewhere")
    doc["shards"][0]["path"] = str(copy) if outside == "absolute" else outside
    doc["checksum"] = manifest_digest(doc)
    _write(dataset, doc)
    os.remove(dataset / "train" / "shard-00000.h5")
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 1
    (row,) = _failed_rows(result)
    assert row.split()[2] == "outside" and "not read" in row


def test_a_manifest_without_a_checksum_is_a_warning(dataset):
    doc = _manifest(dataset)
    del doc["checksum"]
    _write(dataset, doc)
    result = runner.invoke(app, ["verify", str(dataset)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: {dataset / 'manifest.json'}: no checksum")


def test_options_edited_with_a_recomputed_checksum_are_one_error_line(dataset):
    doc = _manifest(dataset)
    del doc["options"]["val_frac"]
    doc["checksum"] = manifest_digest(doc)  # the checksum cannot catch a careful edit
    _write(dataset, doc)
    one_error_line(runner.invoke(app, ["verify", str(dataset)]),
                   f"{dataset / 'manifest.json'}: split method 'random' with options")


def _flip_image_byte(path):
    with h5py.File(path, "r") as f:
        offset = f["images"].id.get_chunk_info(0).byte_offset + 5
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def _change_first_label(path):
    """Another valid class for the first record, so only the hash can tell."""
    classes = len(_manifest(path.parents[1])["classes"])
    with h5py.File(path, "r") as f:
        offset = f["labels"].id.get_chunk_info(0).byte_offset
        label = int(f["labels"][0])
        assert f["labels"].dtype == "<i4"
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(((label + 1) % classes).to_bytes(4, "little"))


def _truncate(path):
    os.truncate(path, path.stat().st_size // 2)


@pytest.mark.parametrize("damage, status", [
    (_flip_image_byte, "corrupt: SHA-256 differs"), (_change_first_label, "corrupt: SHA-256"),
    (os.remove, "missing"), (_truncate, "corrupt: SHA-256 differs"),
])
def test_train_refuses_a_damaged_dataset_before_its_first_step(dataset, tmp_path, damage,
                                                               status):
    shard = dataset / "val" / "shard-00000.h5"
    damage(shard)
    with pytest.raises(Exception, match=status):
        verify.check_dataset(dataset)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(dataset), "--out", str(out), "--model", "M6-1",
                                 "--epochs", "1", "--no-progress"])
    one_error_line(result, str(shard), status, "etlkit verify")
    assert not out.exists()


def test_no_verify_trains_on_a_dataset_it_would_refuse(digits, tmp_path):
    _change_first_label(digits / "train" / "shard-00000.h5")
    with pytest.raises(Exception, match="corrupt: SHA-256"):
        verify.check_dataset(digits)
    result = runner.invoke(app, ["train", str(digits), "--out", str(tmp_path / "run"),
                                 "--model", "FF-baseline", "--epochs", "1", "--no-progress",
                                 "--no-verify"])
    assert result.exit_code == 0, result.output


def _forge_swapped_classes(root):
    """The careful forgery: classes 0 and 1 swapped in the class table (the images of あ are
    now labelled い), and in every shard the Shift-JIS codes, raw codes and attributes to
    match, every checksum and the card recomputed. Nothing inside the dataset disagrees."""
    doc = _manifest(root)
    doc["classes"][0], doc["classes"][1] = doc["classes"][1], doc["classes"][0]
    code_of = {}  # (field, class) -> its records' code
    for shard in doc["shards"]:
        with h5py.File(root / shard["path"]) as f:
            for field in ("sjis", "codes"):
                pairs = zip(f["labels"][:], f[field][:], strict=True)
                code_of.update({(field, int(k)): v for k, v in pairs})
    for shard in doc["shards"]:
        with h5py.File(root / shard["path"], "r+") as f:
            labels = f["labels"][:]
            zero, one = labels == 0, labels == 1
            for field in ("sjis", "codes"):
                values = f[field][:]
                values[zero], values[one] = code_of[field, 1], code_of[field, 0]
                f[field][:] = values
            f.attrs["classes"] = json.dumps(doc["classes"], ensure_ascii=False, sort_keys=True)
        shard["sha256"] = sha256(root / shard["path"])
    doc["checksum"] = manifest_digest(doc)
    _write(root, doc)
    write_card(root)


def test_a_consistent_forgery_passes_verify_and_fails_against_the_raw_files(
        dataset, hiragana_shards):
    raw = hiragana_shards.parent / "raw"
    result = runner.invoke(app, ["verify", str(dataset), "--against", str(raw)])
    assert result.exit_code == 0, result.output
    assert [r.split()[1:3] for r in result.stdout.splitlines()[-7:-1]] == [["raw", "ok"]] * 6
    _forge_swapped_classes(dataset)
    assert runner.invoke(app, ["verify", str(dataset)]).exit_code == 0  # the limit of checksums
    result = runner.invoke(app, ["verify", str(dataset), "--against", str(raw)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = "\n".join(_failed_rows(result))
    assert "class 0 is 'い' where the raw files give 'あ'" in failed, failed
    assert ("train/shard-00000.h5 raw     mismatch" in failed and "sjis of 3 records differ"
            in failed and "(0x82A0 where the raw record gives 0x82A2)" in failed), failed


def test_verify_against_other_raw_files_names_them(dataset, hiragana_shards, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    data = bytearray((hiragana_shards.parent / "raw" / "ETL8G_01").read_bytes())
    data[100] ^= 1
    (other / "ETL8G_01").write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(dataset), "--against", str(other)])
    assert result.exit_code == 1
    (row,) = _failed_rows(result)
    assert row.split()[:3] == ["ETL8G_01", "raw", "mismatch"] and "SHA-256 differs" in row
    one_error_line(runner.invoke(app, ["verify", str(dataset), "--against", str(tmp_path / "no")]),
                   str(tmp_path / "no"), "no ETL files")
