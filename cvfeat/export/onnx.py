"""Export a fitted cvfeat pipeline as one ONNX graph: uint8 camera pixels in, prediction out.

:func:`to_onnx` is the whole user-facing story::

    onx = to_onnx(pipe, X_train[:1])          # raw uint8 pixels -> prediction
    onnx.save(onx, "model.onnx")

It registers every cvfeat converter with skl2onnx (:func:`register_all`: one module
per step under :mod:`cvfeat.export`, plus XGBoost through onnxmltools), checks that
every step of the estimator can be exported (naming the first one that cannot, by
its position, e.g. ``steps[1] FunctionTransformer``), converts, gives the outputs
fixed names, writes a model card into the graph's metadata and, on request,
quantizes the graph to int8 (:mod:`cvfeat.export.quantize`).

The graph
---------
* input ``images``: uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB), ``H``, ``W``
  and the colour fixed by ``X_sample``, ``N`` dynamic;
* outputs: regressors ``prediction`` float32 ``[N]`` (``[N, k]`` for k targets);
  classifiers ``label`` ``[N]`` and ``probabilities`` float32 ``[N, n_classes]``
  (no ZipMap); a pipeline of transformers only ``features`` float32 ``[N, d]``.
* operator domains: cvfeat's own steps, linear models and scalers use standard
  ``ai.onnx`` operators only (linear models and scalers are written as MatMul/Add and
  Sub/Div, not as the ``ai.onnx.ml`` LinearRegressor/Scaler); trees, forests,
  XGBoost and SVMs use ``ai.onnx.ml`` (TreeEnsemble*, SVM*), which ONNX Runtime
  implements but some other runtimes do not. The model card lists the domains used.

Shorter graphs
--------------
At a few dozen microseconds per image every node counts (ONNX Runtime spends about
0.4-1 us on each on a small CPU), so the fp32 graph has fewer of them than a
step-by-step conversion gives; the predictions are the same up to float32 rounding:

* a StandardScaler directly before a linear model is folded into it (float64 weights
  ``w / s``, intercept ``b - (w / s) @ m``): one MatMul + Add instead of Sub, Div,
  MatMul, Add (:func:`_fold_scaler`, with the cases where it does not apply);
* a Reshape read only by another Reshape goes (:func:`_merge_reshapes`);
* a single-target linear model at the end is a product and a sum,
  ``ReduceSum(x * w) + b``, which reads HOG's blocks whole (:func:`_fuse_linear_head`).

int8 exports keep the scaler and the MatMul, which the quantizer works on.

Micro-CNNs
----------
:class:`~cvfeat.models.MicroCNNRegressor`, :class:`~cvfeat.models.MicroCNNClassifier`
and :class:`~cvfeat.models.HybridCNNRegressor` export alone or as the last step of a
pipeline: their fitted network goes through PyTorch's own ONNX exporter (torch is
needed to export, not to run the graph) and is spliced into the graph
(:mod:`cvfeat.export.micro_cnn`); a hybrid's classical features are computed in the
same graph from the same pixels (:mod:`cvfeat.export.hybrid`).

Model card
----------
``to_onnx`` writes the model card of :mod:`cvfeat.export.card` into the graph's
``metadata_props``; :func:`~cvfeat.export.card.read_model_card` reads it back.

Trees
-----
Tree models (scikit-learn forests / boosting, XGBoost) are exact in the graph given its
float32 features (skl2onnx picks float32 thresholds equivalent to scikit-learn's float64
ones; XGBoost and onnxmltools both compare float32). The graph's features are computed
in float32 and the numpy path's in float64, so a feature within an ulp of a threshold
can take the other branch: rare on new images (0 of 400 measured), frequent for XGBoost
on its own training images, whose feature values are its split values. Check tree
parity on held-out images; ``docs/export_trees.md`` has the details and numbers.
"""

from __future__ import annotations

import copy
import datetime
import importlib
import json
import shlex
import sys

import numpy as np

from .._validation import check_images
from ._ops import FINITE_SLICE_MARK, MIN_OPSET
from .card import write_model_card

__all__ = ["check_exportable", "register_all", "supported_steps", "to_onnx"]

#: cvfeat's converter modules, one per step module (``features/hog.py`` ->
#: ``export/hog.py``); each defines ``register()``. A new step: one more line here.
CONVERTER_MODULES = (
    "hog",
    "color",
    "lbp",
    "sift",
    "preprocessing",
    "kernels",
    "micro_cnn",
    "hybrid",
)

