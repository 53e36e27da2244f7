"""Label rules of docs/etl-formats.md §6, on single codes and through the reader on real bytes."""

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import etlkit
from etlkit import labels, manifest
from etlkit.cli import app
from etlkit.extract import Options, extract
from etlkit.formats import FORMATS
from etlkit.shards import open_shards
from etlkit.synth import synth
from etlkit.verify import verify_dataset

runner = CliRunner()

def _sjis_from_jis0208(code: int) -> int:
    """The JIS -> Shift-JIS arithmetic of docs/etl-formats.md §6.3, independent of Python's
    codecs."""
    hi, lo = code >> 8, code & 0xFF
    s2 = lo + (0x1F if hi % 2 else 0x7E)
    if hi % 2 and s2 >= 0x7F:
        s2 += 1
    s1 = ((hi - 0x21) >> 1) + 0x81
    if s1 > 0x9F:
        s1 += 0x40
    return s1 << 8 | s2


def test_jis0208_shift_jis_matches_the_arithmetic_for_every_code():
    checked = 0
    for hi in range(0x21, 0x7F):
        for lo in range(0x21, 0x7F):
            char = labels.jis0208_char(hi << 8 | lo)
            if char:
                assert labels.sjis_code(char) == _sjis_from_jis0208(hi << 8 | lo), hex(hi << 8 | lo)
                checked += 1
    assert checked >= 6879


@pytest.mark.parametrize(("code", "kwargs", "char", "sjis"), [
    (0xA8, {"wi_we": True}, "ヰ", 0x8390),
    (0xAA, {"wi_we": True}, "ヱ", 0x8391),
    (0xA8, {}, "ィ", 0x8342),
    (0xA8, {"wi_we": True, "hiragana": True}, "ゐ", 0x82EE),
    (0xAA, {"wi_we": True, "hiragana": True}, "ゑ", 0x82EF),
    (0xB1, {}, "ア", 0x8341),
    (0xB1, {"hiragana": True}, "あ", 0x82A0),
    (0xDE, {"hiragana": True}, "\u309b", 0x814A),
    (0xDF, {}, "\u309c", 0x814B),
    (0x5C, {}, "¥", 0x5C),
    (0x7E, {}, "‾", 0x7E),
    (0xA5, {}, "・", 0x8145),
    (0x41, {}, "A", 0x41),
    (0x30, {}, "0", 0x30),
    (0x00, {}, "", 0),
    (0xE5, {}, "", 0),
])
def test_jis0201_traps(code, kwargs, char, sjis):
    got = labels.jis0201_char(code, **kwargs)
    assert got == char
    assert labels.sjis_code(got) == sjis


@pytest.mark.parametrize(("char", "script"), [
    ("あ", "hiragana"), ("っ", "hiragana"), ("ア", "katakana"), ("ヰ", "katakana"),
    ("ー", "katakana"), ("亜", "kanji"), ("7", "digit"), ("Q", "latin"), ("¥", "symbol"),
    ("・", "symbol"), ("\u309b", "symbol"), ("", "none"),
])
def test_script_of(char, script):
    assert labels.script_of(char) == script


def test_dataset_label_policies():
    assert FORMATS["ETL1"].char_of()(0xA8) == "ヰ"
    assert FORMATS["ETL5"].char_of()(0xAA) == "ヱ"
    assert FORMATS["ETL4"].char_of()(0xA8) == "ゐ"
    assert FORMATS["ETL7"].char_of()(0xB1) == "あ"
    assert FORMATS["ETL7"].char_of()(0xDE) == "\u309b"
    assert FORMATS["ETL6"].char_of()(0xA8) == "ィ"
    assert FORMATS["ETL8G"].char_of()(0x2422) == "あ"


def test_etl1_katakana_are_48_full_width_classes_with_wi_and_we(tmp_path):
    synth("ETL1", tmp_path, writers=2, files=["ETL1C_07", "ETL1C_11", "ETL1C_12", "ETL1C_13"])
    batches = [etlkit.read(tmp_path / n) for n in ("ETL1C_07", "ETL1C_11", "ETL1C_12", "ETL1C_13")]
    chars = set(np.concatenate([b.chars for b in batches]).tolist())
    assert {"ヰ", "ヱ", "ヲ", "ン"} <= chars
    assert not chars & {"ィ", "ェ", "ｱ"}
    assert all(labels.script_of(c) == "katakana" for c in chars)
    # ヤ-row イ/エ (ETL1C_11 categories 5 and 7) and ワ-row ウ share the ア-row codes
    eleven = batches[1]
    assert eleven.chars[2 * 4] == "イ" and eleven.codes[2 * 4] == 0xB2
    assert eleven.chars[2 * 6] == "エ" and eleven.codes[2 * 6] == 0xB4
    assert batches[2].chars[-1] == "ウ" and batches[2].codes[-1] == 0xB3


