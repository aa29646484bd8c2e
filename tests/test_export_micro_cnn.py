"""ONNX export of the micro-CNNs (cvfeat.export.micro_cnn, cvfeat.export.hybrid).

The reference is the fitted model's own ``predict`` / ``predict_proba`` (PyTorch,
BatchNorm not folded); the graph is run by ONNX Runtime on uint8 images the model
was not fitted on. Parity measure: ``check_parity``'s ``max_rel = max|onnx - model| /
max|model|`` over the whole batch. The targets are centred on 0, so ``max|model|``
is the spread of the predictions and not a constant offset that would hide errors in
the network (asserted in ``_parity``). Tiny models, 2 epochs, 16x16 to 27x21 images.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("skl2onnx")

from sklearn.pipeline import make_pipeline, make_union  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from cvfeat.budget import count_params  # noqa: E402
from cvfeat.datasets import make_counting, make_scale  # noqa: E402
from cvfeat.export import (  # noqa: E402
    check_exportable,
    check_parity,
    compare_quantized,
    read_model_card,
    register_all,
    supported_steps,
    to_onnx,
)
from cvfeat.features import HOG, ColorHistogram  # noqa: E402
from cvfeat.models import HybridCNNRegressor, MicroCNNClassifier, MicroCNNRegressor  # noqa: E402
from cvfeat.preprocessing import ColorConvert, Grayscale, Resize  # noqa: E402

FAST = dict(max_epochs=2, batch_size=16, learning_rate=0.03, validation_fraction=0.0,
            random_state=0, device="cpu")
RTOL = 1e-4


def scale_data(size, color, n=40, seed=0):
    """``make_scale`` images and their target centred and scaled (predictions then vary
    around 0, see the module docstring)."""
    X, y = make_scale(n, size=size, color=color, random_state=seed)
    return X, (y - y.mean()) / y.std()


def session(onx):
    return ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])


def _parity(model, onx, X):
    rep = check_parity(model, onx, X, rtol=RTOL)
    ref = model.predict(X) if rep["output"] == "prediction" else model.predict_proba(X)
    # the measure is not dominated by an offset: the predictions vary by at least a
    # tenth of their largest magnitude
    assert np.ptp(ref, axis=0).max() > 0.1 * rep["scale"]
    assert rep["max_rel"] <= RTOL, rep
    assert rep["n_over_rtol"] == 0
    return rep


def _interface(onx, shape):
    onnx.checker.check_model(onx, full_check=True)
    (inp,) = onx.graph.input
    t = inp.type.tensor_type
    assert inp.name == "images" and t.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    assert dims == ["N", *shape]
    assert not any(n.op_type == "BatchNormalization" for n in onx.graph.node)  # folded
    assert {n.domain or "" for n in onx.graph.node} == {""}  # standard ai.onnx only


def _batches(model, onx, X):
    """Dynamic batch: 1 and 7 images give the model's predictions for those images."""
    sess = session(onx)
    for k in (1, 7):
        out = sess.run(None, {"images": X[:k]})
        if len(out) == 1:
            assert out[0].shape == (k,) and out[0].dtype == np.float32
            np.testing.assert_allclose(out[0], model.predict(X[:k]), rtol=0,
                                       atol=RTOL * np.abs(model.predict(X)).max())
        else:
            label, proba = out
            assert label.shape == (k,) and proba.shape == (k, len(model.classes_))
            np.testing.assert_array_equal(label, model.predict(X[:k]))


# -- label distribution head and test-time flips: inside the graph -------------------------

@pytest.mark.parametrize("size,color,tta", [((16, 16), False, None), ((21, 27), True, "hflip"),
                                            ((17, 19), False, "flips")])
def test_ldl_and_flips_parity(size, color, tta):
    X, y = scale_data(size, color)
    X_new, _ = scale_data(size, color, n=20, seed=1)
    model = MicroCNNRegressor(900, loss="ldl", n_bins=7, tta=tta, **FAST).fit(X, y)
    onx = to_onnx(model, X[:1])
    _interface(onx, X.shape[1:])
    ops = [n.op_type for n in onx.graph.node]
    views = {None: 1, "hflip": 2, "flips": 4}[tta]
    assert ops.count("Softmax") == views  # one expectation per view
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.module_.modules())
    assert ops.count("Conv") == views * convs  # the network once per view
    _parity(model, onx, X_new)
    _batches(model, onx, X_new)
    if tta:  # the graph averages flips: without them the numbers differ
        plain = MicroCNNRegressor(900, loss="ldl", n_bins=7, **FAST).fit(X, y)
        assert not np.allclose(plain.predict(X_new), model.predict(X_new), rtol=1e-3)
    card = read_model_card(onx)
    assert card["count_params"] == model.n_params_