#: estimators that compute fitted image steps inside their own graph, and the attribute
#: holding them (checked and walked like pipeline steps); matched by class, no import
_NESTED = {("cvfeat.models.hybrid", "HybridCNNRegressor"): "features_"}

#: default opsets: ai.onnx for cvfeat's converters, ai.onnx.ml for trees / SVMs
DEFAULT_OPSET = {"": MIN_OPSET, "ai.onnx.ml": 3}

INPUT_NAME = "images"
# ai.onnx.ml operators skl2onnx can avoid: linear models and scalers in ai.onnx
_AVOID_ML_OPS = {"LinearRegressor", "Scaler", "Normalizer"}

_registered = False


def register_all():
    """Register every cvfeat converter (and XGBoost's) with skl2onnx; idempotent.

    Called by :func:`to_onnx`; call it yourself only to use ``skl2onnx`` directly
    on cvfeat pipelines.

    Examples
    --------
    >>> from cvfeat.export import register_all
    >>> register_all()
    >>> register_all()  # the second call does nothing
    """
    global _registered
    if _registered:
        return
    for name in CONVERTER_MODULES:
        importlib.import_module(f"{__package__}.{name}").register()
    _register_xgboost()
    _registered = True


def _register_xgboost():
    """XGBRegressor / XGBClassifier through onnxmltools' XGBoost converter."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    def convert(scope, operator, container):
        model = operator.raw_operator
        booster = model.get_booster()
        if booster.feature_names is None:
            return convert_xgboost(scope, operator, container)
        # onnxmltools reads the feature index from split names 'f<i>'; a model fitted on a
        # DataFrame (set_output(transform='pandas')) has column names there instead, so
        # convert a copy whose booster has no feature names
        plain = booster.copy()
        plain.feature_names = None
        plain.feature_types = None
        clone = copy.copy(model)
        clone._Booster = plain
        operator.raw_operator = clone
        try:
            return convert_xgboost(scope, operator, container)
        finally:
            operator.raw_operator = model

    update_registered_converter(
        XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert)
    update_registered_converter(
        XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
        convert, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})


def _registry():
    from skl2onnx._supported_operators import sklearn_operator_name_map

    return sklearn_operator_name_map


def supported_steps():
    """Names of the steps :func:`to_onnx` can export, grouped by origin.

    Returns
    -------
    steps : dict
        ``{'cvfeat': [...], 'xgboost': [...], 'scikit-learn': [...]}``, class names.
    """
    register_all()
    groups = {"cvfeat": [], "xgboost": [], "scikit-learn": []}
    for cls in _registry():
        mod = cls.__module__.split(".")[0]
        key = mod if mod in ("cvfeat", "xgboost") else "scikit-learn"
        groups[key].append(cls.__name__)
    return {k: sorted(set(v)) for k, v in groups.items()}


def _supported_message():
    steps = supported_steps()
    common = [n for n in ("StandardScaler", "PCA", "Ridge", "SVR", "LinearSVR",
                          "RandomForestRegressor", "GradientBoostingRegressor", "KNeighborsRegressor")
              if n in steps["scikit-learn"]]
    return (
        f"Supported steps: cvfeat {', '.join(steps['cvfeat'])} (SIFTBoW with mode='dense'); "
        f"XGBoost {', '.join(steps['xgboost'])}; and the scikit-learn estimators skl2onnx "
        f"converts ({len(steps['scikit-learn'])}, e.g. {', '.join(common)}; full list: "
        "cvfeat.export.supported_steps()), inside Pipeline and FeatureUnion."
    )


# -- walking the estimator -----------------------------------------------------------


def _unwrap(est):
    """A fitted search (GridSearchCV, ...) exports its refitted best estimator."""
    from sklearn.model_selection._search import BaseSearchCV

    while isinstance(est, BaseSearchCV):
        if not hasattr(est, "best_estimator_"):
            raise ValueError(
                f"{type(est).__name__} has no best_estimator_ (refit=False or not fitted); "
                "export the refitted estimator itself."
            )
        est = est.best_estimator_
    return est


def _prune(est):
    """The same fitted estimator without 'passthrough' / None / 'drop' steps, which
    skl2onnx cannot parse (new Pipeline / FeatureUnion objects around the same steps)."""
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(est, Pipeline):
        steps = [(n, _prune(s)) for n, s in est.steps
                 if s is not None and not (isinstance(s, str) and s == "passthrough")]
        return Pipeline(steps)
    if isinstance(est, FeatureUnion):
        kept = [(n, _prune(t)) for n, t in est.transformer_list
                if not (isinstance(t, str) and t == "drop")]
        return FeatureUnion(kept, transformer_weights=est.transformer_weights)
    return est


#: skl2onnx converters of linear models that read only ``coef_`` and ``intercept_`` (and
#: the class labels): the models a StandardScaler before them can be folded into
_FOLDABLE_ALIASES = ("SklearnLinearRegressor", "SklearnLinearSVR", "SklearnLinearClassifier",
                     "SklearnLinearSVC")

#: fold a scaler only while the folded sum's float32 rounding is at most this many times
#: that of the scaled one (see :func:`_fold_growth`)
FOLD_MAX_GROWTH = 8.0


def _fold_growth(coef, mean, scale):
    """How much larger the float32 rounding error of the folded linear model can get.

    The scaled form sums ``w_j * z_j`` with ``z_j = (x_j - m_j) / s_j`` of order 1; the
    folded one sums ``(w_j / s_j) * x_j`` with ``|x_j / s_j|`` up to ``|m_j| / s_j + 1``
    and adds the folded intercept ``b - sum_j w_j m_j / s_j``. Both errors are ``eps``
    times a sum of ``|w_j|`` weighted by the term sizes, so the ratio of the two bounds
    is ``sum_j |w_j| (|m_j| / s_j + 1) / sum_j |w_j|`` (per output; the largest).
    """
    w = np.abs(np.atleast_2d(coef))
    total = w.sum(axis=1)
    grown = (w * (np.abs(mean) / scale + 1.0)).sum(axis=1)
    return float(np.max(np.where(total > 0, grown / np.where(total > 0, total, 1.0), 1.0)))


def _fold_scaler(scaler, model):
    """``model`` with ``scaler`` folded in, or None where the fold does not apply.

    ``model(scaler(x)) = x @ (w / s).T + (b - (w / s) @ m)``, computed in float64: one
    MatMul + Add in the graph instead of Sub, Div, MatMul, Add. It applies to a fitted
    StandardScaler (any ``with_mean`` / ``with_std``: the mean is 0 without ``with_mean``,
    the scale 1 without ``with_std``) directly before a linear model that skl2onnx
    converts from ``coef_`` and ``intercept_`` alone (``_FOLDABLE_ALIASES``: Ridge,
    LinearRegression, RidgeCV, Lasso, ElasticNet, LinearSVR, SGDRegressor,
    LogisticRegression, LinearSVC, RidgeClassifier, ...). It is skipped where the
    scaler's ``scale_`` has a zero or a non-finite value (the scaled model divides by
    it), where ``coef_`` has a width other than the scaler's, and where folding would
    make float32 cancel: features far from zero relative to their spread
    (:func:`_fold_growth` above ``FOLD_MAX_GROWTH``).
    """
    from sklearn.preprocessing import StandardScaler

    if type(scaler) is not StandardScaler or not hasattr(scaler, "n_features_in_"):
        return None
    if _registry().get(type(model)) not in _FOLDABLE_ALIASES:
        return None
    coef = getattr(model, "coef_", None)
    intercept = getattr(model, "intercept_", None)
    if coef is None or intercept is None:
        return None
    coef = np.asarray(coef, dtype=np.float64)
    d = scaler.n_features_in_
    if coef.ndim not in (1, 2) or coef.shape[-1] != d or not np.isfinite(coef).all():
        return None
    # with_mean=False still records mean_ (for var_) but does not subtract it
    mean = (np.asarray(scaler.mean_, np.float64) if scaler.with_mean and scaler.mean_ is not None
            else np.zeros(d))
    scale = (np.asarray(scaler.scale_, np.float64) if scaler.with_std and scaler.scale_ is not None
             else np.ones(d))
    if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale != 0).all()):
        return None
    if _fold_growth(coef, mean, scale) > FOLD_MAX_GROWTH:
        return None
    folded = copy.copy(model)  # the fitted model is left as it is
    folded.coef_ = coef / scale
    folded.intercept_ = np.asarray(intercept, np.float64) - folded.coef_ @ mean
    return folded


def _fold_scalers(est):
    """The same pipeline with every StandardScaler folded into the linear model right
    after it (:func:`_fold_scaler`), for the graph only: predictions are unchanged up
    to float rounding. New Pipeline objects where something was folded (``est`` itself
    where nothing was); the fitted steps are not modified."""
    from sklearn.pipeline import Pipeline

    if not isinstance(est, Pipeline):
        return est
    steps = [(n, _fold_scalers(s)) for n, s in est.steps]
    out = []
    for name, step in steps:
        if out:
            folded = _fold_scaler(out[-1][1], step)
            if folded is not None:
                out[-1] = (name, folded)
                continue
        out.append((name, step))
    if len(out) == len(est.steps) and all(
            new is old for (_, new), (_, old) in zip(out, est.steps, strict=True)):
        return est
    return Pipeline(out)


def _leaves(est, path):
    """(position, estimator) of every step, through Pipeline / FeatureUnion; a
    FeatureUnion branch 'passthrough' is yielded as the string."""
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(est, Pipeline):
        for i, (_name, step) in enumerate(est.steps):
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            yield from _leaves(step, f"{path}.steps[{i}]" if path else f"steps[{i}]")
    elif isinstance(est, FeatureUnion):
        for i, (_name, tr) in enumerate(est.transformer_list):
            if isinstance(tr, str) and tr in ("drop", "passthrough"):
                if tr == "passthrough":
                    yield f"{path}.transformer_list[{i}]" if path else f"transformer_list[{i}]", tr
                continue
            yield from _leaves(
                tr, f"{path}.transformer_list[{i}]" if path else f"transformer_list[{i}]")
    else:
        yield path or "estimator", est
        attr = _nested_attr(est)
        if attr is not None and hasattr(est, attr):
            yield from _leaves(getattr(est, attr), f"{path or 'estimator'}.{attr}")


def _nested_attr(est):
    for cls in type(est).__mro__:
        attr = _NESTED.get((cls.__module__, cls.__name__))
        if attr is not None:
            return attr
    return None


def input_spec(estimator):
    """``(h, w, c)`` of the images a fitted pipeline takes (c = 1 for grey).

    Read from the first step that recorded ``image_shape_`` in ``fit`` (every
    cvfeat image step does); raises if no step knows a fixed image size.
    """
    for _path, step in _leaves(_unwrap(estimator), ""):
        shape = getattr(step, "image_shape_", None)
        # a size-free step fitted on a ragged list knows only its channels: look further
        if shape is not None and shape[0] is not None:
            return tuple(int(v) for v in shape)
    raise ValueError(
        "cannot tell the input image size of this model: no step recorded a fixed image size "
        "in fit. Put cvfeat.preprocessing.Resize(size=(h, w)) first, or export with "
        "cvfeat.export.to_onnx(model, X_sample) and a sample image of the deployed size."
    )


def check_exportable(estimator):
    """Raise if a step of ``estimator`` cannot be exported, naming where it is.

    Parameters
    ----------
    estimator : estimator
        A (fitted) cvfeat / scikit-learn estimator or Pipeline.

    Raises
    ------
    TypeError
        A step has no ONNX converter: ``steps[1] FunctionTransformer has no ONNX
        converter``, with the list of supported steps.
    ValueError
        ``SIFTBoW(mode='keypoints')`` (OpenCV's keypoint detector has no ONNX form;
        ``mode='dense'`` is the exportable alternative).
    """
    register_all()
    registry = _registry()
    from sklearn.preprocessing import FunctionTransformer

    from ..features import SIFTBoW

    for path, step in _leaves(_unwrap(estimator), ""):
        if isinstance(step, str):  # 'passthrough' inside a FeatureUnion
            raise TypeError(
                f"{path} 'passthrough' has no ONNX converter: a FeatureUnion branch that "
                "passes raw images through would put pixels next to features. Remove it. "
                + _supported_message())
        cls = type(step).__name__
        if isinstance(step, SIFTBoW) and step.mode != "dense":
            raise ValueError(
                f"{path} SIFTBoW(mode={step.mode!r}) cannot be exported: OpenCV's keypoint "
                "detector has no ONNX form. Use SIFTBoW(mode='dense') (a fixed grid of SIFT "
                "descriptors, same bag-of-words encoding), which exports to ONNX, and refit."
            )
        if isinstance(step, FunctionTransformer) and (
                step.func is not None or step.inverse_func is not None):
            raise TypeError(
                f"{path} {cls} has no ONNX converter: its func={step.func!r} is arbitrary "
                "Python (only FunctionTransformer() without func, the identity, exports). "
                "Replace it by a cvfeat or scikit-learn step. " + _supported_message())
        if type(step) not in registry:
            raise TypeError(
                f"{path} {cls} has no ONNX converter. " + _supported_message()
                + " Replace the step, or register a converter with "
                "skl2onnx.update_registered_converter."
            )


def _task(est):
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(est):
        return "classification"
    if is_regressor(est):
        return "regression"
    if hasattr(est, "transform"):
        return "features"
    raise TypeError(
        f"{type(est).__name__} is neither a regressor, a classifier nor a transformer; "
        "to_onnx exports pipelines that end with one of those."
    )


def _classifiers(est):
    from sklearn.base import is_classifier

    return [s for _, s in _leaves(est, "") if not isinstance(s, str) and is_classifier(s)]


def _has_zipmap(clf):
    """Whether skl2onnx's converter of ``clf`` takes the ``zipmap`` option (LinearSVC
    and SVC without probabilities do not: they never add a ZipMap)."""
    from skl2onnx.common._registration import get_converter

    allowed = get_converter(_registry()[type(clf)]).get_allowed_options()
    return allowed is None or "zipmap" in allowed


def _describe(est):
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(est, Pipeline):
        return " -> ".join(_describe(s) for _, s in est.steps
                           if s is not None and not isinstance(s, str))
    if isinstance(est, FeatureUnion):
        parts = [_describe(t) for _, t in est.transformer_list if not isinstance(t, str)]
        return f"FeatureUnion({', '.join(parts)})"
    attr = _nested_attr(est)
    if attr is not None and hasattr(est, attr):
        return f"{type(est).__name__}({_describe(getattr(est, attr))})"
    return type(est).__name__


# -- to_onnx -------------------------------------------------------------------------


def _check_sample(X_sample):
    X = check_images(X_sample, estimator="to_onnx", same_size=True)
    if X.dtype != np.uint8:
        raise TypeError(
            f"to_onnx: X_sample has dtype {X.dtype}, but the exported graph takes the camera's "
            "uint8 pixels (0-255) and converts them itself. Pass uint8 images of the size "
            "and colour the device will send, e.g. X_train[:1] of a uint8 training set "
            "(for float images in [0, 1]: (X * 255).round().astype(np.uint8))."
        )
    return X


def _opsets(target_opset):
    opset = dict(DEFAULT_OPSET)
    if isinstance(target_opset, dict):
        opset.update(target_opset)
    elif target_opset is not None:
        opset[""] = int(target_opset)
    if opset[""] < MIN_OPSET:
        raise ValueError(
            f"to_onnx: target_opset {opset['']} is too old; cvfeat's converters need ai.onnx "
            f"opset >= {MIN_OPSET}. Leave target_opset=None (default {DEFAULT_OPSET})."
        )
    return opset


def _reference(est, X, task):
    """The estimator's own output on a few sample images (also checks it is usable)."""
    return np.asarray(est.transform(X) if task == "features" else est.predict(X))


