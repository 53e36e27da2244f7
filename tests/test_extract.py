"""etlkit extract end to end on synthetic raw files: tasks, splits, shards, faults."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from assertions import one_error_line
from PIL import Image
from typer.testing import CliRunner

import etlkit
from etlkit import preprocess, preview
from etlkit.cli import app
from etlkit.extract import Options, extract
from etlkit.shards import manifest_digest, open_shards

runner = CliRunner()
KATAKANA_FILES = [f"ETL1C_{i:02d}" for i in range(7, 14)]  # those in `etl_raw`
PIPELINES = Path(__file__).parent.parent / "pipelines"


@pytest.fixture(scope="module")
def raw(etl_raw):
    """Synthetic ETL-1 katakana and ETL-8G files from 6 writers (the session's)."""
    return etl_raw


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(("pipeline", "classes"), [
    ("katakana", 48), ("hiragana", 75), ("hiragana-merged", 71), ("kanji", 881), ("script", 3),
    ("all", 1004),
])
def test_every_paper_pipeline(raw, tmp_path, pipeline, classes):
    out = tmp_path / pipeline
    _cli("extract", raw, "--pipeline", PIPELINES / f"{pipeline}.yaml", "--out", out)
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["num_classes"] == len(doc["classes"]) == classes and doc["image_size"] == 64
    assert sum(doc["splits"].values()) == sum(s["count"] for s in doc["shards"])
    assert sum(s["used"] for s in doc["sources"]) == sum(doc["splits"].values())
    assert doc["command"].startswith("etlkit extract")
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 0 and "5 of 5 files ok" in result.stdout  # shards and card
    if pipeline != "script":
        sjis = [s for _, s in doc["classes"]]
        assert sjis == sorted(sjis) and len(set(sjis)) == classes


def test_shards_hold_the_right_records_and_labels(raw, tmp_path):
    out = tmp_path / "all"
    doc = extract([raw], out, Options(task="all", shard_size=500))
    sources = [raw / s["file"] for s in doc["sources"]]
    decoded = {p.name: etlkit.read(p) for p in sources}
    for split_name in ("train", "val", "test"):
        shard_set = open_shards(out, split_name)
        data = shard_set.read(("images", "labels", "sjis", "codes", "sheets", "source"))
        assert len(data["labels"]) == len(shard_set)
        for i in np.random.default_rng(0).choice(len(data["labels"]), 40, replace=False):
            file_no, record = data["source"][i]
            batch = decoded[sources[file_no].name]
            at = int(np.searchsorted(batch.index, record))
            char, code = shard_set.classes[data["labels"][i]]
            assert batch.chars[at] == char and batch.sjis[at] == code == data["sjis"][i]
            assert batch.codes[at] == data["codes"][i] and batch.sheets[at] == data["sheets"][i]
            levels = etlkit.formats.get(batch.dataset).levels
            expected = preprocess.binarize(preprocess.to_size(batch.images[at : at + 1], levels))
            assert np.array_equal(data["images"][i], expected[0])
    with h5py.File(out / "train" / "shard-00000.h5") as f:  # plain h5py, as the README shows
        assert f["images"].dtype == np.uint8 and f["images"].shape[1:] == (64, 64)
        assert f["images"].chunks[1:] == (64, 64)
        assert len(json.loads(f.attrs["classes"])) == 1004
        # the dataset's facts: the same in every shard's attributes and the manifest
        preprocessing = json.loads(f.attrs["preprocessing"])
        assert preprocessing == doc["preprocessing"] == open_shards(out, "test").info.preprocessing
        assert preprocessing["binarize"] == "otsu" and not preprocessing["merge_small_kana"]
        assert json.loads(f.attrs["split_method"]) == doc["split_method"] == "random"
        assert json.loads(f.attrs["task"]) == doc["task"] == "all"
    assert "preprocessing" not in doc["options"] and doc["options"]["split_method"] == "random"


def test_same_seed_same_bytes(raw, tmp_path):
    a = extract([raw], tmp_path / "a", Options(task="hiragana", seed=3))
    b = extract([raw], tmp_path / "b", Options(task="hiragana", seed=3))
    c = extract([raw], tmp_path / "c", Options(task="hiragana", seed=4))
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert [s["sha256"] for s in a["shards"]] != [s["sha256"] for s in c["shards"]]


@pytest.mark.parametrize(("task", "files"), [("katakana", KATAKANA_FILES),  # category-major
                                              ("hiragana", ["ETL8G_01"])])  # writer-major
def test_synth_files_copied_without_their_marker_stay_synthetic(raw, tmp_path, task, files):
    """Hostile pass 7, H2: `cp raw/ETL8G_01 data/` leaves ETLKIT-SYNTH.json behind; the
    records' own signature still says synthetic, so the card does not claim AIST's data."""
    copied = tmp_path / "data"
    copied.mkdir()
    for name in files:
        os.link(raw / name, copied / name)  # the same bytes as a copy, without copying them
    warned = [f"warning: {copied / name}: records written by etlkit synth: synthetic, not "
              f"AIST's (they carry its signature; no ETLKIT-SYNTH.json beside the file lists it)"
              for name in files]
    info = _cli("info", copied)
    assert info.stderr.splitlines() == warned
    result = _cli("extract", copied, "--task", task, "--out", tmp_path / "x")
    assert sorted(ln for ln in result.stderr.splitlines() if "etlkit synth" in ln) == warned
    assert json.loads((tmp_path / "x" / "manifest.json").read_text())["synthetic"] is True
    assert "license: cc-by-sa-3.0" in (tmp_path / "x" / "README.md").read_text("utf-8")
    assert etlkit.read(copied / files[0]).synthetic.all()


def test_random_split_is_stratified(raw, tmp_path):
    doc = extract([raw], tmp_path / "k", Options(task="kanji"))
    counts = {s: np.bincount(open_shards(tmp_path / "k", s).read(("labels",))["labels"],
                             minlength=881) for s in ("train", "val", "test")}
    total = sum(counts.values())
    assert (total == 6).all()  # 6 writers per kanji
    assert (counts["test"] == round(6 * 0.2)).all() and (counts["val"] == 1).all()
    assert doc["splits"] == {"train": 881 * 4, "val": 881, "test": 881}


def test_writer_split_is_writer_disjoint(raw, tmp_path):
    doc = extract([raw], tmp_path / "w", Options(task="all", split_method="writer", seed=1))
    assert doc["split_method"] == doc["options"]["split_method"] == "writer"
    writers = {}
    for s in ("train", "val", "test"):
        shard_set = open_shards(tmp_path / "w", s)
        assert shard_set.info.split_method == "writer"
        for path in shard_set.paths:
            with h5py.File(path) as f:
                assert json.loads(f.attrs["split_method"]) == "writer"
                assert json.loads(f.attrs["split"]) == s
        data = shard_set.read(("sheets", "sjis"))
        kanji_or_hira = data["sjis"] >= 0x829F  # ETL-8 records: 10 sheets per writer
        keys = np.where(kanji_or_hira & (data["sjis"] < 0x8340) | (data["sjis"] >= 0x889F),
                        (data["sheets"] - 1) // 10 + 100000, data["sheets"])
        writers[s] = set(keys.tolist())
    assert not writers["train"] & writers["test"] and not writers["train"] & writers["val"]
    assert not writers["val"] & writers["test"] and all(writers.values())


def test_flipped_byte_is_caught_by_verify(raw, tmp_path):
    out = tmp_path / "h"
    extract([raw], out, Options(task="hiragana"))
    shard = out / "val" / "shard-00000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 1
    assert "val/shard-00000.h5" in result.stdout and "corrupt" in result.stdout


def test_missing_raw_files(raw, tmp_path):
    partial = tmp_path / "raw"
    partial.mkdir()
    for name in KATAKANA_FILES[1:]:
        os.symlink(raw / name, partial / name)
    result = runner.invoke(app, ["extract", str(partial), "--task", "katakana", "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code == 1 and not (tmp_path / "x" / "manifest.json").exists()
    assert "missing raw files: ETL1C_07" in result.stderr
    _cli("extract", partial, "--task", "katakana", "--allow-missing", "--out", tmp_path / "y")
    doc = json.loads((tmp_path / "y" / "manifest.json").read_text())
    # ETL1C_07's イウエ recur in ETL1C_11/12 (ヤ/ワ rows): only アオカキク are lost
    assert doc["missing"] == ["ETL1C_07"] and doc["num_classes"] == 48 - 5
    result = runner.invoke(app, ["extract", str(raw / "ETL8G_01"), "--task", "katakana",
                                 "--out", str(tmp_path / "z")])
    assert result.exit_code == 1 and "ETL1 (for katakana)" in result.stderr
    # hostile pass 8b, L1: a folder given beside others that holds no ETL file was dropped
    # without a word (a flag's value taken for a folder), while the manifest named it
    (tmp_path / "notes").mkdir()
    one_error_line(runner.invoke(app, ["extract", str(partial), str(tmp_path / "notes"),
                                       "--task", "katakana", "--allow-missing", "--out",
                                       str(tmp_path / "w")]),
                   f"{tmp_path / 'notes'}: no ETL files (names such as ETL1C_07, ETL8G_01) in it")
    assert not (tmp_path / "w").exists()


def test_killed_extraction_leaves_nothing_complete_and_rerun_finishes(raw, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "etlkit", "extract", str(raw), "--task", "kanji",
               "--shard-size", "64", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/*/shard-00003.h5")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the shards written so far are in the staging folder, where no reader looks
    assert sorted(p.name for p in out.iterdir()) == [".etlkit-staging"]
    with pytest.raises(etlkit.EtlError, match="extraction did not finish"):
        open_shards(out, "train")
    one_error_line(runner.invoke(app, ["verify", str(out)]), "extraction did not finish",
                   "run the extract command again")
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    clean = extract([raw], tmp_path / "clean", Options(task="kanji", shard_size=64))
    redone = json.loads((out / "manifest.json").read_text())
    assert [s["sha256"] for s in redone["shards"]] == [s["sha256"] for s in clean["shards"]]
    assert not list(out.rglob("*.tmp"))
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


def _manifest_of(root):
    return json.loads((root / "manifest.json").read_text("utf-8"))


def test_the_same_extract_again_keeps_a_dataset_that_verifies(hiragana_shards, tmp_path):
    """`hiragana_shards` is this command's dataset: rerunning it (after an interrupt that came
    once the dataset was complete, say) used to fail with "--force replaces it"."""
    out = shutil.copytree(hiragana_shards, tmp_path / "hiragana")
    (out / ".etlkit-staging").mkdir()  # a rerun stopped early
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    command = ["extract", hiragana_shards.parent / "raw", "--task", "hiragana",
               "--shard-size", "100", "--out", out]
    result = _cli(*command)
    assert result.stdout.startswith(f"kept {out} (already there): task hiragana, 75 classes")
    assert "nothing to do" in result.stderr and "pass 1" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert not (out / ".etlkit-staging").exists()
    one_error_line(runner.invoke(app, [str(a) for a in [*command, "--seed", "1"]]), str(out),
                   "already holds a dataset made with another seed (0 there, 1 now); --force "
                   "replaces it")
    doc = _manifest_of(out)
    doc["sources"][0]["sha256"] = "0" * 64  # as if made from another ETL8G_01
    doc["checksum"] = manifest_digest(doc)
    (out / "manifest.json").write_text(json.dumps(doc), "utf-8")
    one_error_line(runner.invoke(app, [str(a) for a in command]), str(out),
                   "made from other source files")


def test_the_same_extract_again_remakes_its_dataset_when_it_does_not_verify(digits_shards,
                                                                            tmp_path):
    out = shutil.copytree(digits_shards, tmp_path / "digits")
    (out / "val" / "shard-00000.h5").unlink()
    result = _cli("extract", "--dataset", "sklearn-digits", "--out", out)
    assert result.stdout.startswith(f"wrote {out}: task sklearn-digits")
    assert "does not verify: making it again" in result.stderr
    assert _manifest_of(out) == _manifest_of(digits_shards) | {
        "command": _manifest_of(out)["command"], "checksum": _manifest_of(out)["checksum"]}
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


def test_the_same_extract_again_finishes_one_stopped_while_moving_its_files(digits_shards,
                                                                           tmp_path):
    """Stopped after train/ and the card moved into place, before the manifest: verify says to
    run the command again, which used to refuse the folder as "not an etlkit dataset"."""
    out = shutil.copytree(digits_shards, tmp_path / "digits")
    (out / ".etlkit-staging").mkdir()
    for name in ("val", "test", "manifest.json"):
        (out / name).rename(out / ".etlkit-staging" / name)
    one_error_line(runner.invoke(app, ["verify", str(out)]), "run the extract command again")
    result = _cli("extract", "--dataset", "sklearn-digits", "--out", out)
    assert result.stdout.startswith(f"wrote {out}: task sklearn-digits")
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


def test_block_reads_shuffle_at_two_levels_and_cover_everything(raw, tmp_path):
    extract([raw], tmp_path / "k", Options(task="kanji", shard_size=1000))
    shard_set = open_shards(tmp_path / "k", "train")
    plain = shard_set.read(("source",))["source"]
    blocks = list(shard_set.blocks(block=256, seed=5, fields=("source", "labels")))
    again = list(shard_set.blocks(block=256, seed=5, fields=("source", "labels")))
    shuffled = np.concatenate([b["source"] for b in blocks])
    assert all(len(b["labels"]) <= 256 for b in blocks)
    assert np.array_equal(shuffled, np.concatenate([b["source"] for b in again]))
    assert not np.array_equal(shuffled, plain)
    key = lambda a: sorted(map(tuple, a.tolist()))  # noqa: E731
    assert key(shuffled) == key(plain)


@pytest.mark.parametrize(("given", "message"), [
    ({"split_method": "writr"}, "--split must be one of random, writer, not 'writr'"),
    ({"binarize": "sauvola"}, "--binarize must be one of otsu, none, not 'sauvola'"),
    ({"compression": "zip"}, "--compression must be one of lzf, gzip, none, not 'zip'"),
    ({"test_frac": 1.0}, "--test-frac and --val-frac must be in [0, 1)"),
    ({"val_frac": -0.1}, "--test-frac and --val-frac must be in [0, 1)"),
    ({"test_frac": "0.2"}, "--test-frac and --val-frac must be in [0, 1)"),
    ({"shard_size": 0}, "--shard-size must be at least 1"),
    ({"task": "kana"}, "unknown task 'kana'"),
    ({"scripts": ("runes",)}, "unknown script runes"),
    ({"seed": -1}, f"--seed must be a non-negative integer up to {2**63 - 1}, not -1"),
    ({"seed": float("nan")}, f"--seed must be a non-negative integer up to {2**63 - 1}, not nan"),
    ({"seed": 2**63}, f"--seed must be a non-negative integer up to {2**63 - 1}, not {2**63}"),
])
def test_options_check_themselves_from_python(given, message):
    with pytest.raises(etlkit.EtlError) as err:
        Options(**given)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_options_get_one_line(raw, tmp_path):
    for args, needle in [(["--binarize", "sauvola"], "--binarize must be one of"),
                         (["--split", "writr"], "--split must be one of random, writer"),
                         (["--task", "kana"], "unknown task 'kana'"),
                         (["--test-frac", "1.5"], "--test-frac"),
                         (["--scripts", "runes"], "unknown script runes"),
                         (["--seed", str(2**80)], f"--seed must be a non-negative integer "
                          f"up to {2**63 - 1}, not {2**80}")]:
        result = runner.invoke(app, ["extract", str(raw), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: kanji\nshards: 3\n")
    result = runner.invoke(app, ["extract", str(raw), "--pipeline", str(bad), "--out",
                                 str(tmp_path / "o")])
    assert result.exit_code == 1 and "unknown pipeline keys shards" in result.stderr
    assert "split, task, test_frac" in result.stderr  # recipes spell the method like the flag
    bad.write_text("task: kanji\ntest_frac: a fifth\n")
    result = runner.invoke(app, ["extract", str(raw), "--pipeline", str(bad), "--out",
                                 str(tmp_path / "o")])
    assert result.exit_code == 1 and result.stderr == (f"error: {bad}: test_frac must be a "
                                                       "finite number, not 'a fifth'\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("recipe", "message"), [
    ("hi\n", "a pipeline is a mapping of option: value, not str 'hi'"),
    ("- a\n- b\n", "a pipeline is a mapping of option: value, not list ['a', 'b']"),
    ("task: [hiragana]\n", "task must be a string, not ['hiragana']"),
    ("task: hiragana\nchars: 5\n", "chars must be a string, not 5"),
    ("task: hiragana\nseed: .nan\n", "seed must be an integer, not nan"),
    ("task: hiragana\nseed: true\n", "seed must be an integer, not True"),
    ("task: hiragana\ntest-frac: .inf\n", "test-frac must be a finite number, not inf"),
    ('task: hiragana\nmerge_small_kana: "no"\n',
     "merge_small_kana must be true or false, not 'no'"),
    ("scripts: hiragana\n", "scripts must be a list of strings, not 'hiragana'"),
    ("scripts: [hiragana, 3]\n", "scripts must be a list of strings, not ['hiragana', 3]"),
])
def test_pipeline_values_must_have_their_option_types(raw, tmp_path, recipe, message):
    """YAML types each value itself: a quoted "no" is a truthy string, `.nan` a float."""
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    result = runner.invoke(app, ["extract", str(raw), "--pipeline", str(path), "--out",
                                 str(tmp_path / "o")])
    one_error_line(result, f"error: {path}: {message}")
    assert not (tmp_path / "o").exists()


def test_chars_the_raw_files_lack_are_named_in_a_warning(hiragana_shards, tmp_path):
    raw = hiragana_shards.parent / "raw"  # ETL8G_01: hiragana and kanji, no Latin letters
    result = _cli("extract", raw, "--chars", "あ亜Zzあ", "--out", tmp_path / "c")
    assert result.stderr.count("warning:") == 1, result.stderr
    assert f"warning: --chars: no records for Z, z in {raw}\n" in result.stderr
    assert "task custom, 2 classes" in result.stdout
    merged = _cli("extract", raw, "--chars", "っつZ", "--merge-small-kana", "--out",
                  tmp_path / "m")  # っ is labelled つ: present, not named
    assert f"warning: --chars: no records for Z in {raw}\n" in merged.stderr
    assert "task custom, 1 classes" in merged.stdout
    one_error_line(runner.invoke(app, ["extract", str(raw), "--chars", "Zz", "--out",
                                       str(tmp_path / "n")]), "task custom: no records")


def test_a_pipeline_names_the_split_method_as_the_flag_does(raw, tmp_path):
    recipe = tmp_path / "writer.yaml"
    recipe.write_text("task: hiragana\nsplit: writer\n")
    _cli("extract", raw, "--pipeline", recipe, "--out", tmp_path / "h")
    doc = json.loads((tmp_path / "h" / "manifest.json").read_text())
    assert doc["split_method"] == doc["options"]["split_method"] == "writer"
    assert "--split writer" in doc["command"] and "split-method" not in doc["command"]
    _cli("extract", raw, "--pipeline", recipe, "--split", "random", "--out", tmp_path / "r")
    assert open_shards(tmp_path / "r", "train").info.split_method == "random"


def test_shard_set_counts_open_files_and_reads_chosen_shards(raw, tmp_path):
    extract([raw], tmp_path / "k", Options(task="kanji", shard_size=1000))
    shard_set = open_shards(tmp_path / "k", "train")
    counts = shard_set.counts()
    assert len(counts) == 4 and sum(counts) == len(shard_set) == 881 * 4
    expected = []
    for path, count in zip(shard_set.paths, counts, strict=True):
        with h5py.File(path) as f:
            assert len(f["labels"]) == count
            expected.append({k: f[k][:] for k in ("images", "labels", "source")})
    chosen = shard_set.read(("images", "labels", "source"), shards=[3, 1])
    for k in ("images", "labels", "source"):
        assert np.array_equal(chosen[k], np.concatenate([expected[3][k], expected[1][k]]))
    with shard_set.open([2]) as files:
        block = files.read_block(2, 256, 100, ("labels", "source"))
        assert np.array_equal(block["labels"], expected[2]["labels"][256:356])
        assert np.array_equal(block["source"], expected[2]["source"][256:356])
        assert np.array_equal(files.read_block(2, 900)["images"], expected[2]["images"][900:])
    none = shard_set.read(("images", "labels"), shards=[])
    assert none["images"].shape == (0, 64, 64) and none["images"].dtype == np.uint8
    assert none["labels"].dtype == np.int32


def test_a_manifest_without_the_dataset_facts_is_one_clear_error(raw, tmp_path):
    extract([raw], tmp_path / "h", Options(task="hiragana"))
    path = tmp_path / "h" / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["preprocessing"], doc["split_method"], doc["checksum"]  # as an older etlkit wrote
    path.write_text(json.dumps(doc))
    with pytest.raises(etlkit.EtlError) as err:
        open_shards(tmp_path / "h", "train")
    assert str(err.value) == (f"{path}: no split_method, preprocessing: written by an older "
                              "etlkit; extract the dataset again (and train again on it)")
    result = runner.invoke(app, ["verify", str(tmp_path / "h")])
    assert result.exit_code == 1 and result.stderr == f"error: {err.value}\n"


def test_preview_of_a_dataset(raw, tmp_path):
    extract([raw], tmp_path / "h", Options(task="hiragana"))
    _cli("preview", tmp_path / "h", "--out", tmp_path / "p")
    title = preview.TITLE  # "train: 48 of 75 classes, ...": the grid says what it leaves out
    classes = np.asarray(Image.open(tmp_path / "p" / "classes.png"))
    assert classes.shape == (title + 48 * 66, 11 * 66)  # 48 of the 75 classes: glyph + 10 tiles
    assert (classes[:title] < 128).any()  # the title's text
    fig2b = np.asarray(Image.open(tmp_path / "p" / "gray-vs-otsu.png"))
    assert fig2b.shape == (title + 128, 44 + 12 * 64)  # rows named gray and Otsu on the left
    assert (fig2b[title:, :44] < 128).any() and (fig2b[title:, 44:] < 255).any()
    gray, otsu = fig2b[title : title + 64, 44:], fig2b[title + 64 :, 44:]
    assert set(np.unique(otsu).tolist()) == {0, 255}
    assert len(np.unique(gray)) > 8  # real gray levels, from the raw records


def test_read_records_is_random_access(raw):
    whole = etlkit.read(raw / "ETL8G_02")
    picked = etlkit.read_records(raw / "ETL8G_02", [955, 3, 500])
    assert picked.index.tolist() == [955, 3, 500]
    assert np.array_equal(picked.images, whole.images[[955, 3, 500]])
    assert picked.chars.tolist() == whole.chars[[955, 3, 500]].tolist()
    with pytest.raises(etlkit.EtlError, match="record numbers must be in 0..955"):
        etlkit.read_records(raw / "ETL8G_02", [956])


def _joined(raw, folder):
    """ETL1C_13 joined to itself (`cat F F > F`)."""
    (folder / "ETL1C_13").write_bytes((raw / "ETL1C_13").read_bytes() * 2)


def _copied(raw, folder):
    """ETL1C_13's bytes under ETL1C_12's name as well."""
    (folder / "ETL1C_12").unlink()
    os.symlink(raw / "ETL1C_13", folder / "ETL1C_12")


def _one_record_again(raw, folder):
    """ETL1C_13 with its record 3 appended."""
    data = (raw / "ETL1C_13").read_bytes()
    (folder / "ETL1C_13").write_bytes(data + data[3 * 2052: 4 * 2052])


@pytest.mark.parametrize(("damage", "repeat"), [
    (_joined, "ETL1C_13: record 18 repeats its record 0"),
    (_copied, "ETL1C_13: record 0 repeats ETL1C_12 record 0"),
    (_one_record_again, "ETL1C_13: record 18 repeats its record 3"),
])
def test_records_that_appear_twice_are_refused_before_anything_is_written(raw, tmp_path, damage,
                                                                         repeat):
    """AIST's records each carry their own serial numbers, so a record met twice is a copy
    that would land in train and test at once (these were extracted without a word)."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in KATAKANA_FILES:
        os.symlink(raw / name, folder / name)
    (folder / "ETL1C_13").unlink()
    shutil.copy(raw / "ETL1C_13", folder)
    damage(raw, folder)
    out = tmp_path / "out"
    result = runner.invoke(app, ["extract", str(folder), "--task", "katakana", "--out", str(out)])
    one_error_line(result, f"{folder / repeat} byte for byte (a file copied or joined twice?)")
    assert not out.exists()
    result = runner.invoke(app, ["info", str(folder), "--json"])  # info says so, and reads on
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r["warnings"] for r in json.loads(result.stdout)}
    assert [w for w in rows["ETL1C_13"] if "repeats" in w] == [str(folder / repeat) +
                                                              " byte for byte (a file copied "
                                                              "or joined twice?)"]
    assert f"warning: {folder / repeat}" in result.stderr


def test_a_sheet_number_a_shard_cannot_hold_is_refused_not_wrapped(tmp_path):
    """One flipped byte of an ETL5C record's sheet field gave sheet 4,278,190,288, which the
    shard's int32 `sheets` stored as -16,777,008 without a word (hostile pass 13, F5)."""
    from etlkit.synth import synth

    synth("ETL5", tmp_path / "synth", writers=2)
    damaged = bytearray((tmp_path / "synth" / "ETL5C").read_bytes())
    damaged[79 * 2952 + 5] ^= 0xFF  # in record 79's sheet number
    path = tmp_path / "raw" / "ETL5C"
    path.parent.mkdir()
    path.write_bytes(bytes(damaged))
    with pytest.warns(etlkit.EtlWarning):  # synth's records, no marker beside them
        sheet = int(etlkit.read(path).sheets[79])
    assert sheet > np.iinfo(np.int32).max
    one_error_line(runner.invoke(app, ["extract", str(path.parent), "--scripts", "katakana",
                                       "--out", str(tmp_path / "ds")]),
                   f"{path}: record 79 has sheet number {sheet}, more than the 2147483647 a "
                   "shard holds")
    assert not (tmp_path / "ds").exists()
