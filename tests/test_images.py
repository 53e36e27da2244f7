"""Loading a user's image: whatever the bytes, one EtlError line naming the file, never one of
Pillow's own exceptions; and `etlkit predict` still predicts the good files of the same
command."""

import os

import pytest
from images import broken_pngs, character_png, png_header

from etlkit.errors import EtlError
from train.inference.images import load_gray


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
