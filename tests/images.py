"""Image bytes the tests need that no library writes for them."""

import struct
import zlib


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width × height and holds no pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0)) + chunk(b"IEND", b""))
