"""etlkit's vectorized decoder against the independent bitstring reference (reference_decoder).

Every one of the eleven datasets is written as a raw file under its real AIST name (synthesized
by etlkit.synth, or encoded from random header values and random images where synth cannot
write it or another file of the family already covers it, and also as random record bytes
with valid label codes patched in at the spec's offsets), read with etlkit.read, and compared
field by field and pixel by pixel with the reference applied to the raw bytes record by
record.
"""

import warnings

import numpy as np
import pytest
import reference_decoder as ref

import etlkit
from etlkit.formats import FORMATS
from etlkit.synth import synth

DATASETS = list(FORMATS)
#: Small synthesized files (dataset -> synth arguments); the rest are encoded from random data
#: (ETL-9B and ETL-9G too: ETL-8B2 and ETL-8G cover their families' synthesized records, and a
#: synthesized ETL-9 file is 3,036 kanji, seconds of rendering).
SYNTH = {
    "ETL1": {"files": ["ETL1C_09"], "writers": 3},  # includes the missing ナ of sheet 2672
    "ETL4": {"writers": 1},
    "ETL5": {"writers": 1},
    "ETL7": {"files": ["ETL7SC_2"], "writers": 1},
    "ETL8B2": {"files": ["ETL8B2C1"], "writers": 1},
}
#: Synthesized files of the session's `etl_raw` (read, never changed): ETL8G_02 is one writer.
SESSION_FILES = {"ETL8G": "ETL8G_02"}
ENCODED_RECORDS = {"ETL2": 29, "ETL3": 23, "ETL6": 31, "ETL9B": 37, "ETL9G": 41}
#: Files up to this many records are compared in full; larger ones on a sample of images.
FULL_IMAGE_CHECK = 100


def test_every_dataset_is_covered():
    assert set(SYNTH) | set(SESSION_FILES) | set(ENCODED_RECORDS) == set(DATASETS)
    assert len(DATASETS) == 11
    assert {ds: ref.VARIANT[ds][0] for ds in DATASETS} == {
        ds: f.family for ds, f in FORMATS.items()
    }


@pytest.fixture(scope="module", params=DATASETS)
def etl_file(request, tmp_path_factory, random_etl_bytes, etl_file_names):
    """(dataset, path) of a small valid raw file under the dataset's real name."""
    dataset = request.param
    out = tmp_path_factory.mktemp(dataset)
    if dataset in SESSION_FILES:
        path = request.getfixturevalue("etl_raw") / SESSION_FILES[dataset]
    elif dataset in SYNTH:
        (path,) = synth(dataset, out, seed=3, **SYNTH[dataset])
    else:
        path = out / etl_file_names[dataset]
        path.write_bytes(random_etl_bytes(dataset, ENCODED_RECORDS[dataset], seed=11))
    return dataset, path


def _read(path, dataset, random_records=None, **kwargs):
    """etlkit.read, asserting the only warning is ETL-2's missing CO-59 table (and, for a few
    random records under a real name, that they do not fit that name: test_bad_bytes).
    `random_records` None: whether `dataset`'s `etl_file` is encoded from random records."""
    if random_records is None:
        random_records = dataset in ENCODED_RECORDS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = etlkit.read(path, **kwargs)
    if random_records:
        caught = [w for w in caught if "does not fit" not in str(w.message)]
    messages = [str(w.message) for w in caught]
    if dataset == "ETL2" and "co59_table" not in kwargs:
        assert len(caught) == 1 and issubclass(caught[0].category, etlkit.EtlWarning), messages
        assert "euc_co59" in messages[0]
    else:
        assert not caught, messages
    return batch


def _assert_field_equal(name, ours, expected):
    if isinstance(expected, bytes):  # numpy S fields drop trailing NULs
        assert bytes(ours).ljust(len(expected), b"\0") == expected, name
    elif isinstance(expected, str):  # T56 text
        assert bytes(ours).decode("ascii") == expected, name
    else:
        assert int(ours) == expected, name


