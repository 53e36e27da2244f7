"""Inputs an outside hostile pass found after the first round of hardening: each is refused in
one line (never a traceback, never a result from data that does not check out)."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
from assertions import one_error_line
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.errors import EtlError
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


@pytest.mark.parametrize("option, needle", [
    (["--seed", "-1"], "--seed must be a non-negative integer, not -1"),
    (["--columns", "99999999999999999999"], "--columns must be a positive integer up to 100"),
    (["--count", "0"], "--count must be a positive integer up to 1000, not 0"),
    # hostile pass 8b: all 4,780 records of a file in one 98-Mpx grid, a decompression bomb
    (["--count", "100000000000000000000"], "--count must be a positive integer up to 1000, "
     "not 100000000000000000000"),
])
def test_preview_options_are_checked_before_any_work(hiragana_shards, tmp_path, option, needle):
    """--seed -1 and a --columns too big for a C long were tracebacks; --count is bounded so
    the grid stays an image anyone can open."""
    for source in (hiragana_shards.parent / "raw" / "ETL8G_01", hiragana_shards):
        out = tmp_path / "p.png"
        one_error_line(runner.invoke(app, ["preview", str(source), "--out", str(out), *option]),
                       needle)
        assert not out.exists()


@pytest.mark.parametrize("command", ["info", "preview"])
def test_an_empty_format_is_refused_not_read_as_detect(hiragana_shards, tmp_path, command):
    """Hostile pass 7: `preview FILE --format ''` detected the format and exited 0, where
    every other unknown name is refused."""
    out = tmp_path / "p.png"
    result = runner.invoke(app, [command, str(hiragana_shards.parent / "raw" / "ETL8G_01"),
                                 "--format", "", *(["--out", str(out)] * (command == "preview"))])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert "Invalid value for '--format' / '-f': is empty" in \
        " ".join(result.output.replace("│", " ").split())
    assert not out.exists()


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


# --- the second outside pass ----------------------------------------------------------------


def test_a_pipeline_that_is_not_yaml_text_is_one_line(hiragana_shards, tmp_path):
    raw = hiragana_shards.parent / "raw"
    (tmp_path / "utf16.yaml").write_bytes(b"\xff\xfe task: x\n")
    cases = [(tmp_path / "utf16.yaml", "unreadable pipeline"),
             (raw / "ETL8G_01", "not a pipeline (a YAML file of at most 64 KB)"),
             (tmp_path, "not a pipeline")]  # a folder; /dev/zero is refused the same way
    for pipeline, needle in cases:
        one_error_line(runner.invoke(app, ["extract", str(raw), "--pipeline", str(pipeline),
                                           "--out", str(tmp_path / "out")]),
                       str(pipeline), needle)
        assert not (tmp_path / "out").exists()


def test_distributed_options_are_checked_before_jax_sees_them(digits_shards, tmp_path):
    base = ["train", str(digits_shards), "--model", "FF-baseline", "--out", str(tmp_path / "r")]
    for extra, needle in [
            (["--coordinator", "127.0.0.1:9999", "--num-processes", "2", "--process-id", "1"],
             "--coordinator, --num-processes, --process-id only mean something with "
             "--distributed"),
            (["--distributed", "--num-processes", "-1", "--process-id", "0"],
             "--num-processes must be at least 1, not -1"),
            (["--distributed", "--num-processes", "2", "--process-id", "5"],
             "--process-id must be from 0 to --num-processes - 1, not 5"),
            (["--distributed", "--coordinator", "x", "--num-processes", "1", "--process-id",
              "0"], "--coordinator must be HOST:PORT (PORT 1-65535), not 'x'"),
            (["--distributed", "--coordinator", "127.0.0.1:99999"], "not '127.0.0.1:99999'")]:
        one_error_line(runner.invoke(app, base + extra), needle)
    assert not (tmp_path / "r").exists()


def test_a_manifest_without_a_checksum_is_refused_and_trains_unverified(digits_shards,
                                                                          tmp_path):
    """A removed checksum is an edit: train refuses it before making the run folder, and
    with --no-verify trains and evaluates (it used to be a KeyError traceback that left an
    empty run folder)."""
    root = shutil.copytree(digits_shards, tmp_path / "digits")
    doc = json.loads((root / "manifest.json").read_text("utf-8"))
    del doc["checksum"]
    (root / "manifest.json").write_text(json.dumps(doc), "utf-8")
    run = tmp_path / "run"
    args = ["train", str(root), "--model", "FF-baseline", "--epochs", "1", "--out", str(run),
            "--no-progress"]
    one_error_line(runner.invoke(app, args), f"{root / 'manifest.json'}: edited")
    assert not run.exists()
    result = runner.invoke(app, [*args, "--no-verify"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["evaluate", str(run), "--no-verify"]).exit_code == 0


def test_a_checksum_that_is_not_a_digest_is_refused_even_unverified(digits_shards, tmp_path):
    """`train --no-verify` recorded a hand-written `checksum: 5` as the run's dataset digest."""
    root = shutil.copytree(digits_shards, tmp_path / "digits")
    doc = json.loads((root / "manifest.json").read_text("utf-8"))
    doc["checksum"] = 5
    (root / "manifest.json").write_text(json.dumps(doc), "utf-8")
    needle = "'checksum' is not a SHA-256 hex digest"
    one_error_line(runner.invoke(app, ["verify", str(root)]), needle)
    one_error_line(runner.invoke(app, ["train", str(root), "--model", "FF-baseline", "--out",
                                       str(tmp_path / "run"), "--no-verify"]), needle)
    assert not (tmp_path / "run").exists()


