"""ONNX export of HOG (cvfeat.export.hog) against the numpy transform.

Parity measure: ``max|onnx - numpy| / max|numpy|`` over the whole feature matrix,
<= 1e-4 (float32 graph vs numpy's float64 / float32). The orientation bins are
decided without an angle (sign tests on ``g_col / g_row``); that they agree with
:func:`cvfeat.features.hog.orientation_bin` is tested exhaustively for every integer
gradient pair a uint8 image can produce.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    UInt8TensorType,
)
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from cvfeat.export import hog as export_hog
from cvfeat.features import HOG
from cvfeat.features.hog import orientation_bin, orientation_edges

REL = 1e-4
TYPES = {np.uint8: UInt8TensorType, np.float32: FloatTensorType, np.float64: DoubleTensorType}
# every block norm, transform_sqrt, 4/7/8/9 orientations (8 and 4 have edges at exactly
# 45, 90, 135 degrees), blocks of 1x1 (a bin flip shows at full size), odd cells
PARAMS = [
    dict(),
    dict(orientations=7, pixels_per_cell=(6, 5), cells_per_block=(3, 2), block_norm="L1",
         transform_sqrt=True),
    dict(orientations=8, pixels_per_cell=(4, 4), cells_per_block=(1, 1), block_norm="L2"),
    dict(orientations=4, pixels_per_cell=(5, 7), cells_per_block=(2, 2), block_norm="L1-sqrt"),
]
SHAPES = [(64, 64), (37, 53), (32, 48), (64, 64, 3), (37, 53, 3), (32, 48, 3)]


@pytest.fixture(scope="module", autouse=True)
def _register():
    export_hog.register()


def convert(est, shape, dtype=np.uint8):
    return convert_sklearn(
        est, initial_types=[("images", TYPES[np.dtype(dtype).type]([None, *shape]))],
        target_opset=18,
    )


def run(est, X):
    onx = convert(est, X.shape[1:], X.dtype)
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": X})[0]
    assert out.dtype == np.float32 and out.shape == (len(X), est.n_features_out_)
    return out


def rel_error(est, X):
    got, ref = run(est, X), est.transform(X)
    return np.abs(got - ref.astype(np.float64)).max() / np.abs(ref).max()


def images(kind, shape, n=4, seed=0):
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    if kind == "uint8":
        return u8
    if kind == "uint8-smooth":  # many gradients exactly on 0 / 45 / 90 / 135 degrees, ties
        return (u8 // 64 * 64).astype(np.uint8)
    if kind == "float32":
        return (u8 / 255).astype(np.float32)
    if kind == "float32-random":
        return rng.random((n, *shape), dtype=np.float32)
    return rng.random((n, *shape))  # float64, continuous


def _tie_case(kind, shape, params):
    """Square roots of posterised colours tie two channels' magnitudes exactly; numpy
    breaks those ties by the last-bit rounding of libm's hypot (module notes)."""
    return kind == "uint8-smooth" and len(shape) == 3 and bool(params.get("transform_sqrt"))


PARITY_CASES = [
    (kind, shape, params)
    for kind in ["uint8", "uint8-smooth", "float32"]
    for shape in SHAPES
    for params in PARAMS
    if not _tie_case(kind, shape, params)
]


@pytest.mark.parametrize("kind, shape, params", PARITY_CASES)
def test_parity(kind, shape, params):
    X = images(kind, shape)
    assert rel_error(HOG(**params).fit(X), X) <= REL


@pytest.mark.xfail(strict=True, reason=_tie_case.__doc__)
def test_known_limit_exact_channel_ties_after_sqrt():
    # documents the one case outside the parity claim; strict: passing would mean the
    # limitation is gone and the claim can widen
    params = next(p for p in PARAMS if p.get("transform_sqrt"))
    X = images("uint8-smooth", next(s for s in SHAPES if len(s) == 3))
    assert rel_error(HOG(**params).fit(X), X) <= REL


@pytest.mark.parametrize("kind", ["float32-random", "float64"])
@pytest.mark.parametrize("params", PARAMS[2:])
def test_parity_continuous_float(kind, params):
    X = images(kind, (37, 53), n=3)
    assert rel_error(HOG(**params).fit(X), X) <= REL
    Xc = images(kind, (32, 48, 3), n=3)
    assert rel_error(HOG(**params).fit(Xc), Xc) <= REL


