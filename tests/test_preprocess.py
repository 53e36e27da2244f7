"""64×64 preprocessing and Otsu, against scikit-image and float64 references on real images."""

import numpy as np
import pytest
from skimage.filters import threshold_otsu

import etlkit
from etlkit import preprocess
from etlkit.formats import get
from etlkit.synth import synth

NAMES = ("ETL8G_01", "ETL1C_07", "ETL4C", "ETL8B2C1")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synth("ETL8G", root, writers=1, files=["ETL8G_01"])
    synth("ETL1", root, writers=10, files=["ETL1C_07"])
    synth("ETL4", root, writers=2)
    synth("ETL8B2", root, writers=1, files=["ETL8B2C1"])
    return root


@pytest.fixture(scope="module")
def batches(root):
    return {name: etlkit.read(root / name) for name in NAMES}


def _sized(batch):
    return preprocess.to_size(batch.images, get(batch.dataset).levels)


@pytest.mark.parametrize("name", NAMES)
def test_otsu_equals_scikit_image_on_every_image(batches, name):
    images = _sized(batches[name])
    expected = np.array([threshold_otsu(image) for image in images])
    assert np.array_equal(preprocess.otsu_thresholds(images), expected)
    binary = preprocess.binarize(images)
    assert np.array_equal(binary == 255, images > expected[:, None, None])


@pytest.mark.parametrize("name", NAMES)
def test_prepare_from_raw_records_equals_resize_then_scikit_image_otsu(root, batches, name):
    """The extract path (G images block-summed from packed bytes, Otsu on level sums)."""
    batch = batches[name]
    fmt = get(batch.dataset)
    raw = etlkit.reader.raw_records(root / name, fmt, batch.index)
    gray = _sized(batch)
    assert np.array_equal(preprocess.prepare(fmt, raw, otsu=False), gray)
    expected = [np.where(g > threshold_otsu(g), 255, 0) if g.min() < g.max() else 0 * g
                for g in gray]
    assert np.array_equal(preprocess.prepare(fmt, raw, otsu=True), np.array(expected))


def test_otsu_edge_cases_match_scikit_image():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 64, 64), dtype=np.uint8)
    images[0] = 9  # one value
    images[1] = 0
    images[1, 5, 5] = 255  # two values far apart
    images[2] = rng.integers(100, 102, (64, 64))  # two neighbouring values
    images[3] = rng.integers(250, 256, (64, 64))
    expected = [threshold_otsu(image) for image in images]
    assert preprocess.otsu_thresholds(images).tolist() == expected
    assert not preprocess.binarize(images)[0].any()


def test_128_images_are_area_averaged(batches):
    raw = batches["ETL8G_01"].images
    out = _sized(batches["ETL8G_01"])
    padded = np.zeros((len(raw), 128, 128))
    padded[:, :127] = raw
    mean = padded.reshape(-1, 64, 2, 64, 2).mean(axis=(2, 4))
    assert out.shape == (len(raw), 64, 64) and out.dtype == np.uint8
    assert np.array_equal(out, np.floor(mean * 255 / 15 + 0.5))
    assert out.max() == 255


def test_64x63_gains_a_blank_bottom_row_and_levels_scale_to_255(batches):
    raw = batches["ETL1C_07"].images
    out = _sized(batches["ETL1C_07"])
    assert np.array_equal(out[:, :63], (raw.astype(int) * 17).astype(np.uint8))
    assert not out[:, 63].any()
    binary = _sized(batches["ETL8B2C1"])
    assert set(np.unique(binary).tolist()) == {0, 255}


def test_other_sizes_are_padded_square_and_area_weighted(batches):
    raw = batches["ETL4C"].images  # 76 rows x 72 columns
    out = _sized(batches["ETL4C"])
    assert out.shape == (len(raw), 64, 64)
    # area weighting keeps the mean ink of the padded square image
    padded_mean = raw.sum(axis=(1, 2)) * 17 / (76 * 76)
    assert np.allclose(out.mean(axis=(1, 2)), padded_mean, atol=0.6)
    # the 2 padding columns each side become about 1.7 blank output columns
    assert not out[:, :, 0].any() and not out[:, :, -1].any()