def test_etl7_and_etl4_read_as_hiragana(tmp_path):
    synth("ETL7", tmp_path, writers=1, files=["ETL7LC_2"])
    synth("ETL4", tmp_path, writers=1)
    etl7, etl4 = etlkit.read(tmp_path / "ETL7LC_2"), etlkit.read(tmp_path / "ETL4C")
    assert set(etl7.chars.tolist()) >= {"あ", "ん", "を", "\u309b", "\u309c"}
    assert not any("\u30a1" <= c <= "\u30fa" for c in etl7.chars.tolist())
    assert {"ゐ", "ゑ", "を"} <= set(etl4.chars.tolist())
    assert etl4.fields["t56_code"][0].startswith(b"H")


def test_etl8_classes_and_b_dummy(tmp_path):
    synth("ETL8B2", tmp_path, writers=1, files=["ETL8B2C1"])
    batch = etlkit.read(tmp_path / "ETL8B2C1")
    assert batch.index[0] == 1  # record 0 is the dummy and is skipped
    assert (batch.codes != 0).all() and batch.labelled.all()
    hira = set(batch.chars[batch.scripts == "hiragana"].tolist())
    assert len(hira) == 75 and {"っ", "ゃ", "ゅ", "ょ"} <= hira and not hira & {"ぁ", "ゐ"}
    assert batch.sjis[0] == 0x82A0 and batch.chars[0] == "あ"
    assert len(manifest.class_set("etl8")) == 956 and len(manifest.class_set("etl9")) == 3036


def test_model_records_and_extra_set_are_flagged(tmp_path):
    synth("ETL8B2", tmp_path, writers=1, files=["ETL8B2C3"])
    synth("ETL8G", tmp_path, writers=1, files=["ETL8G_33"])
    c3, g33 = etlkit.read(tmp_path / "ETL8B2C3"), etlkit.read(tmp_path / "ETL8G_33")
    assert c3.extra.sum() == 956 and c3.extra[-956:].all() and not c3.extra[:-956].any()
    assert g33.extra.all() and len(g33) == 956


def test_a_cut_b_file_keeps_its_model_records_flags_and_extract_keeps_every_class(tmp_path):
    """Issue 12.1: ETL8B2C3 cut after the dummy and half its records, through the model
    records. They are recognised by their sheet number, not by where the file ends."""
    raw, cut = tmp_path / "raw", tmp_path / "cut"
    synth("ETL8B2", raw, writers=2)
    whole = etlkit.read(raw / "ETL8B2C3")
    cut.mkdir()
    for name in ("ETL8B2C1", "ETL8B2C2"):
        (cut / name).write_bytes((raw / name).read_bytes())
    keep = 1 + len(whole) // 2
    (cut / "ETL8B2C3").write_bytes((raw / "ETL8B2C3").read_bytes()[: keep * 512])
    part = etlkit.read(cut / "ETL8B2C3")
    assert len(part) == keep - 1 and 0 < part.extra.sum() < len(part)
    np.testing.assert_array_equal(part.extra, whole.extra[: len(part)])
    with pytest.warns(etlkit.EtlWarning, match="the val split is empty"):
        doc = extract([cut], tmp_path / "kanji", Options(task="kanji"))
    assert doc["num_classes"] == 881 and doc["splits"]["train"] == 2 * 881
    # record numbers count the dummy: ETL8B2C1's last of 640 records is number 640, in bounds
    shards = open_shards(tmp_path / "kanji", "train").read(("source",))["source"]
    assert shards[shards[:, 0] == 0, 1].max() == doc["sources"][0]["records"] == 640
    assert {check.status for check in verify_dataset(tmp_path / "kanji")} == {"ok"}


def test_model_records_the_manifest_expects_but_the_file_lacks_are_warned(tmp_path):
    """A whole-size ETL8B2C3 whose model records do not carry sheet 0 is not read silently."""
    synth("ETL8B2", tmp_path, writers=1, files=["ETL8B2C3"])
    one = (tmp_path / "ETL8B2C3").read_bytes()  # dummy, one writer's 316, the 956 models
    data = bytearray(one[:512] + one[512 : 317 * 512] * 160 + one[317 * 512 :])
    assert len(data) == manifest.lookup("ETL8B2C3").records * 512
    data[-512:-510] = (9999).to_bytes(2, "big")  # the last model record's sheet number
    (tmp_path / "ETL8B2C3").write_bytes(bytes(data))
    with pytest.warns(etlkit.EtlWarning, match="955 records carry the model records' sheet"):
        batch = etlkit.read(tmp_path / "ETL8B2C3")
    assert batch.extra.sum() == 955