def test_a_shard_that_is_not_hdf5_or_not_a_file_is_named_unverified(digits_run, tmp_path):
    """What `--no-verify` reads: a cut or empty shard said only "Unable to synchronously open
    file", and a FIFO in its place hung the command."""
    from etlkit.shards import open_shards
    root = shutil.copytree(digits_run.parent / "mnist", tmp_path / "mnist")
    shard = root / "test" / "shard-00000.h5"
    for damage, needle in [(lambda: shard.write_bytes(b""), "not a readable HDF5 shard"),
                           (lambda: (shard.unlink(), os.mkfifo(shard)), "not a regular file")]:
        damage()
        with pytest.raises(EtlError, match=needle) as caught:
            open_shards(root, "test").read(("labels",))
        assert str(caught.value).startswith(f"{shard}: ")


def test_a_run_config_with_a_class_table_or_dataset_it_cannot_have_is_refused(digits_run,
                                                                                tmp_path):
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(image)
    edits = [
        (lambda d: d["classes"].__setitem__(1, d["classes"][0]), "classes[1] must be a class of "
         "its own"),
        (lambda d: d["classes"][0].__setitem__(1, 2**70), "classes[0] must be a [character, "
         "Shift-JIS code] pair"),
        (lambda d: d["classes"][0].__setitem__(0, "\x1b[31mX\x07"), "classes[0] must be"),
        (lambda d: d.update(dataset=5), "dataset must be the dataset's location, not 5"),
        (lambda d: d["classes"][1].__setitem__(1, d["classes"][0][1]), "classes[1] must be a "
         "character and its own Shift-JIS code ('1' is 49 = 0x0031), not [\"1\", 48]"),
        (lambda d: d["classes"][8].__setitem__(0, "x"), "classes[8] must be a character and "
         "its own Shift-JIS code ('x' is 120 = 0x0078)"),  # one bit: "8" -> "x"
        (lambda d: d["classes"].__setitem__(slice(1, 3), d["classes"][2:0:-1]),
         "classes differ from classes_checksum"),  # two whole entries swapped
        (lambda d: d["classes"][0].__setitem__(0, ""), "classes[0] must be a class of its own"),
    ]
    for n, (edit, needle) in enumerate(edits):
        run = shutil.copytree(digits_run, tmp_path / f"run{n}")
        doc = json.loads((run / "config.json").read_text("utf-8"))
        edit(doc)
        (run / "config.json").write_text(json.dumps(doc), "utf-8")
        one_error_line(runner.invoke(app, ["predict", str(run), str(image)]),
                       str(run / "config.json"), needle)
    run = tmp_path / "run0"
    (run / "config.json").write_text("null", "utf-8")
    one_error_line(runner.invoke(app, ["predict", str(run), str(image)]),
                   str(run / "config.json"), "not a JSON object")


