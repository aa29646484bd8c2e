"""Resize, Grayscale and ColorConvert against OpenCV."""

import pickle

import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from cvfeat import _color as cvfeat_color
from cvfeat.features import ColorHistogram
from cvfeat.preprocessing import ColorConvert, Grayscale, Resize


@pytest.fixture
def rgb_u8():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, 23, 31, 3), dtype=np.uint8)


# -- Grayscale -------------------------------------------------------------------


def test_grayscale_uint8_equals_cv2_exactly():
    rng = np.random.default_rng(1)
    # 2**18 random colours plus the corners of the cube and every grey level.
    cols = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    cube = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], np.uint8)
    cols[0, :8] = cube
    cols[1, :256] = np.arange(256, dtype=np.uint8)[:, None]
    got = Grayscale().fit_transform(cols[None])[0]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, cv2.cvtColor(cols, cv2.COLOR_RGB2GRAY))


def test_grayscale_float():
    rng = np.random.default_rng(2)
    X = rng.random((3, 17, 19, 3), dtype=np.float32)
    X[0, 0, 0] = 1.0
    got = Grayscale().fit_transform(X)
    assert got.dtype == np.float32 and got.shape == (3, 17, 19)
    ref = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in X])
    # Same weights in float32; OpenCV's SIMD code may fuse or reorder the three
    # products, which moves the result by at most an ulp or two (6e-8 near 1).
    np.testing.assert_allclose(got, ref, rtol=0, atol=2.5e-7)
    assert got.max() <= 1.0
    X64 = X.astype(np.float64)
    got64 = Grayscale().fit_transform(X64)
    assert got64.dtype == np.float64
    np.testing.assert_array_equal(
        got64, X64[..., 0] * 0.299 + X64[..., 1] * 0.587 + X64[..., 2] * 0.114
    )
    assert Grayscale().fit_transform(np.ones((1, 2, 2, 3)))[0].max() <= 1.0


def test_grayscale_grey_passes_through_and_ragged(rgb_u8):
    grey = rgb_u8[..., 0]
    out = Grayscale().fit_transform(grey)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, grey)
    imgs = [rgb_u8[0], rgb_u8[1, :10, :7]]
    out = Grayscale().fit_transform(imgs)
    assert isinstance(out, list) and out[1].shape == (10, 7)
    np.testing.assert_array_equal(out[1], cv2.cvtColor(imgs[1], cv2.COLOR_RGB2GRAY))


# -- Resize ----------------------------------------------------------------------


