"""Byte-aligned record layouts (M, B and G families) as numpy structured dtypes.

A whole file maps onto one structured dtype, so decoding N records is a single `frombuffer`
view plus one vectorized unpack of the image field. Field names follow the AIST pages
(docs/etl-formats.md §2.1-2.3); `undefined` and `uncertain` areas are kept in the dtype so the
record size is exact, but are not reported as fields.
"""

from dataclasses import dataclass

import numpy as np

from . import pixels

_M_FIELDS = [
    ("data_number", ">u2"), ("name", "S2"), ("sheet", ">u2"), ("jis", "u1"), ("ebcdic", "u1"),
    ("image_quality", "u1"), ("group_quality", "u1"), ("gender", "u1"), ("age", "u1"),
    ("serial_data_number", ">u4"), ("industry", ">u2"), ("occupation", ">u2"),
    ("gathering_date", ">u2"), ("scan_date", ">u2"), ("pos_y", "u1"), ("pos_x", "u1"),
    ("min_level", "u1"), ("max_level", "u1"), ("undefined", "V4"),
    ("image", "u1", (2016,)), ("uncertain", "V4"),
]


def _g_fields(undefined: int, uncertain: int) -> list:
    return [
        ("sheet", ">u2"), ("jis", ">u2"), ("reading", "S8"), ("serial_data_number", ">u4"),
        ("image_quality", "u1"), ("group_quality", "u1"), ("gender", "u1"), ("age", "u1"),
        ("industry", ">u2"), ("occupation", ">u2"), ("gathering_date", ">u2"),
        ("scan_date", ">u2"), ("pos_x", "u1"), ("pos_y", "u1"), ("undefined", f"V{undefined}"),
        ("image", "u1", (8128,)), ("uncertain", f"V{uncertain}"),
    ]


def _b_fields(uncertain: int) -> list:
    fields = [("sheet", ">u2"), ("jis", ">u2"), ("reading", "S4"), ("image", "u1", (504,))]
    return fields + ([("uncertain", f"V{uncertain}")] if uncertain else [])


@dataclass(frozen=True)
class OctetLayout:
    """One byte-aligned family: the record dtype, where the label and sheet live, the image,
    and the field `etlkit synth` writes its signature into (`formats.SYNTH_SIGNATURE`)."""

    family: str
    dtype: np.dtype
    bits: int
    shape: tuple[int, int]
    synth_mark_field: str
    code_field: str = "jis"

    @property
    def record_size(self) -> int:
        return self.dtype.itemsize

    @property
    def synth_mark_offset(self) -> int:
        """The byte where synth's signature starts: the M and G families' undefined area; the
        B family has none (its fields and image fill the record), so its ASCII reading."""
        return self.dtype.fields[self.synth_mark_field][1]

    @property
    def field_dtype(self) -> np.dtype:
        """Native-endian dtype of the reported header fields (image and padding left out)."""
        return np.dtype([
            (name, self.dtype[name].newbyteorder("=")) for name in self.dtype.names
            if name != "image" and self.dtype[name].kind != "V"
        ])

    def decode(self, raw: np.ndarray, images: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(N, record_size) uint8 -> (header fields, (N, H, W) raw-level images).

        With `images=False` the images come back as (N, 0, 0), and cost nothing.
        """
        rec = np.ascontiguousarray(raw).view(self.dtype).reshape(-1)
        fields = np.empty(rec.shape, self.field_dtype)
        for name in self.field_dtype.names:
            fields[name] = rec[name]
        if not images:
            return fields, np.empty((len(rec), 0, 0), np.uint8)
        return fields, pixels.unpack(rec["image"], self.bits, self.shape)

    def payload(self, raw: np.ndarray) -> np.ndarray:
        """(N, record_size) uint8 -> (N, nbytes) packed image bytes, not unpacked."""
        return np.ascontiguousarray(raw).view(self.dtype).reshape(-1)["image"]

    def encode(self, fields: np.ndarray, images: np.ndarray) -> np.ndarray:
        """The inverse of `decode`; padding is written as zeros."""
        rec = np.zeros(len(images), self.dtype)
        for name in self.field_dtype.names:
            rec[name] = fields[name]
        rec["image"] = pixels.pack(images, self.bits)
        return rec.view(np.uint8).reshape(len(images), self.record_size)


M = OctetLayout("M", np.dtype(_M_FIELDS), 4, (63, 64), "undefined")
B8 = OctetLayout("B", np.dtype(_b_fields(0)), 1, (63, 64), "reading")
B9 = OctetLayout("B", np.dtype(_b_fields(64)), 1, (63, 64), "reading")
G8 = OctetLayout("G", np.dtype(_g_fields(30, 11)), 4, (127, 128), "undefined")
G9 = OctetLayout("G", np.dtype(_g_fields(34, 7)), 4, (127, 128), "undefined")