def test_metrics_lines_that_are_not_objects_are_one_line(digits_run, tmp_path):
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(image)
    for n, content in enumerate([b"null\n{}\n", b"\xff\xfe\n{}\n", b'{"epoch": null}\n{}\n',
                                 b'{"val/accuracy": 1}\n{}\n',
                                 b"[" * 100_000 + b"\n{}\n",  # a RecursionError in json
                                 b'{"step": 9, "test/loss": 1, "test/accuracy": "x", '
                                 b'"test/top5": 1, "test/best_epoch": 1}\n{}\n',
                                 b'{"step": 9, "epoch": 1, "train/loss": [2.5], '
                                 b'"train/accuracy": 1}\n{}\n',
                                 b'{"step": 1, "epoch": 1, "train/loss": 1.0}\n{}\n']):
        run = shutil.copytree(digits_run, tmp_path / f"run{n}")
        (run / "metrics.jsonl").write_bytes(content)
        one_error_line(runner.invoke(app, ["predict", str(run), str(image)]),
                       str(run / "metrics.jsonl"), "line 1 is not")
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")  # the read blocked for ever
    one_error_line(runner.invoke(app, ["evaluate", str(run)]), str(run / "metrics.jsonl"),
                   "not a regular file")


def test_a_synth_record_that_is_not_one_is_one_line(hiragana_shards, tmp_path):
    entry = '{"ETL8G_01": {"dataset": "ETL8G", "writers": %s, "seed": 0}}'
    for n, text in enumerate(["null", "5", "[]", '"x"', "{", entry % '"2"', entry % -1]):
        raw = shutil.copytree(hiragana_shards.parent / "raw", tmp_path / f"raw{n}")
        (raw / "ETLKIT-SYNTH.json").write_text(text, "utf-8")
        marker = str(raw / "ETLKIT-SYNTH.json")
        for command in (["verify", str(raw)],
                        ["extract", str(raw), "--task", "hiragana", "--out", str(tmp_path / "x")],
                        ["verify", str(hiragana_shards), "--against", str(raw)]):
            one_error_line(runner.invoke(app, command), marker, "synth record")
        assert not (tmp_path / "x").exists()
    one_error_line(runner.invoke(app, ["synth", "--dataset", "ETL8G", "--writers", "1",
                                       "--seed", "-1", "--out", str(tmp_path / "s")]),
                   "--seed must be a non-negative integer")


def test_verify_against_the_raw_files_compares_the_synthetic_flag(hiragana_shards, tmp_path):
    """The card's licence follows the flag: a dataset of synthetic files passed off as AIST's."""
    root = _dataset(hiragana_shards, tmp_path, lambda d: d.update(synthetic=False))
    result = runner.invoke(app, ["verify", str(root), "--against",
                                 str(hiragana_shards.parent / "raw")])
    assert result.exit_code == 1
    assert "synthetic is false, the raw files give true" in result.stdout


