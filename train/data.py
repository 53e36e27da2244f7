"""Shards -> device batches: chunk-aligned block reads, a two-level shuffle, background prefetch.

Reads are whole HDF5 chunks (256 images), never single images, so lzf shards stream at ~100k
images/s per thread. Shuffling happens twice: the blocks of every shard a process owns come in
a random order per epoch, and a window of blocks is permuted as one pool, so a batch mixes
writers and shards. The order is a pure function of (seed, epoch), which is what makes a
resumed run see the same batches as an uninterrupted one. Images stay uint8 until the device.

With several processes (hosts), process p reads the shards whose index is p modulo the
process count and supplies its slice of every global batch; every process computes the same
number of steps from the manifest's shard counts.
"""

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from etlkit.shards import CHUNK, ShardSet
from etlkit.workers import take

WINDOW_BLOCKS = 16  # blocks shuffled together: 4096 images, 16 MiB


@dataclass(frozen=True)
class Part:
    """The shards of one split that this process reads: every process_count-th one."""

    shards: ShardSet
    process_index: int = 0
    process_count: int = 1

    def numbers(self, process: int) -> range:
        """The shard numbers (within the split) that `process` reads."""
        return range(len(self.shards.counts()))[process :: self.process_count]

    def counts(self, process: int) -> list[int]:
        """Records in each shard `process` reads (from the manifest)."""
        counts = self.shards.counts()
        return [counts[i] for i in self.numbers(process)]

    def local_batch(self, batch_size: int) -> int:
        if batch_size % self.process_count:
            raise ValueError(f"batch size {batch_size} is not a multiple of the "
                             f"{self.process_count} processes")
        return batch_size // self.process_count

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full training batches per epoch, the same on every process (the smallest part)."""
        local = self.local_batch(batch_size)
        return min(sum(self.counts(p)) // local for p in range(self.process_count))


def train_groups(part: Part, batch_size: int, group: int, seed: int, epoch: int,
                 start_group: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """One epoch as groups of `group` batches: images (K, b, 64, 64) uint8 and labels (K, b)
    int32, b being this process's share of the batch; the last group may be shorter.

    The epoch's incomplete last batch is dropped (every epoch reshuffles, so no image is left
    out for good). `start_group` resumes mid-epoch: the same order, the first groups left out.
    """
    local = part.local_batch(batch_size)
    steps = part.steps_per_epoch(batch_size)
    batches = _shuffled_batches(part, local, np.random.default_rng([seed, epoch]))
    try:
        for call in range(-(-steps // group)):
            chunk = [next(batches) for _ in range(min(group, steps - call * group))]
            if call >= start_group:
                yield {"images": np.stack([im for im, _ in chunk]),
                       "labels": np.stack([lab for _, lab in chunk])}
    finally:
        batches.close()  # closes the shard files


def eval_batches(part: Part, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """This process's records in file order, in batches of its share of `batch_size`; the last
    batch is padded and `mask` marks real records, so every batch has one shape. Records stream
    in chunk-aligned blocks, one shard open at a time, so stopping early (the batch-norm
    calibration takes the first few batches) reads no further, on a disk or at a URL."""
    local = part.local_batch(batch_size)
    calls = -(-max(sum(part.counts(p)) for p in range(part.process_count)) // local)
    side = part.shards.info.image_size
    blocks = part.shards.blocks(shards=part.numbers(part.process_index))
    pending, have = [], 0  # blocks read and not yet batched, and their records
    try:
        for _ in range(calls):  # every process makes the same number of calls
            while have < local and (block := next(blocks, None)) is not None:
                pending.append(block)
                have += len(block["labels"])
            n = min(local, have)
            batch = {"images": np.zeros((local, side, side), np.uint8),
                     "labels": np.zeros(local, np.int32), "mask": np.arange(local) < n}
            if pending:
                images = np.concatenate([b["images"] for b in pending])
                labels = np.concatenate([b["labels"] for b in pending])
                batch["images"][:n], batch["labels"][:n] = images[:n], labels[:n]
                pending = [{"images": images[n:], "labels": labels[n:]}] if have > n else []
                have -= n
            yield batch
    finally:
        blocks.close()  # closes the open shard


def _shuffled_batches(part: Part, local: int, rng: np.random.Generator):
    """One epoch of (images, labels) batches of `local` records, two-level shuffled."""
    numbers, counts = part.numbers(part.process_index), part.counts(part.process_index)
    blocks = [(i, s, min(CHUNK, n - s)) for i, n in zip(numbers, counts, strict=True)
              for s in range(0, n, CHUNK)]
    order = rng.permutation(len(blocks))
    with part.shards.open(numbers) as files:
        carry_images, carry_labels = None, None
        for w in range(0, len(order), WINDOW_BLOCKS):
            read = [files.read_block(i, s, n) for i, s, n in
                    (blocks[j] for j in order[w : w + WINDOW_BLOCKS])]
            images = [r["images"] for r in read]
            labels = [r["labels"] for r in read]
            if carry_images is not None:
                images.append(carry_images)
                labels.append(carry_labels)
            images, labels = np.concatenate(images), np.concatenate(labels)
            perm = rng.permutation(len(labels))
            images, labels = images[perm], labels[perm]
            full = len(labels) // local * local
            for s in range(0, full, local):
                yield images[s : s + local], labels[s : s + local]
            carry_images, carry_labels = images[full:], labels[full:]


class Prefetch:
    """Runs an iterator on a background thread, `depth` items ahead, applying `put` (the copy to
    the devices) there too, so reading, shuffling and transfer overlap the training step."""

    _END = object()

    def __init__(self, items: Iterator, put: Callable, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items, put), daemon=True)
        self._thread.start()

    def _run(self, items: Iterator, put: Callable) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._queue.put(put(item))
            self._queue.put(self._END)
        except BaseException as err:  # re-raised in the consumer
            self._queue.put(err)

    def __iter__(self):
        while True:
            item = take(self._queue)  # timed waits: Ctrl-C is handled at once
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