@pytest.mark.parametrize("orientations", [1, 73])
def test_one_bin_and_last_edge_below_180(orientations):
    # 73 orientations: the float32 edge t_73 is just below 180 degrees, so [t_73, 180)
    # is in no bin (numpy drops it); one orientation: no edge at all
    X = images("uint8", (32, 40))
    assert rel_error(HOG(orientations=orientations).fit(X), X) <= REL


def tile_image(g_row, g_col, dtype):
    """Image whose 3x3 tiles have the gradients ``(g_row[i], g_col[i])`` at their centres."""
    side = int(np.ceil(np.sqrt(len(g_row))))
    pad = side * side - len(g_row)
    g_row, g_col = (np.pad(v, (0, pad)).reshape(side, side) for v in (g_row, g_col))
    img = np.zeros((3 * side, 3 * side), dtype)
    img[2::3, 1::3], img[0::3, 1::3] = np.maximum(g_row, 0), np.maximum(-g_row, 0)
    img[1::3, 2::3], img[1::3, 0::3] = np.maximum(g_col, 0), np.maximum(-g_col, 0)
    return img, g_row, g_col


def centre_bins(img, orientations):
    """Bins of the tile centres from the graph (1x1 cells and blocks: one-hot features)."""
    est = HOG(orientations=orientations, pixels_per_cell=(1, 1), cells_per_block=(1, 1),
              block_norm="L1").fit(img[None])
    out = run(est, img[None]).reshape(*img.shape, orientations)[1::3, 1::3]
    return out.argmax(axis=-1), out.max(axis=-1)


@pytest.mark.parametrize("orientations", [5, 7, 8, 9, 12])
def test_float32_gradients_next_to_every_edge(orientations):
    # float32 gradient pairs 0..6 float32 steps from each bin edge direction: numpy
    # (float64 arctan2) resolves them; a float32 test of g_col / g_row <= cot t would
    # misplace 8 to 18 of them for these orientation counts, the graph's float64 test none
    pairs = []
    for t in orientation_edges(orientations)[:-1]:
        c, s = (0.0, 1.0) if t == 90 else (np.cos(np.deg2rad(t)), np.sin(np.deg2rad(t)))
        g_row, g_col = np.float32(s * 0.9 / max(abs(c), s)), np.float32(c * 0.9 / max(abs(c), s))
        step = np.spacing(max(abs(g_row), abs(g_col)))
        for k in range(-6, 7):
            pairs += [(g_row + k * step, g_col), (g_row, g_col + k * step)]
    g_row, g_col = np.array(pairs, dtype=np.float32).T
    img, g_row, g_col = tile_image(np.r_[g_row, -g_row], np.r_[g_col, -g_col], np.float32)
    bins, _ = centre_bins(img, orientations)
    expected = orientation_bin(g_row.astype(np.float64), g_col.astype(np.float64), orientations)
    moving = (g_row != 0) | (g_col != 0)
    np.testing.assert_array_equal(bins[moving], expected[moving])


@pytest.mark.parametrize("orientations", [4, 7, 8, 9, 12])
def test_all_integer_gradient_pairs_match_orientation_bin(orientations, monkeypatch):
    # every gradient pair (g_row, g_col) in [-255, 255]^2 a uint8 image can produce, at
    # the tile centres of one 1533 x 1533 image; each centre's features are
    # mag / (mag + eps) in its bin and 0 elsewhere
    g = np.arange(-255, 256)
    g_row, g_col = (v.ravel() for v in np.meshgrid(g, g, indexing="ij"))
    img, g_row, g_col = tile_image(g_row, g_col, np.uint8)

    # skl2onnx asks for the feature names (an AttributeError means "none"); building
    # 2.3 million x orientations names would take most of this test's time
    def no_names(self, input_features=None):
        raise AttributeError("feature names not needed")

    monkeypatch.setattr(HOG, "get_feature_names_out", no_names)
    bins, peak = centre_bins(img, orientations)
    expected = orientation_bin(g_row.astype(np.float64), g_col.astype(np.float64), orientations)
    moving = (g_row != 0) | (g_col != 0)
    np.testing.assert_array_equal(bins[moving], expected[moving])
    np.testing.assert_allclose(peak[moving], 1, atol=1e-4)
    assert peak[~moving].max() == 0