@pytest.mark.parametrize("command", [
    ["card", "URL/digits"], ["info", "URL/raw/ETL8G_01"], ["extract", "URL/raw", "--out", "x"],
    ["extract", "raw", "--pipeline", "URL/p.yaml", "--out", "x"], ["evaluate", "URL/run"],
    ["predict", "URL/run", "d.png"], ["predict", "--model", "URL/m.onnx", "d.png"],
    ["export", "URL/run", "--out", "x"], ["figures", "URL/run"], ["serve", "URL/run"],
    ["recognize", "URL/line.png", "--run", "run"], ["verify", "raw", "--against", "URL/raw"],
    ["table", "URL/raw", "--tasks", "hiragana"],
])
def test_a_url_where_a_local_path_is_needed_is_refused_as_typed(tmp_path, monkeypatch, command):
    """Hostile pass 7 (H3): a Path folded the URL's // and the command said `http:/host/run`
    was missing. Refused before any work, naming the URL as typed."""
    monkeypatch.chdir(tmp_path)
    url = "http://127.0.0.1:9/data"
    result = runner.invoke(app, [w.replace("URL", url) for w in command])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert f"{url}/" in said and "is a URL; give a local file or folder" in said, said
    assert list(tmp_path.iterdir()) == []


def test_an_out_url_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["synth", "--dataset", "ETL1", "--out", "http://host/x"])
    assert result.exit_code == 2
    assert "http://host/x is a URL; etlkit writes on this machine only" in \
        " ".join(result.output.replace("│", " ").split())
    assert list(tmp_path.iterdir()) == []


def test_verify_against_needs_a_local_dataset(hiragana_shards):
    """It said a dataset URL "is not a dataset folder written by extract"; refused before
    anything is fetched (nothing answers on port 9)."""
    url = "http://127.0.0.1:9/hiragana"
    one_error_line(runner.invoke(app, ["verify", url, "--against",
                                       str(hiragana_shards.parent / "raw")]),
                   f"--against: {url} is a URL; the records are compared in a local dataset "
                   "folder")


@pytest.mark.parametrize("command", [
    ["verify", "{url}"],
    ["preview", "{url}", "--out", "{tmp}/p"],
    ["train", "{url}", "--out", "{tmp}/r"],
    ["seeds", "--models", "FF-baseline", "--shards", "{url}", "--out", "{tmp}/s"],
    ["table", "--models", "M3", "--tasks", "hiragana", "--shards", "hiragana={url}", "--out",
     "{tmp}/t"],
])
@pytest.mark.parametrize("url, needle", [
    ("http://", "a URL needs a host"), ("https://", "a URL needs a host"),
    ("s3://", "a URL needs a host"), ("gs://", "a URL needs a host"),
    ("http:///", "a URL needs a host"), ("http://[::1", "not a valid URL"),
])
def test_a_url_without_a_host_is_one_line(tmp_path, command, url, needle):
    """Hostile pass 8 (J2): `verify http://` and `preview gs://` were tracebacks, `train
    http://` looked for `http:/manifest.json`."""
    args = [a.format(url=url, tmp=tmp_path) for a in command]
    one_error_line(runner.invoke(app, args), f"{url}: {needle}")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command, name", [
    (["verify", ""], "'root'"),
    (["verify", "{tmp}", "--against", ""], "'--against'"),
    (["info", ""], "'paths'"),
    (["preview", "", "--out", "{tmp}/p"], "'path'"),
    (["extract", "", "--task", "hiragana", "--out", "{tmp}/x"], "'raw'"),
    (["extract", "{tmp}", "--mapping", "", "--out", "{tmp}/x"], "'--mapping'"),
    (["evaluate", ""], "'run'"),
    (["train", "", "--out", "{tmp}/r"], "'shards'"),
    (["seeds", "--shards", "", "--out", "{tmp}/s"], "'--shards'"),
    (["predict", "", "d.png"], "'[RUN] IMAGES...'"),
    (["recognize", "page.png", "--run", ""], "'--run'"),
])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch,
                                                                 command, name):
    """Hostile pass 8 (J6): `verify ''` checked the current folder, `extract '' …` built a
    dataset from the raw files below it: "" is refused as `--out ""` is."""
    shutil.copy(__file__, tmp_path / "ETL8G_01")  # something a read of the cwd would find
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in command])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert f"Invalid value for {name}: is empty" in " ".join(result.output.replace("│", " ")
                                                             .split())
    assert sorted(tmp_path.iterdir()) == before
