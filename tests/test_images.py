"""Loading a user's image: whatever the bytes, one EtlError line naming the file, never one of
Pillow's own exceptions; and `etlkit predict` still predicts the good files of the same
command."""

import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
from images import (
    broken_pngs,
    character_jpeg,
    character_png,
    chunk,
    dots_png,
    jpeg_scan_bomb,
    png_header,
)
from PIL import Image

from etlkit.errors import EtlError
from train.inference.images import (
    JPEG_SCAN_PASSES,
    MAX_JPEG_SCANS,
    Framing,
    load_gray,
    to_input,
)


@pytest.mark.parametrize("index", range(4))
def test_hostile_chunks_are_one_error_line(index, tmp_path):
    path = tmp_path / f"hostile-{index}.png"
    path.write_bytes(broken_pngs()[index])
    for source in (path, path.read_bytes()):
        with pytest.raises(EtlError) as caught:
            load_gray(source, path)
        message = str(caught.value)
        assert message.startswith(f"{path}: unreadable image (ValueError: ") and "\n" not in message


def test_a_pixel_bound_is_checked_before_decoding():
    with pytest.raises(EtlError, match="upload: 5000×5000 pixels, more than the 1,000,000"):
        load_gray(png_header(5000, 5000), "upload", max_pixels=1000 * 1000)


def test_every_single_flipped_byte_of_a_png_is_refused(tmp_path):
    """Pillow does not check the image data's CRC, so a flipped pixel byte used to be decoded
    and classified; now every chunk's CRC is checked, whichever byte is flipped."""
    good = character_png()
    assert load_gray(good).shape == (40, 40)
    idat = good.index(b"IDAT")
    for at in range(len(good)):
        bad = bytearray(good)
        bad[at] ^= 0x01
        with pytest.raises(EtlError) as caught:
            load_gray(bytes(bad), "upload.png")
        assert str(caught.value).startswith("upload.png: ") and "\n" not in str(caught.value)
        if idat + 4 <= at < len(good) - 12:  # inside the pixel data
            assert str(caught.value) == (f"upload.png: corrupt PNG: the IDAT chunk at byte "
                                         f"{idat - 4} fails its CRC check")
    with pytest.raises(EtlError, match="upload.png: PNG cut off at byte"):
        load_gray(good[:-12], "upload.png")


def _with_chunk(png: bytes, kind: bytes, body: bytes, after: str = "IHDR") -> bytes:
    """`png` with a chunk (valid CRC) inserted after its IHDR, after its first IDAT, or at its
    start."""
    idat = png.index(b"IDAT") - 4
    at = {"IHDR": 8 + 25, "signature": 8,
          "IDAT": idat + 12 + int.from_bytes(png[idat:idat + 4], "big")}[after]
    return png[:at] + chunk(kind, body) + png[at:]


def _with_ihdr(png: bytes, **fields) -> bytes:
    """`png` with IHDR fields changed (width, height, depth, colour, compression, filtering,
    interlace) and its CRC recomputed."""
    names = ("width", "height", "depth", "colour", "compression", "filtering", "interlace")
    values = dict(zip(names, struct.unpack(">IIBBBBB", png[16:29]), strict=True)) | fields
    return png[:8] + chunk(b"IHDR", struct.pack(">IIBBBBB", *values.values())) + png[33:]


