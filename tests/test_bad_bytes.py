"""Random, truncated and corrupted bytes for every ETL family: etlkit.read either returns a
consistent RecordBatch or raises a one-line EtlError that names the file; nothing else.
"""

import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import reference_decoder as ref
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import etlkit
from etlkit import reader
from etlkit.formats import FORMATS
from etlkit.labels import NO_SCRIPT, SCRIPTS

DATASETS = list(FORMATS)
#: Datasets whose codes etlkit can judge without extra input (ETL-2 needs the CO-59 table).
JIS_DATASETS = [name for name, f in FORMATS.items() if f.code != "co59"]
ARRAYS = ("images", "codes", "chars", "sjis", "scripts", "sheets", "index", "extra", "fields")
UNKNOWN_NAME = "mystery.bin"


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _outcome(path: Path, expected: str | None = None, chunk_records: int | None = None,
             **kwargs):
    """etlkit.read (or iter_read in chunks, joined) under the contract: a consistent batch or
    a one-line EtlError naming the file (any other exception propagates and fails the test);
    warnings are one-line EtlWarnings naming the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if chunk_records is None:
                result = etlkit.read(path, **kwargs)
            else:
                chunks = list(etlkit.iter_read(path, chunk_records=chunk_records, **kwargs))
                assert all(1 <= len(c) <= chunk_records for c in chunks)
                result = etlkit.RecordBatch.concatenate(chunks)
        except etlkit.EtlError as err:
            message = str(err)
            assert "\n" not in message, message
            assert str(path) in message, message
            result = err
    for w in caught:
        assert issubclass(w.category, etlkit.EtlWarning), (w.category, str(w.message))
        assert "\n" not in str(w.message) and str(path) in str(w.message), str(w.message)
    if isinstance(result, etlkit.RecordBatch):
        _check_batch(result, path, expected, kwargs.get("allow_partial", False))
    if currently_in_test_context():  # outcome statistics (pytest --hypothesis-show-statistics)
        what = str(result).replace(str(path), "") if isinstance(result, Exception) else "batch"
        event(f"read: {re.sub(r'[0-9]+', 'N', what)[:40]}")
    return result, [str(w.message) for w in caught]


def _check_batch(batch, path, expected, allow_partial):
    if expected is not None:
        assert batch.dataset == expected
    fmt = FORMATS[batch.dataset]
    n = len(batch)
    size = path.stat().st_size
    assert allow_partial or size % fmt.record_size == 0
    assert n == size // fmt.record_size - fmt.dummy_records >= 1
    for name in ARRAYS:
        assert len(getattr(batch, name)) == n, name
    assert batch.images.dtype == np.uint8
    assert batch.images.shape == (n, *fmt.layout.shape)
    assert int(batch.images.max()) <= fmt.levels
    assert batch.fields.dtype == fmt.layout.field_dtype
    np.testing.assert_array_equal(batch.index, np.arange(n) + fmt.dummy_records)
    assert batch.chars.dtype.kind == "U" and batch.extra.dtype == bool
    assert set(batch.scripts.tolist()) <= {*SCRIPTS, NO_SCRIPT}
    np.testing.assert_array_equal(batch.labelled, batch.chars != "")


def _same_records(batch, other, rows=slice(None)):
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(batch, name), getattr(other, name)[rows],
                                      err_msg=name)


@st.composite
def _file_bytes(draw, dataset, make_valid):
    """Bytes of a random length (0, 1, record_size - 1, k records, k records + r) filled at
    random, with zeros, sparsely, or from a valid file."""
    fmt = FORMATS[dataset]
    size = fmt.record_size
    k = draw(st.sampled_from([0, 1, 2, 3, 8, 9]))  # 8+ records: the unlabelled-share check
    length = draw(st.sampled_from([0, 1, size - 1, k * size, k * size + 1,
                                   k * size + draw(st.integers(1, size - 1))]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    fill = draw(st.sampled_from(["random", "zeros", "sparse", "valid", "dummy+random"]))
    if fill == "valid":
        data = np.frombuffer(make_valid(dataset, 10, seed % 97), np.uint8)[:length].copy()
        data = np.concatenate([data, rng.integers(0, 256, length - len(data), np.uint8)])
    elif fill == "random":
        data = rng.integers(0, 256, length, np.uint8)
    else:
        data = np.zeros(length, np.uint8)
        if fill == "sparse" and length:
            data[rng.integers(0, length, 5)] = rng.integers(1, 256, 5, np.uint8)
        elif fill == "dummy+random" and length > size:
            data[size:] = rng.integers(0, 256, length - size, np.uint8)
    return data.tobytes()


@_settings(400)
@given(dataset=st.sampled_from(DATASETS), data=st.data())
def test_arbitrary_bytes_read_or_raise_etl_error(dataset, data, random_etl_bytes,
                                                 etl_file_names):
    content = data.draw(_file_bytes(dataset, random_etl_bytes), label="content")
    size = FORMATS[dataset].record_size
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / etl_file_names[dataset]
        unknown = Path(tmp) / UNKNOWN_NAME
        named.write_bytes(content)
        unknown.write_bytes(content)
        for partial in (False, True):
            for path, kwargs in ((named, {}), (unknown, {"format": dataset})):
                result, _ = _outcome(path, dataset, allow_partial=partial, **kwargs)
                if not content:
                    assert isinstance(result, etlkit.EtlError) and "empty" in str(result)
                if len(content) % size and not partial:
                    assert isinstance(result, etlkit.EtlError)
            _outcome(unknown, None, allow_partial=partial)
        _outcome(named, dataset, chunk_records=3)


@_settings(400)
@given(dataset=st.sampled_from(DATASETS), data=st.data(), partial=st.booleans(),
       unnamed=st.booleans())
def test_truncated_valid_file(dataset, data, partial, unnamed, random_etl_bytes,
                              etl_file_names):
    fmt = FORMATS[dataset]
    size, dummy = fmt.record_size, fmt.dummy_records
    content = random_etl_bytes(dataset, 3, seed=1)
    cut = data.draw(st.integers(0, len(content)), label="cut")
    whole, rest = divmod(cut, size)
    with tempfile.TemporaryDirectory() as tmp:
        full_path = Path(tmp) / etl_file_names[dataset]
        full_path.write_bytes(content)
        full, _ = _outcome(full_path, dataset)
        assert isinstance(full, etlkit.RecordBatch) and len(full) == 3
        path = Path(tmp) / (UNKNOWN_NAME if unnamed else f"cut/{etl_file_names[dataset]}")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content[:cut])
        kwargs = {"format": dataset} if unnamed else {}
        result, caught = _outcome(path, dataset, allow_partial=partial, **kwargs)
    if cut == 0:
        assert isinstance(result, etlkit.EtlError) and "empty" in str(result)
    elif rest and not partial or whole <= dummy:
        assert isinstance(result, etlkit.EtlError)
        if rest:
            assert re.search(rf"\b{size}-byte\b", str(result)), str(result)
            assert f"offset {whole * size}" in str(result), str(result)
    else:
        assert isinstance(result, etlkit.RecordBatch)
        _same_records(result, full, slice(0, whole - dummy))
        assert bool(rest) == any("whole records" in m for m in caught), caught


@_settings(200)
@given(dataset=st.sampled_from(DATASETS), data=st.data(), length=st.integers(1, 3000),
       seed=st.integers(0, 2**32 - 1))
def test_overwritten_valid_file(dataset, data, length, seed, random_etl_bytes, etl_file_names):
    """Random bytes over part of a valid file: untouched records decode as before, touched
    ones as the reference decoder reads them, or the file is refused with an EtlError."""
    fmt = FORMATS[dataset]
    size, dummy = fmt.record_size, fmt.dummy_records
    variant = ref.VARIANT[dataset]
    content = bytearray(random_etl_bytes(dataset, 4, seed=2))
    start = data.draw(st.integers(0, len(content) - 1), label="start")
    stop = min(start + length, len(content))
    content[start:stop] = np.random.default_rng(seed).integers(0, 256, stop - start,
                                                               np.uint8).tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        original_path = Path(tmp) / "original" / etl_file_names[dataset]
        original_path.parent.mkdir()
        original_path.write_bytes(random_etl_bytes(dataset, 4, seed=2))
        original, _ = _outcome(original_path, dataset)
        path = Path(tmp) / etl_file_names[dataset]
        path.write_bytes(bytes(content))
        result, _ = _outcome(path, dataset)
    if dummy and start < size and any(content[:size]):
        assert isinstance(result, etlkit.EtlError) and "dummy" in str(result)
        return
    if isinstance(result, etlkit.EtlError):
        assert "no character" in str(result), str(result)
        return
    touched = range(start // size, (stop - 1) // size + 1)
    for physical in range(dummy, dummy + 4):
        row = physical - dummy
        if physical not in touched:
            _same_records(result[row : row + 1], original, slice(row, row + 1))
            continue
        record = bytes(content[physical * size : (physical + 1) * size])
        fields, image = ref.decode_record(variant, record)
        assert int(result.codes[row]) == ref.label_code(variant, fields)
        for name, expected in fields.items():
            ours = result.fields[name][row]
            if isinstance(expected, bytes):
                assert bytes(ours).ljust(len(expected), b"\0") == expected, name
            elif isinstance(expected, str):
                assert bytes(ours).decode("ascii") == expected, name
            else:
                assert int(ours) == expected, name
        np.testing.assert_array_equal(result.images[row], image)


# --- the specific messages -------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("whole", [0, 1, 2])
def test_incomplete_record_names_record_size_and_offset(tmp_path, random_etl_bytes,
                                                        etl_file_names, dataset, whole):
    fmt = FORMATS[dataset]
    size = fmt.record_size
    path = tmp_path / etl_file_names[dataset]
    path.write_bytes(random_etl_bytes(dataset, 3)[: whole * size + size // 3])
    with pytest.raises(etlkit.EtlError) as info:
        etlkit.read(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert re.search(rf"\b{size}-byte\b", message), message
    assert f"offset {whole * size}" in message, message
    if whole > fmt.dummy_records:  # points at the way out
        assert "--allow-partial" in message


@pytest.mark.parametrize("dataset", DATASETS)
def test_allow_partial_reads_the_whole_records_and_warns(tmp_path, random_etl_bytes,
                                                         etl_file_names, dataset):
    fmt = FORMATS[dataset]
    size = fmt.record_size
    content = random_etl_bytes(dataset, 3, seed=4)
    full_path = tmp_path / "full" / etl_file_names[dataset]
    full_path.parent.mkdir()
    full_path.write_bytes(content)
    full, _ = _outcome(full_path, dataset)
    cut = len(content) - size // 2  # the last record is incomplete
    path = tmp_path / etl_file_names[dataset]
    path.write_bytes(content[:cut])
    batch, messages = _outcome(path, dataset, allow_partial=True)
    assert isinstance(batch, etlkit.RecordBatch)
    partial = [m for m in messages if f"offset {cut // size * size}" in m]
    assert len(partial) == 1 and f"{size}-byte" in partial[0], messages
    assert "reading the" in partial[0] and "whole records" in partial[0], partial
    assert len(batch) == 2 and batch.index.tolist() == [fmt.dummy_records, fmt.dummy_records + 1]
    _same_records(batch, full, slice(0, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunks = list(etlkit.iter_read(path, allow_partial=True, chunk_records=1))
    assert [str(w.message) for w in caught if "whole records" in str(w.message)] == partial
    assert [len(c) for c in chunks] == [1, 1]
    _same_records(etlkit.RecordBatch.concatenate(chunks), full, slice(0, 2))


@pytest.mark.parametrize("dataset", DATASETS)
def test_empty_file(tmp_path, etl_file_names, dataset):
    for path, kwargs in ((tmp_path / etl_file_names[dataset], {}),
                         (tmp_path / UNKNOWN_NAME, {}),
                         (tmp_path / UNKNOWN_NAME, {"format": dataset})):
        path.write_bytes(b"")
        with pytest.raises(etlkit.EtlError, match="empty") as info:
            etlkit.read(path, **kwargs)
        assert str(path) in str(info.value)


@pytest.mark.parametrize(("size", "fits"), [
    (3 * 2052, ["ETL1", "ETL6", "ETL7"]),
    (2 * 2952, ["ETL3", "ETL4", "ETL5"]),
    (8199, ["ETL8G", "ETL9G"]),
    (4608, ["ETL8B2", "ETL9B"]),  # 9 x 512 = 8 x 576
])
def test_ambiguous_size_with_unknown_name_asks_for_format(tmp_path, size, fits):
    path = tmp_path / UNKNOWN_NAME
    path.write_bytes(bytes(size))
    with pytest.raises(etlkit.EtlError, match="--format") as info:
        etlkit.read(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    named = re.findall(r"ETL\w+", message.replace(str(path), ""))
    assert sorted(named) == sorted(fits), message


def test_size_fitting_no_format_asks_for_format(tmp_path):
    path = tmp_path / UNKNOWN_NAME
    path.write_bytes(bytes(1000))
    with pytest.raises(etlkit.EtlError, match="--format") as info:
        etlkit.read(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("dataset", ["ETL2", "ETL8B2"])
def test_size_fitting_one_format_is_read_as_that_format(tmp_path, random_etl_bytes, dataset):
    path = tmp_path / UNKNOWN_NAME
    path.write_bytes(random_etl_bytes(dataset, 2))  # 2745 x 2 and 512 x 3 fit only these
    batch, _ = _outcome(path, dataset)
    assert isinstance(batch, etlkit.RecordBatch) and len(batch) == 2


@pytest.mark.parametrize("dataset", ["ETL8B2", "ETL9B"])
@pytest.mark.parametrize("where", [0, 3, -1])
def test_b_family_non_zero_first_record_is_rejected(tmp_path, random_etl_bytes, etl_file_names,
                                                    dataset, where):
    size = FORMATS[dataset].record_size
    content = bytearray(random_etl_bytes(dataset, 3))
    content[where % size] = 0x40
    for path, kwargs in ((tmp_path / etl_file_names[dataset], {}),
                         (tmp_path / UNKNOWN_NAME, {"format": dataset})):
        path.write_bytes(bytes(content))
        with pytest.raises(etlkit.EtlError, match="dummy") as info:
            etlkit.read(path, **kwargs)
        assert str(path) in str(info.value) and "record 0" in str(info.value)
        with pytest.raises(etlkit.EtlError, match="dummy"):
            list(etlkit.iter_read(path, **kwargs))


@pytest.mark.parametrize("dataset", ["ETL8B2", "ETL9B"])
def test_b_family_file_with_only_the_dummy_is_rejected(tmp_path, etl_file_names, dataset):
    size = FORMATS[dataset].record_size
    path = tmp_path / etl_file_names[dataset]
    for content in (bytes(size), bytes(size + size // 2)):
        path.write_bytes(content)
        for partial in (False, True):
            with pytest.raises(etlkit.EtlError) as info:
                etlkit.read(path, allow_partial=partial)
            assert str(path) in str(info.value)


@pytest.mark.parametrize("dataset", JIS_DATASETS)
def test_file_of_codes_that_stand_for_nothing_is_rejected(tmp_path, etl_file_names, dataset):
    fmt = FORMATS[dataset]
    path = tmp_path / etl_file_names[dataset]
    path.write_bytes(bytes((8 + fmt.dummy_records) * fmt.record_size))  # 8 records of code 0
    with pytest.raises(etlkit.EtlError, match=f"does not look like {dataset}") as info:
        etlkit.read(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("dataset", JIS_DATASETS)
def test_few_unlabelled_records_are_kept_with_a_warning(tmp_path, random_etl_bytes,
                                                        etl_file_names, dataset):
    path = tmp_path / etl_file_names[dataset]
    path.write_bytes(random_etl_bytes(dataset, 12, invalid_every=4))
    with pytest.warns(etlkit.EtlWarning, match="3 records have codes that stand for no"):
        batch = etlkit.read(path)
    assert batch.labelled.tolist() == [i % 4 != 0 for i in range(12)]


def test_read_and_iter_read_agree_on_clustered_unlabelled_records(tmp_path, random_etl_bytes,
                                                                  etl_file_names):
    """8 of 40 records without a character, all in one place: read() keeps them with a warning,
    so reading the same file in chunks must not refuse it."""
    path = tmp_path / etl_file_names["ETL8G"]
    content = bytearray(random_etl_bytes("ETL8G", 40, seed=9))
    size = FORMATS["ETL8G"].record_size
    for i in range(8):
        content[i * size + 2 : i * size + 4] = b"\0\0"  # JIS X 0208 code 0
    path.write_bytes(bytes(content))
    with pytest.warns(etlkit.EtlWarning, match="8 records"):
        whole = etlkit.read(path)
    with pytest.warns(etlkit.EtlWarning, match="8 records"):
        chunks = list(etlkit.iter_read(path, chunk_records=8))
    _same_records(etlkit.RecordBatch.concatenate(chunks), whole)


@pytest.mark.parametrize("dataset", ["ETL1", "ETL8B2", "ETL8G"])
def test_a_file_cut_short_while_it_is_read_is_an_etl_error(tmp_path, random_etl_bytes,
                                                            etl_file_names, dataset):
    """Issue 12.3: the file shrinks between chunks of iter_read, or under raw_records."""
    fmt = FORMATS[dataset]
    path = tmp_path / etl_file_names[dataset]
    path.write_bytes(random_etl_bytes(dataset, 40))
    chunks = etlkit.iter_read(path, chunk_records=8)
    next(chunks)
    os.truncate(path, (fmt.dummy_records + 20) * fmt.record_size + 3)
    with pytest.raises(etlkit.EtlError, match="cut short or changed while being read") as info:
        list(chunks)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    ends = f"{re.escape(str(path))}: ends at record {fmt.dummy_records + 20}, before record 31"
    with pytest.raises(etlkit.EtlError, match=ends):
        reader.raw_records(path, fmt, np.array([5, 6, 30, 31]))


def test_unknown_format_name_missing_file_and_directory(tmp_path, random_etl_bytes):
    path = tmp_path / UNKNOWN_NAME
    path.write_bytes(random_etl_bytes("ETL8G", 1))
    with pytest.raises(etlkit.EtlError, match="unknown format") as info:
        etlkit.read(path, format="ETL10")
    assert str(path) in str(info.value)
    for bad in (tmp_path / "ETL8G_01", tmp_path):  # no such file; a directory
        with pytest.raises(etlkit.EtlError) as info:
            etlkit.read(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("table", [b"\xff\xfe\x00garbage", b"no-colon-here", None])
def test_bad_co59_table_raises_etl_error(tmp_path, random_etl_bytes, table):
    path = tmp_path / "ETL2_1"
    path.write_bytes(random_etl_bytes("ETL2", 2))
    table_path = tmp_path / "euc_co59.dat"
    if table is not None:  # None: the table file does not exist
        table_path.write_bytes(table)
    with pytest.raises(etlkit.EtlError) as info:
        etlkit.read(path, co59_table=table_path)
    assert str(table_path) in str(info.value) and "\n" not in str(info.value)
