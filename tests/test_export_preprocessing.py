"""ONNX converters of Resize, Grayscale and ColorConvert against OpenCV and numpy.

References: ``cv2.resize`` / ``cv2.cvtColor`` themselves (Resize, Grayscale uint8) and
the numpy steps of :mod:`cvfeat.preprocessing` (float Grayscale, ColorConvert, whose
numpy code is the definition). Tolerances:

* uint8 outputs: bit-exact (OpenCV rounds to uint8; the graph reproduces its integer
  and float arithmetic, so any difference is a bug);
* float32 Resize: at most 2 float32 ulps of 1 (2.4e-7) absolute on [0, 1] images -- the
  area and linear float paths repeat OpenCV's multiply-adds but OpenCV's vectorised
  2x2 / integer-factor area code sums in another order;
* float Grayscale / HSV: bit-exact (same operations in the same order);
* Lab: 1e-6 absolute on the [0, 1] scaled channels (``Pow`` vs numpy's ``**`` / ``cbrt``
  round differently in the last bit).
"""

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, UInt8TensorType
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from cvfeat.export import check_parity, register_all, to_onnx
from cvfeat.export.preprocessing import area_taps, resize_plan
from cvfeat.features import HOG
from cvfeat.preprocessing import ColorConvert, Grayscale, Resize

TYPES = {np.uint8: UInt8TensorType, np.float32: FloatTensorType, np.float64: DoubleTensorType}
F32_ULP = np.finfo(np.float32).eps  # spacing of float32 at 1


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_all()


def run_step(step, X):
    """Convert one fitted image step with X's dtype and shape, run it on X."""
    onx = convert_sklearn(step, initial_types=[("images", TYPES[X.dtype.type]([None, *X.shape[1:]]))],
                          target_opset={"": 18})
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": X})[0]


def images(rng, shape, dtype):
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape).astype(dtype)


def cv2_resize(X, size, interpolation):
    flag = cv2.INTER_AREA if interpolation == "area" else cv2.INTER_LINEAR
    return np.stack([cv2.resize(x, (size[1], size[0]), interpolation=flag) for x in X])


# (source, destination) pairs covering every OpenCV code path
RESIZE_CASES = [
    ((37, 53), (16, 16)),    # generic area (non-integer shrink) / linear shrink
    ((64, 64), (32, 32)),    # 2x2 fast area
    ((48, 40), (16, 20)),    # 3 x 2 integer factors (fast area, cvRound)
    ((20, 31), (37, 53)),    # enlarge: area falls back to bilinear with area weights
    ((9, 40), (16, 16)),     # enlarge rows, shrink columns
    ((37, 53), (37, 53)),    # same size: copy
    ((97, 129), (17, 24)),   # larger factors
]


@pytest.mark.parametrize("interpolation", ["area", "linear"])
@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_resize_uint8_is_bit_exact_with_opencv(interpolation, src, dst, channels):
    rng = np.random.default_rng(0)
    X = images(rng, (3, *src) + ((3,) if channels == 3 else ()), np.uint8)
    step = Resize(size=dst, interpolation=interpolation).fit(X)
    out = run_step(step, X)
    ref = cv2_resize(X, dst, interpolation)
    assert out.dtype == np.uint8 and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("interpolation", ["area", "linear"])
@pytest.mark.parametrize(("src", "dst"), RESIZE_CASES)
def test_resize_float32_matches_opencv(interpolation, src, dst):
    rng = np.random.default_rng(1)
    X = images(rng, (2, *src, 3), np.float32)
    out = run_step(Resize(size=dst, interpolation=interpolation).fit(X), X)
    ref = cv2_resize(X, dst, interpolation)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=2 * F32_ULP)


def test_resize_generic_area_is_bit_exact_in_float32():
    # the non-integer area path repeats OpenCV's float32 multiply-adds in its order
    rng = np.random.default_rng(2)
    X = images(rng, (2, 37, 53, 3), np.float32)
    assert resize_plan((37, 53), (16, 16), "area", np.float32)[0] == "area"
    np.testing.assert_array_equal(run_step(Resize(size=(16, 16)).fit(X), X),
                                  cv2_resize(X, (16, 16), "area"))


def test_resize_float64_keeps_dtype():
    rng = np.random.default_rng(3)
    X = images(rng, (2, 20, 31), np.float64)
    out = run_step(Resize(size=(16, 16)).fit(X), X)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, cv2_resize(X, (16, 16), "area"), rtol=0, atol=1e-12)


