"""ONNX export of ColorHistogram (cvfeat.export.color) against the numpy transform.

The graph repeats the numpy code operation for operation in the same precision, so
every pixel must land in the same bin: raw counts (``normalize=None``) are compared
for exact equality, normalised histograms with ``max|onnx - numpy| / max|numpy|``
over the feature matrix <= 1e-6 (the only difference is the float32 rounding of the
graph's output; numpy returns float64 for uint8 and float64 images).
"""

import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int32TensorType,
    UInt8TensorType,
)

from cvfeat.export import color as export_color
from cvfeat.features import ColorHistogram

REL = 1e-6
SIZES = [(16, 16), (37, 53), (64, 48)]
TYPES = {np.uint8: UInt8TensorType, np.float32: FloatTensorType, np.float64: DoubleTensorType}


@pytest.fixture(scope="module", autouse=True)
def _register():
    export_color.register()


def session(est, shape, dtype=np.uint8):
    onx = convert_sklearn(
        est, initial_types=[("images", TYPES[dtype]([None, *shape]))], target_opset=18
    )
    assert {op.domain for op in onx.opset_import} <= {"", "ai.onnx"}
    assert all(node.domain in ("", "ai.onnx") for node in onx.graph.node)
    return ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])


def run(est, X):
    out = session(est, X.shape[1:], X.dtype.type).run(None, {"images": X})[0]
    assert out.dtype == np.float32 and out.shape == (len(X), est.n_features_out_)
    return out


def assert_parity(est, X):
    got, ref = run(est, X), est.transform(X)
    if est.normalize is None:
        np.testing.assert_array_equal(got, ref)  # counts: every pixel in the same bin
    else:
        assert np.abs(got - ref).max() / np.abs(ref).max() <= REL