def test_classifier_and_hybrid_flips_parity():
    X, k = make_counting(48, size=(17, 21), max_count=2, color=True, random_state=0)
    X_new, _ = make_counting(20, size=(17, 21), max_count=2, color=True, random_state=1)
    clf = MicroCNNClassifier(800, block="residual", tta="flips", **FAST).fit(X, k)
    onx = to_onnx(clf, X[:1])
    assert _parity(clf, onx, X_new)["label_agreement"] == 1.0
    _batches(clf, onx, X_new)
    X, y = scale_data((16, 16), True)
    X_new, _ = scale_data((16, 16), True, n=20, seed=1)
    hyb = HybridCNNRegressor(ColorHistogram(bins=2), 1000, loss="ldl", tta="hflip",
                             **FAST).fit(X, y)
    onx = to_onnx(hyb, X[:1])
    _parity(hyb, onx, X_new)
    _batches(hyb, onx, X_new)


# -- MicroCNNRegressor -----------------------------------------------------------------

REGRESSORS = [
    # (block, conv, head, coord_channels, size, color, max_params)
    ("plain", "standard", "gap", False, (16, 16), False, 600),
    ("residual", "separable", "dense", True, (21, 27), True, 1200),
    ("dense", "separable", "gap", True, (27, 21), False, 900),
    ("residual", "standard", "gap", False, (17, 19), True, 1500),
]


@pytest.mark.parametrize("block,conv,head,coord,size,color,max_params", REGRESSORS)
def test_regressor_parity(block, conv, head, coord, size, color, max_params):
    X, y = scale_data(size, color)
    X_new, _ = scale_data(size, color, n=20, seed=1)
    model = MicroCNNRegressor(max_params, block=block, conv=conv, head=head,
                              coord_channels=coord, **FAST).fit(X, y)
    onx = to_onnx(model, X[:1])
    _interface(onx, X.shape[1:])
    rep = _parity(model, onx, X_new)
    assert rep["n"] == 20
    _batches(model, onx, X_new)
    card = read_model_card(onx)
    assert card["count_params"] == count_params(model) == model.n_params_
    assert card["task"] == "regression" and card["steps"] == "MicroCNNRegressor"
    assert card["input_color"] == ("rgb" if color else "gray")


def test_regressor_several_targets():
    X, y = scale_data((16, 16), False)
    Y = np.column_stack([y, -2 * y + 1])
    model = MicroCNNRegressor(600, **FAST).fit(X, Y)
    onx = to_onnx(model, X[:1])
    assert session(onx).run(None, {"images": X[:3]})[0].shape == (3, 2)
    _parity(model, onx, scale_data((16, 16), False, n=20, seed=1)[0])


def test_export_leaves_the_fitted_model_untouched():
    X, y = scale_data((16, 16), True)
    model = MicroCNNRegressor(600, **FAST).fit(X, y)
    before = model.predict(X)
    state = {k: v.clone() for k, v in model.module_.state_dict().items()}
    to_onnx(model, X[:1])
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module_.modules())
    assert not model.module_.training
    for k, v in model.module_.state_dict().items():
        assert torch.equal(v, state[k]), k
    np.testing.assert_array_equal(model.predict(X), before)


# -- inside pipelines, other input types -----------------------------------------------


def test_pipeline_resize_grayscale_cnn():
    X, y = scale_data((21, 27), True)
    X_new, _ = scale_data((21, 27), True, n=20, seed=1)
    pipe = make_pipeline(Resize(size=(16, 16)), Grayscale(),
                         MicroCNNRegressor(600, **FAST)).fit(X, y)
    onx = to_onnx(pipe, X[:1])
    _interface(onx, (21, 27, 3))
    _parity(pipe, onx, X_new)
    _batches(pipe, onx, X_new)
    card = read_model_card(onx)
    assert card["steps"] == "Resize -> Grayscale -> MicroCNNRegressor"
    assert card["count_params"] == count_params(pipe) == pipe[-1].n_params_