def _compare_with_reference(dataset, path, batch, image_records=None):
    """Every field of every record; images of `image_records` (physical numbers, None: all)."""
    variant = ref.VARIANT[dataset]
    size = ref.RECORD_SIZE[variant]
    data = path.read_bytes()
    assert len(data) % size == 0
    first = ref.DUMMY_RECORDS[variant]
    physical = np.arange(first, len(data) // size)
    assert batch.dataset == dataset
    assert len(batch) == len(physical) > 0
    np.testing.assert_array_equal(batch.index, physical)
    assert batch.fields.dtype.names == ref.field_names(variant)
    assert batch.images.dtype == np.uint8
    assert batch.images.shape == (len(physical), *ref.image_shape(variant))
    codes, sheets, signed = [], [], []
    for row, i in enumerate(physical):
        fields = ref.decode_fields(variant, data[i * size : (i + 1) * size])
        for name, expected in fields.items():
            _assert_field_equal(f"record {i} {name}", batch.fields[name][row], expected)
        codes.append(ref.label_code(variant, fields))
        sheets.append(ref.sheet_of(variant, fields))
        signed.append(ref.synth_signed(variant, data[i * size : (i + 1) * size]))
    np.testing.assert_array_equal(batch.codes, codes)
    np.testing.assert_array_equal(batch.sheets, sheets)
    np.testing.assert_array_equal(batch.synthetic, signed)
    if image_records is None:
        image_records = physical
    for i in image_records:
        expected = ref.decode_image(variant, data[i * size : (i + 1) * size])
        np.testing.assert_array_equal(batch.images[i - first], expected, err_msg=f"record {i}")


def _image_sample(n_physical, first, seed):
    """Physical record numbers whose images are checked: all of a small file, else a sample
    that always holds the first and the last record."""
    if n_physical - first <= FULL_IMAGE_CHECK:
        return list(range(first, n_physical))
    rng = np.random.default_rng(seed)
    middle = rng.choice(np.arange(first + 1, n_physical - 1), 10, replace=False)
    return [first, *sorted(int(i) for i in middle), n_physical - 1]


def test_read_matches_reference(etl_file):
    dataset, path = etl_file
    variant = ref.VARIANT[dataset]
    batch = _read(path, dataset)
    # synth signs every record it writes; random header values never carry its signature
    assert batch.synthetic.all() if dataset not in ENCODED_RECORDS else not batch.synthetic.any()
    n_physical = path.stat().st_size // ref.RECORD_SIZE[variant]
    sample = _image_sample(n_physical, ref.DUMMY_RECORDS[variant], seed=len(path.name))
    _compare_with_reference(dataset, path, batch, sample)


def test_b_family_skips_the_dummy_record(etl_file):
    dataset, path = etl_file
    batch = _read(path, dataset)
    if ref.VARIANT[dataset] in ("B8", "B9"):
        assert path.read_bytes()[: ref.RECORD_SIZE[ref.VARIANT[dataset]]] == bytes(
            ref.RECORD_SIZE[ref.VARIANT[dataset]])
        assert batch.index[0] == 1
    else:
        assert batch.index[0] == 0


@pytest.mark.parametrize("chunk", [7, 64])
def test_iter_read_matches_read(etl_file, chunk):
    dataset, path = etl_file
    whole = _read(path, dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", etlkit.EtlWarning)
        chunks = list(etlkit.iter_read(path, chunk_records=chunk))
    assert [len(c) for c in chunks[:-1]] == [chunk] * (len(chunks) - 1)
    assert 1 <= len(chunks[-1]) <= chunk
    assert all(c.dataset == dataset for c in chunks)
    joined = etlkit.RecordBatch.concatenate(chunks)
    for name in ("images", "codes", "chars", "sjis", "scripts", "sheets", "index", "extra",
                 "synthetic"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)
    assert joined.fields.dtype == whole.fields.dtype
    assert np.array_equal(joined.fields, whole.fields)


def _random_records(dataset, n, seed):
    """n records of random bytes with a valid label code patched in at the spec's offset (and
    the B family's zero dummy first): every undefined and uncertain byte is random too."""
    variant = ref.VARIANT[dataset]
    size = ref.RECORD_SIZE[variant]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, size), np.uint8)
    if variant == "M":  # byte 7: JIS X 0201
        raw[:, 6] = rng.choice(np.r_[0x30:0x3A, 0x41:0x5B, 0xB1:0xDE], n)
    elif variant == "C":  # 6-bit chars 13-18, left 8 bits = bits 72-79 = octet 9 (0-based)
        raw[:, 9] = rng.choice(np.r_[0x30:0x3A, 0x41:0x5B, 0xB1:0xDE], n)
    elif variant != "K":  # bytes 3-4: JIS X 0208, big-endian
        code = rng.choice(np.r_[0x2422:0x2474, 0x3021:0x307F], n)
        raw[:, 2], raw[:, 3] = code >> 8, code & 0xFF
    if ref.DUMMY_RECORDS[variant]:
        raw[0] = 0
    return raw.tobytes()


