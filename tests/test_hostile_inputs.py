"""Inputs an outside hostile pass found after the first round of hardening: each is refused in
one line (never a traceback, never a result from data that does not check out)."""

import json
import shutil

import h5py
import numpy as np
from assertions import one_error_line
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.shards import manifest_digest, sha256

runner = CliRunner()


def _dataset(hiragana_shards, tmp_path, edit=None, text=None):
    root = shutil.copytree(hiragana_shards, tmp_path / "hiragana")
    doc = json.loads((root / "manifest.json").read_text("utf-8"))
    if edit:
        edit(doc)
        doc["checksum"] = manifest_digest({k: v for k, v in doc.items() if k != "checksum"})
    (root / "manifest.json").write_text(text or json.dumps(doc, ensure_ascii=False), "utf-8")
    return root


def test_deeply_nested_json_is_an_unreadable_manifest(hiragana_shards, tmp_path):
    root = _dataset(hiragana_shards, tmp_path, text="[" * 100_000 + "]" * 100_000)
    for command in (["verify", str(root)], ["preview", str(root), "--out", str(tmp_path / "p")]):
        one_error_line(runner.invoke(app, command), "unreadable manifest")


def test_a_nul_byte_or_another_split_in_the_manifest_is_refused(hiragana_shards, tmp_path):
    def nul(doc):
        doc["shards"][0]["path"] += "\0x"

    root = _dataset(hiragana_shards, tmp_path, nul)
    result = runner.invoke(app, ["verify", str(root)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "outside" in result.stdout
    one_error_line(runner.invoke(app, ["train", str(root), "--out", str(tmp_path / "r")]),
                   "outside")
    shutil.rmtree(root)
    root = _dataset(hiragana_shards, tmp_path, lambda doc: doc["splits"].update(foo=0))
    for command in (["verify", str(root)], ["card", str(root)]):
        one_error_line(runner.invoke(app, command), "'splits' names")


def test_preview_and_card_show_only_a_dataset_that_verifies(hiragana_shards, tmp_path):
    def swap(doc):
        doc["classes"][0], doc["classes"][1] = doc["classes"][1], doc["classes"][0]

    root = _dataset(hiragana_shards, tmp_path, swap)
    one_error_line(runner.invoke(app, ["preview", str(root), "--out", str(tmp_path / "p")]),
                   "train/shard-00000.h5")  # its attributes hold the real class table
    assert not (tmp_path / "p").exists()
    card = (root / "README.md").read_bytes()
    one_error_line(runner.invoke(app, ["card", str(root)]), "shard-00000.h5")
    assert (root / "README.md").read_bytes() == card  # not rewritten from a bad manifest

    def outside(doc):
        doc["shards"][0]["path"] = "../../elsewhere/train/shard-00000.h5"

    shutil.rmtree(root)
    root = _dataset(hiragana_shards, tmp_path, outside)
    one_error_line(runner.invoke(app, ["preview", str(root), "--out", str(tmp_path / "p")]),
                   "outside")


def test_extract_into_a_folder_below_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("notes\n")
    one_error_line(runner.invoke(app, ["extract", "--dataset", "sklearn-digits", "--out",
                                       str(tmp_path / "afile" / "sub")]),
                   "afile: a file, not a folder")


def test_a_relabelled_shard_with_every_checksum_recomputed_fails_verify(hiragana_shards,
                                                                         tmp_path):
    """Labels moved by one class, the shard's SHA-256 and the manifest's checksum forged to
    match: the records' own Shift-JIS codes still tell."""
    root = shutil.copytree(hiragana_shards, tmp_path / "hiragana")
    shard = root / "train" / "shard-00000.h5"
    with h5py.File(shard, "r+") as f:
        f["labels"][0] = (f["labels"][0] + 1) % 75
    doc = json.loads((root / "manifest.json").read_text("utf-8"))
    doc["shards"][0]["sha256"] = sha256(shard)
    doc["checksum"] = manifest_digest({k: v for k, v in doc.items() if k != "checksum"})
    (root / "manifest.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    result = runner.invoke(app, ["verify", str(root)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 labels disagree with their records' Shift-JIS codes (first: record 0)" in \
        result.stdout


def _forge(root, shard_paths):
    """Recompute the SHA-256 of the edited shards and the manifest's checksum, as a forger
    who knows the format would."""
    doc = json.loads((root / "manifest.json").read_text("utf-8"))
    for entry in doc["shards"]:
        if entry["path"] in shard_paths:
            entry["sha256"] = sha256(root / entry["path"])
    doc["checksum"] = manifest_digest({k: v for k, v in doc.items() if k != "checksum"})
    (root / "manifest.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")


def test_a_test_record_copied_into_train_with_every_checksum_recomputed_fails_verify(
        hiragana_shards, tmp_path):
    """A test record written over a training record (labels consistent, counts unchanged,
    every checksum forged): the record's source, one place in the raw files, is now twice in
    the dataset."""
    root = shutil.copytree(hiragana_shards, tmp_path / "hiragana")
    with h5py.File(root / "test" / "shard-00000.h5") as test, \
            h5py.File(root / "train" / "shard-00001.h5", "r+") as train:
        for key in ("images", "labels", "sjis", "codes", "sheets", "source"):
            train[key][7] = test[key][3]
    _forge(root, ["train/shard-00001.h5"])
    result = runner.invoke(app, ["verify", str(root)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = [ln for ln in result.stdout.splitlines() if "duplicate" in ln]
    assert len(failed) == 1 and failed[0].startswith("test/shard-00000.h5")
    assert "1 of its records are also in train/shard-00001.h5 (the same raw file and record)" \
        in failed[0]
    train = runner.invoke(app, ["train", str(root), "--out", str(tmp_path / "run"), "--model",
                                "M6-1"])
    one_error_line(train, "records copied between shards")


def test_merged_small_kana_are_checked_against_the_kana_they_merge_into(hiragana_shards,
                                                                         tmp_path):
    """With っゃゅょ merged into つやゆよ the labels are checked too: a sound dataset passes,
    and a small kana moved to another class fails."""
    from etlkit.extract import Options, extract

    root = tmp_path / "merged"
    extract([hiragana_shards.parent / "raw"], root,
            Options(task="hiragana", shard_size=100, merge_small_kana=True))
    assert runner.invoke(app, ["verify", str(root)]).exit_code == 0
    small_tsu = int.from_bytes("っ".encode("shift_jis"), "big")
    with h5py.File(root / "train" / "shard-00000.h5", "r+") as f:
        at = int(np.flatnonzero(f["sjis"][:] == small_tsu)[0])
        f["labels"][at] = (f["labels"][at] + 1) % len(json.loads(
            (root / "manifest.json").read_text("utf-8"))["classes"])
    _forge(root, ["train/shard-00000.h5"])
    result = runner.invoke(app, ["verify", str(root)])
    assert result.exit_code == 1
    assert f"1 labels disagree with their records' Shift-JIS codes (first: record {at})" in \
        result.stdout


def test_a_newline_in_a_file_name_keeps_every_line_whole(digits_run, tmp_path):
    """A name is printed with its control characters escaped, in a result's header and in an
    error line alike."""
    from PIL import Image

    from etlkit.shards import open_shards

    digit = open_shards(digits_run.parent / "mnist", "test").read(("images",))["images"][0]
    good, bad = tmp_path / "one\ndigit.png", tmp_path / "two\nnotes.png"
    Image.fromarray(255 - digit).save(good, format="PNG")
    bad.write_text("not an image")
    result = runner.invoke(app, ["predict", str(digits_run), str(good), str(bad)])
    assert result.exit_code == 1
    escaped = {path: str(path).replace("\n", "\\x0a") for path in (good, bad)}
    assert result.stdout.splitlines()[0] == escaped[good]
    assert result.stderr.splitlines() == [f"error: {escaped[bad]}: not a PNG or JPEG image"]
