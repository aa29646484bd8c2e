"""Parameter budget of a fitted estimator: the whole pipeline, counted in one unit.

"A few thousand parameters" means every learned value that inference needs, from
the first feature step to the regressor: :func:`count_params` walks pipelines,
feature unions and the other supported meta-estimators and adds up what each
fitted step stores; :func:`size_bytes` turns that into bytes and
:func:`describe` shows it step by step.

What is counted (one "parameter" = one stored number)
-----------------------------------------------------
==========================================  =================================================
Step                                        Counted values
==========================================  =================================================
HOG, ColorHistogram, LBP, Resize,           0 (stateless: hyper-parameters are not learned)
Grayscale, ColorConvert, ImageLoader
SIFTBoW                                     codebook ``k x d`` (``codebook_.size``), + 1
                                            (``beta_``) when ``encoding='soft'``
StandardScaler                              ``d`` means if ``with_mean`` + ``d`` scales if
                                            ``with_std``
MinMaxScaler                                ``2d`` (``scale_`` and ``min_``)
MaxAbsScaler                                ``d``
RobustScaler                                ``d`` centres if ``with_centering`` + ``d`` scales
                                            if ``with_scaling``
Normalizer                                  0
PCA                                         ``k*d`` components + ``d`` mean (+ ``k``
                                            variances when ``whiten=True``)
Nystroem                                    ``n_components*d`` landmarks (``components_``) +
                                            ``n_components**2`` normalisation matrix
linear models (``sklearn.linear_model``,    ``coef_.size`` + ``intercept_.size`` (the
LinearSVR, LinearSVC)                       intercept only when ``fit_intercept=True``)
SVR, NuSVR, SVC, NuSVC                      ``n_SV*d`` support vectors + ``dual_coef_.size``
                                            + ``intercept_.size``; SVR: ``n_SV*(d+1)+1``
decision / extra tree                       2 per internal node (feature, threshold) + per
                                            leaf its values (1 for regression; one per class
                                            and output for classifiers / multi-output)
random forest, extra trees                  sum over the trees
GradientBoosting                            sum over the trees + the initial estimator
                                            (``init_``, e.g. DummyRegressor: 1 per output)
HistGradientBoosting                        2 per internal node + 1 per leaf, over all trees,
                                            + the baseline (1 per tree of an iteration)
XGBoost (XGBRegressor, XGBClassifier, ...)  gbtree / dart: 2 per internal node + the leaf
                                            vector size per leaf, over the trees used by
                                            ``predict`` (up to ``best_iteration``), + the
                                            ``base_score`` values (+ 1 weight per tree for
                                            dart); gblinear: ``coef_`` + ``intercept_``
KNeighbors/RadiusNeighbors Regressor,       the stored training set: ``n_samples*d`` +
Classifier                                  ``n_samples*n_outputs`` targets
DummyRegressor / DummyClassifier            ``constant_.size`` / ``class_prior_.size``
FunctionTransformer                         0 when ``func`` / ``inverse_func`` are None or
                                            numpy ufuncs (``np.log``...) without kw_args;
                                            any other callable is refused (it may hide data)
==========================================  =================================================

Meta-estimators add nothing themselves: ``Pipeline`` (steps; ``'passthrough'`` /
``None`` = 0), ``FeatureUnion`` (transformers; ``'drop'`` = 0),
``TransformedTargetRegressor`` (``regressor_`` + ``transformer_``),
``GridSearchCV`` / ``RandomizedSearchCV`` / ``Halving*SearchCV`` (``best_estimator_``),
``MultiOutputRegressor`` / ``MultiOutputClassifier`` (``estimators_``) and
``RANSACRegressor`` (``estimator_``).

Not counted: class labels (``classes_``), integer bookkeeping such as libsvm's
``n_support_``, the missing-value direction of tree nodes, the categories of
categorical splits (such a split counts as feature + threshold), the search index
(KD / ball tree) of nearest neighbours, and ``probA_`` / ``probB_`` of
``SVC(probability=True)`` (used by ``predict_proba`` only).

A subclass of a supported class is counted like that class; a subclass that adds
learned state, and any other estimator, needs :func:`register_counter`. Nothing
is guessed: an estimator that cannot be counted raises a ``TypeError`` that
names it and where it sits.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = ["count_params", "describe", "register_counter", "size_bytes"]

# Counters added through register_counter(cls, func), keyed by class.
_REGISTERED: dict[type, Callable] = {}


# -- leaf counters: fitted estimator -> number of learned values -----------------------


def _zero(est):
    return 0


def _sift_bow(est):
    # beta_ (kernel sharpness) is used by soft encoding only.
    return int(np.size(est.codebook_)) + int(est.encoding == "soft")


def _standard_scaler(est):
    n = 0
    if est.with_mean:
        n += np.size(est.mean_)
    if est.with_std:
        n += np.size(est.scale_)
    return n


def _minmax_scaler(est):
    return np.size(est.scale_) + np.size(est.min_)


def _maxabs_scaler(est):
    return np.size(est.scale_)


def _robust_scaler(est):
    n = 0
    if est.with_centering:
        n += np.size(est.center_)
    if est.with_scaling:
        n += np.size(est.scale_)
    return n


def _pca(est):
    n = np.size(est.components_) + np.size(est.mean_)
    if est.whiten:
        n += np.size(est.explained_variance_)
    return n


def _nystroem(est):
    return np.size(est.components_) + np.size(est.normalization_)


def _linear(est):
    if not hasattr(est, "coef_"):
        raise _Unknown("it has no coef_ to count")
    n = np.size(est.coef_)
    if getattr(est, "fit_intercept", True):
        n += np.size(est.intercept_)
    return n


def _libsvm(est):
    return np.size(est.support_vectors_) + np.size(est.dual_coef_) + np.size(est.intercept_)


def _tree_structure(tree):
    """2 per internal node + per leaf one value per output and class (sklearn ``Tree``)."""
    n_leaves = int(np.count_nonzero(tree.children_left == -1))
    n_internal = int(tree.node_count) - n_leaves
    per_leaf = int(np.sum(tree.n_classes))  # 1 per output for regression trees
    return 2 * n_internal + per_leaf * n_leaves


def _decision_tree(est):
    return _tree_structure(est.tree_)


def _forest(est):
    return sum(_tree_structure(t.tree_) for t in est.estimators_)


def _gradient_boosting(est):
    n = sum(_tree_structure(t.tree_) for t in np.ravel(est.estimators_))
    if not (isinstance(est.init_, str) and est.init_ == "zero"):
        n += _count(est.init_, "init_", "init")
    return n


def _hist_gradient_boosting(est):
    n = 0
    for iteration in est._predictors:
        for predictor in iteration:
            is_leaf = predictor.nodes["is_leaf"].astype(bool)
            n += 2 * int(np.count_nonzero(~is_leaf)) + int(np.count_nonzero(is_leaf))
    return n + int(np.size(est._baseline_prediction))


def _xgboost(est):
    if est.get_params().get("booster") == "gblinear":
        return np.size(est.coef_) + np.size(est.intercept_)
    booster = est.get_booster()
    try:
        best = est.best_iteration  # predict() stops there when early stopping was used
    except AttributeError:
        best = None
    if best is not None:
        booster = booster[: best + 1]
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    learner = model["learner"]
    gb = learner["gradient_booster"]
    trees = (gb["gbtree"] if "gbtree" in gb else gb)["model"]["trees"]
    n = 0
    for tree in trees:
        left = np.asarray(tree["left_children"])
        right = np.asarray(tree["right_children"])
        leaf_size = max(1, int(tree["tree_param"].get("size_leaf_vector", 1)))
        # Walk from the root so that pruned ("deleted") slots are not counted. A leaf is
        # left == -1 (multi-target trees reuse right_children of leaves as indices).
        frontier = np.array([0])
        while frontier.size:
            internal = frontier[left[frontier] != -1]
            n += 2 * internal.size + leaf_size * (frontier.size - internal.size)
            frontier = np.concatenate([left[internal], right[internal]])
    if gb.get("name") == "dart":
        n += len(gb.get("weight_drop", ()))
    base = learner["learner_model_param"]["base_score"].strip("[]")
    return n + len([v for v in base.split(",") if v.strip()])


def _neighbors(est):
    y = est._y
    n_outputs = 1 if y.ndim == 1 else y.shape[1]
    return int(est.n_samples_fit_) * (int(est.n_features_in_) + n_outputs)


def _dummy_regressor(est):
    return np.size(est.constant_)


def _dummy_classifier(est):
    return np.size(est.class_prior_)


def _function_transformer(est):
    for name in ("func", "inverse_func"):
        f = getattr(est, name)
        if f is not None and not isinstance(f, np.ufunc):
            raise _Unknown(
                f"its {name} {getattr(f, '__name__', f)!r} is arbitrary code that may hold "
                "learned values (only None or a numpy ufunc such as np.log counts as 0)"
            )
    for name in ("kw_args", "inv_kw_args"):
        if getattr(est, name):
            raise _Unknown(f"its {name} may hold learned values")
    return 0


# -- meta-estimators: fitted estimator -> [(describe name, attribute location, child)] ---


def _pipeline_children(est):
    return [(name, f"steps[{i}]", step) for i, (name, step) in enumerate(est.steps)]


def _union_children(est):
    return [(name, f"transformer_list[{i}]", t) for i, (name, t) in enumerate(est.transformer_list)]


def _ttr_children(est):
    return [
        ("regressor", "regressor_", est.regressor_),
        ("transformer", "transformer_", est.transformer_),
    ]


def _search_children(est):
    if not hasattr(est, "best_estimator_"):
        raise _NoChild(
            f"it has no best_estimator_ (it was fitted with refit={est.refit!r}); fit it "
            "with refit=True so that there is a fitted model to count"
        )
    return [(None, "best_estimator_", est.best_estimator_)]


def _multioutput_children(est):
    return [
        (f"{type(e).__name__.lower()}[{i}]", f"estimators_[{i}]", e)
        for i, e in enumerate(est.estimators_)
    ]


def _ransac_children(est):
    return [("estimator", "estimator_", est.estimator_)]


# Built-in support, keyed by (top-level package, class name) so that nothing is imported
# here (xgboost is slow to import; cvfeat steps may live anywhere in cvfeat). Looked up
# along the MRO, so subclasses are counted like their parent.
_META = {
    ("sklearn", "Pipeline"): _pipeline_children,
    ("sklearn", "FeatureUnion"): _union_children,
    ("sklearn", "TransformedTargetRegressor"): _ttr_children,
    ("sklearn", "BaseSearchCV"): _search_children,
    ("sklearn", "MultiOutputRegressor"): _multioutput_children,
    ("sklearn", "MultiOutputClassifier"): _multioutput_children,
    ("sklearn", "RANSACRegressor"): _ransac_children,
}

_LEAVES = {
    **{
        ("cvfeat", name): _zero
        for name in (
            "HOG",
            "ColorHistogram",
            "LBP",
            "Resize",
            "Grayscale",
            "ColorConvert",
            "ImageLoader",
        )
    },
    ("cvfeat", "SIFTBoW"): _sift_bow,
    ("sklearn", "StandardScaler"): _standard_scaler,
    ("sklearn", "MinMaxScaler"): _minmax_scaler,
    ("sklearn", "MaxAbsScaler"): _maxabs_scaler,
    ("sklearn", "RobustScaler"): _robust_scaler,
    ("sklearn", "Normalizer"): _zero,
    ("sklearn", "FunctionTransformer"): _function_transformer,
    ("sklearn", "PCA"): _pca,
    ("sklearn", "Nystroem"): _nystroem,
    ("sklearn", "LinearSVR"): _linear,
    ("sklearn", "LinearSVC"): _linear,
    ("sklearn", "SVR"): _libsvm,
    ("sklearn", "NuSVR"): _libsvm,
    ("sklearn", "SVC"): _libsvm,
    ("sklearn", "NuSVC"): _libsvm,
    ("sklearn", "DecisionTreeRegressor"): _decision_tree,
    ("sklearn", "DecisionTreeClassifier"): _decision_tree,
    ("sklearn", "ExtraTreeRegressor"): _decision_tree,
    ("sklearn", "ExtraTreeClassifier"): _decision_tree,
    ("sklearn", "RandomForestRegressor"): _forest,
    ("sklearn", "RandomForestClassifier"): _forest,
    ("sklearn", "ExtraTreesRegressor"): _forest,
    ("sklearn", "ExtraTreesClassifier"): _forest,
    ("sklearn", "GradientBoostingRegressor"): _gradient_boosting,
    ("sklearn", "GradientBoostingClassifier"): _gradient_boosting,
    ("sklearn", "HistGradientBoostingRegressor"): _hist_gradient_boosting,
    ("sklearn", "HistGradientBoostingClassifier"): _hist_gradient_boosting,
    ("sklearn", "KNeighborsRegressor"): _neighbors,
    ("sklearn", "KNeighborsClassifier"): _neighbors,
    ("sklearn", "RadiusNeighborsRegressor"): _neighbors,
    ("sklearn", "RadiusNeighborsClassifier"): _neighbors,
    ("sklearn", "DummyRegressor"): _dummy_regressor,
    ("sklearn", "DummyClassifier"): _dummy_classifier,
    ("xgboost", "XGBModel"): _xgboost,
}

_LABELS = {
    ("sklearn", "BaseSearchCV"): "GridSearchCV/RandomizedSearchCV/Halving*SearchCV",
    ("xgboost", "XGBModel"): "XGBoost (XGBRegressor, XGBClassifier, ...)",
}


class _Unknown(Exception):
    """Raised by a counter that recognises its estimator but cannot count this one."""


class _NoChild(Exception):
    """A meta-estimator whose fitted child is missing (e.g. refit=False)."""


def _supported():
    names = [_LABELS.get(key, key[1]) for key in (*_META, *_LEAVES)]
    names.append("linear models of sklearn.linear_model")
    names += [cls.__name__ for cls in _REGISTERED]
    return ", ".join(names)


def _key(cls):
    return (cls.__module__.partition(".")[0], cls.__name__)


def _lookup(est):
    """``('meta', children_fn)``, ``('leaf', counter)`` or ``(None, None)``."""
    for cls in type(est).__mro__:
        if cls in _REGISTERED:
            return "leaf", _REGISTERED[cls]
        key = _key(cls)
        if key in _META:
            return "meta", _META[key]
        if key in _LEAVES:
            return "leaf", _LEAVES[key]
    if any(cls.__module__.startswith("sklearn.linear_model") for cls in type(est).__mro__):
        return "leaf", _linear
    return None, None


def _where(est, loc, name):
    cls = type(est).__name__
    if not loc:
        return cls
    return f"{loc} {cls}" + (f" (step {name!r})" if name else "")


def _check_fitted(est, where):
    if not hasattr(est, "fit"):
        return
    try:
        check_is_fitted(est)
    except NotFittedError:
        raise NotFittedError(
            f"{where} is not fitted yet: fit it (or the pipeline that contains it) before "
            "counting its parameters; count_params counts learned values, which exist only "
            "after fit."
        ) from None


def _walk(est, loc="", path=()):
    """Yield ``(path, location, estimator, counter)`` for every leaf step."""
    if est is None or (isinstance(est, str) and est in ("passthrough", "drop")):
        yield path, loc, est, _zero
        return
    name = path[-1] if path else None
    where = _where(est, loc, name)
    kind, fn = _lookup(est)
    if kind is None:
        raise TypeError(
            f"{where}: cvfeat cannot count its parameters; supported: {_supported()}. "
            "Register a counter with cvfeat.budget.register_counter("
            f"{type(est).__name__}, func) where func(fitted_estimator) returns the number of "
            "learned values it needs at inference."
        )
    _check_fitted(est, where)
    if kind == "leaf":
        yield path, loc, est, fn
        return
    try:
        children = fn(est)
    except _NoChild as exc:
        raise NotFittedError(f"{where}: {exc}.") from None
    for child_name, child_loc, child in children:
        child_path = path if child_name is None else (*path, child_name)
        yield from _walk(child, f"{loc}.{child_loc}" if loc else child_loc, child_path)


def _run(counter, est, loc, path):
    where = _where(est, loc, path[-1] if path else None)
    try:
        n = counter(est)
    except _Unknown as exc:
        raise TypeError(
            f"{where}: cvfeat cannot count its parameters: {exc}; supported: {_supported()}. "
            "Register a counter with cvfeat.budget.register_counter."
        ) from None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise TypeError(
            f"{where}: its parameter counter returned {n!r}; a counter must return a "
            "non-negative int."
        )
    return int(n)


def _count(est, loc="", name=None):
    return sum(
        _run(counter, leaf, leaf_loc, leaf_path)
        for leaf_path, leaf_loc, leaf, counter in _walk(
            est, loc, () if name is None else (name,)
        )
    )


# -- public API --------------------------------------------------------------------------


def register_counter(cls, func):
    """Teach :func:`count_params` to count instances of ``cls`` (and its subclasses).

    Parameters
    ----------
    cls : type
        The estimator class. A registered class takes precedence over built-in support.
    func : callable
        ``func(fitted_estimator) -> int``: the number of learned values the estimator
        needs at inference. It is only called on fitted estimators (``check_is_fitted``
        passes); it may call :func:`count_params` on sub-estimators.

    See Also
    --------
    count_params : uses the registered counters.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator, TransformerMixin
    >>> from cvfeat.budget import count_params, register_counter
    >>> class Offset(TransformerMixin, BaseEstimator):
    ...     def fit(self, X, y=None):
    ...         self.offset_ = np.mean(X, axis=0)
    ...         return self
    ...     def transform(self, X):
    ...         return X - self.offset_
    >>> register_counter(Offset, lambda est: est.offset_.size)
    >>> count_params(Offset().fit(np.zeros((4, 3))))
    3
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_counter: cls must be a class, got {cls!r}.")
    if not callable(func):
        raise TypeError(f"register_counter: func must be callable, got {func!r}.")
    _REGISTERED[cls] = func


