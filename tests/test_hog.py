import pickle

import numpy as np
import pytest
from skimage.feature import hog as sk_hog

from cvfeat.features import HOG
from cvfeat.features.hog import orientation_bin, orientation_edges

PARAMS = [
    dict(),
    dict(orientations=7, pixels_per_cell=(6, 5), cells_per_block=(3, 2), block_norm="L1",
         transform_sqrt=True),
    dict(orientations=8, pixels_per_cell=(4, 4), cells_per_block=(1, 1), block_norm="L2"),
    dict(orientations=4, pixels_per_cell=(5, 7), cells_per_block=(2, 2), block_norm="L1-sqrt"),
]
SHAPES = [(64, 64), (37, 53), (32, 48, 3), (37, 53, 3)]


def _images(kind, shape, n=4, seed=0):
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    if kind == "uint8":
        return u8
    if kind == "uint8-smooth":  # integer gradients with many exact ties and zeros
        return (u8 // 64 * 64).astype(np.uint8)
    if kind == "float32":
        return (u8 / 255).astype(np.float32)
    return rng.random((n, *shape))


def _reference(X, **params):
    kw = {k: v for k, v in params.items() if k != "n_jobs"}
    kw.setdefault("cells_per_block", (2, 2))
    return np.stack([
        sk_hog(x, feature_vector=True, channel_axis=-1 if x.ndim == 3 else None, **kw) for x in X
    ])


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["uint8", "uint8-smooth", "float32", "float64"])
def test_parity_with_skimage(kind, shape, params):
    X = _images(kind, shape)
    ours = HOG(**params).fit_transform(X)
    ref = _reference(X, **params)
    assert ours.dtype == ref.dtype
    assert ours.shape == ref.shape
    tol = 1e-4 if ours.dtype == np.float32 else 1e-6
    assert np.abs(ours.astype(np.float64) - ref).max() <= tol


def test_orientation_bins_match_skimage_edges():
    # exact bin edges (0, 45, 90 degrees ...) land in the bin they start, as in skimage
    g_row = np.array([0.0, 1.0, 1.0, 1.0, 0.0, -1.0, -0.0])
    g_col = np.array([1.0, 1.0, 0.0, -1.0, -1.0, 0.0, -1.0])
    bins = orientation_bin(g_row, g_col, 4)  # edges 45, 90, 135, 180
    np.testing.assert_array_equal(bins, [0, 1, 2, 3, 0, 2, 0])
    assert orientation_edges(7)[0] == np.float32(180 / 7)


def test_float32_stays_float32_and_uint8_gives_float64():
    X = _images("uint8", (16, 16))
    assert HOG().fit_transform(X).dtype == np.float64
    assert HOG().fit_transform((X / 255).astype(np.float32)).dtype == np.float32


def test_uint8_and_scaled_float_agree_up_to_epsilon():
    X = _images("uint8", (24, 24))
    a = HOG().fit_transform(X)
    b = HOG().fit_transform(X / 255.0)
    # the 0-255 vs 0-1 scale only changes the normalisation epsilon's weight
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_list_of_equal_size_images_and_chunking():
    from cvfeat.features import _base

    X = _images("uint8", (16, 16), n=70)
    full = HOG(pixels_per_cell=(4, 4)).fit_transform(X)
    listed = HOG(pixels_per_cell=(4, 4)).fit(X).transform(list(X))
    np.testing.assert_array_equal(full, listed)
    old = _base.CHUNK_PIXELS
    try:
        _base.CHUNK_PIXELS = 16 * 16 * 3  # chunks of 3 images, last one partial
        chunked = HOG(pixels_per_cell=(4, 4)).fit_transform(X)
    finally:
        _base.CHUNK_PIXELS = old
    np.testing.assert_array_equal(full, chunked)


def test_n_jobs_gives_identical_output():
    X = _images("uint8", (64, 64), n=300)
    np.testing.assert_array_equal(HOG().fit_transform(X), HOG(n_jobs=2).fit_transform(X))


def test_pickle_round_trip():
    X = _images("float32", (32, 32, 3))
    est = HOG().fit(X)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.transform(X), again.transform(X))


def test_feature_names_and_pandas_output():
    X = _images("uint8", (16, 16))
    est = HOG(pixels_per_cell=(8, 8), cells_per_block=(1, 1), orientations=3).fit(X)
    names = est.get_feature_names_out()
    assert len(names) == est.n_features_out_ == 2 * 2 * 3
    assert names[0] == "hog_b0_0_c0_0_o0" and names[-1] == "hog_b1_1_c0_0_o2"
    df = est.set_output(transform="pandas").transform(X)
    assert list(df.columns) == list(names)


def test_ragged_list_is_refused_with_resize_hint():
    X = [np.zeros((16, 16), np.uint8), np.zeros((20, 16), np.uint8)]
    with pytest.raises(ValueError, match="Resize"):
        HOG().fit(X)


def test_other_size_than_fit_is_refused():
    est = HOG().fit(_images("uint8", (32, 32)))
    with pytest.raises(ValueError, match=r"fitted on 32x32 images but got 40x32.*Resize"):
        est.transform(_images("uint8", (40, 32)))
    with pytest.raises(ValueError, match="fitted on grey images but got RGB"):
        est.transform(_images("uint8", (32, 32, 3)))


def test_too_small_image_and_bad_params():
    with pytest.raises(ValueError, match=r"too small.*at least 16x16"):
        HOG().fit(_images("uint8", (12, 40)))
    with pytest.raises(ValueError, match="pixels_per_cell must be two positive integers"):
        HOG(pixels_per_cell=(0, 8)).fit(_images("uint8", (16, 16)))
    with pytest.raises(ValueError, match="block_norm"):
        HOG(block_norm="L3").fit(_images("uint8", (16, 16)))


def test_unfitted_transform_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        HOG().transform(_images("uint8", (16, 16)))
