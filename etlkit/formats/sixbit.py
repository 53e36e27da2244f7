"""Records written in 6-bit storage units (C family: ETL-3/4/5, K family: ETL-2).

The header is unpacked once into an (N, chars) array of 6-bit values; integer fields are then
6-char (36-bit) big-endian numbers, text fields go through the T56 alphabet, and 8-bit codes sit
in the left 8 bits of their field (docs/etl-formats.md §2.4-2.5). All of it is vectorized.
"""

from dataclasses import dataclass

import numpy as np

from . import pixels

#: The T56 code: 6-bit value -> character (AIST's sample unpacker; four codes print as spaces).
T56 = "0123456789[#@:>? ABCDEFGHI&.](<  JKLMNOPQR-$*);'|/STUVWXYZ ,%=\"!"
_T56_BYTES = np.frombuffer(T56.encode("ascii"), np.uint8)
_T56_BLANK = T56.index(" ")
#: ASCII byte -> T56 code for encoding; anything T56 cannot write becomes a blank.
_T56_CODES = np.full(256, _T56_BLANK, np.uint8)
for _code, _char in reversed(list(enumerate(T56))):
    _T56_CODES[ord(_char)] = _code

# (name, first 6-bit char, number of chars, kind); kind is "int" (36-bit number), "t56" (text)
# or "byte" (an 8-bit code in the field's left 8 bits).
_C_HEADER = [
    ("serial_data_number", 0, 6, "int"), ("sheet", 6, 6, "int"), ("jis", 12, 2, "byte"),
    ("ebcdic", 18, 2, "byte"), ("t56_code", 24, 4, "t56"),
] + [
    (name, 30 + 6 * i, 6, "int") for i, name in enumerate([
        "image_quality", "group_quality", "pos_y", "pos_x", "gender", "age", "industry",
        "occupation", "gathering_date", "scan_date", "x_points", "y_points", "levels",
        "magnification", "old_serial_data_number",
    ])
]
_K_HEADER = [
    ("serial_data_number", 0, 6, "int"), ("style_mark", 6, 1, "t56"), ("class_name", 12, 6, "t56"),
    ("font", 18, 6, "t56"), ("co59_1", 28, 1, "int"), ("co59_2", 29, 1, "int"),
]


@dataclass(frozen=True)
class SixbitLayout:
    family: str
    record_size: int
    header_chars: int
    header: tuple
    bits: int
    shape: tuple[int, int]
    #: The octet where `etlkit synth` writes its signature (`formats.SYNTH_SIGNATURE`): the
    #: start of an undefined 6-bit char (C: char 121 of the undefined 121-288, octet 90; K: char
    #: 33 of the undefined 31-60, octet 24).
    synth_mark_offset: int
    blank_t56: tuple = ()  # t56 fields that hold only spaces (written as T56 blanks on encode)

    @property
    def image_offset(self) -> int:
        return self.header_chars * 6 // 8

    @property
    def field_dtype(self) -> np.dtype:
        kinds = {"int": np.uint64, "byte": np.uint8}
        return np.dtype([(n, kinds.get(k, f"S{w}")) for n, _, w, k in self.header])

    def decode(self, raw: np.ndarray, images: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(N, record_size) uint8 -> (header fields, (N, H, W) raw-level images or (N, 0, 0))."""
        chars = pixels.unpack6(raw[:, : self.image_offset])
        fields = np.empty(len(raw), self.field_dtype)
        for name, start, width, kind in self.header:
            c = chars[:, start : start + width]
            if kind == "int":
                weights = np.uint64(1) << (6 * np.arange(width - 1, -1, -1, dtype=np.uint64))
                fields[name] = (c.astype(np.uint64) * weights).sum(axis=1)
            elif kind == "byte":
                fields[name] = (c[:, 0] << 2) | (c[:, 1] >> 4)
            else:
                fields[name] = np.ascontiguousarray(_T56_BYTES[c]).view(f"S{width}")[:, 0]
        if not images:
            return fields, np.empty((len(raw), 0, 0), np.uint8)
        payload = raw[:, self.image_offset : self.image_offset + self._image_bytes]
        return fields, pixels.unpack(payload, self.bits, self.shape)

    def encode(self, fields: np.ndarray, images: np.ndarray) -> np.ndarray:
        n = len(images)
        chars = np.zeros((n, self.header_chars), np.uint8)
        for start, width in self.blank_t56:
            chars[:, start : start + width] = _T56_BLANK
        for name, start, width, kind in self.header:
            v = fields[name]
            if kind == "int":
                v = v.astype(np.uint64)
                for i in range(width):
                    chars[:, start + i] = (v >> np.uint64(6 * (width - 1 - i))) & np.uint64(63)
            elif kind == "byte":
                chars[:, start] = v >> 2
                chars[:, start + 1] = (v & 3) << 4
            else:
                text = np.frombuffer(v.astype(f"S{width}").tobytes(), np.uint8).reshape(n, width)
                chars[:, start : start + width] = _T56_CODES[text]
        raw = np.zeros((n, self.record_size), np.uint8)
        raw[:, : self.image_offset] = pixels.pack6(chars)
        packed = pixels.pack(images, self.bits)
        raw[:, self.image_offset : self.image_offset + packed.shape[1]] = packed
        return raw

    @property
    def _image_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.bits // 8


C = SixbitLayout("C", 2952, 288, tuple(_C_HEADER), 4, (76, 72), 90, blank_t56=((28, 2),))
K = SixbitLayout("K", 2745, 60, tuple(_K_HEADER), 6, (60, 60), 24, blank_t56=((7, 5),))
