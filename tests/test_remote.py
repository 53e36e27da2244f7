"""Datasets read from a URL: a local HTTP server with byte ranges and moto's local S3 server, both
started here (never the internet), serving real extracted datasets; `etlkit verify`, `preview`,
`train` and `evaluate` on them, and reads that fetch only the chunks they touch."""

import json
import re
import shutil
import socket
import time

import numpy as np
import pytest
from assertions import one_error_line
from servers import http_folder, misbehaving_server, s3_environment, s3_server, upload
from typer.testing import CliRunner

from etlkit import remote
from etlkit.cli import app
from etlkit.errors import EtlError
from etlkit.extract import Options, extract
from etlkit.shards import open_shards
from etlkit.verify import check_dataset, verify_dataset
from train.data import Part, eval_batches, train_groups

runner = CliRunner()


@pytest.fixture(scope="module")
def served(hiragana_shards, digits_shards, tmp_path_factory):
    """A copy of the hiragana dataset (3 train shards) served over HTTP: (server, URL, folder);
    the sklearn digits are served beside it, at {server.url}/digits, for a quick training run."""
    folder = tmp_path_factory.mktemp("served") / "hiragana"
    shutil.copytree(hiragana_shards, folder)
    shutil.copytree(digits_shards, folder.parent / "digits")
    with http_folder(folder.parent) as server:
        yield server, f"{server.url}/hiragana", folder


@pytest.fixture(scope="module")
def big_shard(hiragana_shards, tmp_path_factory):
    """Uncompressed 64×64 shards of a few MB each (the kanji of the synthetic ETL8G_01), for
    measuring what one block read fetches."""
    out = tmp_path_factory.mktemp("big") / "all"
    extract([hiragana_shards.parent / "raw"], out,
            Options(task="kanji", compression="none", shard_size=4096, allow_missing=True))
    return out


@pytest.fixture(scope="module")
def bucket(hiragana_shards):
    """moto's S3 server holding the hiragana dataset; the AWS variables point at it."""
    with s3_server() as endpoint, pytest.MonkeyPatch.context() as env:
        for key, value in s3_environment(endpoint).items():
            env.setenv(key, value)
        yield upload(endpoint, hiragana_shards, "etl", "datasets/hiragana"), endpoint


@pytest.fixture(scope="module")
def digits_in_bucket(bucket, digits_shards):
    """The sklearn digits in the bucket as well, for a quick training run: its URL."""
    return upload(bucket[1], digits_shards, "etl", "datasets/digits")


def test_a_block_read_over_http_fetches_its_chunks_not_the_shard(big_shard):
    local = open_shards(big_shard, "train")
    size = (big_shard / local.manifest["shards"][0]["path"]).stat().st_size
    assert size > 8 << 20
    with http_folder(big_shard.parent) as server:
        shards = open_shards(f"{server.url}/{big_shard.name}", "train")
        assert shards.counts() == local.counts() and shards.classes == local.classes
        before = server.sent
        with shards.open([0]) as files:
            block = files.read_block(0, 512, 256)
        fetched = server.sent - before
        before = server.sent
        first = next(eval_batches(Part(shards), 256))  # what batch-norm calibration reads
        evaluated = server.sent - before
    with local.open([0]) as files:
        expected = files.read_block(0, 512, 256)
    for name in ("images", "labels"):
        np.testing.assert_array_equal(block[name], expected[name])
    # the file's metadata, the labels and the 1 MiB images chunk (across two cache blocks)
    assert 256 * 64 * 64 <= fetched < size / 3, (fetched, size)
    assert first["mask"].all() and evaluated < size / 3, (evaluated, size)


def test_a_url_split_reads_like_the_folder(served, hiragana_shards):
    _, url, _ = served
    for split in ("train", "val", "test"):
        got, want = open_shards(url, split).read(), open_shards(hiragana_shards, split).read()
        for name in ("images", "labels"):
            np.testing.assert_array_equal(got[name], want[name])
    blocks = list(open_shards(url + "/", "train").blocks(seed=1))
    assert sum(len(b["labels"]) for b in blocks) == len(open_shards(hiragana_shards, "train"))


