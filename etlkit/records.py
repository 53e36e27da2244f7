"""RecordBatch: decoded ETL records as parallel numpy arrays."""

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class RecordBatch:
    """N records of one dataset at native size, raw levels, ink high, exactly as stored.

    `codes` is the record's own label code (JIS X 0201 byte, JIS X 0208 word, or CO-59 pair as
    hi << 6 | lo); `chars`, `sjis` and `scripts` derive from it alone ("" / 0 / "none" where the
    code stands for no character). `index` is the record number in the file, counting from 0
    (the B family's dummy record 0 is never returned). `extra` marks model records and extra
    sets that are not part of the writer data. `synthetic` marks records that carry the
    signature `etlkit synth` writes into every record it makes (`formats.SYNTH_SIGNATURE`),
    never found in AIST's. `fields` holds every header field. `hashes` is a
    64-bit hash of each record's bytes (`repeats`): a record read twice has the same hash.
    """

    dataset: str
    images: np.ndarray  # uint8 (N, H, W)
    codes: np.ndarray  # uint16 (N,)
    chars: np.ndarray  # <U1 (N,)
    sjis: np.ndarray  # int32 (N,)
    scripts: np.ndarray  # <U8 (N,)
    sheets: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,)
    extra: np.ndarray  # bool (N,)
    synthetic: np.ndarray  # bool (N,)
    fields: np.ndarray  # structured (N,)
    hashes: np.ndarray  # uint64 (N,)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key) -> "RecordBatch":
        """Select records by slice, index array or boolean mask."""
        arrays = {f.name: getattr(self, f.name)[key] for f in fields(self) if f.name != "dataset"}
        return RecordBatch(dataset=self.dataset, **arrays)

    @property
    def labelled(self) -> np.ndarray:
        """True where the record's code stands for a character."""
        return self.chars != ""

    @classmethod
    def concatenate(cls, batches: list["RecordBatch"]) -> "RecordBatch":
        if not batches:
            raise ValueError("no batches to concatenate")
        names = [f.name for f in fields(cls) if f.name != "dataset"]
        arrays = {n: np.concatenate([getattr(b, n) for b in batches]) for n in names}
        return cls(dataset=batches[0].dataset, **arrays)