def count_params(estimator):
    """Number of learned values a fitted estimator (or whole pipeline) needs at inference.

    Parameters
    ----------
    estimator : fitted estimator
        A supported step or a meta-estimator made of them (``Pipeline``,
        ``FeatureUnion``, ``TransformedTargetRegressor``, fitted searches...); the
        module docstring lists exactly what is counted for each.

    Returns
    -------
    n_params : int

    Raises
    ------
    TypeError
        For a step cvfeat cannot count, naming it and where it sits (e.g.
        ``steps[1] FunctionTransformer``); use :func:`register_counter`.
    sklearn.exceptions.NotFittedError
        For a step that is not fitted.

    See Also
    --------
    size_bytes : the same count in bytes.
    describe : the count step by step.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.linear_model import Ridge
    >>> X, y = np.random.default_rng(0).random((20, 4)), np.arange(20.0)
    >>> count_params(make_pipeline(StandardScaler(), Ridge()).fit(X, y))  # 2*4 + 4 + 1
    13
    """
    return _count(estimator)


def size_bytes(estimator, dtype="float32"):
    """Storage of the learned values: ``count_params(estimator) * itemsize``.

    Every value is assumed stored at ``dtype``: float32 = 4 bytes each (the ONNX
    export), int8 = 1 byte each (an int8-quantised model). Integer indices
    (split features) are counted at the same width, and graph / format overhead is
    not included, so this is the payload, not a file size.

    Parameters
    ----------
    estimator : fitted estimator
    dtype : str or numpy dtype, default='float32'
        A numeric dtype, e.g. ``'float32'``, ``'float16'``, ``'int8'``.

    Returns
    -------
    n_bytes : int

    See Also
    --------
    count_params

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> ridge = Ridge().fit(np.eye(3), np.arange(3.0))
    >>> size_bytes(ridge), size_bytes(ridge, "int8")
    (16, 4)
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"size_bytes: {dtype!r} is not a numpy dtype; use e.g. 'float32'.") from None
    if dt.kind not in "iuf":
        raise ValueError(
            f"size_bytes: dtype must be a numeric (int or float) dtype such as 'float32' or "
            f"'int8', got {dt}."
        )
    return count_params(estimator) * dt.itemsize


def describe(estimator):
    """Parameter count step by step, as a DataFrame.

    Parameters
    ----------
    estimator : fitted estimator

    Returns
    -------
    table : pandas.DataFrame
        One row per leaf step, with columns ``step`` (path of names, e.g.
        ``'featureunion/hog'``; the class name in lower case for a bare estimator),
        ``class``, ``params`` and ``bytes_fp32``, then a ``'total'`` row.

    See Also
    --------
    count_params

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.svm import SVR
    >>> X, y = np.random.default_rng(0).random((20, 4)), np.arange(20.0)
    >>> pipe = make_pipeline(StandardScaler(), SVR()).fit(X, y)
    >>> table = describe(pipe)
    >>> list(table["step"])
    ['standardscaler', 'svr', 'total']
    """
    import pandas as pd

    rows = []
    for path, loc, est, counter in _walk(estimator):
        n = _run(counter, est, loc, path)
        if est is None or isinstance(est, str):
            cls = "passthrough" if est is None else est
        else:
            cls = type(est).__name__
        step = "/".join(path) if path else cls.lower()
        rows.append({"step": step, "class": cls, "params": n, "bytes_fp32": 4 * n})
    total = sum(r["params"] for r in rows)
    rows.append({"step": "total", "class": "", "params": total, "bytes_fp32": 4 * total})
    return pd.DataFrame(rows, columns=["step", "class", "params", "bytes_fp32"])
