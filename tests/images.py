"""Image bytes the tests need that no library writes for them."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and a valid CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width × height and holds no pixels (a decompression bomb's header)."""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0)) + chunk(b"IEND", b""))


def character_png() -> bytes:
    """A small valid PNG of one dark stroke on white paper."""
    ink = np.zeros((40, 40), np.uint8)
    ink[8:32, 18:22] = 255
    buffer = io.BytesIO()
    Image.fromarray(255 - ink).save(buffer, "PNG")
    return buffer.getvalue()


def character_jpeg() -> bytes:
    """`character_png`'s stroke as a baseline JPEG."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(character_png())).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def dots_png(side: int, dot: int) -> bytes:
    """A 1-bit PNG, side × side white, with two black dot × dot squares far apart: above
    WORK_SIDE, load_gray's reduction averages small dots away (a few KB for side 2100)."""
    paper = Image.new("1", (side, side), 1)
    for x, y in ((side // 7, side // 5), (5 * side // 7, 4 * side // 5)):
        paper.paste(0, (x, y, x + dot, y + dot))
    buffer = io.BytesIO()
    paper.save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_scan_bomb(side: int, scans: int) -> bytes:
    """A progressive JPEG of a dark bar on white, side × side, whose last scan is repeated until
    it has `scans` scans: valid, small, and each repeat another pass over every pixel."""
    paper = np.full((side, side), 255, np.uint8)
    paper[side // 4 : 3 * side // 4, side // 2 - 1 : side // 2 + 1] = 0
    buffer = io.BytesIO()
    Image.fromarray(paper).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    written = data.count(b"\xff\xda")  # Pillow writes 6 for gray, all before its EOI
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * (scans - written) + b"\xff\xd9"


def broken_pngs() -> list[bytes]:
    """Valid PNGs of a character with one hostile chunk each, found by fuzzing to make Pillow
    raise its own exceptions (ValueError, not OSError): a zTXt and an iCCP chunk that inflate
    to 64 MiB, a pHYs chunk cut short and a truncated tRNS chunk, each with a valid CRC."""
    good = character_png()
    after_header = 8 + 25  # the signature and IHDR
    huge = zlib.compress(b"\0" * (64 << 20), 9)
    hostile = [chunk(b"zTXt", b"k\0\0" + huge), chunk(b"iCCP", b"p\0\0" + huge),
               chunk(b"pHYs", b"\1\2"), chunk(b"tRNS", b"\1")]
    return [good[:after_header] + c + good[after_header:] for c in hostile]