def test_codes_with_no_character_are_kept_counted_and_warned(tmp_path):
    synth("ETL1", tmp_path, writers=4, files=["ETL1C_07"])
    path = tmp_path / "ETL1C_07"
    raw = bytearray(path.read_bytes())
    raw[3 * 2052 + 6] = 0x00  # the JIS X 0201 byte of record 3
    path.write_bytes(bytes(raw))
    with pytest.warns(etlkit.EtlWarning, match=r"ETL1C_07: 1 records .* record 3, code 0x0"):
        batch = etlkit.read(path)
    assert len(batch) == 32 and batch.chars[3] == "" and batch.scripts[3] == "none"
    assert batch.labelled.sum() == 31


def test_co59_labels_need_the_aist_table(tmp_path):
    layout = FORMATS["ETL2"].layout
    fields = np.zeros(3, layout.field_dtype)
    fields["co59_1"], fields["co59_2"] = [16, 16, 40], [1, 2, 63]
    images = np.zeros((3, 60, 60), np.uint8)
    path = tmp_path / "ETL2_1"
    layout.encode(fields, images).tofile(path)
    table = tmp_path / "euc_co59.dat"
    table.write_bytes("亜:16,1 唖:16,2\n".encode("euc_jp"))
    with pytest.warns(etlkit.EtlWarning, match="1 records have codes"):
        batch = etlkit.read(path, co59_table=table)
    assert batch.chars.tolist() == ["亜", "唖", ""]
    assert batch.codes.tolist() == [16 << 6 | 1, 16 << 6 | 2, 40 << 6 | 63]
    with pytest.warns(etlkit.EtlWarning, match="euc_co59.dat"):
        assert etlkit.read(path).chars.tolist() == ["", "", ""]
    table.write_bytes(b"not a table")
    with pytest.raises(etlkit.EtlError, match="euc_co59.dat: entry"), warnings.catch_warnings():
        etlkit.read(path, co59_table=table)


def _edited(path, fmt, edit):
    """`path` written again through its format's layout with `edit(fields)` applied."""
    raw = np.fromfile(path, np.uint8).reshape(-1, fmt.record_size)
    dummy = fmt.dummy_records
    fields, images = fmt.layout.decode(raw[dummy:], True)
    edit(fields)
    path.write_bytes(raw[:dummy].tobytes() + fmt.layout.encode(fields, images).tobytes())


@pytest.mark.parametrize("dataset, name, code", [
    ("ETL8G", "ETL8G_01", 0x2522),  # a katakana code in ETL-8G, which holds none
    ("ETL1", "ETL1C_07", 0x35),  # the digit 5 in a file of 8 katakana classes
])
def test_one_record_with_a_code_outside_its_files_classes_is_warned_about(
        tmp_path, dataset, name, code):
    """One flipped header byte made a record's code one its file cannot hold; the sample
    judged at opening is ~90 % of codes, so info and extract (which then left the record
    out) said nothing (hostile pass 14, N2)."""
    synth(dataset, tmp_path, writers=2, files=[name])
    _edited(tmp_path / name, FORMATS[dataset], lambda f: f["jis"].__setitem__(7, code))
    for args in (["info", str(tmp_path / name)],
                 ["extract", str(tmp_path), "--out", str(tmp_path / "ds"), "--scripts",
                  "hiragana" if dataset == "ETL8G" else "katakana", "--allow-missing"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (f"warning: {tmp_path / name}: 1 records have codes outside the classes of "
                f"{name} (first: record 7, code 0x{code:X})") in result.stderr, result.stderr


def test_a_model_sheet_number_among_the_writers_records_is_warned_about(tmp_path):
    """A writer's record whose sheet number became 0 is read as a model record and left out of
    datasets: said, since model records only follow the writers' (hostile pass 14, N2)."""
    synth("ETL8B2", tmp_path, writers=2, files=["ETL8B2C1"])
    _edited(tmp_path / "ETL8B2C1", FORMATS["ETL8B2"],
            lambda f: f["sheet"].__setitem__(100, 0))
    result = runner.invoke(app, ["info", str(tmp_path / "ETL8B2C1")])
    assert result.exit_code == 0, result.output
    assert (f"warning: {tmp_path / 'ETL8B2C1'}: 1 records with a model record's sheet number 0 "
            "among the writers' records (first: record 101)") in result.stderr, result.stderr
