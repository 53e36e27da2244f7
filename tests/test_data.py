"""The trainer's input pipeline on real shards: coverage, shuffling, resumption, processes."""

import numpy as np
import pytest

from etlkit.extract import Options, extract
from etlkit.shards import open_shards
from etlkit.synth import synth
from train.data import Part, Prefetch, eval_batches, train_groups


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Synthetic ETL-8G kanji of 2 writers in shards of 500 records (3 train shards)."""
    root = tmp_path_factory.mktemp("data")
    synth("ETL8G", root / "raw", writers=2, files=["ETL8G_01"])
    extract([root / "raw"], root / "kanji", Options(task="kanji", shard_size=500))
    return open_shards(root / "kanji", "train")


def _epoch(part, batch=16, group=4, seed=0, epoch=0, start=0):
    return list(train_groups(part, batch, group, seed, epoch, start_group=start))


def test_an_epoch_sees_each_record_at_most_once_in_full_batches(shards):
    part = Part(shards)
    groups = _epoch(part)
    images = np.concatenate([g["images"].reshape(-1, 64, 64) for g in groups])
    labels = np.concatenate([g["labels"].reshape(-1) for g in groups])
    steps = part.steps_per_epoch(16)
    assert steps == len(shards) // 16 and len(labels) == steps * 16
    assert [len(g["labels"]) for g in groups] == [4] * (steps // 4) + [steps % 4] * bool(steps % 4)
    data = shards.read()
    # every (image, label) pair is a real record, and none repeats
    keys = {(im.tobytes(), lab) for im, lab in zip(data["images"], data["labels"], strict=True)}
    seen = [(im.tobytes(), lab) for im, lab in zip(images, labels, strict=True)]
    assert set(seen) <= keys and len(set(seen)) == len(seen)


def test_the_order_is_shuffled_across_blocks_and_is_a_function_of_seed_and_epoch(shards):
    part = Part(shards)
    first = np.concatenate([g["labels"].ravel() for g in _epoch(part)])
    assert np.array_equal(first, np.concatenate([g["labels"].ravel() for g in _epoch(part)]))
    for other in (_epoch(part, epoch=1), _epoch(part, seed=1)):
        assert not np.array_equal(first, np.concatenate([g["labels"].ravel() for g in other]))
    # a batch mixes records from across the split, not one 256-record block
    in_file_order = shards.read()["labels"]
    positions = {lab: i for i, lab in enumerate(in_file_order)}  # kanji: one record per writer
    batch = [positions[lab] for lab in first[:16]]
    assert max(batch) - min(batch) > 512


def test_resuming_mid_epoch_gives_the_remaining_groups(shards):
    part = Part(shards)
    whole = _epoch(part)
    rest = _epoch(part, start=5)
    assert len(rest) == len(whole) - 5
    for a, b in zip(whole[5:], rest, strict=True):
        assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["labels"],
                                                                            b["labels"])


def test_processes_read_disjoint_shards_and_take_the_same_number_of_steps(shards):
    parts = [Part(shards, p, 2) for p in range(2)]
    owned = [set(p.numbers(p.process_index)) for p in parts]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == set(range(len(shards.paths)))
    assert parts[0].numbers(1) == parts[1].numbers(1)  # every process knows the others' shards
    steps = parts[0].steps_per_epoch(16)
    assert steps == parts[1].steps_per_epoch(16) > 0
    for p in parts:
        groups = _epoch(p)
        assert sum(len(g["labels"]) for g in groups) == steps
        assert all(g["labels"].shape[1] == 8 for g in groups)  # half of the global batch each
    with pytest.raises(ValueError, match="not a multiple of the 2 processes"):
        parts[0].local_batch(15)


def test_eval_batches_cover_the_split_once_with_a_padding_mask(shards):
    batches = list(eval_batches(Part(shards), 256))
    assert all(b["images"].shape == (256, 64, 64) for b in batches)
    mask = np.concatenate([b["mask"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])[mask]
    assert mask.sum() == len(shards) and np.array_equal(labels, shards.read()["labels"])


def test_prefetch_runs_ahead_and_reraises_errors():
    assert [x * 10 for x in range(5)] == list(Prefetch(iter(range(5)), put=lambda x: x * 10))

    def broken():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(Prefetch(broken(), put=lambda x: x))
