"""Tests of SIFTBoW and cvfeat's dense SIFT descriptor."""

import math
import pickle

import cv2
import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from cvfeat.features import SIFTBoW
from cvfeat.features._dense_sift import orientation_weights

# -- helpers ---------------------------------------------------------------------------


def textured(n, size, seed=0, dtype=np.uint8):
    """Blurred noise: plenty of SIFT keypoints and varied dense descriptors."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = cv2.GaussianBlur(rng.random(size), (0, 0), 1.5)
        img = (img - img.min()) / (img.max() - img.min())
        out.append(np.rint(img * 255).astype(np.uint8) if dtype == np.uint8 else img.astype(dtype))
    return np.stack(out)


def ref_origins(length, patch, step):
    """Grid origins as documented: n patches, leftover split, extra pixel at the far end."""
    n = (length - patch) // step + 1
    left = (length - patch - (n - 1) * step) // 2
    return [left + i * step for i in range(n)]


def ref_descriptor(grey, y0, x0, patch):
    """Slow per-pixel dense SIFT of one patch, from the documented definition.

    Orientation from atan2, the two bracketing bins found from the angle, and the
    gradient split by solving g = a u_k + b u_{k+1}, rescaled to sum to |g|.
    """
    h, w = grey.shape
    cell = patch // 4

    def at(y, x):
        return grey[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]

    hist = np.zeros((4, 4, 8))
    for y in range(y0, y0 + patch):
        for x in range(x0, x0 + patch):
            gx = at(y, x + 1) - at(y, x - 1)
            gy = at(y + 1, x) - at(y - 1, x)
            mag = math.hypot(gx, gy)
            if mag == 0:
                continue
            theta = math.atan2(gy, gx) % (2 * math.pi)
            k = int(theta // (math.pi / 4)) % 8
            k1 = (k + 1) % 8
            basis = [
                [math.cos(k * math.pi / 4), math.cos(k1 * math.pi / 4)],
                [math.sin(k * math.pi / 4), math.sin(k1 * math.pi / 4)],
            ]
            a, b = np.linalg.solve(basis, [gx, gy])
            a, b = max(a, 0.0), max(b, 0.0)  # -1e-17 on a bin boundary
            scale = mag / (a + b)
            i, j = (y - y0) // cell, (x - x0) // cell
            hist[i, j, k] += a * scale
            hist[i, j, k1] += b * scale
    d = hist.ravel()
    if np.linalg.norm(d) == 0:
        return d
    d = np.minimum(d / np.linalg.norm(d), 0.2)
    return d / np.linalg.norm(d)


# -- dense descriptor ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, shape, patch, step",
    [("float64", (21, 19), 8, 4), ("uint8-rgb", (20, 20, 3), 8, 5), ("float32", (12, 17), 12, 3)],
)
def test_dense_matches_slow_reference(kind, shape, patch, step):
    rng = np.random.default_rng(1)
    if kind == "uint8-rgb":
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        f = img.astype(np.float64) / 255
        grey = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    else:
        img = rng.random(shape).astype(kind)
        grey = img.astype(np.float64)
    desc = SIFTBoW(patch_size=patch, step=step).dense_descriptors(img[None])
    oy, ox = ref_origins(shape[0], patch, step), ref_origins(shape[1], patch, step)
    assert desc.shape == (1, len(oy) * len(ox), 128)
    assert desc.dtype == (np.float32 if kind == "float32" else np.float64)
    expected = np.array([ref_descriptor(grey, y, x, patch) for y in oy for x in ox])
    tol = 1e-5 if kind == "float32" else 1e-12
    np.testing.assert_allclose(desc[0], expected, atol=tol, rtol=0)
    assert np.abs(expected).sum() > 0


def test_orientation_split_close_to_linear_interpolation():
    # a linear ramp has the same gradient (2a, 2b) at every interior pixel
    angles = np.deg2rad(np.arange(0, 360, 1.7))
    yy, xx = np.mgrid[0:3, 0:3].astype(np.float64)
    ramps = np.cos(angles)[:, None, None] * xx + np.sin(angles)[:, None, None] * yy
    w = orientation_weights(ramps)[:, 1, 1]  # (n_angles, 8)
    bins = np.rad2deg(angles) / 45
    linear = np.zeros_like(w)
    lo = np.floor(bins).astype(int) % 8
    frac = bins - np.floor(bins)
    linear[np.arange(len(w)), lo] += 2 * (1 - frac)
    linear[np.arange(len(w)), (lo + 1) % 8] += 2 * frac
    np.testing.assert_allclose(w.sum(axis=1), 2.0, rtol=1e-12)  # sums to |g|
    assert np.abs(w - linear).max() <= 2 * 0.0103
    assert np.abs(w - linear).max() > 2 * 0.005  # not linear in angle: the documented bound


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("colour", [False, True])
def test_constant_image_gives_zero_descriptors(dtype, colour):
    shape = (2, 20, 24, 3) if colour else (2, 20, 24)
    value = 77 if dtype == np.uint8 else 0.3
    X = np.full(shape, value, dtype=dtype)
    desc = SIFTBoW(patch_size=8, step=4).dense_descriptors(X)
    assert desc.shape == (2, 4 * 5, 128)
    assert np.all(desc == 0)


def test_brightness_scale_leaves_descriptors_unchanged():
    X = textured(3, (24, 24), dtype=np.float64) * 0.45
    bow = SIFTBoW(patch_size=8, step=4)
    d1 = bow.dense_descriptors(X)
    d2 = bow.dense_descriptors(X * 2)
    d3 = bow.dense_descriptors(X * 1.7)
    np.testing.assert_allclose(d2, d1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(d3, d1, rtol=0, atol=1e-12)
    assert np.allclose(np.linalg.norm(d1, axis=-1), 1.0)


def test_rotated_edge_moves_energy_to_the_rotated_bin():
    img = np.zeros((16, 16))
    img[:, 8:] = 1.0  # dark left, bright right: gradient along +x (bin 0)
    bow = SIFTBoW(patch_size=16, step=8)
    d = bow.dense_descriptors(img[None])[0, 0].reshape(16, 8)
    assert d[:, 0].sum() > 0 and np.all(d[:, 1:] == 0)
    # np.rot90 turns the picture a quarter counter-clockwise: bright on top, gradient
    # along -y, i.e. 270 degrees with y pointing down (bin 6)
    r = bow.dense_descriptors(np.rot90(img)[None])[0, 0].reshape(16, 8)
    assert r[:, 6].sum() > 0 and np.all(np.delete(r, 6, axis=1) == 0)


def test_rot90_permutes_cells_and_bins():
    # sizes with (length - patch) divisible by step: the grid maps onto itself
    img = textured(1, (24, 32), seed=3, dtype=np.float64)[0]
    bow = SIFTBoW(patch_size=8, step=4)
    ny, nx = 5, 7
    d = bow.dense_descriptors(img[None])[0].reshape(ny, nx, 4, 4, 8)
    r = bow.dense_descriptors(np.rot90(img)[None].copy())[0].reshape(nx, ny, 4, 4, 8)
    expected = np.rot90(np.rot90(d, axes=(0, 1)), axes=(2, 3))  # patches and cells
    expected = np.roll(expected, -2, axis=-1)  # orientation - 90 degrees: bin o <- o + 2
    np.testing.assert_allclose(r, expected, rtol=0, atol=1e-12)


def test_float32_descriptors_close_to_float64():
    X = textured(2, (24, 24), dtype=np.float64)
    bow = SIFTBoW(patch_size=8, step=4)
    d64 = bow.dense_descriptors(X)
    d32 = bow.dense_descriptors(X.astype(np.float32))
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, d64, atol=1e-5)


# -- bag of words ------------------------------------------------------------------


@pytest.fixture(scope="module")
def X_train():
    return textured(6, (32, 32))


def brute_force_histograms(bow, X, encoding):
    """Unnormalised histograms from the descriptors, computed without the encoder."""
    desc = bow.dense_descriptors(X)
    d2 = ((desc[:, :, None, :] - bow.codebook_[None, None]) ** 2).sum(-1)
    if encoding == "hard":
        return np.stack([np.bincount(a, minlength=bow.n_words) for a in d2.argmin(-1)])
    e = np.exp(-bow.beta_ * (d2 - d2.min(-1, keepdims=True)))
    return (e / e.sum(-1, keepdims=True)).sum(1)


@pytest.mark.parametrize("encoding", ["hard", "soft"])
@pytest.mark.parametrize("normalize", ["l1", "l2", "power"])
def test_encoding_and_normalisation(X_train, encoding, normalize):
    bow = SIFTBoW(n_words=8, patch_size=8, step=6, encoding=encoding, normalize=normalize,
                  random_state=0).fit(X_train)
    F = bow.transform(X_train)
    assert F.shape == (6, 8) and F.dtype == np.float64
    h = brute_force_histograms(bow, X_train, encoding)
    if normalize == "power":
        h = np.sqrt(h)
    order = 1 if normalize == "l1" else 2
    np.testing.assert_allclose(F, h / np.linalg.norm(h, ord=order, axis=1, keepdims=True),
                               atol=1e-12)


def test_beta_is_half_inverse_median_squared_distance(X_train):
    bow = SIFTBoW(n_words=8, patch_size=8, step=6, encoding="soft", max_descriptors=None,
                  random_state=0).fit(X_train)
    desc = bow.dense_descriptors(X_train).reshape(-1, 128)
    d2 = ((desc[:, None] - bow.codebook_[None]) ** 2).sum(-1).min(1)
    assert bow.beta_ == pytest.approx(1 / (2 * np.median(d2[d2 > 1e-20])), rel=1e-9)
    fixed = SIFTBoW(n_words=8, patch_size=8, step=6, soft_beta=3.0, random_state=0).fit(X_train)
    assert fixed.beta_ == 3.0


def test_codebook_shape_and_feature_names(X_train):
    bow = SIFTBoW(n_words=8, random_state=0).fit(X_train)
    assert bow.codebook_.shape == (8, 128) and bow.codebook_.dtype == np.float64
    assert bow.n_features_out_ == 8
    assert list(bow.get_feature_names_out()) == [f"siftbow_word{i}" for i in range(8)]


def test_determinism(X_train):
    def run(seed, cap):
        bow = SIFTBoW(n_words=8, patch_size=8, step=4, max_descriptors=cap, random_state=seed)
        return bow.fit(X_train), bow.transform(X_train)

    (a, Fa), (b, Fb) = run(0, 40), run(0, 40)
    np.testing.assert_array_equal(a.codebook_, b.codebook_)
    np.testing.assert_array_equal(Fa, Fb)
    c, _ = run(1, 40)
    assert not np.array_equal(a.codebook_, c.codebook_)


def test_max_descriptors_subsample_changes_with_seed(X_train):
    # 6 images x 49 patches = 294 descriptors; sampling 20 of them differs per seed,
    # while using all of them leaves only the k-means seed
    full = SIFTBoW(n_words=8, patch_size=8, step=4, max_descriptors=None, random_state=0)
    capped = SIFTBoW(n_words=8, patch_size=8, step=4, max_descriptors=20, random_state=0)
    assert not np.array_equal(full.fit(X_train).codebook_, capped.fit(X_train).codebook_)


def test_pickle_round_trip(X_train):
    bow = SIFTBoW(n_words=8, encoding="soft", random_state=0).fit(X_train)
    again = pickle.loads(pickle.dumps(bow))
    np.testing.assert_array_equal(again.codebook_, bow.codebook_)
    np.testing.assert_array_equal(again.transform(X_train), bow.transform(X_train))


def test_ragged_list(X_train):
    bow = SIFTBoW(n_words=8, random_state=0).fit(X_train)
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(16, 16), (24, 40), (33, 17)]]
    F = bow.transform(imgs)
    assert F.shape == (3, 8)
    for i, img in enumerate(imgs):
        np.testing.assert_array_equal(F[i], bow.transform(img[None])[0])
    fitted = SIFTBoW(n_words=4, random_state=0).fit(imgs)  # fit accepts ragged lists too
    assert fitted.transform(imgs).shape == (3, 4)


def test_float32_stays_float32(X_train):
    X32 = (X_train / 255).astype(np.float32)
    for mode in ["dense", "keypoints"]:
        bow = SIFTBoW(mode=mode, n_words=8, encoding="soft", random_state=0).fit(X32)
        assert bow.transform(X32).dtype == np.float32
        assert bow.transform(X_train).dtype == np.float64


def test_n_jobs_does_not_change_the_result(X_train, monkeypatch):
    import cvfeat.features._base as base

    monkeypatch.setattr(base, "CHUNK_PIXELS", 2 * 32 * 32)  # 3 chunks of 2 images
    imgs = list(X_train[:3]) + [X_train[3, :20], X_train[4, :, :24]]  # ragged too
    for X in (X_train, imgs):
        kw = dict(n_words=8, patch_size=8, step=4, max_descriptors=50, random_state=0)
        one = SIFTBoW(n_jobs=1, **kw).fit(X)
        two = SIFTBoW(n_jobs=2, **kw).fit(X)
        np.testing.assert_array_equal(one.codebook_, two.codebook_)
        np.testing.assert_array_equal(one.transform(X), two.transform(X))


# -- keypoint mode -----------------------------------------------------------------


def test_keypoints_textured_image_gives_nonzero_histogram():
    X = textured(4, (48, 48))
    bow = SIFTBoW(mode="keypoints", n_words=8, random_state=0).fit(X)
    F = bow.transform(X)
    assert F.shape == (4, 8)
    assert np.all(np.linalg.norm(F, axis=1) == pytest.approx(1.0))
    # float input is scaled by 255 and rounded for OpenCV: the same uint8 image
    np.testing.assert_allclose(bow.transform(X / 255.0), F, atol=1e-12)


@pytest.mark.parametrize("normalize", ["l1", "l2", "power"])
@pytest.mark.parametrize("encoding", ["hard", "soft"])
def test_keypoints_constant_image_gives_zero_histogram(normalize, encoding):
    bow = SIFTBoW(mode="keypoints", n_words=8, encoding=encoding, normalize=normalize,
                  random_state=0).fit(textured(3, (48, 48)))
    flat = np.full((2, 40, 40), 128, dtype=np.uint8)
    assert len(cv2.SIFT_create().detect(flat[0], None)) == 0
    F = bow.transform(flat)
    assert np.all(F == 0)


def test_keypoint_histogram_matches_opencv_descriptors():
    X = textured(3, (40, 40), seed=2)
    bow = SIFTBoW(mode="keypoints", n_words=8, normalize="l1", random_state=0).fit(X)
    sift = cv2.SIFT_create()
    for img in X:
        desc = sift.detectAndCompute(img, None)[1].astype(np.float64)
        u = np.minimum(desc / np.linalg.norm(desc, axis=1, keepdims=True), 0.2)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        d2 = ((u[:, None] - bow.codebook_[None]) ** 2).sum(-1)
        counts = np.bincount(d2.argmin(1), minlength=8)
        np.testing.assert_allclose(bow.transform(img[None])[0], counts / counts.sum(),
                                   atol=1e-12)
    # words are means of unit-length descriptors
    assert np.all(np.linalg.norm(bow.codebook_, axis=1) <= 1 + 1e-9)


# -- errors ------------------------------------------------------------------------


def test_error_image_smaller_than_a_patch():
    with pytest.raises(ValueError, match=r"images are 12x20 pixels .* at least 16x16"):
        SIFTBoW(n_words=2).fit(np.zeros((3, 12, 20), np.uint8))
    bow = SIFTBoW(n_words=2, patch_size=8, random_state=0).fit(textured(2, (16, 16)))
    imgs = [np.zeros((16, 16), np.uint8), np.zeros((8, 7), np.uint8)]
    with pytest.raises(ValueError, match=r"image 1 is 8x7 pixels .* at least 8x8"):
        bow.transform(imgs)
    with pytest.raises(ValueError, match=r"at least 16x16"):
        SIFTBoW().dense_descriptors(np.zeros((1, 15, 30)))


def test_error_too_few_descriptors():
    X = textured(2, (16, 16))  # one patch each: 2 descriptors
    with pytest.raises(ValueError, match=r"found only 2 descriptors .* n_words=8 .* step"):
        SIFTBoW(n_words=8).fit(X)
    flat = np.full((2, 32, 32), 9, np.uint8)
    with pytest.raises(ValueError, match=r"found only 0 descriptors .*mode='dense'"):
        SIFTBoW(mode="keypoints", n_words=8).fit(flat)
    with pytest.raises(ValueError, match=r"max_descriptors=4 is smaller than n_words=8"):
        SIFTBoW(n_words=8, max_descriptors=4).fit(textured(2, (32, 32)))


def test_error_bad_parameters():
    X = textured(2, (32, 32))
    with pytest.raises(InvalidParameterError, match=r"'mode' parameter of SIFTBoW .*'dense'.*Got 'grid'"):
        SIFTBoW(mode="grid").fit(X)
    with pytest.raises(InvalidParameterError, match=r"'encoding' parameter"):
        SIFTBoW(encoding="fisher").fit(X)
    with pytest.raises(ValueError, match=r"patch_size must be a multiple of 4 .*got 10"):
        SIFTBoW(n_words=2, patch_size=10).fit(X)


def test_transform_checks_colour_mode(X_train):
    bow = SIFTBoW(n_words=8, random_state=0).fit(X_train)
    with pytest.raises(ValueError, match="fitted on grey images but got RGB"):
        bow.transform(np.zeros((1, 32, 32, 3), np.uint8))