def test_float_images_in_the_graph():
    """A float step before the CNN (ColorConvert: float32 in [0, 1]): the graph scales
    by 255 as the model does."""
    X, y = scale_data((16, 16), True)
    X_new, _ = scale_data((16, 16), True, n=20, seed=1)
    pipe = make_pipeline(ColorConvert(space="hsv"), MicroCNNRegressor(800, **FAST)).fit(X, y)
    _parity(pipe, to_onnx(pipe, X[:1]), X_new)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_input_types_with_skl2onnx(dtype):
    """convert_sklearn directly with float images in [0, 1] (float32 / float64 input)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    X, y = scale_data((16, 16), False)
    Xf = (X / 255).astype(dtype)
    model = MicroCNNRegressor(600, **FAST).fit(Xf, y)
    register_all()
    kind = FloatTensorType if dtype == np.float32 else DoubleTensorType
    onx = convert_sklearn(model, initial_types=[("x", kind([None, 16, 16]))], target_opset=18)
    X_new = (scale_data((16, 16), False, n=20, seed=1)[0] / 255).astype(dtype)
    got = session(onx).run(None, {"x": X_new})[0][:, 0]
    ref = model.predict(X_new)
    assert np.abs(got - ref).max() <= RTOL * np.abs(ref).max()


def test_target_opset_20():
    X, y = scale_data((16, 16), False)
    model = MicroCNNRegressor(600, **FAST).fit(X, y)
    onx = to_onnx(model, X[:1], target_opset=20)
    # the network is exported at opset 20; skl2onnx writes the highest version used
    assert 18 < {o.domain or "": o.version for o in onx.opset_import}[""] <= 20
    _parity(model, onx, scale_data((16, 16), False, n=20, seed=1)[0])


# -- MicroCNNClassifier ----------------------------------------------------------------


@pytest.mark.parametrize("labels,color", [("int", False), ("str", True)])
def test_classifier_parity(labels, color):
    X, k = make_counting(48, size=(17, 21), max_count=2, color=color, random_state=0)
    X_new, _ = make_counting(20, size=(17, 21), max_count=2, color=color, random_state=1)
    y = k.astype(np.int64) if labels == "int" else np.array(["none", "one", "two"])[k.astype(int)]
    clf = MicroCNNClassifier(800, block="residual", **FAST).fit(X, y)
    onx = to_onnx(clf, X[:1])
    _interface(onx, X.shape[1:])
    assert [o.name for o in onx.graph.output] == ["label", "probabilities"]
    rep = _parity(clf, onx, X_new)
    assert rep["output"] == "probabilities" and rep["label_agreement"] == 1.0
    label, proba = session(onx).run(None, {"images": X_new})
    assert label.dtype == (np.int64 if labels == "int" else object)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    _batches(clf, onx, X_new)
    card = read_model_card(onx)
    assert card["classes"] == clf.classes_.tolist()
    assert card["count_params"] == count_params(clf)


# -- HybridCNNRegressor ----------------------------------------------------------------


def test_hybrid_parity_rgb_union():
    X, y = scale_data((21, 27), True)
    X_new, _ = scale_data((21, 27), True, n=20, seed=1)
    feats = make_union(make_pipeline(Grayscale(), HOG(pixels_per_cell=(8, 8))),
                       ColorHistogram(bins=2))
    model = HybridCNNRegressor(feats, 1500, **FAST).fit(X, y)
    onx = to_onnx(model, X[:1])
    _interface(onx, (21, 27, 3))
    ops = {n.name.split("_")[0] for n in onx.graph.node}
    assert {"CvfeatHOG", "CvfeatColorHistogram", "CvfeatHybridCNNRegressor"} <= ops
    _parity(model, onx, X_new)
    _batches(model, onx, X_new)
    card = read_model_card(onx)
    assert card["count_params"] == count_params(model) == model.n_params_
    assert card["steps"] == ("HybridCNNRegressor(FeatureUnion(Grayscale -> HOG, "
                             "ColorHistogram))")


def test_hybrid_grey_in_pipeline():
    X, y = scale_data((21, 27), False)
    X_new, _ = scale_data((21, 27), False, n=20, seed=1)
    pipe = make_pipeline(Resize(size=(16, 16)), HybridCNNRegressor(
        HOG(pixels_per_cell=(8, 8)), 1000, block="dense", coord_channels=True, **FAST)).fit(X, y)
    onx = to_onnx(pipe, X[:1])
    _interface(onx, (21, 27))
    _parity(pipe, onx, X_new)
    _batches(pipe, onx, X_new)


def test_hybrid_features_are_checked():
    X, y = scale_data((16, 16), False)
    feats = make_pipeline(HOG(pixels_per_cell=(8, 8)), FunctionTransformer(np.sqrt))
    model = HybridCNNRegressor(feats, 1000, **FAST).fit(X, y)
    with pytest.raises(TypeError, match=r"estimator\.features_\.steps\[1\] FunctionTransformer "
                                        r"has no ONNX converter"):
        check_exportable(model)
    with pytest.raises(TypeError, match=r"steps\[1\]\.features_\.steps\[1\] FunctionTransformer"):
        to_onnx(make_pipeline(Resize(size=(16, 16)), model), X[:1])


# -- int8 ------------------------------------------------------------------------------


def test_int8_quantizes_the_convolutions():
    X, y = scale_data((16, 16), False, n=60)
    X_new, y_new = scale_data((16, 16), False, n=30, seed=1)
    model = MicroCNNRegressor(1500, conv="standard", **FAST).fit(X, y)
    big = [m for m in model.module_.modules()
           if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 256]
    assert big  # the layers the existing int8 path quantizes (>= 256 weights)
    onx8 = to_onnx(model, X[:1], quantize="int8", calibration=X)
    card = read_model_card(onx8)
    assert card["quantization"].startswith(f"int8 static QDQ: {len(big)} Conv node(s)")
    ops = [n.op_type for n in onx8.graph.node]
    assert ops.count("QuantizeLinear") >= len(big) and "DequantizeLinear" in ops
    # int8 weights (4-D) with one int8 zero point and one scale per output channel
    int8 = [t for t in onx8.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    weights = sorted(tuple(t.dims) for t in int8 if len(t.dims) == 4)
    assert weights == sorted(tuple(m.weight.shape) for m in big)
    assert sorted(tuple(t.dims) for t in int8 if len(t.dims) == 1) == sorted(
        (m.out_channels,) for m in big)
    rep = compare_quantized(to_onnx(model, X[:1]), X, X_new, y_new)
    spread = np.ptp(model.predict(X_new))
    # measured: max change 3.0e-3 = 2.0 % of the spread of the fp32 predictions (0.15),
    # mean change 3.8e-4, MAE 0.9010 -> 0.9009 (targets of std 1)
    assert 0 < rep["max_abs_change"] <= 0.05 * spread
    assert abs(rep["mae_int8"] - rep["mae_fp32"]) <= 0.01 * y_new.std()
    p8 = check_parity(model, onx8, X_new)
    assert p8["max_abs"] == pytest.approx(rep["max_abs_change"], rel=1e-5)


def test_int8_hybrid():
    X, y = scale_data((16, 16), True, n=60)
    X_new, y_new = scale_data((16, 16), True, n=20, seed=1)
    model = HybridCNNRegressor(make_pipeline(Grayscale(), HOG(pixels_per_cell=(4, 4))), 3000,
                               conv="standard", **FAST).fit(X, y)
    onx8 = to_onnx(model, X[:1], quantize="int8", calibration=X)
    card = read_model_card(onx8)
    assert card["quantization"].startswith("int8 static QDQ")
    # the HOG part stays float: no quantized node named after it
    q = [n for n in onx8.graph.node if n.op_type == "QuantizeLinear"]
    assert q and not any(n.name.startswith("CvfeatHOG") for n in q)
    rep = compare_quantized(to_onnx(model, X[:1]), X, X_new, y_new)
    # measured: max change 0.021 = 0.5 % of the fp32 predictions' spread (4.0), MAE
    # 0.9947 -> 0.9968 (targets of std 1)
    assert 0 < rep["max_abs_change"] <= 0.05 * np.ptp(model.predict(X_new))
    assert abs(rep["mae_int8"] - rep["mae_fp32"]) <= 0.01 * y_new.std()


# -- registration ----------------------------------------------------------------------


def test_registered_and_no_torch_at_import():
    assert {"MicroCNNRegressor", "MicroCNNClassifier",
            "HybridCNNRegressor"} <= set(supported_steps()["cvfeat"])
    code = ("import sys, cvfeat.export, cvfeat.export.micro_cnn, cvfeat.export.hybrid\n"
            "cvfeat.export.register_all()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_wrong_input_size_is_refused():
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import UInt8TensorType

    X, y = scale_data((16, 16), False)
    model = MicroCNNRegressor(600, **FAST).fit(X, y)
    register_all()
    with pytest.raises(ValueError, match=r"gives it 20x16 grey images but it was fitted on "
                                         r"16x16 grey images"):
        convert_sklearn(model, initial_types=[("x", UInt8TensorType([None, 20, 16]))])
    with pytest.raises(ValueError, match="fitted on 16x16 grey images"):
        convert_sklearn(model, initial_types=[("x", UInt8TensorType([None, 16, 16, 3]))])