def random_images(shape, n=5, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return rng.random((n, *shape), dtype=np.dtype(dtype).type)


@pytest.mark.parametrize("space", ["rgb", "hsv", "lab"])
@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("normalize", ["l1", "l2", None])
def test_parity_uint8_rgb(space, joint, normalize):
    est = ColorHistogram(bins=5, space=space, joint=joint, normalize=normalize)
    est.fit(random_images((8, 8, 3)))
    for i, (h, w) in enumerate(SIZES):
        assert_parity(est, random_images((h, w, 3), seed=i + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("space", ["rgb", "hsv", "lab"])
def test_parity_float_rgb(space, dtype):
    # continuous values, not only multiples of 1/255
    est = ColorHistogram(bins=7, space=space, normalize=None).fit(random_images((8, 8, 3)))
    for i, (h, w) in enumerate(SIZES):
        X = random_images((h, w, 3), seed=i, dtype=dtype)
        assert_parity(est, X)
    est.set_params(normalize="l2", joint=False).fit(random_images((8, 8, 3)))
    assert_parity(est, random_images((37, 53, 3), dtype=dtype))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("normalize", ["l1", None])
def test_parity_grey(dtype, normalize):
    est = ColorHistogram(bins=6, space="rgb", normalize=normalize)
    est.fit(random_images((8, 8)))
    for i, (h, w) in enumerate(SIZES):
        assert_parity(est, random_images((h, w), seed=i, dtype=dtype))


@pytest.mark.parametrize("bins", [2, 3, 5, 17, 255, 256, 300])
def test_all_grey_levels_on_bin_edges(bins):
    # p / 255 hits the edges k / bins exactly where bins divides 255 (3, 5, 17, 255)
    levels = np.arange(256, dtype=np.uint8)
    X = np.stack([levels.reshape(16, 16), levels[::-1].reshape(16, 16)])
    for Xi in (X, X.astype(np.float32) / np.float32(255)):
        est = ColorHistogram(bins=bins, space="rgb", normalize=None).fit(Xi)
        assert_parity(est, Xi)
        rgb = np.repeat(Xi[..., None], 3, axis=-1)  # greys in colour: S = 0, H = 0
        for space in ("hsv", "lab"):
            est = ColorHistogram(bins=bins, space=space, joint=False, normalize=None).fit(rgb)
            assert_parity(est, rgb)


def test_pure_hues_and_branch_points():
    # hues on the 60-degree edges (H = 60 (1 - eps) for yellow), the V == R == G ties,
    # greys and near-greys, in uint8 and float32
    vals = np.array([0, 1, 64, 127, 128, 254, 255], dtype=np.uint8)
    r, g, b = np.meshgrid(vals, vals, vals, indexing="ij")
    cols = np.stack([r, g, b], -1).reshape(-1, 3)  # 343 colours incl. all hues k * 60
    X = np.stack([np.resize(cols, (19, 19, 3)), np.resize(cols[::-1], (19, 19, 3))])
    for Xi in (X, X.astype(np.float32) / np.float32(255)):
        for bins in (6, 12):
            for space in ("hsv", "lab"):
                est = ColorHistogram(bins=bins, space=space, normalize=None).fit(Xi)
                assert_parity(est, Xi)


def hsv_edge_colours(bins):
    """Every uint8 colour whose exact hue lies on one of the ``bins`` bin edges.

    The hue depends only on ``d = max - min``, ``t = mid - min`` and which channel is
    max / mid / min: H / 60 = (num + off * d) / d with ``num`` the sector's channel
    difference and ``off`` in {0, 2, 4} (+6 if negative), an edge when
    ``(num + off d) * bins`` is a multiple of ``6 d``; each edge shape is then shifted
    by every ``min`` that fits.
    """
    d, t = np.tril_indices(256)  # 0 <= t <= d
    keep = d > 0
    d, t = d[keep], t[keep]
    zero = np.zeros_like(d)
    out = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        r, g, b = (np.stack([d, t, zero])[i] for i in perm)  # (max, mid, min) -> channels
        num = np.where(r == d, g - b, np.where(g == d, b - r + 2 * d, r - g + 4 * d))
        num = np.where(num < 0, num + 6 * d, num)
        on_edge = (num * bins) % (6 * d) == 0
        shape = np.stack([r, g, b], -1)[on_edge]
        shifts = 256 - d[on_edge]  # min = 0 .. 255 - d
        rows = np.repeat(np.arange(len(shape)), shifts)
        mins = np.arange(len(rows)) - np.repeat(np.cumsum(shifts) - shifts, shifts)
        out.append(shape[rows] + mins[:, None])
    return np.unique(np.concatenate(out), axis=0).astype(np.uint8)  # ties repeat shapes


@pytest.mark.parametrize("bins", [8, 12])
def test_hsv_colours_on_bin_edges(bins):
    # where the operation order of the HSV formula decides the bin (e.g. H = 30 exactly
    # for (237, 128, 19)): ~10**5 colours as images of 16 x 16
    cols = hsv_edge_colours(bins)
    cols = cols[: len(cols) // 256 * 256].reshape(-1, 16, 16, 3)
    est = ColorHistogram(bins=bins, space="hsv", normalize=None).fit(cols[:2])
    assert_parity(est, cols)
    assert_parity(est, cols.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("space", ["hsv", "lab"])
def test_many_colours_per_pixel_bins(space):
    # 2**18 colours (a stride-4 lattice of the RGB cube, shifted per channel), as 1024
    # images of 16 x 16: a single pixel in a different bin changes its image's counts.
    v = np.arange(0, 256, 4, dtype=np.uint8)
    r, g, b = np.meshgrid(v + 1, v + 2, v + 3, indexing="ij")
    X = np.stack([r, g, b], -1).reshape(1024, 16, 16, 3)
    est = ColorHistogram(bins=8, space=space, normalize=None).fit(X[:2])
    assert_parity(est, X)
    assert_parity(est, X.astype(np.float32) / np.float32(255))


def test_dynamic_image_size():
    # H and W may be left open: one graph for images of any size
    est = ColorHistogram(bins=4, space="hsv").fit(random_images((8, 8, 3)))
    sess = session(est, [None, None, 3])
    for i, (h, w) in enumerate(SIZES):
        X = random_images((h, w, 3), seed=i)
        got = sess.run(None, {"images": X})[0]
        ref = est.transform(X)
        assert np.abs(got - ref).max() / np.abs(ref).max() <= REL


def test_batch_of_one_and_large_batch():
    est = ColorHistogram(bins=8, space="lab", normalize=None).fit(random_images((8, 8, 3)))
    assert_parity(est, random_images((37, 53, 3), n=1))
    assert_parity(est, random_images((12, 10, 3), n=300, seed=3))


def test_channel_mismatch_and_bad_input_type():
    est = ColorHistogram(space="rgb").fit(random_images((8, 8)))  # grey
    with pytest.raises(ValueError, match=r"fitted on grey images.*\[N, H, W\]"):
        convert_sklearn(est, initial_types=[("images", UInt8TensorType([None, 8, 8, 3]))],
                        target_opset=18)
    est = ColorHistogram(space="hsv").fit(random_images((8, 8, 3)))
    with pytest.raises(ValueError, match=r"fitted on RGB images.*\[N, H, W, 3\]"):
        convert_sklearn(est, initial_types=[("images", UInt8TensorType([None, 8, 8]))],
                        target_opset=18)
    with pytest.raises(TypeError, match="Int32TensorType is not supported.*UInt8TensorType"):
        convert_sklearn(est, initial_types=[("images", Int32TensorType([None, 8, 8, 3]))],
                        target_opset=18)
    with pytest.raises(ValueError, match=r"not an image batch.*\[N, H, W, 3\]"):
        convert_sklearn(est, initial_types=[("images", UInt8TensorType([None, 8, 8, 4]))],
                        target_opset=18)


@pytest.mark.parametrize(("space", "colour", "joint"),
                         [("rgb", False, True), ("hsv", True, True), ("lab", True, False)])
def test_to_onnx_pipeline_with_ridge(space, colour, joint):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from cvfeat.export import check_parity, to_onnx

    shape = (37, 53, 3) if colour else (37, 53)
    X = random_images(shape, n=30, seed=4)
    y = np.random.default_rng(5).random(30)
    pipe = make_pipeline(ColorHistogram(bins=4, space=space, joint=joint), Ridge(alpha=1e-3))
    pipe.fit(X, y)
    onx = to_onnx(pipe, X[:1])
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["prediction"], {"images": X})[0]
    ref = pipe.predict(X)
    assert got.shape == (30,) and np.abs(got - ref).max() / np.abs(ref).max() <= 1e-4
    assert check_parity(pipe, onx, X)["n_over_rtol"] == 0


def test_every_uint8_colour_lab_bin():
    # all 2**24 colours, pixel by pixel: the graph's joint bin index (an intermediate
    # output) equals numpy's, for the space with transcendental functions
    import onnx

    from cvfeat import _color
    from cvfeat.features.color import bin_index

    cube = np.stack(np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 3, indexing="ij"), -1)
    cube = cube.reshape(16, 1024, 1024, 3)
    est = ColorHistogram(bins=8, space="lab", normalize=None).fit(cube[:1, :2])
    onx = convert_sklearn(est, initial_types=[("images", UInt8TensorType([None, 1024, 1024, 3]))],
                          target_opset=18)
    name = next(o for node in onx.graph.node for o in node.output
                if export_color.JOINT_INDEX_HINT in o)
    onx.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    for a in range(0, 16, 4):
        X = cube[a:a + 4]
        lab = _color.convert(X, "lab")
        i0, i1, i2 = (bin_index(lab[..., c], lo, hi, 8).reshape(4, -1)
                      for c, (lo, hi) in enumerate(_color.CHANNEL_RANGES["lab"]))
        np.testing.assert_array_equal(sess.run(None, {"images": X})[1], (i0 * 8 + i1) * 8 + i2)
