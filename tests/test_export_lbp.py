"""ONNX export of LBP (cvfeat.export.lbp) against scikit-image and the numpy transform.

Codes must be identical: with one cell per pixel (``grid=(h, w)``) every cell's
histogram is one-hot at the pixel's code, so the graph's codes are read back with an
argmax and compared for equality with ``skimage.feature.local_binary_pattern`` (grey;
colour through OpenCV's ``COLOR_RGB2GRAY`` for uint8) or with ``LBP.codes`` (float
colour, whose grey formula is cvfeat's). Histograms: ``max|onnx - numpy| /
max|numpy|`` over the feature matrix <= 1e-4.
"""

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from skimage.feature import local_binary_pattern
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, UInt8TensorType
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from cvfeat.export import lbp as export_lbp
from cvfeat.features import LBP
from cvfeat.features.lbp import n_codes

REL = 1e-4
TYPES = {np.uint8: UInt8TensorType, np.float32: FloatTensorType, np.float64: DoubleTensorType}
METHODS = ["default", "ror", "uniform", "nri_uniform"]
# (P, R): the usual 8 neighbours at radius 1, a fractional radius (every sample
# interpolated), more points than the 3x3 ring, one point
RINGS = [(8, 1), (8, 2.5), (12, 1.7), (1, 1)]


@pytest.fixture(scope="module", autouse=True)
def _register():
    export_lbp.register()


def convert(est, shape, dtype=np.uint8):
    return convert_sklearn(
        est, initial_types=[("images", TYPES[np.dtype(dtype).type]([None, *shape]))],
        target_opset=18,
    )


def run(est, X):
    onx = convert(est, X.shape[1:], X.dtype)
    assert all(node.domain in ("", "ai.onnx") for node in onx.graph.node)
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": X})[0]
    assert out.dtype == np.float32 and out.shape == (len(X), est.n_features_out_)
    return out


def images(kind, shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    if kind == "uint8":
        return u8
    if kind == "uint8-flat":  # large flat areas: many samples exactly equal to the centre
        return (u8 // 128 * 255).astype(np.uint8)
    if kind == "float32":
        return (u8 / 255).astype(np.float32)
    return rng.random((n, *shape))


@pytest.fixture
def no_feature_names(monkeypatch):
    """skl2onnx asks for the feature names (AttributeError means "none"): with one cell
    per pixel and up to 4096 codes they would be most of a test's time."""

    def no_names(self, input_features=None):
        raise AttributeError("feature names not needed")

    monkeypatch.setattr(LBP, "get_feature_names_out", no_names)


def graph_codes(est_params, X):
    """Per-pixel codes of the graph: one cell per pixel, argmax of its one-hot histogram."""
    h, w = X.shape[1:3]
    est = LBP(**est_params, grid=(h, w)).fit(X)
    hist = run(est, X).reshape(len(X), h, w, n_codes(est.P, est.method))
    np.testing.assert_array_equal(hist.max(axis=-1), 1)  # one code per pixel
    return hist.argmax(axis=-1)


@pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern` to floating-point")
@pytest.mark.usefixtures("no_feature_names")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("P", "R"), RINGS)
@pytest.mark.parametrize("kind", ["uint8", "uint8-flat", "float32", "float64"])
def test_codes_equal_skimage_grey(kind, P, R, method):
    X = images(kind, (13, 17))
    ref = np.stack([local_binary_pattern(x.astype(np.float64), P, R, method) for x in X])
    np.testing.assert_array_equal(graph_codes(dict(P=P, R=R, method=method), X), ref)


@pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern` to floating-point")
@pytest.mark.usefixtures("no_feature_names")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["uint8", "uint8-flat", "float32"])
def test_codes_colour(kind, method):
    X = images(kind, (11, 14, 3))
    params = dict(P=8, R=1.5, method=method)
    got = graph_codes(params, X)
    if kind == "float32":  # cvfeat's float grey formula, whose codes test_lbp checks
        ref = LBP(**params).codes(X)
    else:
        grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) for x in X]
        ref = np.stack([local_binary_pattern(x, 8, 1.5, method) for x in grey])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (32, 48), (37, 53, 3), (32, 48, 3)])
@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_histograms(kind, shape, method):
    X = images(kind, shape)
    est = LBP(P=8, R=2, method=method, grid=(3, 2)).fit(X)
    got, ref = run(est, X), est.transform(X)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= REL


def test_histograms_float64_and_trailing_channel():
    X = images("float64", (37, 53))
    est = LBP(P=16, R=2, method="nri_uniform", grid=(2, 2)).fit(X)
    got, ref = run(est, X), est.transform(X)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= REL
    X1 = images("uint8", (20, 24, 1))
    est = LBP(grid=(2, 2)).fit(X1)
    got, ref = run(est, X1), est.transform(X1)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= REL


def test_fitted_on_ragged_list_exports_at_a_fixed_size():
    rng = np.random.default_rng(4)
    ragged = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(20, 30), (31, 17)]]
    est = LBP(grid=(2, 2)).fit(ragged)
    X = rng.integers(0, 256, (4, 25, 19), dtype=np.uint8)
    got, ref = run(est, X), est.transform(X)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= REL
    with pytest.raises(ValueError, match=r"size must be fixed in the graph.*\[N, H, W"):
        convert_sklearn(est, initial_types=[("images", UInt8TensorType([None, None, None]))],
                        target_opset=18)


def test_to_onnx_lbp_ridge():
    from cvfeat.export import to_onnx

    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (20, 37, 53, 3), dtype=np.uint8)
    y = rng.random(20)
    pipe = make_pipeline(LBP(grid=(2, 2)), Ridge(alpha=0.1)).fit(X, y)
    sess = ort.InferenceSession(to_onnx(pipe, X[:1]).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    pred = sess.run(None, {sess.get_inputs()[0].name: X})[0].ravel()
    ref = pipe.predict(X)
    assert np.abs(pred - ref).max() / np.abs(ref).max() <= REL


def test_input_errors():
    X = images("uint8", (16, 16))
    est = LBP(grid=(4, 4)).fit(X)
    with pytest.raises(ValueError, match=r"fitted on grey images.*\[N, H, W\]"):
        convert(est, (16, 16, 3))
    with pytest.raises(ValueError, match=r"too small for grid=\(4, 4\)"):
        convert(est, (3, 16))
    with pytest.raises(ValueError, match="not an image batch"):
        convert(est, (16, 16, 2))