def test_etlkit_verify_checks_the_remote_checksums(served):
    server, url, folder = served
    before = server.sent
    result = runner.invoke(app, ["verify", url.replace("http://", "HTTP://")])
    assert result.exit_code == 0, result.output  # a scheme is read in any case
    assert "5 of 5 files ok" in result.stdout  # 3 train, 1 val, 1 test shard
    shards_bytes = sum(p.stat().st_size for p in folder.glob("*/shard-*.h5"))
    assert server.sent - before >= shards_bytes  # every byte was hashed


def test_each_process_verifies_only_its_own_shards(served):
    _, url, _ = served
    names = {c.name for c in verify_dataset(url, process=(1, 2)) if c.dataset == "shard"}
    assert names == {"train/shard-00001.h5"}  # val and test have one shard each: process 0's


def test_a_second_training_process_reads_and_checks_only_its_own_shards(served):
    server, url, _ = served
    server.asked.clear()
    check_dataset(url, process=(1, 2))
    train = Part(open_shards(url, "train"), 1, 2)
    assert sum(len(g["labels"].ravel()) for g in train_groups(train, 16, 1, 0, 0)) == 96
    assert sum(b["mask"].sum() for b in eval_batches(train, 16)) == 100
    for split in ("val", "test"):  # one shard each: process 0's
        assert not sum(b["mask"].sum() for b in eval_batches(Part(open_shards(url, split), 1, 2),
                                                             16))
    assert {p for p in server.asked if p.endswith(".h5")} == {"hiragana/train/shard-00001.h5"}


def test_a_tampered_remote_shard_fails_verify_and_train(served, tmp_path):
    _, url, folder = served
    shard = folder / "train" / "shard-00002.h5"
    original = shard.read_bytes()
    tampered = bytearray(original)
    tampered[-100] ^= 0xFF
    shard.write_bytes(bytes(tampered))
    try:
        result = runner.invoke(app, ["verify", url])
        assert result.exit_code == 1
        row = [ln for ln in result.stdout.splitlines() if ln.startswith("train/shard-00002.h5")]
        assert "corrupt" in row[0] and "SHA-256 differs" in row[0]
        one_error_line(runner.invoke(app, ["train", url, "--out", str(tmp_path / "run"),
                                           "--model", "M6-1", "--no-progress"]),
                       f"{url}/train/shard-00002.h5: corrupt")
        assert not (tmp_path / "run").exists()
    finally:
        shard.write_bytes(original)


def test_unreachable_and_manifestless_urls_are_one_error_line(served):
    server, _, _ = served
    one_error_line(runner.invoke(app, ["verify", "http://127.0.0.1:9/hiragana"]),
                   "http://127.0.0.1:9/hiragana/manifest.json: unreachable")
    one_error_line(runner.invoke(app, ["verify", f"{server.url}/nothing"]),
                   f"{server.url}/nothing/manifest.json: no manifest.json")
    one_error_line(runner.invoke(app, ["verify", "ftp://example.org/data"]),
                   "unknown URL scheme 'ftp'")


def test_a_manifest_url_of_more_than_the_text_limit_is_refused_unread(served):
    """A server can answer with any length: read_text refuses what no manifest is, from the
    length the server states, instead of reading it into memory."""
    server, _, folder = served
    huge = folder.parent / "huge"
    huge.mkdir()
    with open(huge / "manifest.json", "wb") as f:
        f.truncate(remote.TEXT_LIMIT + 1)  # sparse: no disk used
    sent = server.sent
    one_error_line(runner.invoke(app, ["verify", f"{server.url}/huge"]),
                   f"{server.url}/huge/manifest.json: larger than 64 MiB")
    assert server.sent - sent < remote.BLOCK_SIZE


