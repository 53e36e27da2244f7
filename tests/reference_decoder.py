"""An independent, deliberately slow reference decoder for raw ETL records.

Written field by field from docs/etl-formats.md §1-§2 with bitstring, one record at a
time, without importing anything from etlkit. Offsets below are copied from the spec tables in
their 1-based form (bytes for the M, B and G families, 6-bit characters for C and K) and turned
into bit offsets here, so a transcription slip in etlkit's dtypes cannot be mirrored.

Conventions (spec §1, §4.2): big-endian, MSB-first; images are row-major, top row first; at
4 bpp the high nibble is the left pixel; at 1 bpp a set bit is a stroke; at 6 bpp four pixels
span three octets. Pixels are returned as raw levels (0..1, 0..15 or 0..63), never rescaled.

Field values: integers as Python ints, ASCII fields as the raw `bytes` of the field (padding
included), T56 fields as `str` through the T56 alphabet.
"""

import numpy as np
from bitstring import Bits

#: T56 code, 6-bit value -> character (docs/etl-formats.md §2.5).
T56 = "0123456789[#@:>? ABCDEFGHI&.](<  JKLMNOPQR-$*);'|/STUVWXYZ ,%=\"!"
assert len(T56) == 64

#: Record length in octets per family variant (spec §1-§2).
RECORD_SIZE = {"M": 2052, "B8": 512, "B9": 576, "G8": 8199, "G9": 8199, "C": 2952, "K": 2745}

#: Dataset -> family variant (spec §1 table; B/G split by record size and image offset).
VARIANT = {
    "ETL1": "M", "ETL6": "M", "ETL7": "M",
    "ETL2": "K",
    "ETL3": "C", "ETL4": "C", "ETL5": "C",
    "ETL8B2": "B8", "ETL9B": "B9",
    "ETL8G": "G8", "ETL9G": "G9",
}

#: Zero-filled records that open every file (spec §1: only the B type).
DUMMY_RECORDS = {"M": 0, "B8": 1, "B9": 1, "G8": 0, "G9": 0, "C": 0, "K": 0}

#: Highest raw pixel level per variant (bits per pixel: M/G/C 4, B 1, K 6).
MAX_LEVEL = {"M": 15, "B8": 1, "B9": 1, "G8": 15, "G9": 15, "C": 15, "K": 63}

# --- M type (ETL1, ETL6, ETL7), spec §2.1: (name, first byte 1-based, bytes, kind) ---------
_M_FIELDS = [
    ("data_number", 1, 2, "uint"),
    ("name", 3, 2, "ascii"),
    ("sheet", 5, 2, "uint"),
    ("jis", 7, 1, "uint"),
    ("ebcdic", 8, 1, "uint"),
    ("image_quality", 9, 1, "uint"),
    ("group_quality", 10, 1, "uint"),
    ("gender", 11, 1, "uint"),
    ("age", 12, 1, "uint"),
    ("serial_data_number", 13, 4, "uint"),
    ("industry", 17, 2, "uint"),
    ("occupation", 19, 2, "uint"),
    ("gathering_date", 21, 2, "uint"),
    ("scan_date", 23, 2, "uint"),
    ("pos_y", 25, 1, "uint"),
    ("pos_x", 26, 1, "uint"),
    ("min_level", 27, 1, "uint"),
    ("max_level", 28, 1, "uint"),
]
# (first image byte 1-based, width, height, bits per pixel)
_M_IMAGE = (33, 64, 63, 4)

# --- B type (ETL8B2, ETL9B), spec §2.2 ----------------------------------------------------
_B_FIELDS = [
    ("sheet", 1, 2, "uint"),
    ("jis", 3, 2, "uint"),
    ("reading", 5, 4, "ascii"),
]
_B_IMAGE = (9, 64, 63, 1)

# --- G type (ETL8G, ETL9G), spec §2.3 -----------------------------------------------------
_G_FIELDS = [
    ("sheet", 1, 2, "uint"),
    ("jis", 3, 2, "uint"),
    ("reading", 5, 8, "ascii"),
    ("serial_data_number", 13, 4, "uint"),
    ("image_quality", 17, 1, "uint"),
    ("group_quality", 18, 1, "uint"),
    ("gender", 19, 1, "uint"),
    ("age", 20, 1, "uint"),
    ("industry", 21, 2, "uint"),
    ("occupation", 23, 2, "uint"),
    ("gathering_date", 25, 2, "uint"),
    ("scan_date", 27, 2, "uint"),
    ("pos_x", 29, 1, "uint"),
    ("pos_y", 30, 1, "uint"),
]
_G8_IMAGE = (61, 128, 127, 4)
_G9_IMAGE = (65, 128, 127, 4)

# --- C type (ETL3, ETL4, ETL5), spec §2.4: (name, first char 1-based, last char, kind) -------
_C_INTS = [
    "image_quality", "group_quality", "pos_y", "pos_x", "gender", "age", "industry",
    "occupation", "gathering_date", "scan_date", "x_points", "y_points", "levels",
    "magnification", "old_serial_data_number",
]
_C_FIELDS = [
    ("serial_data_number", 1, 6, "int36"),
    ("sheet", 7, 12, "int36"),
    ("jis", 13, 18, "left8"),
    ("ebcdic", 19, 24, "left8"),
    ("t56_code", 25, 28, "t56"),
] + [(name, 31 + 6 * i, 36 + 6 * i, "int36") for i, name in enumerate(_C_INTS)]
# (first image 6-bit char 1-based, width, height, bits per pixel)
_C_IMAGE = (289, 72, 76, 4)

