"""Loading a user's image: whatever the bytes, one EtlError line naming the file, never one of
Pillow's own exceptions; and `etlkit predict` still predicts the good files of the same
command."""

import os
import re

import pytest
from images import broken_pngs, character_png, dots_png, jpeg_scan_bomb, png_header

from etlkit.errors import EtlError
from train.inference.images import JPEG_SCAN_PASSES, MAX_JPEG_SCANS, load_gray


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
