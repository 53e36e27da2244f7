"""etlkit synth writes the real names, sizes, record order and class sets, reproducibly."""

import hashlib
import warnings

import numpy as np
import pytest

import etlkit
from etlkit import manifest, verify
from etlkit.errors import EtlWarning
from etlkit.synth import records_written, synth, synthetic_files


def _digest(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synth("ETL8B2", tmp_path / "a", writers=2, seed=7, files=["ETL8B2C1"])
    b = synth("ETL8B2", tmp_path / "b", writers=2, seed=7, files=["ETL8B2C1"])
    c = synth("ETL8B2", tmp_path / "c", writers=2, seed=8, files=["ETL8B2C1"])
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    batch = etlkit.read(a[0])  # every record signed; the B family's in its reading (§2.6)
    assert batch.synthetic.all() and set(batch.fields["reading"].tolist()) == {b"SYN\xff"}


def test_etl8g_is_writer_major_five_writers_per_file(etl_raw):
    """The session's `synth("ETL8G", writers=6)`."""
    paths = sorted(etl_raw.glob("ETL8G_*"))
    assert [p.name for p in paths] == ["ETL8G_01", "ETL8G_02"]
    first, second = etlkit.read(paths[0]), etlkit.read(paths[1])
    assert len(first) == 4780 and len(second) == 956
    classes = np.array(manifest.class_set("etl8"))
    assert (first.codes[:956] == classes).all() and (first.codes[956:1912] == classes).all()
    sheets_per_writer = 10
    writer = (first.sheets - 1) // sheets_per_writer
    assert (np.diff(writer) >= 0).all() and len(np.unique(writer)) == 5
    # each writer has a style of its own: mean ink differs between writers
    ink = first.images.reshape(5, 956, -1).mean(axis=(1, 2))
    assert len(np.unique(np.round(ink, 3))) == 5


def test_etl1_full_file_has_the_real_size_and_is_category_major(tmp_path):
    """Asked for more writers than the file holds: all of them, said in a warning."""
    with pytest.warns(EtlWarning, match="^synth: --writers 2000 is more than ETL1C_13 holds: "
                      "wrote its 1411 writers$"):
        (path,) = synth("ETL1", tmp_path, writers=2000, files=["ETL1C_13"])
    assert synthetic_files(tmp_path)["ETL1C_13"]["writers"] == 1411
    assert path.stat().st_size == 4233 * 2052
    batch = etlkit.read(path)
    assert batch.chars[:1411].tolist() == ["ヱ"] * 1411
    assert batch.chars[-1411:].tolist() == ["ン"] * 1411
    assert [c.status for c in verify.verify_raw(tmp_path) if c.name == "ETL1C_13"] == ["ok"]


def test_etl1_missing_records_are_reproduced(tmp_path):
    (path,) = synth("ETL1", tmp_path, writers=6, files=["ETL1C_09"])
    batch = etlkit.read(path)
    assert len(batch) == 8 * 6 - 1 == records_written("ETL1C_09", 6)  # what verify expects
    na = batch.sheets[batch.chars == "ナ"]
    assert len(na) == 5 and 2672 not in na
    assert 2672 in batch.sheets[batch.chars == "ニ"]


def test_images_use_the_family_levels(etl_raw, tmp_path):
    """G family: 16 gray levels (the session's ETL8G_01); B family: 1 bit."""
    (b_file,) = synth("ETL8B2", tmp_path, writers=1, files=["ETL8B2C1"])
    gray, binary = etlkit.read(etl_raw / "ETL8G_01"), etlkit.read(b_file)
    assert gray.images.max() == 15 and len(np.unique(gray.images)) == 16
    assert set(np.unique(binary.images).tolist()) == {0, 1}
    ink = binary.images.mean(axis=(1, 2))
    assert (ink > 0.01).all() and (ink < 0.5).all()  # every record has a character (一 the least)


def test_files_a_pattern_matches_past_the_writers_asked_for_are_named(tmp_path):
    """`--files 'ETL8G_0[12]' --writers 2` wrote ETL8G_01 alone without a word about
    ETL8G_02; the warning comes before any rendering, so an error filter stops synth there."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", EtlWarning)
        with pytest.raises(EtlWarning, match=r"^synth: --writers 2 does not reach ETL8G_02 "
                           r"\(ETL8G's writers 6 to 10 of 160, filled in file order\): not "
                           r"written$"):
            synth("ETL8G", tmp_path / "out", writers=2, files=["ETL8G_0[12]"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("dataset", "writers", "files", "message"), [
    ("ETL2", 1, None, "not synthesizable"), ("ETL10", 1, None, "unknown format"),
    ("ETL1", 0, None, "at least 1"),
    ("ETL8G", 3, ["ETL8G_02"], r"--writers 3 does not reach ETL8G_02 \(ETL8G's writers 6 to 10 "
     r"of 160, filled in file order\): nothing to write"),
])
def test_bad_requests(tmp_path, dataset, writers, files, message):
    with pytest.raises(etlkit.EtlError, match=message):
        synth(dataset, tmp_path / "out", writers=writers, files=files)
    assert not (tmp_path / "out").exists()
