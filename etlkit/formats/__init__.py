"""The eleven ETL datasets: each one's record layout and label policy.

A *format* here is a dataset name (ETL1 ... ETL9G), because the label rules differ between
datasets that share a layout: ETL-7 stores hiragana under katakana codes, ETL-1 stores ヰ/ヱ
under small-kana codes, and so on (docs/etl-formats.md §6).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from .. import labels
from ..errors import EtlError
from .octet import B8, B9, G8, G9, M, OctetLayout
from .sixbit import C, K, SixbitLayout

#: What `etlkit synth` writes into every record it makes, at the layout's `synth_mark_offset`,
#: so that its files are known as synthetic wherever they are copied (they have AIST's names
#: and layouts): the M, C, G and K families' undefined area, the B family's reading, whose
#: ASCII cannot hold the last byte (docs/etl-formats.md §2.6).
SYNTH_SIGNATURE = b"SYN\xff"
_SIGNATURE = np.frombuffer(SYNTH_SIGNATURE, np.uint8)


@dataclass(frozen=True)
class Format:
    name: str
    layout: OctetLayout | SixbitLayout
    code: str  # "jis0201", "jis0208" or "co59"
    hiragana: bool = False  # kana codes stand for hiragana
    wi_we: bool = False  # 0xA8 / 0xAA stand for ヰ / ヱ
    dummy_records: int = 0  # zero-filled records at the start of every file (B family)

    @property
    def family(self) -> str:
        return self.layout.family

    @property
    def record_size(self) -> int:
        return self.layout.record_size

    @property
    def levels(self) -> int:
        """The highest raw pixel level (1, 15 or 63)."""
        return (1 << self.layout.bits) - 1

    def synth_signed(self, raw: np.ndarray) -> np.ndarray:
        """(N, record_size) uint8 -> (N,) bool: the records that carry `SYNTH_SIGNATURE`."""
        at = self.layout.synth_mark_offset
        return (raw[:, at : at + len(_SIGNATURE)] == _SIGNATURE).all(axis=1)

    def synth_sign(self, raw: np.ndarray) -> None:
        """Write `SYNTH_SIGNATURE` into every record of (N, record_size) uint8 `raw`."""
        at = self.layout.synth_mark_offset
        raw[:, at : at + len(_SIGNATURE)] = _SIGNATURE

    def codes(self, fields: np.ndarray) -> np.ndarray:
        """The label code of each decoded record (CO-59 pairs packed as hi << 6 | lo)."""
        if self.family == "K":
            return (fields["co59_1"].astype(np.uint16) << 6) | fields["co59_2"].astype(np.uint16)
        return fields["jis"].astype(np.uint16)

    def char_of(self, co59_table: dict[int, str] | None = None) -> Callable[[int], str]:
        """code -> character for this dataset."""
        if self.code == "jis0208":
            return labels.jis0208_char
        if self.code == "co59":
            table = co59_table or {}
            return lambda code: table.get(code, "")
        return partial(labels.jis0201_char, hiragana=self.hiragana, wi_we=self.wi_we)


FORMATS = {
    f.name: f
    for f in [
        Format("ETL1", M, "jis0201", wi_we=True),
        Format("ETL2", K, "co59"),
        Format("ETL3", C, "jis0201"),
        Format("ETL4", C, "jis0201", hiragana=True, wi_we=True),
        Format("ETL5", C, "jis0201", wi_we=True),
        Format("ETL6", M, "jis0201"),
        Format("ETL7", M, "jis0201", hiragana=True),
        Format("ETL8B2", B8, "jis0208", dummy_records=1),
        Format("ETL8G", G8, "jis0208"),
        Format("ETL9B", B9, "jis0208", dummy_records=1),
        Format("ETL9G", G9, "jis0208"),
    ]
}
_ALIASES = {"ETL8B": "ETL8B2"}


def get(name: str) -> Format:
    """A format by dataset name, case-insensitive (ETL8B is accepted for ETL8B2)."""
    key = name.upper().replace("-", "")
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise EtlError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[key]