def test_a_server_that_stops_answering_fails_after_the_read_timeout(monkeypatch):
    """A server that accepts and never answers held verify for aiohttp's 5 minutes, then said
    "FSTimeoutError"; then for twice remote.READ_TIMEOUT (fsspec asks with HEAD, then GET).
    It fails after READ_TIMEOUT, saying so."""
    monkeypatch.setattr(remote, "READ_TIMEOUT", 0.3)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/silent"
        one_error_line(runner.invoke(app, ["verify", url]),
                       f"{url}/manifest.json: no answer within 0.3 s")
        started = time.monotonic()  # HEAD and GET: 0.3 s for both
        with pytest.raises(EtlError, match="no answer within 0.3 s"):
            remote.read_text(f"{url}/manifest.json")
        assert time.monotonic() - started < 0.55


@pytest.mark.parametrize("route, sent", [("trickle", ""), ("burst", "200")])
def test_a_server_that_trickles_is_stopped_below_the_minimum_rate(monkeypatch, route, sent):
    """A server sending a byte every 50 ms (a 1 MB manifest: 14 hours) held verify without a
    word: under remote.MIN_RATE over the last READ_TIMEOUT seconds, once READ_TIMEOUT has
    passed, the read stops, saying why. Hostile pass 8 (J4): after a fast start (/burst: 20 kB
    at once), the rate was averaged from the request and the 20 kB bought 20 s of trickle."""
    monkeypatch.setattr(remote, "READ_TIMEOUT", 0.2)
    with misbehaving_server() as url:
        started = time.monotonic()
        one_error_line(runner.invoke(app, ["verify", f"{url}/{route}"]),
                       f"{url}/{route}/manifest.json: under 1 KiB/s from the server; stopped "
                       f"after 0.")  # 0.2 s and a little
        assert time.monotonic() - started < 1.5
        with pytest.raises(EtlError, match=rf"s \({sent}\d+ bytes\)"):
            remote.read_text(f"{url}/{route}/manifest.json")


def test_a_server_that_stalls_on_every_shard_ends_verify_after_one_read_timeout(served,
                                                                                monkeypatch):
    """Hostile pass 8 (note 1): shards cut mid-body with the connection held open were waited
    for HASH_WORKERS at a time, the first failure reported only after all of them (122 s for
    60 s). The first one ends verify, named as silence, after READ_TIMEOUT."""
    from etlkit import verify
    server, _, _ = served
    monkeypatch.setattr(remote, "READ_TIMEOUT", 0.3)
    monkeypatch.setattr(verify, "HASH_WORKERS", 2)  # 5 shards, as on the tester's 2 CPUs
    started = time.monotonic()
    # the two shards begun together stall together: the first to time out is named
    one_error_line(runner.invoke(app, ["verify", f"{server.url}/cut/hiragana"]),
                   f"{server.url}/cut/hiragana/train/shard-0000",
                   ".h5: nothing from the server for 0.3 s after")
    assert time.monotonic() - started < 1.2  # one shard's 0.3 s and the manifest, not 5 × 0.3


def test_a_shard_answer_without_end_is_read_no_further_than_the_bytes_asked(served, tmp_path,
                                                                            monkeypatch):
    """Hostile pass 9 (K1): a shard's GET answered 206 with no length and no end was read whole
    (5.7 GB in 11 s) by verify, preview and train. A range answer is read no further than the
    range asked (and http_bounds.RANGE_SLACK), and so is the cache's whole-file fetch, to the
    size the server stated; more is one line naming the shard."""
    server, _, folder = served
    url = f"{server.url}/endless/hiragana"
    shard = f"{url}/train/shard-00000.h5"
    # verify hashes shards side by side and names the first that fails: any of them here
    _sent_more_than_asked(runner.invoke(app, ["verify", url]), url, folder)
    with pytest.raises(EtlError, match=rf"^{shard}: the server sent more than the "
                                       rf"{remote.BLOCK_SIZE} bytes asked$"):
        open_shards(url, "train").open([0])  # a block read, as train --no-verify's
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    _sent_more_than_asked(runner.invoke(app, ["preview", url, "--out", str(tmp_path / "p")]),
                          url, folder)
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) < 4 << 20


def _sent_more_than_asked(result, url, folder):
    """One error line: a shard of the dataset at `url` (served from `folder`) whose whole size
    was asked for and exceeded."""
    one_error_line(result, ": the server sent more than the ")
    named, asked = re.search(rf"{url}/(\S+): the server sent more than the (\d+) bytes asked",
                             result.stderr).groups()
    assert int(asked) == (folder / named).stat().st_size