def _rename(graph, old, new):
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    for out in graph.output:
        if out.name == old:
            out.name = new


def _finish_outputs(onx, task, ref):
    """Give the outputs cvfeat's names; a single-target regressor returns ``[N]``."""
    from onnx import TensorProto, helper

    graph = onx.graph
    outs = list(graph.output)
    if task == "classification":
        names = ["label", "probabilities"]
    elif task == "regression":
        names = ["prediction"]
    else:
        names = ["features"]
    if len(outs) != len(names):
        raise RuntimeError(
            f"to_onnx: skl2onnx produced outputs {[o.name for o in outs]}; expected "
            f"{len(names)} ({', '.join(names)}). Please report this with the pipeline."
        )
    for out, new in zip(outs, names, strict=True):
        if out.name != new:
            _rename(graph, out.name, new)
    first = graph.output[0]
    if task == "regression":
        elem = first.type.tensor_type.elem_type
        raw = "prediction_raw"
        _rename(graph, "prediction", raw)
        x = raw
        if elem != TensorProto.FLOAT:
            graph.node.append(helper.make_node("Cast", [x], ["prediction_f32"],
                                               to=TensorProto.FLOAT, name="cvfeat_cast"))
            x = "prediction_f32"
        k = 1 if ref.ndim == 1 else ref.shape[1]
        shape = [-1] if ref.ndim == 1 else [-1, k]
        graph.initializer.append(
            helper.make_tensor("prediction_shape", TensorProto.INT64, [len(shape)], shape))
        graph.node.append(helper.make_node("Reshape", [x, "prediction_shape"], ["prediction"],
                                           name="cvfeat_prediction"))
        del graph.output[0]
        graph.output.insert(0, helper.make_tensor_value_info(
            "prediction", TensorProto.FLOAT, ["N"] if ref.ndim == 1 else ["N", k]))
    for vi in list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"
    return onx


