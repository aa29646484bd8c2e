"""ColorHistogram and the shared colour conversions (cvfeat._color)."""

import pickle

import cv2
import numpy as np
import pytest
import skimage.color
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from cvfeat import _color
from cvfeat.features import ColorHistogram

RANGES = {
    "rgb": [(0, 1), (0, 1), (0, 1)],
    "hsv": [(0, 360), (0, 1), (0, 1)],
    "lab": [(0, 100), (-128, 127), (-128, 127)],
}
CV2_CODE = {"hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2Lab}


@pytest.fixture
def rgb_u8():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 24, 20, 3), dtype=np.uint8)


def special_colours():
    """Primaries, secondaries, greys, black and white: the branch points of HSV."""
    cols = [
        (0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.5), (1, 0, 0), (0, 1, 0), (0, 0, 1),
        (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 0, 1e-7), (0.2, 0.2, 0.1), (0.1, 0.2, 0.2),
    ]
    return np.array(cols, dtype=np.float32)[None]


def lut_node_colours():
    """Colours on OpenCV's 33**3 RGB->Lab table grid (multiples of 1/32)."""
    g = np.arange(33, dtype=np.float32) / 32
    r, gg, b = np.meshgrid(g, g, g, indexing="ij")
    return np.stack([r, gg, b], -1).reshape(33 * 33, 33, 3)


# -- conversions ---------------------------------------------------------------


