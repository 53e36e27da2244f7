"""`ShardSet.blocks(part=(index, count))`: the shares of data-loader workers (a PyTorch
`IterableDataset` with `num_workers`), on real shards, without torch: disjoint, together every
record exactly once, the same for the same seed."""

import numpy as np
import pytest

from etlkit.shards import open_shards

FIELDS = ("source", "labels")


def _records(blocks: list[dict]) -> list[tuple[int, ...]]:
    """Each record of `blocks` as its (raw file, record) source, in order."""
    return [tuple(r) for b in blocks for r in b["source"].tolist()]


@pytest.fixture(scope="module")
def train(hiragana_shards):
    shard_set = open_shards(hiragana_shards, "train")
    assert len(shard_set.counts()) == 3  # blocks from several shards
    return shard_set


@pytest.mark.parametrize("seed", [7, None])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_worker_shares_hold_every_record_exactly_once(train, workers, seed):
    whole = list(train.blocks(block=32, seed=seed, fields=FIELDS))
    shares = [list(train.blocks(block=32, seed=seed, fields=FIELDS, part=(i, workers)))
              for i in range(workers)]
    every = sorted(_records(whole))
    assert len(every) == len(set(every)) == len(train) == 225
    union = [r for share in shares for r in _records(share)]
    assert sorted(union) == every  # nothing twice, nothing left out
    # worker i takes every workers-th block of the shared order, from the i-th on, each block
    # permuted as in the whole order: the shares are balanced and interleave back into it
    for i, share in enumerate(shares):
        assert _records(share) == _records(whole[i::workers])
        for got, want in zip(share, whole[i::workers], strict=True):
            assert np.array_equal(got["labels"], want["labels"])


def test_a_share_is_the_same_for_the_same_seed_and_moves_with_it(train):
    first = _records(list(train.blocks(block=32, seed=3, fields=FIELDS, part=(1, 3))))
    again = _records(list(train.blocks(block=32, seed=3, fields=FIELDS, part=(1, 3))))
    other = _records(list(train.blocks(block=32, seed=4, fields=FIELDS, part=(1, 3))))
    assert first == again
    assert sorted(first) != sorted(other)  # epochs give a worker other records


@pytest.mark.parametrize("part", [(2, 2), (-1, 2), (0, 0)])
def test_a_part_outside_its_count_is_refused(train, part):
    with pytest.raises(ValueError, match=r"0 <= index < count"):
        next(train.blocks(part=part))
