"""Pack and unpack image payloads at 1, 4 and 6 bits per pixel, whole batches at once.

All ETL images are row-major, top row first, MSB-first: the high nibble of a 4-bit byte is the
left pixel, and 6-bit pixels run four to every three bytes. These are plain numpy shift/mask
operations (measured ~10x faster than a PIL unpacker per record, and 7x faster than a LUT).
"""

import numpy as np


def unpack(payload: np.ndarray, bits: int, shape: tuple[int, int]) -> np.ndarray:
    """(N, nbytes) uint8 packed rows -> (N, H, W) uint8 raw levels."""
    n = payload.shape[0]
    if bits == 4:
        px = _unpack4(payload)
    elif bits == 1:
        px = np.unpackbits(payload, axis=1)
    elif bits == 6:
        px = unpack6(payload)
    else:
        raise ValueError(f"unsupported bit depth {bits}")
    return px[:, : shape[0] * shape[1]].reshape(n, *shape)


def _unpack4(payload: np.ndarray) -> np.ndarray:
    """Nibbles -> pixels with contiguous writes: byte b = hi<<4|lo times 0x1001, shifted right
    by 4, is the little-endian uint16 lo<<8|hi, whose two bytes are the left and right pixels.
    (Writing every other byte instead is ~3x slower.)"""
    wide = np.empty(payload.shape, "<u2")
    np.multiply(payload, 0x1001, out=wide, dtype="<u2")
    wide >>= 4
    return wide.view(np.uint8).reshape(payload.shape[0], -1)


def block_sums4(payload: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """2×2 block sums of 4-bit images straight from their packed bytes: (N, nbytes) uint8 ->
    (N, ceil(H/2), W/2) uint8, as if the image were unpacked and given a blank bottom row when H
    is odd. Each byte holds two horizontal neighbours, so the horizontal pair sum is its two
    nibbles added, and unpacking (4× the bytes) is skipped.
    """
    n, (h, w) = payload.shape[0], shape
    rows = payload[:, : h * w // 2].reshape(n, h, w // 2)
    pairs = (rows >> 4) + (rows & 15)
    out = np.empty((n, (h + 1) // 2, w // 2), np.uint8)
    np.add(pairs[:, 0 : h - 1 : 2], pairs[:, 1:h:2], out=out[:, : h // 2])
    if h % 2:
        out[:, -1] = pairs[:, -1]
    return out


def pack(images: np.ndarray, bits: int) -> np.ndarray:
    """(N, H, W) raw levels -> (N, nbytes) uint8, the inverse of `unpack`."""
    flat = images.reshape(images.shape[0], -1).astype(np.uint8)
    if bits == 4:
        return (flat[:, 0::2] << 4) | flat[:, 1::2]
    if bits == 1:
        return np.packbits(flat, axis=1)
    if bits == 6:
        return pack6(flat)
    raise ValueError(f"unsupported bit depth {bits}")


def unpack6(octets: np.ndarray) -> np.ndarray:
    """(N, 3k) octets -> (N, 4k) six-bit values (ETL-2..5 store everything in 6-bit units)."""
    b = octets.reshape(octets.shape[0], -1, 3)
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    out = np.empty((*b.shape[:2], 4), np.uint8)
    out[..., 0] = b0 >> 2
    out[..., 1] = ((b0 & 3) << 4) | (b1 >> 4)
    out[..., 2] = ((b1 & 15) << 2) | (b2 >> 6)
    out[..., 3] = b2 & 63
    return out.reshape(octets.shape[0], -1)


def pack6(sixbits: np.ndarray) -> np.ndarray:
    """(N, 4k) six-bit values -> (N, 3k) octets, the inverse of `unpack6`."""
    c = sixbits.reshape(sixbits.shape[0], -1, 4).astype(np.uint8)
    out = np.empty((*c.shape[:2], 3), np.uint8)
    out[..., 0] = (c[..., 0] << 2) | (c[..., 1] >> 4)
    out[..., 1] = ((c[..., 1] & 15) << 4) | (c[..., 2] >> 2)
    out[..., 2] = ((c[..., 2] & 3) << 6) | c[..., 3]
    return out.reshape(sixbits.shape[0], -1)