def _merge_reshapes(graph):
    """Drop a Reshape whose only reader is another Reshape to a constant shape.

    ``Reshape(Reshape(x, a), b) == Reshape(x, b)`` when ``b`` is a constant without
    zeros (a 0 copies a dimension of the input, which the first Reshape may have
    changed). skl2onnx ends a linear model with ``Reshape [-1, 1]`` and
    :func:`_finish_outputs` adds ``Reshape [-1]``; ONNX Runtime runs both.
    """
    from onnx import numpy_helper

    consts = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    producer = {o: node for node in graph.node for o in node.output}
    dropped = []
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        if (numpy_helper.to_array(consts[node.input[1]]) == 0).any():
            continue
        first = producer.get(node.input[0])
        if (first is None or first.op_type != "Reshape" or first.output[0] in outputs
                or len(readers.get(first.output[0], [])) != 1):
            continue
        node.input[0] = first.input[0]
        producer[first.output[0]] = None
        dropped.append(first)
    for node in dropped:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    stale = {node.input[1] for node in dropped} - used
    for init in [i for i in graph.initializer if i.name in stale]:
        graph.initializer.remove(init)


def _fuse_linear_head(onx):
    """A single-target linear model at the end of the graph as Mul + ReduceSum + Add.

    skl2onnx writes ``x @ W + b`` as MatMul + Add + Reshape ``[-1, 1]`` (then ``[-1]``);
    for one output column, ``sum(x * w) + b`` is the same sum and costs ONNX Runtime
    less (its GEMM is slower than a product and a reduction for a ``[d, 1]`` weight,
    and the Reshape goes). Where ``x`` is ``Reshape(Slice(t))`` with the Slice marked
    :data:`~cvfeat.export._ops.FINITE_SLICE_MARK` (HOG drops its block-norm epsilon
    entries so), the product reads ``t`` whole, with zero weights on the dropped
    entries, and the Slice and the Reshape go too. Shapes come from ONNX shape
    inference; where they are not static, the graph is left as it is.
    """
    from onnx import helper, numpy_helper, shape_inference

    graph = onx.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers = {}
    for n in graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    consts = {i.name: i for i in graph.initializer}

    def read_once(name, op_type):  # the node of op_type writing `name`, read only once
        n = producer.get(name)
        return n if n is not None and n.op_type == op_type and readers.get(name) == 1 else None

    def const(node, k):
        names = list(node.input)
        if k >= len(names) or names[k] not in consts:
            return None
        return numpy_helper.to_array(consts[names[k]])

    last = producer.get("prediction")
    if last is None or last.op_type != "Reshape" or not np.array_equal(const(last, 1), [-1]):
        return onx
    add = read_once(last.input[0], "Add")
    matmul = add and (read_once(add.input[0], "MatMul") or read_once(add.input[1], "MatMul"))
    if not matmul:
        return onx
    bias = const(add, 1 if add.input[0] == matmul.output[0] else 0)
    weight = const(matmul, 1)
    if bias is None or bias.size != 1 or weight is None or weight.ndim != 2 or weight.shape[1] != 1:
        return onx
    shapes = {v.name: v.type.tensor_type for v in shape_inference.infer_shapes(onx).graph.value_info}

    def inner_shape(name):  # static shape after the batch axis, or None
        t = shapes.get(name)
        if t is None or not t.HasField("shape"):
            return None
        dims = t.shape.dim[1:]
        return [d.dim_value for d in dims] if all(d.HasField("dim_value") for d in dims) else None

    x, w, gone = matmul.input[0], weight[:, 0], [last, add, matmul]
    if inner_shape(x) != [w.size]:
        return onx
    flat = read_once(x, "Reshape")
    part = flat and read_once(flat.input[0], "Slice")
    if part and FINITE_SLICE_MARK in part.name:
        whole = inner_shape(part.input[0])
        starts, ends, axes, steps = (const(part, k) for k in (1, 2, 3, 4))
        if (whole and starts is not None and ends is not None and axes is not None
                and axes.size == 1 and axes[0] % (len(whole) + 1) == len(whole)
                and starts[0] == 0 and 0 < ends[0] < whole[-1]
                and (len(part.input) < 5 or (steps is not None and steps[0] == 1))
                and int(np.prod(whole[:-1])) * int(ends[0]) == w.size):
            padded = np.zeros(whole, w.dtype)
            padded[..., :ends[0]] = w.reshape(*whole[:-1], ends[0])
            x, w = part.input[0], padded
            gone += [flat, part]
    name = "cvfeat_head"
    graph.initializer.extend([
        numpy_helper.from_array(w, f"{name}_weight"),
        numpy_helper.from_array(bias.reshape(()).astype(w.dtype), f"{name}_bias"),
        numpy_helper.from_array(np.arange(1, w.ndim + 1, dtype=np.int64), f"{name}_axes")])
    stale = {i for n in gone for i in n.input}
    for n in gone:
        graph.node.remove(n)
    graph.node.extend([
        helper.make_node("Mul", [x, f"{name}_weight"], [f"{name}_product"], name=f"{name}_Mul"),
        helper.make_node("ReduceSum", [f"{name}_product", f"{name}_axes"], [f"{name}_sum"],
                         keepdims=0, name=f"{name}_ReduceSum"),
        helper.make_node("Add", [f"{name}_sum", f"{name}_bias"], ["prediction"],
                         name=f"{name}_Add")])
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name in stale - used]:
        graph.initializer.remove(init)
    return onx


