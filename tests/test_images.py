"""Loading a user's image: whatever the bytes, one EtlError line naming the file, never one of
Pillow's own exceptions; and `etlkit predict` still predicts the good files of the same
command."""

import pytest
from images import broken_pngs, png_header

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