@pytest.mark.parametrize("interpolation,flag", [("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_resize_matches_cv2(rgb_u8, interpolation, flag, dtype):
    X = rgb_u8 if dtype == np.uint8 else (rgb_u8 / 255).astype(dtype)
    for size in [(12, 9), (40, 50)]:
        out = Resize(size=size, interpolation=interpolation).fit_transform(X)
        assert out.dtype == dtype and out.shape == (4, *size, 3)
        for i in range(4):
            ref = cv2.resize(X[i], (size[1], size[0]), interpolation=flag)
            np.testing.assert_array_equal(out[i], ref)
        if dtype != np.uint8:
            assert out.min() >= 0 and out.max() <= 1
    grey = X[..., 0]
    out = Resize(size=(5, 6), interpolation=interpolation).fit_transform(grey)
    assert out.shape == (4, 5, 6)
    np.testing.assert_array_equal(out[2], cv2.resize(np.ascontiguousarray(grey[2]), (6, 5), interpolation=flag))


def test_resize_ragged_list_gives_one_batch():
    rng = np.random.default_rng(3)
    imgs = [rng.random((h, w, 3), dtype=np.float32) for h, w in [(30, 20), (15, 40), (16, 16)]]
    out = Resize(size=(16, 16)).fit_transform(imgs)
    assert isinstance(out, np.ndarray) and out.shape == (3, 16, 16, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[2], imgs[2])
    # the usual fix for ragged data before a fixed-size step
    feats = make_pipeline(Resize(size=(8, 8)), ColorHistogram(bins=2)).fit_transform(imgs)
    assert feats.shape == (3, 8)


@pytest.mark.parametrize("size", [(0, 5), (5,), (5, 5, 5), (2.5, 3), (True, 3), ("a", "b")])
def test_resize_bad_size(rgb_u8, size):
    with pytest.raises(ValueError, match=r"Resize: size must be \(height, width\)"):
        Resize(size=size).fit(rgb_u8)


def test_resize_bad_params_and_input(rgb_u8):
    with pytest.raises(InvalidParameterError, match="'size' parameter"):
        Resize(size=16).fit(rgb_u8)
    with pytest.raises(InvalidParameterError, match="'interpolation' parameter"):
        Resize(size=(4, 4), interpolation="cubic").fit(rgb_u8)
    with pytest.raises(ValueError, match="Resize: expected images of shape"):
        Resize(size=(4, 4)).transform(rgb_u8[0, :, :, 0])


# -- ColorConvert ----------------------------------------------------------------


def test_colorconvert_matches_cv2_and_histogram_conversion(rgb_u8):
    f32 = rgb_u8.astype(np.float32) / 255
    hsv = ColorConvert(space="hsv").fit_transform(rgb_u8)
    assert hsv.dtype == np.float32 and hsv.shape == rgb_u8.shape
    ref = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2HSV) for im in f32])
    # output is scaled to [0, 1]: H / 360. float32 formula of OpenCV; H within an ulp
    # or two of 360 (3.05e-5 degrees).
    np.testing.assert_allclose(hsv[..., 0] * 360, ref[..., 0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(hsv[..., 1:], ref[..., 1:], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ColorConvert(space="hsv").fit_transform(f32), hsv)

    scaled = ColorConvert(space="lab").fit_transform(rgb_u8)
    assert scaled.dtype == np.float32
    assert scaled.min() >= 0 and scaled.max() <= 1  # again an image of the contract
    lab = scaled * np.array([100, 255, 255], np.float32) - np.array([0, 128, 128], np.float32)
    assert lab[..., 0].min() >= 0 and lab[..., 0].max() <= 100 + 1e-4
    assert np.abs(lab[..., 1:]).max() <= 128
    # the scaled output chains into another cvfeat step
    from cvfeat.features import HOG

    assert HOG(pixels_per_cell=(4, 4)).fit_transform(scaled).shape[0] == len(rgb_u8)
    # ColorHistogram bins exactly these values: a one-pixel-per-bin check.
    bins = 5
    est = ColorHistogram(bins=bins, space="lab", normalize=None).fit(rgb_u8)
    lo = np.array([0, -128, -128])
    width = np.array([100, 255, 255]) / bins
    raw = cvfeat_color.convert(rgb_u8, "lab")
    np.testing.assert_allclose(lab, raw, atol=2e-5)
    idx = np.clip(np.floor((raw - lo) / width), 0, bins - 1).astype(int)
    flat = (idx[..., 0] * bins + idx[..., 1]) * bins + idx[..., 2]
    for i in range(len(rgb_u8)):
        np.testing.assert_array_equal(
            est.transform(rgb_u8[i : i + 1])[0], np.bincount(flat[i].ravel(), minlength=bins**3)
        )

    f64 = ColorConvert(space="lab").fit_transform(rgb_u8 / 255)
    assert f64.dtype == np.float64


def test_colorconvert_gray_and_errors(rgb_u8):
    np.testing.assert_array_equal(
        ColorConvert(space="gray").fit_transform(rgb_u8), Grayscale().fit_transform(rgb_u8)
    )
    grey = rgb_u8[..., 0]
    np.testing.assert_array_equal(ColorConvert(space="gray").fit_transform(grey), grey)
    for space in ("hsv", "lab"):
        with pytest.raises(ValueError, match=rf"ColorConvert\(space='{space}'\) needs RGB"):
            ColorConvert(space=space).fit(grey)
        with pytest.raises(ValueError, match="needs RGB"):
            ColorConvert(space=space).transform(grey)
    with pytest.raises(InvalidParameterError, match="'space' parameter"):
        ColorConvert(space="yuv").fit(rgb_u8)
    imgs = [rgb_u8[0], rgb_u8[1, :5, :6]]
    out = ColorConvert(space="lab").fit_transform(imgs)
    assert isinstance(out, list) and out[1].shape == (5, 6, 3)


# -- common behaviour ------------------------------------------------------------

STEPS = [Resize(size=(8, 10)), Grayscale(), ColorConvert(space="hsv"), ColorConvert(space="gray")]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: repr(s))
def test_stateless_steps(rgb_u8, step):
    out = clone(step).transform(rgb_u8)  # requires_fit=False: no fit needed
    fitted = clone(step).fit(rgb_u8)
    assert fitted.image_shape_ == (23, 31, 3)
    np.testing.assert_array_equal(fitted.transform(rgb_u8), out)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(rgb_u8), out)
    with pytest.raises(ValueError, match="fitted on RGB images but got grey"):
        fitted.transform(rgb_u8[..., 0])
    f32 = fitted.transform(rgb_u8.astype(np.float32) / 255)
    assert f32.dtype == np.float32
    tags = step.__sklearn_tags__()
    assert tags.input_tags.three_d_array and not tags.requires_fit


def test_pipeline_set_output_pandas_with_image_steps(rgb_u8):
    pipe = make_pipeline(Resize(size=(16, 16)), ColorConvert(space="lab"), ColorHistogram(bins=2))
    df = pipe.set_output(transform="pandas").fit_transform(rgb_u8)
    assert list(df.columns) == list(pipe[-1].get_feature_names_out())