def test_a_hash_stops_past_the_bytes_a_file_can_take(served, tmp_path):
    """What verify hashes is read no further than its shard could take (shards.most_bytes): a
    server's endless answer of no stated size would otherwise be hashed for ever."""
    _, url, folder = served
    shard = "train/shard-00000.h5"
    size = (folder / shard).stat().st_size
    for path in (folder / shard, f"{url}/{shard}"):
        assert remote.sha256(path, most=size) == remote.sha256(path)
        with pytest.raises(EtlError, match=rf"^{path}: more than {size - 1} bytes, more than "
                                           "it can be; not read further$"):
            remote.sha256(path, most=size - 1)


def test_the_first_shard_that_fails_ends_verify_without_reading_the_slow_ones_beside_it(served):
    """Hostile pass 9 (M4): a shard whose answer broke off at once was reported only after the
    shard being hashed beside it, at 1 kB/s, had been read to its end (minutes; hours for a
    real dataset). The hashes under way stop at their next bytes."""
    server, _, folder = served
    url = f"{server.url}/mixed/digits"
    train = "digits/train/shard-00000.h5"
    val = (folder.parent / "digits/val/shard-00000.h5").stat().st_size
    one_error_line(runner.invoke(app, ["verify", url]),
                   f"{url}/val/shard-00000.h5: the server's answer broke off after {val // 2} "
                   f"of {val} bytes")
    assert 0 < server.trickled[train] < (folder.parent / train).stat().st_size // 4


def test_a_shard_answer_that_breaks_off_is_one_line_naming_the_shard(served, big_shard, tmp_path):
    """Hostile pass 9 (K2, note 5): a shard's answer that broke off (the server closed before the
    length it stated) as `train --no-verify` opened it, or in a block read mid-epoch, was an
    aiohttp traceback, and verify's line called the server that answered "unreachable"."""
    server, _, folder = served
    url = f"{server.url}/broken/digits"
    size = (folder.parent / "digits/train/shard-00000.h5").stat().st_size
    result = runner.invoke(app, ["train", url, "--no-verify", "--model", "FF-baseline",
                                 "--epochs", "1", "--out", str(tmp_path / "run")])
    one_error_line(result, f"{url}/train/shard-00000.h5: the server's answer broke off after "
                           f"{size // 2} of {size} bytes")
    with http_folder(big_shard.parent) as big:
        shards = open_shards(f"{big.url}/{big_shard.name}", "train")
        with shards.open([0]) as files:
            big.breaking = True  # the link drops after the shard opened
            with pytest.raises(EtlError, match=rf"^{big.url}/{big_shard.name}/train/"
                                               r"shard-00000.h5: the server's answer broke off "
                                               r"after \d+ of \d+ bytes$"):
                files.read_block(0)


@pytest.mark.parametrize("route, said", [
    ("short", r"the server answered a byte range short \(\d+ of the \d+ bytes from byte \d+ "
              r"came\)"),
    ("nosize", "the server states no size, so its byte ranges cannot be read"),
], ids=["short", "nosize"])
def test_a_shard_server_that_answers_short_or_states_no_size_is_one_line(served, route, said):
    """Hostile pass 11 (M1, note 1): a range answered with half the bytes asked (its headers
    saying so) was read by h5py as zeros, an HDF5 RuntimeError traceback naming no file, even
    after verify had hashed the shard whole; a shard of no stated size was fsspec's "Cannot
    seek streaming HTTP file", a traceback in `train --no-verify` and a "corrupt" row in verify."""
    server, _, _ = served
    url = f"{server.url}/{route}/digits"
    with pytest.raises(EtlError, match=rf"^{url}/train/shard-00000.h5: {said}$"):
        open_shards(url, "train").open([0])  # what train --no-verify and evaluate read
    if route == "nosize":  # the shard hashes whole from its start; its ranges cannot be read
        one_error_line(runner.invoke(app, ["verify", url]),
                       f"{url}/train/shard-00000.h5: the server states no size, so its byte "
                       "ranges cannot be read")