def _count_params(est):
    from ..budget import count_params

    try:
        return int(count_params(est))
    except (TypeError, ValueError):
        return None


def _domains(onx):
    return sorted({n.domain or "ai.onnx" for n in onx.graph.node})


def to_onnx(estimator, X_sample, *, target_opset=None, name=None, quantize=None,
            calibration=None, target_name=None, command=None):
    """Export a fitted pipeline as one ONNX graph from uint8 pixels to its output.

    Parameters
    ----------
    estimator : fitted estimator
        A Pipeline (or FeatureUnion, or single step) whose first steps take images:
        cvfeat steps, then scikit-learn / XGBoost models. A fitted GridSearchCV /
        RandomizedSearchCV exports its ``best_estimator_``.
    X_sample : (n, h, w[, 3]) uint8 ndarray
        A few images exactly as the device sends them: they fix the input's height,
        width and colour (the batch size stays dynamic) and are run through
        ``estimator`` once as a check. Float images are refused: the graph takes
        the camera's uint8 pixels.
    target_opset : int or dict, optional
        ``{'': 18, 'ai.onnx.ml': 3}`` by default; an int sets the ai.onnx opset
        (>= 18).
    name : str, optional
        Graph name (default ``'cvfeat'``).
    quantize : {None, 'int8'}, default=None
        'int8': static QDQ quantization of the weight-carrying operators after the
        features (see :func:`cvfeat.export.quantize.quantize_int8`); needs
        ``calibration``.
    calibration : (m, h, w[, 3]) uint8 ndarray, optional
        Representative images for ``quantize='int8'`` (a few dozen to a few hundred).
    target_name : str, optional
        What the model predicts (model card).
    command : str, optional
        Recorded in the model card; default: the command line (``sys.argv``).

    Returns
    -------
    onx : onnx.ModelProto
        Input ``images`` uint8 ``[N, h, w]`` / ``[N, h, w, 3]``; outputs ``prediction``
        float32 ``[N]`` (regressors), ``label`` and ``probabilities`` (classifiers) or
        ``features`` float32 ``[N, d]`` (transformers). Save with ``onnx.save``.

    Raises
    ------
    TypeError
        Float ``X_sample``; a step without converter (named by position, e.g.
        ``steps[1] FunctionTransformer has no ONNX converter``).
    ValueError
        ``SIFTBoW(mode='keypoints')``; ``X_sample`` that does not fit the estimator;
        ``quantize='int8'`` without ``calibration``.

    See Also
    --------
    check_parity : compare the graph's outputs with the estimator's.
    read_model_card : the metadata written here.
    compare_quantized : fp32 vs int8 size, accuracy and latency.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from cvfeat.export import to_onnx
    >>> from cvfeat.features import HOG
    >>> from cvfeat.preprocessing import Grayscale
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (8, 24, 32, 3), dtype=np.uint8)
    >>> y = rng.random(8)
    >>> pipe = make_pipeline(Grayscale(), HOG(pixels_per_cell=(8, 8)), Ridge()).fit(X, y)
    >>> onx = to_onnx(pipe, X[:1])
    >>> [i.name for i in onx.graph.input], [o.name for o in onx.graph.output]
    (['images'], ['prediction'])
    >>> sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> pred = sess.run(None, {"images": X})[0]
    >>> pred.shape, bool(np.allclose(pred, pipe.predict(X), rtol=1e-4, atol=1e-5))
    ((8,), True)
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import UInt8TensorType

    import cvfeat

    register_all()
    X = _check_sample(X_sample)
    if quantize not in (None, "int8"):
        raise ValueError(f"to_onnx: quantize must be None or 'int8'; got {quantize!r}.")
    if quantize == "int8" and calibration is None:
        raise ValueError(
            "to_onnx: quantize='int8' needs calibration=X_cal, a few dozen representative "
            "uint8 images of the input size, to set the activation ranges."
        )
    est = _unwrap(estimator)
    check_exportable(est)
    task = _task(est)
    ref = _reference(est, X[:2], task)
    est = _prune(est)
    steps = _describe(est)
    # fp32: StandardScaler + linear model -> one MatMul + Add; int8 keeps the scaler, so
    # that the quantized MatMul sees the standardized features, as before
    graph_est = _fold_scalers(est) if quantize is None else est
    opset = _opsets(target_opset)
    # every classifier gets an entry: skl2onnx's Pipeline parser would otherwise add
    # zipmap=True, which LinearSVC's converter rejects
    options = {id(c): {"zipmap": False} if _has_zipmap(c) else {}
               for c in _classifiers(graph_est)}
    onx = convert_sklearn(
        graph_est, initial_types=[(INPUT_NAME, UInt8TensorType([None, *X.shape[1:]]))],
        target_opset=opset, options=options or None, name=name or "cvfeat",
        black_op=_AVOID_ML_OPS)
    onx = _finish_outputs(onx, task, ref)
    _merge_reshapes(onx.graph)
    rewrites = []
    if graph_est is not est:
        rewrites.append("StandardScaler folded into the linear model")
    if quantize is None and task == "regression" and ref.ndim == 1:
        def products(g):
            return sum(n.op_type in ("MatMul", "Gemm") for n in g.node)

        before = products(onx.graph)
        onx = _fuse_linear_head(onx)
        if products(onx.graph) < before:
            rewrites.append("linear head fused into Mul + ReduceSum")
    onx.producer_name, onx.producer_version = "cvfeat", cvfeat.__version__
    onx.doc_string = f"cvfeat {steps}: uint8 images {list(X.shape[1:])} -> {task}"
    classes = None
    if task == "classification":
        classes = json.dumps(np.asarray(est.classes_).tolist())
    n_params = _count_params(est)
    write_model_card(onx, {
        "version": cvfeat.__version__,
        "count_params": "unknown" if n_params is None else n_params,
        "input": INPUT_NAME,
        "input_size": f"{X.shape[1]}x{X.shape[2]}",
        "input_color": "gray" if X.ndim == 3 else "rgb",
        "input_dtype": "uint8",
        "task": task,
        "outputs": ",".join(o.name for o in onx.graph.output),
        "classes": classes,
        "target_name": target_name,
        "steps": steps,
        "domains": ",".join(_domains(onx)),
        "opset": ",".join(f"{d or 'ai.onnx'}={v}" for d, v in sorted(opset.items())),
        "command": command if command is not None else shlex.join(sys.argv),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quantization": "none",
        # what only the fp32 graph does (int8 exports keep the MatMul for the quantizer)
        "fp32_rewrites": "; ".join(rewrites) or "none",
    })
    if quantize == "int8":
        from .quantize import quantize_int8

        onx = quantize_int8(onx, calibration)
    return onx