def test_hsv_matches_cv2():
    rng = np.random.default_rng(1)
    img = rng.random((64, 64, 3), dtype=np.float32)
    for x in (img, special_colours()):
        ref = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
        got = _color.rgb_to_hsv(x)
        assert got.dtype == np.float32
        # Same float32 formula as OpenCV; H may differ by an ulp or two at ~360
        # (float32 spacing there is 3.05e-5) from a different operation order.
        np.testing.assert_allclose(got[..., 0], ref[..., 0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got[..., 1:], ref[..., 1:], rtol=0, atol=1e-6)
    assert got[..., 0].min() >= 0 and got[..., 0].max() <= 360


def test_lab_matches_cv2_at_its_table_nodes():
    # OpenCV evaluates float RGB->Lab through a 33**3 table (trilinear interpolation,
    # int16 storage with steps of 100/2**14 for L and 1/64 for a, b). At the table
    # nodes the interpolation is exact and two differences from the documented formula
    # remain: (1) the storage rounding, at most half a step; (2) the table is built with
    # the exact CIE constants 841/108, 216/24389 and 24389/27 where the documented
    # formula (and ours) uses 7.787, 0.008856 and 903.3; in the linear (dark) branch,
    # t <= 0.008856, f(t) moves by at most (841/108 - 7.787) * 0.008856, so a = 500 df
    # moves by <= 1.6e-4, b = 200 df by <= 6.6e-5 and L = 903.3 Y by <= 3.3e-5.
    # Between nodes its interpolation error reaches ~0.6, which is why random colours
    # are checked against scikit-image below instead.
    x = lut_node_colours()
    ref = cv2.cvtColor(x, cv2.COLOR_RGB2Lab)
    got = _color.rgb_to_lab(x)
    assert got.dtype == np.float32
    t = 216 / 24389
    df = (841 / 108 - 7.787) * t
    f32 = 1e-5  # float32 evaluation (a few ulps of values up to ~100)
    np.testing.assert_allclose(
        got[..., 0], ref[..., 0], rtol=0, atol=100 / 2**15 + (903.3 - 24389 / 27) * t + f32
    )
    np.testing.assert_allclose(got[..., 1], ref[..., 1], rtol=0, atol=1 / 128 + 500 * df + f32)
    np.testing.assert_allclose(got[..., 2], ref[..., 2], rtol=0, atol=1 / 128 + 200 * df + f32)


def test_lab_matches_skimage_up_to_white_point():
    rng = np.random.default_rng(2)
    x = rng.random((40, 40, 3))
    x[:5] *= 0.03  # dark colours: the linear branches of gamma and f(t)
    got = _color.rgb_to_lab(x)
    ref = skimage.color.rgb2lab(x)  # same matrix and formula, D65 = (0.95047, 1, 1.08883)
    assert got.dtype == np.float64
    # Only the white point differs (OpenCV: 0.950456, 1, 1.088754), a relative change
    # of X and Z by eps_x, eps_z; f = t**(1/3) moves by at most eps/3, so a = 500 dfX
    # moves by <= 500 eps_x / 3 and b = 200 dfZ by <= 200 eps_z / 3. L differs only in
    # the dark branch: 903.3 Y (OpenCV) vs 116 * 7.787 Y = 903.292 Y (skimage).
    eps_x = abs(0.95047 / 0.950456 - 1)
    eps_z = abs(1.08883 / 1.088754 - 1)
    np.testing.assert_allclose(got[..., 0], ref[..., 0], rtol=0, atol=0.008 * 0.008856 + 1e-9)
    np.testing.assert_allclose(got[..., 1], ref[..., 1], rtol=0, atol=500 * eps_x / 3 + 1e-6)
    np.testing.assert_allclose(got[..., 2], ref[..., 2], rtol=0, atol=200 * eps_z / 3 + 1e-6)


def test_uint8_conversion_equals_float32_over_255(rgb_u8):
    f = rgb_u8.astype(np.float32) / 255
    for fn in (_color.rgb_to_hsv, _color.rgb_to_lab):
        np.testing.assert_array_equal(fn(rgb_u8), fn(f))


# -- histograms against np.histogramdd on the cv2-converted image ---------------


def _reference(conv, space, bins, joint):
    """Pixel counts of one converted image (h, w, 3), by numpy's histogram functions."""
    flat = conv.reshape(-1, 3).astype(np.float64)
    if joint:
        h, _ = np.histogramdd(flat, bins=bins, range=RANGES[space])
        return h.ravel()
    return np.concatenate(
        [np.histogram(flat[:, c], bins=bins, range=RANGES[space][c])[0] for c in range(3)]
    )


def _near_edges(conv, space, bins, tol):
    """Number of pixels with a channel value within tol of a bin edge."""
    near = np.zeros(conv.shape[:-1], bool)
    for c, (lo, hi) in enumerate(RANGES[space]):
        edges = np.linspace(lo, hi, bins + 1)[1:-1]
        near |= (np.abs(conv[..., c, None] - edges) <= tol).any(-1)
    return int(near.sum())


@pytest.mark.parametrize("space", ["rgb", "hsv", "lab"])
@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("bins", [3, 8])
def test_histogram_matches_histogramdd(space, joint, bins):
    rng = np.random.default_rng(3)
    if space == "lab":
        # Table-node colours, where cv2's Lab is within 0.008 of the formula.
        nodes = lut_node_colours().reshape(-1, 3)
        X = nodes[rng.integers(0, len(nodes), (4, 30, 30))]
        tol = 0.01
    else:
        X = rng.integers(0, 256, (4, 30, 30, 3), dtype=np.uint8).astype(np.float32) / 255
        tol = 1e-4  # cv2's HSV is within an ulp or two of ours
    got = ColorHistogram(bins=bins, space=space, joint=joint, normalize=None).fit_transform(X)
    for i, img in enumerate(X):
        conv = img if space == "rgb" else cv2.cvtColor(img, CV2_CODE[space])
        ref = _reference(conv, space, bins, joint)
        near = _near_edges(conv, space, bins, tol)
        assert near < 0.05 * img.shape[0] * img.shape[1]
        # A pixel within tol of an edge may fall on the other side in cv2's values:
        # it then moves one count between two bins.
        assert np.abs(got[i] - ref).sum() <= 2 * near, (i, near)
        assert got[i].sum() == img.shape[0] * img.shape[1] * (1 if joint else 3)


def test_histogram_exact_on_colours_away_from_edges():
    # Colours whose converted values are far from every bin edge: counts must be exact.
    rng = np.random.default_rng(4)
    cand = rng.random((4000, 3), dtype=np.float32)
    bins = 6
    for space in ("hsv", "lab"):
        conv = cv2.cvtColor(cand[None], CV2_CODE[space])[0]
        keep = np.ones(len(cand), bool)
        for c, (lo, hi) in enumerate(RANGES[space]):
            edges = np.linspace(lo, hi, bins + 1)
            keep &= (np.abs(conv[:, c, None] - edges) > 1.0 * (hi - lo) / 100).all(-1)
        palette = cand[keep]
        assert len(palette) > 50
        X = palette[rng.integers(0, len(palette), (3, 16, 16))]
        got = ColorHistogram(bins=bins, space=space, normalize=None).fit_transform(X)
        for i, img in enumerate(X):
            ref = _reference(cv2.cvtColor(img, CV2_CODE[space]), space, bins, True)
            np.testing.assert_array_equal(got[i], ref)


def test_top_edge_goes_to_last_bin():
    white = np.ones((1, 4, 4, 3), np.float32)
    h = ColorHistogram(bins=4, space="rgb", joint=False, normalize=None).fit_transform(white)
    np.testing.assert_array_equal(h[0], [0, 0, 0, 16] * 3)
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255  # H = 0, S = 1, V = 1
    hist = ColorHistogram(bins=4, space="hsv", normalize=None).fit(red)
    names = hist.get_feature_names_out()
    row = hist.transform(red)[0]
    assert names[row.argmax()] == "hsv_h0_s3_v3" and row.max() == 16


def test_uint8_and_float32_over_255_give_same_features(rgb_u8):
    f32 = rgb_u8.astype(np.float32) / 255
    for space in ("rgb", "hsv", "lab"):
        for joint in (True, False):
            est = ColorHistogram(bins=5, space=space, joint=joint, normalize=None).fit(rgb_u8)
            np.testing.assert_array_equal(est.transform(rgb_u8), est.transform(f32))
    est = ColorHistogram(bins=5).fit(rgb_u8)
    np.testing.assert_allclose(est.transform(rgb_u8), est.transform(f32), rtol=1e-6)


# -- behaviour ----------------------------------------------------------------


def test_shapes_names_and_normalisation(rgb_u8):
    est = ColorHistogram(bins=8, space="hsv").fit(rgb_u8)
    names = est.get_feature_names_out()
    assert len(names) == est.n_features_out_ == 512
    assert names[3 * 8 + 7] == "hsv_h0_s3_v7" and names[-1] == "hsv_h7_s7_v7"
    np.testing.assert_allclose(est.transform(rgb_u8).sum(axis=1), 1)

    est = ColorHistogram(bins=4, space="lab", joint=False, normalize="l2").fit(rgb_u8)
    assert est.get_feature_names_out().tolist()[:5] == ["lab_l0", "lab_l1", "lab_l2", "lab_l3", "lab_a0"]
    np.testing.assert_allclose(np.linalg.norm(est.transform(rgb_u8), axis=1), 1)

    counts = ColorHistogram(bins=4, space="rgb", normalize=None).fit_transform(rgb_u8)
    np.testing.assert_array_equal(counts.sum(axis=1), 24 * 20)


def test_grey_images():
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (3, 10, 12), dtype=np.uint8)
    X[0, 0, 0] = 255
    est = ColorHistogram(bins=6, space="rgb", normalize=None).fit(X)
    out = est.transform(X)
    assert out.shape == (3, 6)
    assert est.get_feature_names_out().tolist() == [f"gray_i{k}" for k in range(6)]
    for i in range(3):
        ref, _ = np.histogram(X[i] / 255, bins=6, range=(0, 1))
        np.testing.assert_array_equal(out[i], ref)
    for space in ("hsv", "lab"):
        with pytest.raises(ValueError, match=r"space='rgb'.*or pass RGB images"):
            ColorHistogram(space=space).fit(X)