def test_graph_is_standard_small_and_batch_dynamic():
    X = images("uint8", (64, 64), n=5)
    est = HOG().fit(X)
    onx = convert(est, (64, 64))
    assert {op.domain for op in onx.opset_import} <= {"", "ai.onnx"}
    assert all(node.domain in ("", "ai.onnx") for node in onx.graph.node)
    n_constants = sum(int(np.prod(t.dims)) for t in onx.graph.initializer)
    assert n_constants < 100  # no lookup table
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    one = sess.run(None, {"images": X[:1]})[0]
    five = sess.run(None, {"images": X})[0]
    np.testing.assert_array_equal(one[0], five[0])


def test_uint8_tables_built_in_the_graph(tmp_path):
    # uint8 images: the per-gradient-pair tables (bin, magnitude, colour key) are built in
    # the graph from a few scalars. ONNX Runtime folds them when the session is created
    # (no comparison is left for the calls), and a runtime that does not fold constants
    # computes the same numbers on every call.
    X = images("uint8-smooth", (37, 53, 3))
    est = HOG(pixels_per_cell=(6, 5), orientations=8).fit(X)
    onx = convert(est, X.shape[1:]).SerializeToString()
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    unfolded = ort.InferenceSession(onx, plain, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(unfolded.run(None, {"images": X})[0], run(est, X))
    folded = ort.SessionOptions()
    folded.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    folded.optimized_model_filepath = str(tmp_path / "hog.onnx")
    ort.InferenceSession(onx, folded, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(folded.optimized_model_filepath).graph.node}
    assert "ScatterElements" in ops and not ops & {"LessOrEqual", "Range", "Sqrt", "Div"}


def test_pipeline_with_ridge():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (30, 37, 53, 3), dtype=np.uint8)
    y = rng.random(30)
    pipe = make_pipeline(HOG(pixels_per_cell=(6, 6)), Ridge(alpha=0.1)).fit(X, y)
    onx = convert(pipe, X.shape[1:])
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"images": X})[0].ravel()
    ref = pipe.predict(X)
    assert np.abs(pred - ref).max() / np.abs(ref).max() <= REL


def test_to_onnx_hog_ridge():
    from cvfeat.export import check_parity, to_onnx

    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (25, 48, 40), dtype=np.uint8)
    y = X.reshape(25, -1).mean(axis=1) / 255
    pipe = make_pipeline(HOG(orientations=8), Ridge(alpha=1.0)).fit(X, y)
    onx = to_onnx(pipe, X[:1])
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = sess.run(None, {name: X})[0].ravel()
    ref = pipe.predict(X)
    assert np.abs(pred - ref).max() / np.abs(ref).max() <= REL
    assert check_parity(pipe, onx, X)["max_rel"] <= REL


def test_input_errors():
    X = images("uint8", (32, 32))
    est = HOG().fit(X)
    with pytest.raises(ValueError, match=r"fitted on images of shape \(32, 32, 1\).*\[N, 32, 32\]"):
        convert(est, (32, 40))
    with pytest.raises(ValueError, match=r"fitted on images of shape.*\[N, 32, 32\]"):
        convert(est, (32, 32, 3))
    with pytest.raises(ValueError, match="not an image batch"):
        convert(est, (32, 32, 2))
    with pytest.raises(TypeError, match="Int64TensorType is not supported.*UInt8TensorType"):
        convert_sklearn(est, initial_types=[("images", Int64TensorType([None, 32, 32]))],
                        target_opset=18)


@pytest.mark.parametrize("shape, params", [
    ((1, 16), dict(pixels_per_cell=(1, 4), cells_per_block=(1, 1))),
    ((2, 16), dict(pixels_per_cell=(2, 4), cells_per_block=(1, 2))),
    ((16, 1), dict(pixels_per_cell=(4, 1), cells_per_block=(2, 1))),
    ((1, 9, 3), dict(pixels_per_cell=(1, 3), cells_per_block=(1, 2))),
])
def test_images_one_or_two_pixels_thin(shape, params):
    # the uint8 graph mirrors the border pixels to get zero central differences there;
    # a side of one pixel has no mirror image and is repeated instead
    for kind in ("uint8", "float32"):
        X = images(kind, shape)
        assert rel_error(HOG(**params).fit(X), X) <= REL


def test_trailing_single_channel():
    X = images("uint8", (32, 40, 1))
    est = HOG(pixels_per_cell=(6, 6)).fit(X)
    assert rel_error(est, X) <= REL