@pytest.mark.parametrize("edit, problem", [
    (lambda p: _with_chunk(p, b"ABCD", b"xx"),
     "an unknown critical chunk ABCD (the chunk at byte 33)"),
    (lambda p: _with_chunk(p, b"PLTE", b"\0\0\0"), "a palette (PLTE) in a gray image"),
    (lambda p: _with_chunk(p, b"IHDR", p[16:29]), "a second IHDR chunk (the chunk at byte 33)"),
    (lambda p: _with_chunk(p, b"\0\x01\x02\x03", b"xx"),
     "a chunk type 00010203 that is not four letters"),
    (lambda p: _with_chunk(p, b"tEXt", b"k\0v", after="signature"),
     "its first chunk is tEXt, not IHDR (the chunk at byte 8)"),
    (lambda p: _with_ihdr(p, width=0), "an IHDR size of 0×40 pixels (the chunk at byte 8)"),
    # palettes: two, one after the image data, one of 7 bytes, none in a palette image
    (lambda p: _with_chunk(_with_chunk(_with_ihdr(p, colour=2), b"PLTE", b"\0" * 3), b"PLTE",
                           b"\0" * 3), "a second PLTE chunk"),
    (lambda p: _with_chunk(_with_ihdr(p, colour=2), b"PLTE", b"\0" * 3, after="IDAT"),
     "a PLTE after the image data"),
    (lambda p: _with_chunk(_with_ihdr(p, colour=3), b"PLTE", b"\0" * 7),
     "a PLTE of 7 bytes (3 a colour, 1 to 256 colours)"),
    (lambda p: _with_ihdr(p, colour=3), "a palette image without a PLTE before its image data"),
    (lambda p: _with_chunk(_with_chunk(p, b"IDAT", b"", after="IDAT"), b"tEXt", b"k\0v",
                           after="IDAT"), "IDAT chunks that are not consecutive"),
    (lambda p: _with_ihdr(p, depth=3), "an IHDR bit depth 3 with colour type 0"),
    (lambda p: _with_ihdr(p, colour=5), "an IHDR bit depth 8 with colour type 5"),
    (lambda p: _with_ihdr(p, compression=5),
     "IHDR compression 5, filter 0, interlace 0 (the specification defines 0, 0, and 0 or 1)"),
])
def test_a_png_against_the_specifications_rules_is_refused(edit, problem):
    """Pillow decodes these (every CRC valid), but the PNG specification makes a decoder
    refuse them, as libpng does (hostile pass 13, F1 and F2: a zero width was called 'not a
    PNG or JPEG image')."""
    with pytest.raises(EtlError) as caught:
        load_gray(edit(character_png()), "upload.png")
    assert str(caught.value).startswith("upload.png: corrupt PNG: ")
    assert problem in str(caught.value)


def test_chunks_a_decoder_may_skip_are_read_past():
    good = load_gray(character_png())
    for kind in (b"prVt", b"tEXt"):  # an unknown ancillary chunk, a known one
        np.testing.assert_array_equal(
            load_gray(_with_chunk(character_png(), kind, b"comment\0x")), good)
    palette = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(character_png())))).convert("P").save(
        palette, "PNG")
    np.testing.assert_array_equal(load_gray(palette.getvalue()), good)


def _gray_png(image: np.ndarray, rows_kept: int | None = None, interlace: bool = False,
              cut: int = 0) -> bytes:
    """A gray 8-bit PNG written by hand: its first `rows_kept` rows only, Adam7-interlaced,
    or its zlib stream's last `cut` bytes dropped; every CRC valid."""
    height, width = image.shape
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2)) if interlace else ((0, 0, 1, 1),)
    raw = b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in passes
                   for row in image[y0::dy, x0::dx] if row.size)
    if rows_kept is not None:
        raw = raw[:rows_kept * (width + 1)]
    stream = zlib.compress(raw)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, int(interlace)))
            + chunk(b"IDAT", stream[:len(stream) - cut]) + chunk(b"IEND", b""))