def test_channel_mismatch_and_bad_params(rgb_u8):
    est = ColorHistogram().fit(rgb_u8)
    with pytest.raises(ValueError, match="fitted on RGB images but got grey"):
        est.transform(rgb_u8[..., 0])
    with pytest.raises(InvalidParameterError, match="bins"):
        ColorHistogram(bins=0).fit(rgb_u8)
    with pytest.raises(InvalidParameterError, match="space"):
        ColorHistogram(space="yuv").fit(rgb_u8)
    with pytest.raises(InvalidParameterError, match="normalize"):
        ColorHistogram(normalize="max").fit(rgb_u8)
    with pytest.raises(ValueError, match=r"ColorHistogram: .*\[0, 1\]"):
        est.transform(rgb_u8.astype(np.float32))


def test_ragged_list_and_n_jobs(monkeypatch):
    rng = np.random.default_rng(6)
    imgs = [rng.random((h, w, 3), dtype=np.float32) for h, w in [(10, 12), (17, 9), (8, 8)]]
    est = ColorHistogram(bins=4, space="lab").fit(imgs)
    out = est.transform(imgs)
    assert out.dtype == np.float32 and out.shape == (3, 64)
    for i, img in enumerate(imgs):
        np.testing.assert_array_equal(out[i], est.transform(img[None])[0])
    np.testing.assert_array_equal(est.set_params(n_jobs=2).transform(imgs), out)

    X = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    monkeypatch.setattr("cvfeat.features._base.CHUNK_PIXELS", 2 * 16 * 16)  # 5 chunks
    one = ColorHistogram(n_jobs=1).fit(X).transform(X)
    two = ColorHistogram(n_jobs=2).fit(X).transform(X)
    assert one.dtype == np.float64
    np.testing.assert_array_equal(one, two)


def test_determinism_pickle_and_pandas(rgb_u8):
    est = ColorHistogram(bins=3, space="hsv").fit(rgb_u8)
    out = est.transform(rgb_u8)
    np.testing.assert_array_equal(out, clone(est).fit(rgb_u8).transform(rgb_u8))
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(rgb_u8), out)
    df = ColorHistogram(bins=3).set_output(transform="pandas").fit(rgb_u8).transform(rgb_u8)
    assert list(df.columns) == est.get_feature_names_out().tolist()
    assert df.columns[0] == "hsv_h0_s0_v0"
    np.testing.assert_array_equal(df.to_numpy(), out)