# --- K type (ETL2), spec §2.5 -------------------------------------------------------------
_K_FIELDS = [
    ("serial_data_number", 1, 6, "int36"),
    ("style_mark", 7, 7, "t56"),
    ("class_name", 13, 18, "t56"),
    ("font", 19, 24, "t56"),
    ("co59_1", 29, 29, "int36"),
    ("co59_2", 30, 30, "int36"),
]
_K_IMAGE = (61, 60, 60, 6)

_OCTET = {"M": (_M_FIELDS, _M_IMAGE), "B8": (_B_FIELDS, _B_IMAGE), "B9": (_B_FIELDS, _B_IMAGE),
          "G8": (_G_FIELDS, _G8_IMAGE), "G9": (_G_FIELDS, _G9_IMAGE)}
_SIXBIT = {"C": (_C_FIELDS, _C_IMAGE), "K": (_K_FIELDS, _K_IMAGE)}


# --- etlkit synth's signature, spec §2.6: where it starts, 1-based (bytes for M, B and G, 6-bit
# characters for C and K), never shared with a field the reference reports except B's reading.
SYNTH_SIGNATURE = b"SYN\xff"
_SIGNATURE_AT = {"M": 29, "B8": 5, "B9": 5, "G8": 31, "G9": 31, "C": 121, "K": 33}


def synth_signed(variant: str, record: bytes) -> bool:
    """Whether one raw record carries etlkit synth's signature."""
    bits = _bits(variant, record)
    unit = 6 if variant in _SIXBIT else 8
    start = (_SIGNATURE_AT[variant] - 1) * unit
    return bits[start : start + 8 * len(SYNTH_SIGNATURE)].bytes == SYNTH_SIGNATURE


def field_names(variant: str) -> tuple[str, ...]:
    """The header field names the reference reports for a variant, in record order."""
    table = _OCTET[variant][0] if variant in _OCTET else _SIXBIT[variant][0]
    return tuple(name for name, *_ in table)


def image_shape(variant: str) -> tuple[int, int]:
    """(height, width) of a variant's image."""
    _, width, height, _ = _OCTET[variant][1] if variant in _OCTET else _SIXBIT[variant][1]
    return height, width


def _pixels(bits: Bits, start_bit: int, width: int, height: int, depth: int) -> np.ndarray:
    """Read width*height pixels of `depth` bits each, MSB-first, row-major, from start_bit."""
    payload = bits[start_bit : start_bit + width * height * depth]
    if len(payload) != width * height * depth:
        raise ValueError("record too short for its image")
    levels = [pixel.uint for pixel in payload.cut(depth)]
    rows = [levels[r * width : (r + 1) * width] for r in range(height)]
    return np.array(rows, dtype=np.uint8)


def _fields_octet(variant: str, bits: Bits) -> dict:
    fields = {}
    for name, first_byte, n_bytes, kind in _OCTET[variant][0]:
        chunk = bits[(first_byte - 1) * 8 : (first_byte - 1 + n_bytes) * 8]
        fields[name] = chunk.uint if kind == "uint" else chunk.bytes
    return fields


def _fields_sixbit(variant: str, bits: Bits) -> dict:
    fields = {}
    for name, first, last, kind in _SIXBIT[variant][0]:
        chunk = bits[(first - 1) * 6 : last * 6]
        if kind == "int36":
            fields[name] = chunk.uint
        elif kind == "left8":
            fields[name] = chunk[:8].uint
        else:
            fields[name] = "".join(T56[c.uint] for c in chunk.cut(6))
    return fields


def _bits(variant: str, record: bytes) -> Bits:
    if len(record) != RECORD_SIZE[variant]:
        raise ValueError(f"{variant} record is {RECORD_SIZE[variant]} octets, got {len(record)}")
    return Bits.from_bytes(bytes(record))


def decode_fields(variant: str, record: bytes) -> dict:
    """One raw record -> its header fields by name (the image is not decoded)."""
    bits = _bits(variant, record)
    return _fields_octet(variant, bits) if variant in _OCTET else _fields_sixbit(variant, bits)


def decode_image(variant: str, record: bytes) -> np.ndarray:
    """One raw record -> its (H, W) uint8 image of raw levels."""
    bits = _bits(variant, record)
    if variant in _OCTET:
        first_byte, width, height, depth = _OCTET[variant][1]
        return _pixels(bits, (first_byte - 1) * 8, width, height, depth)
    first_char, width, height, depth = _SIXBIT[variant][1]
    return _pixels(bits, (first_char - 1) * 6, width, height, depth)


def decode_record(variant: str, record: bytes) -> tuple[dict, np.ndarray]:
    """One raw record -> (header fields by name, (H, W) uint8 image of raw levels).

    `variant` is one of M, B8, B9, G8, G9, C, K (see VARIANT for the dataset of each).
    """
    return decode_fields(variant, record), decode_image(variant, record)


def label_code(variant: str, fields: dict) -> int:
    """The record's own label code: the JIS field, or CO-59 as hi << 6 | lo for ETL-2."""
    if variant == "K":
        return fields["co59_1"] << 6 | fields["co59_2"]
    return fields["jis"]


def sheet_of(variant: str, fields: dict) -> int:
    """The serial sheet number (the K type has none: 0)."""
    return 0 if variant == "K" else fields["sheet"]


def decode_file(variant: str, data: bytes, records=None):
    """Yield (physical record number, fields, image) for `records` (default: every real one)."""
    size = RECORD_SIZE[variant]
    count = len(data) // size
    if records is None:
        records = range(DUMMY_RECORDS[variant], count)
    for i in records:
        fields, image = decode_record(variant, data[i * size : (i + 1) * size])
        yield i, fields, image
