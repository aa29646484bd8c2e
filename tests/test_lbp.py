"""LBP: per-pixel codes against scikit-image, grid histograms, estimator behaviour."""

import pickle
import warnings

import cv2
import numpy as np
import pytest
from skimage.feature import local_binary_pattern
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from cvfeat.features import LBP

METHODS = ["default", "ror", "uniform", "nri_uniform"]
N_BINS = {
    "default": lambda P: 2**P,
    "ror": lambda P: 2**P,
    "uniform": lambda P: P + 2,
    "nri_uniform": lambda P: P * (P - 1) + 3,
}


def skimage_codes(images, P, R, method):
    with warnings.catch_warnings():
        # skimage warns about float input; the comparison is the point here.
        warnings.simplefilter("ignore", UserWarning)
        return np.stack([local_binary_pattern(im, P, R, method) for im in images])


def grey_images(kind, shape=(2, 37, 53), seed=0):
    rng = np.random.default_rng(seed)
    if kind == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "uint8_flat":  # few grey levels: many exact ties with the centre
        return rng.integers(0, 3, shape, dtype=np.uint8) * 100
    if kind == "float32_ties":  # ties that survive interpolation
        return (rng.integers(0, 4, shape) / 4).astype(np.float32)
    return rng.random(shape, dtype=np.float32 if kind == "float32" else np.float64)


@pytest.mark.parametrize("kind", ["uint8", "uint8_flat", "float32", "float64", "float32_ties"])
@pytest.mark.parametrize("P,R", [(8, 1), (8, 2.5), (16, 2), (4, 1.5), (12, 3), (6, 0.7), (24, 3)])
def test_codes_equal_skimage(kind, P, R):
    X = grey_images(kind)
    for method in METHODS:
        got = LBP(P=P, R=R, method=method).codes(X)
        ref = skimage_codes(X, P, R, method)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref, err_msg=f"{method}")


def test_codes_small_and_odd_images():
    X = grey_images("uint8", (3, 5, 3), seed=1)
    for P, R in [(1, 1), (3, 4.3), (8, 1)]:
        for method in METHODS:
            got = LBP(P=P, R=R, method=method).codes(X)
            np.testing.assert_array_equal(got, skimage_codes(X, P, R, method))


def test_codes_of_colour_images_use_opencv_grey():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (2, 21, 19, 3), dtype=np.uint8)
    grey = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in X])
    np.testing.assert_array_equal(
        LBP(P=8, R=2).codes(X), skimage_codes(grey, 8, 2, "uniform")
    )
    Xf = X.astype(np.float32) / 255
    greyf = 0.299 * Xf[..., 0] + 0.587 * Xf[..., 1] + 0.114 * Xf[..., 2]  # float32 math
    np.testing.assert_array_equal(LBP(P=8, R=1).codes(Xf), skimage_codes(greyf, 8, 1, "uniform"))


def test_codes_of_ragged_list():
    imgs = [grey_images("uint8", (1, h, w), seed=h)[0] for h, w in [(9, 14), (17, 5)]]
    got = LBP(method="nri_uniform").codes(imgs)
    assert isinstance(got, list)
    for g, im in zip(got, imgs, strict=True):
        np.testing.assert_array_equal(g, local_binary_pattern(im, 8, 1, "nri_uniform"))


def _reference_features(X, P, R, method, grid):
    """Grid histograms from skimage codes, cells at floor(k * size / cells)."""
    gr, gc = grid
    k = N_BINS[method](P)
    out = []
    for codes in skimage_codes(X, P, R, method):
        h, w = codes.shape
        re = [i * h // gr for i in range(gr + 1)]
        ce = [j * w // gc for j in range(gc + 1)]
        feats = []
        for i in range(gr):
            for j in range(gc):
                cell = codes[re[i] : re[i + 1], ce[j] : ce[j + 1]]
                hist, _ = np.histogram(cell, bins=k, range=(0, k))
                feats.append(hist / cell.size)
        out.append(np.concatenate(feats))
    return np.array(out)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (4, 4)])
