"""iter_read holds one chunk at a time: peak memory follows the chunk, not the file."""

import tracemalloc

import numpy as np

import etlkit
from etlkit.synth import synth


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_iter_read_memory_is_bounded_by_the_chunk(etl_raw):
    path = etl_raw / "ETL8G_02"  # one writer: 956 records, 7.8 MB raw, 15.5 MB decoded

    def stream():
        total = 0
        for chunk in etlkit.iter_read(path, chunk_records=32):
            assert len(chunk) <= 32
            total += int(chunk.images.sum(dtype=np.int64) > 0)
        assert total == 30  # ceil(956 / 32) chunks, each with ink

    whole = _peak(lambda: etlkit.read(path))
    streamed = _peak(stream)
    assert whole > 956 * 127 * 128  # the decoded images alone
    assert streamed < 32 * (8199 + 127 * 128) * 4  # a few chunk-sized buffers
    assert streamed * 10 < whole


def test_chunks_concatenate_to_the_whole_file(tmp_path):
    (path,) = synth("ETL8B2", tmp_path, writers=1, files=["ETL8B2C3"])
    whole = etlkit.read(path)
    chunks = list(etlkit.iter_read(path, chunk_records=100))
    joined = etlkit.RecordBatch.concatenate(chunks)
    assert [len(c) for c in chunks][:-1] == [100] * (len(chunks) - 1)
    for name in ("images", "codes", "chars", "sjis", "sheets", "index", "extra", "fields"):
        assert np.array_equal(getattr(joined, name), getattr(whole, name)), name
