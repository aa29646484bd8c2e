"""int8 quantization of an exported graph, and its fp32 vs int8 report.

What is quantized
-----------------
Static QDQ quantization with ONNX Runtime (``onnxruntime.quantization.quantize_static``,
``QuantFormat.QDQ``, MinMax calibration on uint8 images the caller provides) of the
operators that carry **learned weight matrices after the features**:

* ``MatMul`` with a constant weight (PCA, linear models and linear SVR, which cvfeat
  writes as MatMul), ``Gemm`` (MLP), ``Conv`` (CNNs), when the weight has at least
  :data:`MIN_WEIGHTS` (256) values -- below that the QDQ nodes cost more than they save;
* weights int8, symmetric, **per output channel** (``MatMul`` axis 1, ``Conv`` axis 0);
  the activations feeding them uint8, asymmetric, one scale per tensor, from the
  calibration images; biases stay float;
* everything else stays float32: nodes a converter marks ``_keepfloat_`` (the
  ``x @ Y.T`` inside an rbf / poly / sigmoid / cosine kernel, where the cancellation
  in ``|x|^2 - 2 x.y + |y|^2`` would amplify int8 noise, and Nystroem's ill-conditioned
  ``K_mm^(-1/2)``; KernelRidge runs in float64); cvfeat's own feature and preprocessing steps (their
  constants are not learned, and their arithmetic -- gradients, histogram bin
  decisions, colour conversions -- would change by more than the quantization
  gains), comparisons, ``ArgMax``, integer ops, and the ``ai.onnx.ml`` operators
  (TreeEnsemble, SVMRegressor / SVMClassifier, ...), which have no int8 form. A graph
  with nothing to quantize (e.g. HOG + SVR, HOG + XGBoost) is returned unchanged with
  a warning.

So int8 pays off when the model has a big weight matrix after the features (e.g. HOG
+ PCA + Ridge: the PCA projection shrinks 4x). The prediction change it causes is
measured, not assumed: :func:`compare_quantized`.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .._validation import check_images

__all__ = ["compare_quantized", "quantize_int8"]

#: operator types that are quantized (the ones that hold learned weight matrices)
QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")

#: a converter puts this in a node's name to keep that node float (e.g. the x.y of an
#: rbf kernel, whose cancellation would amplify int8 noise)
KEEP_FLOAT_MARK = "_keepfloat_"

#: weights smaller than this stay float: int8 saves 3 bytes per weight, the
#: Quantize/Dequantize nodes and scales cost more than that on a small matrix
MIN_WEIGHTS = 256


def _float_steps():
    """Node-name prefixes of cvfeat's feature / preprocessing steps, which stay float.

    Converters name their nodes after the operator alias ``Cvfeat<Class>``.
    """
    from .. import preprocessing
    from ..features import __all__ as feature_steps

    return tuple(f"Cvfeat{name}" for name in (*feature_steps, *preprocessing.__all__))


def _calibration_reader(X, input_name, batch_size):
    from onnxruntime.quantization import CalibrationDataReader

    class _Images(CalibrationDataReader):
        def __init__(self):
            self._starts = iter(range(0, len(X), batch_size))

        def get_next(self):
            start = next(self._starts, None)
            return None if start is None else {input_name: X[start:start + batch_size]}

    return _Images()


def _input_of(onx):
    inp = onx.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inp.type.tensor_type.shape.dim]
    return inp.name, tuple(dims[1:])


def _check_calibration(onx, X, where):
    X = check_images(X, estimator=where, same_size=True)
    name, shape = _input_of(onx)
    if X.dtype != np.uint8 or X.shape[1:] != shape:
        raise ValueError(
            f"{where}: calibration images must be uint8 of the graph's input shape "
            f"(n, {', '.join(map(str, shape))}); got {X.dtype} {X.shape}. Use images like "
            "the ones the device will send."
        )
    return X, name


def quantize_int8(onx, calibration, *, per_channel=True, batch_size=16):
    """Static int8 QDQ quantization of a cvfeat graph (see the module docstring).

    Parameters
    ----------
    onx : onnx.ModelProto
        An fp32 graph from :func:`cvfeat.export.to_onnx`.
    calibration : (m, h, w[, 3]) uint8 ndarray
        Representative images of the graph's input shape; they set the activation
        ranges (MinMax), so they should cover what the device will see.
    per_channel : bool, default=True
        One weight scale per output channel (MatMul columns, Conv filters).
    batch_size : int, default=16
        Images per calibration run.

    Returns
    -------
    onx_int8 : onnx.ModelProto
        The quantized graph, same input and outputs; its model card's
        ``quantization`` entry says what was quantized.

    Warns
    -----
    UserWarning
        Nothing in the graph can be quantized; the fp32 graph is returned.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .card import write_model_card

    X, input_name = _check_calibration(onx, calibration, "quantize_int8")
    keep_float = _float_steps()
    sizes = {i.name: int(np.prod(i.dims)) for i in onx.graph.initializer}
    excluded, candidates = [], []
    for n in onx.graph.node:
        if n.op_type not in QUANTIZED_OPS:
            continue
        big = len(n.input) > 1 and sizes.get(n.input[1], 0) >= MIN_WEIGHTS
        if big and not n.name.startswith(keep_float) and KEEP_FLOAT_MARK not in n.name:
            candidates.append(n)
        else:
            excluded.append(n.name)
    if not candidates:
        from .card import read_model_card

        rewrites = read_model_card(onx).get("fp32_rewrites", "none")
        hint = ("" if rewrites in ("", "none") else
                f" This graph was exported for fp32 ({rewrites}): export the fitted model "
                "with to_onnx(model, X, quantize='int8', calibration=X_cal) instead, which "
                "keeps the MatMul for the quantizer.")
        warnings.warn(
            f"quantize_int8: the graph has no MatMul/Gemm/Conv with >= {MIN_WEIGHTS} learned "
            "weights after the features (trees, SVMs and XGBoost are ai.onnx.ml operators "
            "without int8 form; kernel products stay float); it is returned unquantized."
            + hint, UserWarning, stacklevel=2)
        out = onnx.ModelProto()
        out.CopyFrom(onx)
        write_model_card(out, {"quantization": "none (int8 requested: nothing to quantize)"})
        return out
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        onnx.save(onx, src)
        with _quiet_quantizer():
            quantize_static(
                str(src), str(dst), _calibration_reader(X, input_name, batch_size),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=per_channel, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"MatMulConstBOnly": True,
                               "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
        out = onnx.load(str(dst))
    del out.graph.value_info[:]  # shape annotations the quantizer adds; not needed to run
    quantized = sorted({n.op_type for n in candidates})
    write_model_card(out, {"quantization": (
        f"int8 static QDQ: {len(candidates)} {'/'.join(quantized)} node(s), weights int8 "
        f"{'per channel' if per_channel else 'per tensor'}, activations uint8 (MinMax on "
        f"{len(X)} calibration images); features and ai.onnx.ml operators float32")})
    return out


class _NoPreprocessAdvice(logging.Filter):
    """Drop ONNX Runtime's "consider pre-processing" advice: its symbolic shape inference
    fails on skl2onnx graphs, and the graphs are already shape-annotated."""

    def filter(self, record):
        return "pre-processing before quantization" not in record.getMessage() and (
            "run pre-processing" not in record.getMessage())


@contextlib.contextmanager
def _quiet_quantizer():
    root = logging.getLogger()
    flt = _NoPreprocessAdvice()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _latency_ms(sess, name, X, repeat):
    """Median wall time of one run on ``X`` in milliseconds (after one warm-up run)."""
    sess.run(None, {name: X})
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, {name: X})
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def compare_quantized(estimator_or_onx, X_cal, X_test, y_test=None, *, repeat=20):
    """fp32 vs int8: size, prediction change and latency, measured on ``X_test``.

    Parameters
    ----------
    estimator_or_onx : fitted estimator or onnx.ModelProto
        An estimator is exported twice with :func:`cvfeat.export.to_onnx` (input size
        from ``X_test``): as it ships in fp32 and with ``quantize='int8'`` (the fp32
        graph may fold a StandardScaler into the linear model and fuse a single-target
        linear head, which leaves the quantizer nothing; the int8 export keeps the
        MatMul). A ModelProto is taken as the fp32 graph and quantized as it is.
    X_cal : (m, h, w[, 3]) uint8 ndarray
        Calibration images for the int8 graph.
    X_test : (n, h, w[, 3]) uint8 ndarray
        Images the two graphs are compared on (and timed on, one and all at once).
    y_test : (n,) array-like, optional
        Targets: adds the mean absolute error (regression) or accuracy
        (classification) of both graphs.
    repeat : int, default=20
        Timed runs per measurement (median reported).

    Returns
    -------
    report : dict
        ``output`` compared (``prediction``, ``probabilities`` or ``features``),
        ``bytes_fp32``, ``bytes_int8``, ``size_ratio`` (int8 / fp32),
        ``max_abs_change`` and ``mean_abs_change`` of that output (target units for
        regressors), ``latency_ms_fp32_single`` / ``latency_ms_int8_single`` (one
        image), ``latency_ms_fp32_batch`` / ``latency_ms_int8_batch`` (per image, the
        whole of ``X_test`` in one run), ``n_test``, ``quantization`` (the int8 model
        card entry) and, with ``y_test``, ``mae_fp32`` / ``mae_int8`` or
        ``accuracy_fp32`` / ``accuracy_int8``.
    """
    from .card import read_model_card
    from .onnx import to_onnx
    from .parity import onnx_session

    X_test = check_images(X_test, estimator="compare_quantized", same_size=True)
    if hasattr(estimator_or_onx, "graph"):
        fp32 = estimator_or_onx
        int8 = quantize_int8(fp32, X_cal)
    else:  # each graph as to_onnx writes it (the fp32 one may fold and fuse the linear head)
        fp32 = to_onnx(estimator_or_onx, X_test[:1])
        int8 = to_onnx(estimator_or_onx, X_test[:1], quantize="int8", calibration=X_cal)
    sessions = [onnx_session(m) for m in (fp32, int8)]
    name = sessions[0].get_inputs()[0].name
    outputs = [o.name for o in sessions[0].get_outputs()]
    output = "probabilities" if "probabilities" in outputs else outputs[0]
    res = [dict(zip(outputs, s.run(None, {name: X_test}), strict=True)) for s in sessions]
    a, b = (np.asarray(r[output], dtype=np.float64) for r in res)
    report = {
        "output": output,
        "n_test": len(X_test),
        "bytes_fp32": fp32.ByteSize(),
        "bytes_int8": int8.ByteSize(),
        "size_ratio": int8.ByteSize() / fp32.ByteSize(),
        "max_abs_change": float(np.abs(b - a).max()),
        "mean_abs_change": float(np.abs(b - a).mean()),
        "quantization": read_model_card(int8).get("quantization"),
    }
    for tag, sess in zip(("fp32", "int8"), sessions, strict=True):
        report[f"latency_ms_{tag}_single"] = _latency_ms(sess, name, X_test[:1], repeat)
        report[f"latency_ms_{tag}_batch"] = (
            _latency_ms(sess, name, X_test, max(3, repeat // 4)) / len(X_test))
    if y_test is not None:
        y = np.asarray(y_test)
        for tag, r in zip(("fp32", "int8"), res, strict=True):
            if output == "prediction":
                report[f"mae_{tag}"] = float(np.mean(np.abs(r["prediction"] - y)))
            elif "label" in r:
                report[f"accuracy_{tag}"] = float(np.mean(r["label"] == y))
    return report