def test_a_server_that_refuses_is_named_by_its_status(served):
    """A 500 or a redirect loop was "no manifest.json: not an etlkit dataset"."""
    with misbehaving_server() as url:
        for path, said in (("status/500", "HTTP 500 from the server"),
                           ("status/503", "HTTP 503 from the server"),
                           ("loop", "too many redirects")):
            one_error_line(runner.invoke(app, ["verify", f"{url}/{path}"]),
                           f"{url}/{path}/manifest.json: {said}")
        one_error_line(runner.invoke(app, ["verify", f"{url}/status/404"]),
                       "no manifest.json: not an etlkit dataset")


def test_table_and_seeds_take_a_dataset_url(served, tmp_path):
    """`table --shards T=URL` and `seeds --shards URL` folded the URL's // (http:/host/...) and
    called the manifest missing; seeds said "training" first. Both read the URL now: table's
    check of the given datasets (before any training) reads the digits' manifest from it."""
    server, _, _ = served
    one_error_line(runner.invoke(app, ["table", "--models", "M3", "--tasks", "hiragana",
                                       "--shards", f"hiragana={server.url}/digits",
                                       "--out", str(tmp_path / "t")]),
                   f"{server.url}/digits is a sklearn-digits dataset, not hiragana")
    result = runner.invoke(app, ["seeds", "--models", "FF-baseline", "--shards",
                                 f"{server.url}/none", "--out", str(tmp_path / "s")])
    one_error_line(result, f"{server.url}/none/manifest.json: no manifest.json")
    assert "training" not in result.stderr


def test_a_cache_folder_keeps_the_files_it_read(served, tmp_path, monkeypatch):
    _, url, folder = served
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    data = open_shards(url, "val").read()
    np.testing.assert_array_equal(data["labels"], open_shards(folder, "val").read()["labels"])
    cached = [p for p in (tmp_path / "cache").iterdir() if p.stat().st_size > 0]
    assert any(p.stat().st_size == (folder / "val" / "shard-00000.h5").stat().st_size
               for p in cached)


def test_etlkit_preview_of_a_url(served, tmp_path):
    _, url, _ = served
    result = runner.invoke(app, ["preview", url, "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "classes.png").stat().st_size > 1000


def test_etlkit_train_and_evaluate_over_http(served, tmp_path):
    server, _, _ = served
    url, run = f"{server.url}/digits", tmp_path / "run"
    result = runner.invoke(app, ["train", url, "--out", str(run), "--model", "FF-baseline",
                                 "--epochs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["shards"] == url and config["splits"]["train"] == 1150
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["count"] == 360


def test_etlkit_verify_on_a_local_s3_server(bucket, hiragana_shards):
    url, endpoint = bucket
    result = runner.invoke(app, ["verify", url])
    assert result.exit_code == 0, result.output
    assert "5 of 5 files ok" in result.stdout
    got = open_shards(url, "test").read()
    np.testing.assert_array_equal(got["images"], open_shards(hiragana_shards, "test").read()
                                  ["images"])
    one_error_line(runner.invoke(app, ["verify", "s3://etl/datasets/none"]),
                   "s3://etl/datasets/none/manifest.json: no manifest.json")


def test_an_unlisted_object_in_the_bucket_is_reported(bucket, hiragana_shards, tmp_path):
    _, endpoint = bucket
    extra = tmp_path / "extra"
    shutil.copytree(hiragana_shards, extra)
    shutil.copy(extra / "val" / "shard-00000.h5", extra / "val" / "shard-00007.h5")
    url = upload(endpoint, extra, "etl", "datasets/extra")
    result = runner.invoke(app, ["verify", url])
    assert result.exit_code == 1
    assert any(ln.startswith("val/shard-00007.h5") and "unlisted" in ln
               for ln in result.stdout.splitlines())


def test_etlkit_train_from_a_local_s3_server(digits_in_bucket, tmp_path):
    url, run = digits_in_bucket, tmp_path / "run"
    result = runner.invoke(app, ["train", url, "--out", str(run), "--model", "FF-baseline",
                                 "--epochs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stderr
    assert json.loads((run / "config.json").read_text())["config"]["shards"] == url