def test_png_image_data_short_of_its_header_is_refused_and_interlaced_data_is_read():
    """Pillow filled rows the image data lacks with zeros, read as a bar of ink, and the
    answer changed (hostile pass 14, N3); an interlaced PNG, whose data is shorter per row
    than a plain one's in places, is still read whole."""
    page = np.full((64, 61), 255, np.uint8)
    page[10:50, 28:33] = 0
    np.testing.assert_array_equal(load_gray(_gray_png(page)), page)
    np.testing.assert_array_equal(load_gray(_gray_png(page, interlace=True)), page)
    for odd in ((5, 3), (1, 1), (9, 2)):  # sides that leave some Adam7 passes empty
        np.testing.assert_array_equal(load_gray(_gray_png(page[:odd[0], :odd[1]],
                                                          interlace=True)),
                                      page[:odd[0], :odd[1]])
    with pytest.raises(EtlError, match=re.escape(
            "upload.png: corrupt PNG: its image data inflates to 2,480 of the 3,968 bytes its "
            "IHDR calls for (rows missing)")):
        load_gray(_gray_png(page, rows_kept=40), "upload.png")
    with pytest.raises(EtlError, match="upload.png: corrupt PNG: its image data's zlib stream "
                                       "is cut short"):
        load_gray(_gray_png(page, cut=4), "upload.png")  # no Adler-32


def test_an_image_of_too_little_contrast_says_so_rather_than_one_flat_colour():
    """Levels 0 and 3 were called 'one flat colour' (hostile pass 15)."""
    faint = np.zeros((40, 40), np.uint8)
    faint[10:30, 18:22] = 3
    with pytest.raises(EtlError, match=re.escape(
            "upload.png: no ink found (its gray levels span only 0 to 3 of 255: too little "
            "contrast to tell ink from paper)")):
        to_input(load_gray(_gray_png(faint)), Framing(0.7, None), "upload.png")
    with pytest.raises(EtlError, match=re.escape("upload.png: no ink found (the image is one "
                                                 "flat colour)")):
        to_input(load_gray(_gray_png(faint * 0)), Framing(0.7, None), "upload.png")


def test_a_jpeg_whose_header_pillow_cannot_read_is_called_a_corrupt_jpeg():
    jpeg = bytearray(character_jpeg())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 7] = b"\0\0"  # a height of 0
    with pytest.raises(EtlError, match="^upload.jpg: corrupt JPEG: Pillow cannot read its "
                                       "header$"):
        load_gray(bytes(jpeg), "upload.jpg")


def test_a_device_is_not_an_image(tmp_path):
    link = tmp_path / "zero.png"
    os.symlink("/dev/zero", link)
    with pytest.raises(EtlError, match=f"{link}: not a regular file"):
        load_gray(link)


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding():
    """Each scan of a progressive JPEG decodes every pixel again and Pillow sets no limit: the
    hostile pass's 4096×4096 file of 1,006 scans (353 KB) took 50 s of CPU per decode."""
    assert load_gray(jpeg_scan_bomb(64, MAX_JPEG_SCANS)).shape == (64, 64)
    with pytest.raises(EtlError, match=re.escape(
            f"upload.jpg: a JPEG of 1,006 scans, more than the {MAX_JPEG_SCANS} allowed at "
            "64×64 pixels (each scan decodes every pixel again)")):
        load_gray(jpeg_scan_bomb(64, 1006), "upload.jpg")
    # the largest image allowed may have fewer: JPEG_SCAN_PASSES
    largest = 128 * 128
    assert load_gray(jpeg_scan_bomb(128, JPEG_SCAN_PASSES), max_pixels=largest).shape == (128, 128)
    with pytest.raises(EtlError, match=f"{JPEG_SCAN_PASSES + 1} scans, more than the "
                                       f"{JPEG_SCAN_PASSES} allowed at 128×128"):
        load_gray(jpeg_scan_bomb(128, JPEG_SCAN_PASSES + 1), "upload.jpg", max_pixels=largest)


def test_ink_averaged_away_by_the_reduction_is_named_as_such():
    """An image above WORK_SIDE is box-reduced on decoding: 1-pixel dots then fade below the
    ink threshold, and the image is not one flat colour, so the message says what happened.
    A 10-pixel dot on the same canvas survives the reduction and is read."""
    with pytest.raises(EtlError, match=re.escape(
            "upload.png: no ink left after reducing it from 2100×2100 to 700×700 pixels: too "
            "little ink, if any, to read")):
        load_gray(dots_png(2100, 1), "upload.png")
    assert load_gray(dots_png(2100, 10), "upload.png").shape == (700, 700)