def test_area_weights_are_opencvs():
    # each output pixel averages the source cell it covers: rows of weights sum to 1 and
    # applying them as a matrix reproduces cv2 on float64 images
    index, alpha = area_taps(37, 16)
    dense = np.zeros((16, 37))
    for idx, a in zip(index, alpha, strict=True):
        np.add.at(dense, (np.arange(16), idx), a)
    np.testing.assert_allclose(dense.sum(axis=1), 1, rtol=1e-6)
    img = np.random.default_rng(4).random((37, 1))
    ref = cv2.resize(img, (1, 16), interpolation=cv2.INTER_AREA)[:, 0]
    np.testing.assert_allclose(dense @ img[:, 0], ref, rtol=1e-6)


def test_resize_needs_a_fixed_input_size():
    X = np.zeros((1, 20, 20), np.uint8)
    step = Resize(size=(8, 8)).fit(X)
    with pytest.raises(ValueError, match="input size must be fixed"):
        convert_sklearn(step, initial_types=[("images", UInt8TensorType([None, None, None]))],
                        target_opset={"": 18})


def test_grayscale_uint8_matches_opencv_for_all_colours():
    # all 2**24 RGB colours, as 4 images of 2048 x 2048
    c = np.arange(2**24, dtype=np.uint32)
    X = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], -1).astype(np.uint8)
    X = X.reshape(4, 2048, 2048, 3)
    step = Grayscale().fit(X[:1, :2, :2])
    onx = convert_sklearn(step, initial_types=[("images", UInt8TensorType([None, 2048, 2048, 3]))],
                          target_opset={"": 18})
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    for img in X:
        out = sess.run(None, {"images": img[None]})[0][0]
        np.testing.assert_array_equal(out, cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 16, 16), (2, 9, 31)])
def test_grayscale_matches_numpy_step(dtype, shape):
    rng = np.random.default_rng(5)
    X = images(rng, (*shape, 3), dtype)
    step = Grayscale().fit(X)
    out, ref = run_step(step, X), step.transform(X)
    assert out.dtype == ref.dtype == dtype and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)
    grey = X[..., 0]  # grey input passes through
    np.testing.assert_array_equal(run_step(Grayscale().fit(grey), grey), grey)


@pytest.mark.parametrize("space", ["hsv", "lab", "gray"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 16, 16)])
def test_colorconvert_matches_numpy_step(space, dtype, shape):
    rng = np.random.default_rng(6)
    X = images(rng, (*shape, 3), dtype)
    X[0, :5, :5] = X[0, :5, :5, :1]       # grey pixels: H = S = 0
    X[0, 5, :3] = X[0, 5, :3, ::-1]
    if dtype == np.uint8:
        X[1, :2, :2] = [[0, 0, 0], [255, 255, 255]]
    step = ColorConvert(space=space).fit(X)
    out, ref = run_step(step, X), step.transform(X)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    if space == "lab":
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(out, ref)


def test_colorconvert_of_grey_images_fails_at_export():
    X = np.zeros((1, 8, 8, 3), np.uint8)
    step = ColorConvert(space="hsv").fit(X)
    with pytest.raises(ValueError, match="grey; a grey image has no hue"):
        convert_sklearn(step, initial_types=[("images", UInt8TensorType([None, 8, 8]))],
                        target_opset={"": 18})


def test_preprocessing_pipeline_from_camera_pixels():
    # uint8 RGB 37x53 -> Resize(area) -> Grayscale -> HOG -> Ridge, all in one graph;
    # Resize and Grayscale are exact, so the predictions match to float32 rounding
    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, (30, 37, 53, 3), dtype=np.uint8)
    y = X.mean(axis=(1, 2, 3)) / 10 + rng.random(30)
    pipe = make_pipeline(Resize(size=(24, 32)), Grayscale(), HOG(pixels_per_cell=(8, 8)),
                         Ridge(alpha=1e-3)).fit(X, y)
    onx = to_onnx(pipe, X[:1])
    X_new = rng.integers(0, 256, (20, 37, 53, 3), dtype=np.uint8)
    report = check_parity(pipe, onx, X_new)
    assert report["max_rel"] < 1e-5, report
    feats = make_pipeline(Resize(size=(24, 32)), Grayscale()).fit(X)
    onx_img = convert_sklearn(feats, initial_types=[("images", UInt8TensorType([None, 37, 53, 3]))],
                              target_opset={"": 18})
    sess = ort.InferenceSession(onx_img.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"images": X_new})[0], feats.transform(X_new))
