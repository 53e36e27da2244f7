"""The CLI as a user runs it: Typer's runner on real files, and one real subprocess."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from assertions import one_error_line
from PIL import Image
from typer.testing import CliRunner

from etlkit import reader
from etlkit.cli import app
from etlkit.formats import SYNTH_SIGNATURE
from etlkit.synth import MARKER, mark_synthetic, synth
from etlkit.verify import FAILED

runner = CliRunner()


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synth("ETL1", root, writers=3, files=["ETL1C_07", "ETL1C_13"])
    synth("ETL8G", root, writers=1)
    return root


def test_info_json(raw):
    result = runner.invoke(app, ["info", str(raw / "ETL8G_01"), str(raw / "ETL1C_07"), "--json"])
    assert result.exit_code == 0, result.output
    g8, e1 = json.loads(result.stdout)
    assert (g8["format"], g8["records"], g8["classes"]) == ("ETL8G", 956, 956)
    assert g8["scripts"] == {"hiragana": 75, "kanji": 881}
    assert (e1["format"], e1["records"], e1["classes"], e1["sheets"]) == ("ETL1", 24, 8, 3)
    assert e1["scripts"] == {"katakana": 8} and e1["unlabelled"] == 0


def test_info_table_on_a_folder(raw):
    result = runner.invoke(app, ["info", str(raw)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["file", "format", "records"]
    assert [ln.split()[0] for ln in lines[1:]] == ["ETL1C_07", "ETL1C_13", "ETL8G_01"]


def test_preview_writes_a_labelled_grid(raw, tmp_path):
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["preview", str(raw / "ETL8G_01"), "--out", str(out),
                                 "--count", "24", "--columns", "6"])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.size == (6 * (128 + 4), 4 * (127 + 22 + 6))
    assert 0 < (255 - np.asarray(image)).mean() < 128


def test_verify_explains_synthetic_files_and_reports_missing_and_partial(raw, tmp_path):
    result = runner.invoke(app, ["verify", str(raw)])  # as `etlkit synth` wrote them
    assert result.exit_code == 0, result.output
    rows = {ln.split()[0]: ln for ln in result.stdout.splitlines()[1:-1]}
    assert rows["ETL1C_07"].split()[2] == "synthetic"
    assert "etlkit synth wrote 3 writer(s) (seed 0); AIST's file has" in rows["ETL1C_07"]
    assert rows["ETL1C_01"].split()[2] == "synthetic" and "not written by etlkit synth" in \
        rows["ETL1C_01"]
    real = tmp_path / "real"  # copied without synth's marker: counted as AIST's files, and
    shutil.copytree(raw, real)  # their records still say they are synthetic
    (real / MARKER).unlink()
    result = runner.invoke(app, ["verify", str(real)])
    assert result.exit_code == 1
    rows = {ln.split()[0]: ln.split()[2] for ln in result.stdout.splitlines()[1:-1]}
    assert rows["ETL1C_01"] == "missing" and rows["ETL8G_33"] == "missing"
    assert rows["ETL1C_07"] == "wrong-count"
    signed = [f"warning: {real / name}: records written by etlkit synth: synthetic, not AIST's"
              for name in ("ETL1C_07", "ETL1C_13", "ETL8G_01")]
    assert [ln for ln in result.stderr.splitlines() if "etlkit synth" in ln] == [
        ln + f" (they carry its signature; no {MARKER} beside the file lists it)"
        for ln in signed]
    for name in ("ETL1C_07", "ETL1C_13", "ETL8G_01"):  # as if from AIST
        _unsign(real / name)
    unsigned = runner.invoke(app, ["verify", str(real)])
    assert unsigned.stdout == result.stdout and "etlkit synth" not in unsigned.stderr
    shutil.copy(raw / MARKER, real)  # a marker listing files whose records are not signed
    assert runner.invoke(app, ["verify", str(real)]).stdout == \
        runner.invoke(app, ["verify", str(raw)]).stdout.replace(str(raw), str(real))
    broken = tmp_path / "ETL8G_01"
    broken.write_bytes((raw / "ETL8G_01").read_bytes()[:-100])
    result = runner.invoke(app, ["verify", str(tmp_path)])
    assert "partial" in result.stdout and f"record 955 at offset {955 * 8199}" in result.stdout
    doubled = tmp_path / "doubled"  # a synth file joined to itself: its marker's writers say 24
    shutil.copytree(raw, doubled)
    with open(doubled / "ETL1C_07", "ab") as f:
        f.write((raw / "ETL1C_07").read_bytes())
    result = runner.invoke(app, ["verify", str(doubled)])
    assert result.exit_code == 1
    (row,) = [ln for ln in result.stdout.splitlines() if ln.startswith("ETL1C_07")]
    assert row.split()[2] == "wrong-count" and "48 records, expected 24: etlkit synth" in row


def _unsign(path):
    """Synth's signature cleared from every record of a raw file: its bytes as AIST's might be."""
    fmt = reader.resolve_format(path)
    records = np.fromfile(path, np.uint8).reshape(-1, fmt.record_size)
    at = fmt.layout.synth_mark_offset
    records[fmt.dummy_records :, at : at + len(SYNTH_SIGNATURE)] = 0
    records.tofile(path)


def test_partial_file_is_an_error_unless_allowed(raw, tmp_path):
    path = tmp_path / "ETL1C_07"
    path.write_bytes((raw / "ETL1C_07").read_bytes()[: 2052 * 5 + 100])
    one_error_line(runner.invoke(app, ["info", str(path)]), str(path), "2052-byte",
                    "record 5 at offset 10260", "--allow-partial")
    result = runner.invoke(app, ["info", str(path), "--allow-partial", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["records"] == 5
    assert "warning:" in result.stderr and "reading the 5 whole records" in result.stderr


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "empty file"),
    (bytes(2052 * 2), "fits ETL1, ETL6, ETL7; pass --format"),
    (b"x" * 1001, "not a whole number of records of any ETL format"),
])
def test_unknown_files_get_one_clear_line(tmp_path, content, needle):
    path = tmp_path / "mystery.bin"
    path.write_bytes(content)
    one_error_line(runner.invoke(app, ["info", str(path)]), str(path), needle)


def test_random_bytes_under_a_real_name(tmp_path):
    path = tmp_path / "ETL8G_01"
    path.write_bytes(np.random.default_rng(0).bytes(8199 * 20))
    one_error_line(runner.invoke(app, ["info", str(path)]), "does not look like ETL8G data")
    one_error_line(runner.invoke(app, ["info", str(tmp_path / "nope")]), "no such file")


def _warnings(result, path):
    return [ln for ln in result.stderr.splitlines()
            if ln.startswith(f"warning: {path}: does not fit")]


def test_a_text_file_under_an_etl_name_is_warned_about_everywhere(tmp_path):
    """Issue 12.2: two ETL-8G records' worth of text named ETL8G_01."""
    path = tmp_path / "raw" / "ETL8G_01"
    path.parent.mkdir()
    path.write_text(("Dear diary, today I wrote kanji. " * 600)[: 2 * 8199], "ascii")
    for args in (["info", str(path)], ["preview", str(path), "-o", str(tmp_path / "p.png")],
                 ["extract", str(path), "--out", str(tmp_path / "ds"), "--allow-missing"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        (line,) = _warnings(result, path)
        assert "its bytes are text" in line and "fewer than one writer's 956" in line
        assert "outside ETL8G's class set" in line and "looks like a text file" in line
    assert "warning: " + str(tmp_path / "ds") + ": the val split is empty" in result.stderr
    assert "the test split is empty" in result.stderr


def test_etl1_bytes_under_an_etl8g_name_name_the_formats_they_fit(raw, tmp_path):
    """ETL1C_07's katakana codes are classes of ETL-1, 6 and 7 alike, which share a record
    layout: all three are named, not whichever came first (hostile pass 9, note 4)."""
    path = tmp_path / "ETL8G_01"
    path.write_bytes((raw / "ETL1C_07").read_bytes())
    fit = "fit ETL1, ETL6 or ETL7 better (its codes are classes of each; which one, the codes"
    one_error_line(runner.invoke(app, ["info", str(path)]), str(path),
                   "not a whole number of 8199-byte ETL8G records", fit)
    result = runner.invoke(app, ["info", str(path), "--allow-partial"])
    (line,) = _warnings(result, path)
    assert "whole number of ETL1/ETL6/ETL7 records" in line and fit in line


def _whole_file(one_writer: bytes, record_size: int, records: int) -> bytes:
    """`records` records tiled from a synth file's, each made distinct (extract refuses repeated
    records) by a serial number written into its last four image bytes: the size of a whole
    AIST file in milliseconds, where synthesizing its writers takes seconds."""
    tile = np.frombuffer(one_writer, np.uint8).reshape(-1, record_size)
    whole = np.resize(tile, (records, record_size))
    whole[:, -4:] = np.arange(records, dtype=">u4").view(np.uint8).reshape(-1, 4)
    return whole.tobytes()


@pytest.mark.parametrize(("dataset", "source", "named", "records", "status", "needle"), [
    ("ETL4", "ETL4C", "ETL5C", 6120, "unverified-count",
     "its 6120 records are exactly the count of ETL4C (ETL4: 51 hiragana sheet positions (48 "
     "distinct codes) x 120 writers, stored as katakana codes), not the 10608 of ETL5C; an "
     "ETL4C file named ETL5C?"),
    ("ETL5", "ETL5C", "ETL4C", 10608, "unverified-count",
     "its 10608 records are exactly the count of ETL5C (ETL5: 51 katakana sheet positions"),
    ("ETL7", "ETL7LC_1", "ETL1C_07", 9600, "wrong-count",
     "exactly the count of ETL7LC_1 or ETL7SC_1 (ETL7: 48 classes (46 hiragana, ゛, ゜) x 175 "
     "writers, written twice per sheet, stored as katakana codes), not the 11288 of ETL1C_07; "
     "an ETL7LC_1 or ETL7SC_1 file named ETL1C_07?"),
    ("ETL5", "ETL5C", "ETL5C", 153, "unverified-count",  # 3 writers of 208, no synth marker
     "153 records, 99% off the 10608 of ETL5C: too far for a miscount of its unconfirmed count"),
])
def test_a_whole_file_under_another_files_name_is_warned_about(
        tmp_path, dataset, source, named, records, status, needle):
    """Hostile pass 5, G16: ETL-4 and ETL-7 hold hiragana under katakana codes, so only the name
    tells them from ETL-5 and ETL-1; a count that is exactly another file's names that file."""
    synth(dataset, tmp_path / "synth", writers=1, files=[source])
    record_size = 2952 if dataset in ("ETL4", "ETL5") else 2052
    path = tmp_path / "raw" / named
    path.parent.mkdir()
    path.write_bytes(_whole_file((tmp_path / "synth" / source).read_bytes(), record_size,
                                 records))
    info = runner.invoke(app, ["info", str(path)])
    assert info.exit_code == 0, info.output
    verify = runner.invoke(app, ["verify", str(path.parent)])
    assert verify.exit_code == (status in FAILED), verify.output
    (row,) = [ln for ln in verify.stdout.splitlines() if ln.startswith(named)]
    assert row.split()[2] == status
    for result in (info, verify) if "exactly" in needle else (verify,):
        (line,) = _warnings(result, path)
        assert needle in line, line


def test_part_of_a_file_under_another_files_name_is_warned_about_by_its_classes(tmp_path):
    """Hostile pass 7, note 4: one writer of ETL7LC_1 (hiragana under katakana codes, 96
    records) named ETL1C_07 (8 katakana): a count no file has, codes outside ETL1C_07's own."""
    synth("ETL7", tmp_path / "synth", writers=1, files=["ETL7LC_1"])
    path = tmp_path / "raw" / "ETL1C_07"
    path.parent.mkdir()
    path.write_bytes((tmp_path / "synth" / "ETL7LC_1").read_bytes())
    info = runner.invoke(app, ["info", str(path)])
    preview = runner.invoke(app, ["preview", str(path), "--out", str(tmp_path / "p")])
    for result in (info, preview):
        (line,) = _warnings(result, path)
        assert "80 of its first 96 records have codes outside the 8 classes of ETL1C_07" in line
        # ETL-7's hiragana are stored under katakana codes, ETL-6's katakana
        assert "its bytes fit ETL6 or ETL7 better" in line, line  # was "ETL6": pass 9, note 4


def test_katakana_codes_in_a_file_named_etl3_are_warned_about(tmp_path):
    """ETL-3's classes are digits, A-Z and symbols; data_manifest.yaml lists no class codes
    for it, so part of ETL4C (hiragana under katakana codes) named ETL3C_1 was read as 48
    katakana classes without a word (hostile pass 13, F6); its scripts now judge it."""
    synth("ETL4", tmp_path / "synth", writers=2)
    path = tmp_path / "raw" / "ETL3C_1"
    path.parent.mkdir()
    path.write_bytes((tmp_path / "synth" / "ETL4C").read_bytes())
    for args in (["info", str(path)], ["preview", str(path), "--out", str(tmp_path / "p")],
                 ["extract", str(path.parent), "--scripts", "katakana", "--allow-missing",
                  "--out", str(tmp_path / "ds")]):
        (line,) = _warnings(runner.invoke(app, args), path)
        assert "102 of its first 102 records have codes outside ETL3's class set" in line, line
        assert "its bytes fit ETL4 or ETL5 better" in line, line


def test_a_synth_file_with_another_files_count_is_what_its_marker_says(tmp_path):
    """75 writers of ETL7LC_1 are 7200 records, ETL7LC_2's count: synth's marker says why."""
    synth("ETL7", tmp_path, writers=1, files=["ETL7LC_1"])
    path = tmp_path / "ETL7LC_1"
    path.write_bytes(_whole_file(path.read_bytes(), 2052, 7200))
    mark_synthetic(path, "ETL7", 75, 0)
    for args in (["info", str(path)], ["verify", str(tmp_path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.stderr == "", result.output
    (tmp_path / MARKER).unlink()  # counted as AIST's file: ETL7LC_2 named ETL7LC_1?
    (line,) = _warnings(runner.invoke(app, ["info", str(path)]), path)
    assert "an ETL7LC_2 or ETL7SC_2 file named ETL7LC_1?" in line


def test_files_that_fit_their_names_get_no_warning(raw):
    result = runner.invoke(app, ["info", str(raw)])
    assert result.exit_code == 0 and result.stderr == "", result.stderr


def test_synth_command_and_console_entry_point(tmp_path):
    out = tmp_path / "raw"
    result = subprocess.run(
        [sys.executable, "-m", "etlkit", "synth", "--dataset", "ETL8B2", "--writers", "1",
         "--files", "ETL8B2C2", "--out", str(out)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (out / "ETL8B2C2").stat().st_size == 512 * (1 + 320)
    bad = subprocess.run([sys.executable, "-m", "etlkit", "synth", "--dataset", "ETL2",
                          "--out", str(out)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: synth: ETL2 is not synthesizable (class lists unknown); choose one of ETL1, "
        "ETL4, ETL5, ETL7, ETL8B2, ETL8G, ETL9B, ETL9G"]
    # a command line that does not parse is one line too, not click's usage box
    for args, needle in [(["--dataset", "ETL1", "--files", "A", "B"],
                          "Got unexpected extra argument(s) (B)"),
                         (["--dataset", "ETL1", "--writerz", "2"],
                          "No such option: --writerz (Possible options: --writers)"),
                         ([], "Missing option '--dataset'")]:
        usage = subprocess.run([sys.executable, "-m", "etlkit", "synth", *args, "--out",
                                str(out)], capture_output=True, text=True, check=False)
        assert usage.returncode == 2
        assert usage.stderr.splitlines() == [
            f"error: {needle} (see etlkit synth --help)"], usage.stderr