@pytest.mark.parametrize("dataset", DATASETS)
def test_random_record_bytes_match_reference(tmp_path, etl_file_names, dataset):
    path = tmp_path / etl_file_names[dataset]
    path.write_bytes(_random_records(dataset, 9, seed=sum(map(ord, dataset))))
    batch = _read(path, dataset, random_records=True)
    _compare_with_reference(dataset, path, batch)
    assert int(batch.images.max()) == ref.MAX_LEVEL[ref.VARIANT[dataset]]


@pytest.mark.parametrize("dataset", DATASETS)
def test_format_argument_reads_an_unnamed_file_the_same(tmp_path, etl_file_names, dataset):
    named = tmp_path / etl_file_names[dataset]
    named.write_bytes(_random_records(dataset, 5, seed=7))
    unnamed = tmp_path / "records.bin"
    unnamed.write_bytes(named.read_bytes())
    batch = _read(unnamed, dataset, random_records=True, format=dataset)
    _compare_with_reference(dataset, unnamed, batch)


def test_etl2_labels_come_from_the_co59_table(tmp_path, random_etl_bytes):
    """Without a table ETL-2 records keep empty chars (iter_read's docstring); with one, each
    code maps through it and codes missing from it stay empty."""
    path = tmp_path / "ETL2_1"
    path.write_bytes(random_etl_bytes("ETL2", 12, seed=5))
    bare = _read(path, "ETL2")
    assert bare.chars.tolist() == [""] * len(bare)
    assert not bare.labelled.any()
    present = sorted({int(c) for c in bare.codes})
    assert len(present) > 2
    table = {code: "亜" for code in present[1:]}  # one code left out of the table
    table_file = tmp_path / "euc_co59.dat"
    table_file.write_bytes(
        " ".join(f"亜:{code >> 6},{code & 63}" for code in table).encode("euc_jp"))
    for given in (table, table_file, str(table_file)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batch = etlkit.read(path, co59_table=given)
        expected = [table.get(int(c), "") for c in batch.codes]
        assert batch.chars.tolist() == expected
        assert batch.labelled.tolist() == [c != "" for c in expected]
        # only the left-out code is unlabelled, and the warning says so
        assert [str(w.message) for w in caught if "no character" in str(w.message)]
        assert all(issubclass(w.category, etlkit.EtlWarning) for w in caught)


# --- the reference itself, against hand-built records (so agreement means something) ---------


def test_reference_m_record_by_hand():
    rec = bytearray(2052)
    rec[0:2] = (513).to_bytes(2, "big")
    rec[2:4] = b"KA"
    rec[4:6] = (1550).to_bytes(2, "big")
    rec[6], rec[7] = 0xB6, 0x9B
    rec[12:16] = (0x01020304).to_bytes(4, "big")
    rec[24], rec[25], rec[26], rec[27] = 7, 9, 1, 254
    rec[32] = 0xAB  # first two pixels of row 0: 10, 11
    rec[32 + 32] = 0xF0  # row 1, pixel 0: 15
    rec[2047] = 0x0C  # row 62, pixel 63: 12
    rec[2048:2052] = b"\xff" * 4  # "uncertain": not image
    fields, image = ref.decode_record("M", bytes(rec))
    assert fields["data_number"] == 513 and fields["name"] == b"KA"
    assert fields["sheet"] == 1550 and fields["jis"] == 0xB6 and fields["ebcdic"] == 0x9B
    assert fields["serial_data_number"] == 0x01020304
    assert (fields["pos_y"], fields["pos_x"], fields["min_level"], fields["max_level"]) == (
        7, 9, 1, 254)
    assert image.shape == (63, 64)
    assert (image[0, 0], image[0, 1], image[1, 0], image[62, 63]) == (10, 11, 15, 12)
    assert int(image.sum()) == 10 + 11 + 15 + 12


def test_reference_b_and_g_records_by_hand():
    rec = bytearray(576)
    rec[0:8] = b"\x00\x05\x24\x22AI.M"
    rec[8] = 0x81  # row 0: pixels 0 and 7 are strokes
    rec[8 + 8 * 62 + 7] = 0x01  # row 62, pixel 63
    rec[512:] = b"\xff" * 64  # ETL9B "uncertain"
    fields, image = ref.decode_record("B9", bytes(rec))
    assert fields == {"sheet": 5, "jis": 0x2422, "reading": b"AI.M"}
    assert image.shape == (63, 64)
    assert np.argwhere(image).tolist() == [[0, 0], [0, 7], [62, 63]]
    assert ref.decode_record("B8", bytes(rec[:512]))[1].tolist() == image.tolist()

    for variant, start in (("G8", 60), ("G9", 64)):
        rec = bytearray(8199)
        rec[28], rec[29] = 3, 4  # pos X then pos Y
        rec[start] = 0x1F
        rec[start + 8127] = 0xE0
        fields, image = ref.decode_record(variant, bytes(rec))
        assert (fields["pos_x"], fields["pos_y"]) == (3, 4)
        assert image.shape == (127, 128)
        assert (image[0, 0], image[0, 1], image[126, 126], image[126, 127]) == (1, 15, 14, 0)
        assert int(image.sum()) == 30


def _sixbit_bytes(chars: list[int]) -> bytes:
    bits = "".join(f"{c:06b}" for c in chars)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def test_reference_c_and_k_records_by_hand():
    chars = [0] * 3936
    chars[0:6] = [0, 0, 0, 0, 1, 2]  # serial 66
    chars[12:14] = [0xB1 >> 2, (0xB1 & 3) << 4]  # JIS 0xB1 in the left 8 bits
    chars[24:28] = [ref.T56.index(c) for c in "H  A"]
    chars[30 + 6 * 10 + 5] = 48  # x_points = 48
    rec = bytearray(_sixbit_bytes(chars))
    rec[216] = 0x9A  # image row 0: 9, 10
    rec[2951] = 0x07  # row 75, pixel 71: 7
    fields, image = ref.decode_record("C", bytes(rec))
    assert fields["serial_data_number"] == 66 and fields["jis"] == 0xB1
    assert fields["t56_code"] == "H  A" and fields["x_points"] == 48
    assert image.shape == (76, 72)
    assert (image[0, 0], image[0, 1], image[75, 71]) == (9, 10, 7)
    assert int(image.sum()) == 26

    chars = [0] * 3660
    chars[6] = ref.T56.index("B")
    chars[12:18] = [ref.T56.index(c) for c in "KANJI "]
    chars[28:30] = [17, 42]
    chars[60], chars[61], chars[3659] = 63, 1, 5  # image pixels 0, 1 and the last
    fields, image = ref.decode_record("K", _sixbit_bytes(chars))
    assert fields["style_mark"] == "B" and fields["class_name"] == "KANJI "
    assert (fields["co59_1"], fields["co59_2"]) == (17, 42)
    assert ref.label_code("K", fields) == 17 << 6 | 42
    assert image.shape == (60, 60)
    assert (image[0, 0], image[0, 1], image[59, 59]) == (63, 1, 5)
    assert int(image.sum()) == 69