def test_histograms_match_reference(method, grid):
    X = grey_images("uint8", (3, 37, 53), seed=3)
    P, R = (6, 1) if method in ("default", "ror") else (8, 2)
    est = LBP(P=P, R=R, method=method, grid=grid).fit(X)
    out = est.transform(X)
    assert out.shape == (3, grid[0] * grid[1] * N_BINS[method](P))
    assert est.n_features_out_ == out.shape[1]
    np.testing.assert_allclose(out, _reference_features(X, P, R, method, grid), rtol=1e-12)
    np.testing.assert_allclose(
        out.reshape(3, grid[0] * grid[1], -1).sum(-1), 1, rtol=1e-12
    )  # each cell L1-normalised


def test_histogram_lengths_and_names():
    X = grey_images("uint8", (1, 12, 12))
    for method, n in [("default", 256), ("ror", 256), ("uniform", 10), ("nri_uniform", 59)]:
        assert LBP(method=method).fit(X).n_features_out_ == n
    names = LBP(grid=(2, 2)).fit(X).get_feature_names_out()
    assert len(names) == 40 and names[0] == "lbp_r0c0_0" and names[-1] == "lbp_r1c1_9"


def test_dtypes_and_determinism():
    X = grey_images("uint8", (4, 20, 20), seed=4)
    est = LBP(grid=(2, 2)).fit(X)
    out = est.transform(X)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, clone(est).fit(X).transform(X))
    Xf = X.astype(np.float32) / 255
    out32 = est.transform(Xf)
    assert out32.dtype == np.float32
    ref32 = _reference_features(Xf, 8, 1, "uniform", (2, 2))
    np.testing.assert_allclose(out32, ref32, rtol=1e-6)
    assert est.transform(Xf.astype(np.float64)).dtype == np.float64


def test_ragged_list_n_jobs_and_pickle(monkeypatch):
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(20, 30), (16, 16), (9, 25)]]
    est = LBP(P=8, R=1.5, grid=(2, 2)).fit(imgs)
    out = est.transform(imgs)
    for i, im in enumerate(imgs):
        np.testing.assert_array_equal(out[i], est.transform(im[None])[0])
    np.testing.assert_array_equal(est.set_params(n_jobs=2).transform(imgs), out)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).transform(imgs), out)

    X = rng.integers(0, 256, (7, 16, 16), dtype=np.uint8)
    monkeypatch.setattr("cvfeat.features._base.CHUNK_PIXELS", 2 * 16 * 16)  # 4 chunks
    one = LBP(n_jobs=1).fit(X).transform(X)
    np.testing.assert_array_equal(LBP(n_jobs=2).fit(X).transform(X), one)


def test_set_output_pandas():
    X = grey_images("uint8", (3, 16, 16), seed=6)
    est = LBP(grid=(1, 2)).set_output(transform="pandas").fit(X)
    df = est.transform(X)
    assert list(df.columns) == est.get_feature_names_out().tolist()
    np.testing.assert_array_equal(df.to_numpy(), LBP(grid=(1, 2)).fit(X).transform(X))


def test_bad_input_errors():
    X = grey_images("uint8", (2, 10, 10))
    with pytest.raises(ValueError, match=r"grid must be \(rows, cols\)"):
        LBP(grid=(0, 2)).fit(X)
    with pytest.raises(ValueError, match=r"grid must be \(rows, cols\)"):
        LBP(grid=(2,)).fit(X)
    with pytest.raises(InvalidParameterError, match="'P' parameter"):
        LBP(P=0).fit(X)
    with pytest.raises(InvalidParameterError, match="'R' parameter"):
        LBP(R=0).fit(X)
    with pytest.raises(InvalidParameterError, match="'method' parameter"):
        LBP(method="var").fit(X)
    with pytest.raises(ValueError, match=r"is 10x10 pixels but grid=\(12, 1\).*Resize"):
        LBP(grid=(12, 1)).fit(X)
    est = LBP(grid=(3, 3)).fit(X)
    with pytest.raises(ValueError, match=r"image 1 is 2x9 pixels but grid=\(3, 3\)"):
        est.transform([X[0], X[1][:2, :9]])
    with pytest.raises(ValueError, match="fitted on grey images but got RGB"):
        est.transform(np.zeros((1, 10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"LBP: .*\[0, 1\]"):
        est.transform(X.astype(np.float32))
