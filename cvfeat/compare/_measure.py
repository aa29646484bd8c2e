"""What :func:`cvfeat.compare.compare_models` measures besides the scores: MACs and latency.

MACs
----
``macs`` is the number of multiply-accumulates **with learned values** for one image:

* micro-CNNs: ``n_macs_`` (every convolution and linear layer; BatchNorm folds away);
  a hybrid adds its features' learned MACs and one per standardised feature; a
  distilled model is its student;
* classical pipelines, step by step: SIFT-BoW ``n_patches * n_words * 128`` (distances
  to the codebook), scalers ``d``, PCA ``k d``, Nystroem ``n d + n^2``, linear models
  ``coef_.size``, kernel SVR ``n_SV (d + 1)``, KNN ``n_train d``; trees and XGBoost 0
  (they compare, they do not multiply); HOG, LBP, colour histograms, Resize,
  Grayscale, ColorConvert 0 (no learned values).

The fixed arithmetic of the feature steps (gradients, binning, interpolation: a few
tens of operations per pixel) and of a CNN (ReLU, pooling) is not in ``macs``: compare
end-to-end compute with ``latency_us``. A step not listed above gives NaN (the
details say which).

Latency
-------
``latency_us`` is the best of ``repeat`` single-image predictions (after one warm-up
call) in microseconds: in ONNX Runtime (CPU, one thread, the graph of
:func:`cvfeat.export.to_onnx`) when the model exports, else ``estimator.predict`` in
Python; ``details['latency_runtime']`` says which, and ``details['export']`` why a model
did not export.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["deployable", "learned_macs", "measure_latency", "unwrap_search"]

_STATELESS = {"HOG", "LBP", "ColorHistogram", "Resize", "Grayscale", "ColorConvert",
              "ImageLoader", "Normalizer", "FunctionTransformer"}
_TREES = {"XGBRegressor", "DecisionTreeRegressor", "ExtraTreeRegressor",
          "RandomForestRegressor", "ExtraTreesRegressor", "GradientBoostingRegressor",
          "HistGradientBoostingRegressor", "LGBMRegressor"}


def unwrap_search(model):
    """The refitted best estimator of a (nested) search; the model itself otherwise."""
    while hasattr(model, "best_estimator_"):
        model = model.best_estimator_
    return model


def deployable(model):
    """The estimator to export: a search's best estimator, a distilled model's student.

    Parameters
    ----------
    model : fitted estimator

    Returns
    -------
    estimator : fitted estimator
        What :func:`cvfeat.export.to_onnx` takes; it predicts what ``model`` predicts.
    """
    from ._distill import DistilledRegressor

    model = unwrap_search(model)
    if isinstance(model, DistilledRegressor):
        model = model.student_
    return model


class _UnknownMacs(Exception):
    pass


def _macs(est, shape):
    """Learned-value MACs of one image through ``est``; ``shape`` = (h, w, c) it receives."""
    from sklearn.pipeline import FeatureUnion, Pipeline

    cls = type(est).__name__
    if est is None or isinstance(est, str):
        return 0, shape
    if isinstance(est, Pipeline):
        total = 0
        for _, step in est.steps:
            n, shape = _macs(step, shape)
            total += n
        return total, shape
    if isinstance(est, FeatureUnion):
        return sum(_macs(t, shape)[0] for _, t in est.transformer_list), None
    if cls in ("MicroCNNRegressor", "MicroCNNClassifier"):
        return int(est.n_macs_), None
    if cls == "HybridCNNRegressor":
        return int(est.n_macs_) + _macs(est.features_, shape)[0] + int(
            est.n_features_extra_), None
    if cls == "DistilledRegressor":
        return _macs(est.student_, shape)
    if cls == "TransformedTargetRegressor":
        return _macs(est.regressor_, shape)[0] + 1, None
    if cls == "Resize":
        size = est.size if isinstance(est.size, (tuple, list)) else (est.size, est.size)
        return 0, (int(size[0]), int(size[1]), shape[2] if shape else 1)
    if cls in ("Grayscale",):
        return 0, None if shape is None else (shape[0], shape[1], 1)
    if cls in _STATELESS:
        return 0, None
    if cls == "SIFTBoW":
        if est.mode != "dense" or shape is None:
            raise _UnknownMacs("SIFTBoW(mode='keypoints'): the number of keypoints varies")
        ny = (shape[0] - est.patch_size) // est.step + 1
        nx = (shape[1] - est.patch_size) // est.step + 1
        return ny * nx * int(est.codebook_.size), None
    if cls in _TREES:
        return 0, None
    if cls in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"):
        return int(est.n_features_in_), None
    if cls == "PCA":
        return int(est.components_.size), None
    if cls == "Nystroem":
        return int(est.components_.size) + int(est.normalization_.size), None
    if cls in ("SVR", "NuSVR") and getattr(est, "kernel", None) != "precomputed":
        return int(est.support_vectors_.size) + int(est.dual_coef_.size), None
    if cls in ("KNeighborsRegressor",):
        return int(est.n_samples_fit_) * int(est.n_features_in_), None
    if hasattr(est, "coef_"):
        return int(np.asarray(est.coef_).size), None
    raise _UnknownMacs(f"MACs unknown for {cls}")


def learned_macs(estimator, image_shape):
    """Multiply-accumulates with learned values for one image (see the module docstring).

    Parameters
    ----------
    estimator : fitted estimator
    image_shape : (h, w, c) tuple
        The images it receives.

    Returns
    -------
    macs : float
        NaN when a step's MACs are unknown.
    note : str
        Empty, or why the MACs are NaN.
    """
    try:
        return float(_macs(unwrap_search(estimator), tuple(image_shape))[0]), ""
    except _UnknownMacs as exc:
        return float("nan"), str(exc)
    except AttributeError as exc:  # a step without the expected fitted attributes
        return float("nan"), f"MACs unknown: {exc}"


def _best_time(call, repeat):
    call()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


def as_uint8(X):
    """uint8 pixels of validated images (float [0, 1] images scaled and rounded)."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return X
    return np.rint(np.clip(X, 0, 1) * 255).astype(np.uint8)


def measure_latency(model, X_one, *, repeat=30, runtime="onnx"):
    """Single-image latency in microseconds, and how it was measured.

    Parameters
    ----------
    model : fitted estimator
    X_one : (1, h, w[, c]) ndarray
        One image as the model takes it.
    repeat : int, default=30
        Timed calls; the best is reported.
    runtime : {'onnx', 'python'}, default='onnx'
        'onnx' exports the model and times ONNX Runtime (one thread), falling back
        to Python when it does not export.

    Returns
    -------
    latency_us : float
    runtime : {'onnx', 'python'}
        What was timed.
    note : str
        Why it is not ONNX, or empty.
    """
    note = ""
    if runtime == "onnx":
        try:
            import onnxruntime as ort

            from ..export import to_onnx

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onx = to_onnx(deployable(model), as_uint8(X_one[:1]), command="compare")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(onx.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: as_uint8(X_one[:1])}
            return _best_time(lambda: sess.run(None, feed), repeat), "onnx", ""
        except Exception as exc:  # noqa: BLE001 - any export failure: time Python instead
            note = f"not exported ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    X1 = X_one[:1]
    return _best_time(lambda: model.predict(X1), max(3, repeat // 3)), "python", note
