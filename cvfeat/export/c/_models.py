"""C code of the steps after the features: scalers, PCA, and the final model.

:func:`linear_parameters` reads ``coef_``/``intercept_`` of any linear regressor and
checks, on random vectors, that its ``predict`` is that affine map (a model with a
link function, such as PoissonRegressor, is refused there, not exported wrongly).
:func:`fold_scaler` folds a StandardScaler into the linear model after it, where
float32 does not lose to cancellation (the ONNX export's rule).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_regressor
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from ..onnx import FOLD_MAX_GROWTH, _fold_growth
from ._emit import c_float

__all__ = ["VECTOR_STEPS", "fold_scaler", "linear_parameters", "scaler_parameters"]


def linear_parameters(model, d, where):
    """``(W (k, d), b (k,))`` of a fitted linear regressor, or None if
    ``model`` is not one."""
    if not is_regressor(model) or not hasattr(model, "coef_") \
            or not hasattr(model, "intercept_"):
        return None
    coef = np.asarray(model.coef_, dtype=np.float64)
    if coef.ndim not in (1, 2) or coef.shape[-1] != d:
        return None
    W = coef.reshape(-1, d)
    b = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64).ravel(),
                        (W.shape[0],)).copy()
    Z = np.random.default_rng(0).normal(size=(4, d))
    try:
        got = np.asarray(model.predict(Z), dtype=np.float64).reshape(4, -1)
    except Exception:  # noqa: BLE001 - any failure means "not a plain linear model"
        return None
    want = Z @ W.T + b
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-9 * (
            1 + np.abs(want).max())):
        raise TypeError(
            f"to_c: {where} {type(model).__name__} has coef_ and intercept_ but its predict is "
            "not x @ coef_.T + intercept_ (a link function or a transformed target?); it "
            "cannot be exported as a linear model. Use a plain linear regressor (Ridge, "
            "LinearRegression, Lasso, LinearSVR, ...).")
    return W, b


def scaler_parameters(scaler):
    """``(mean, scale)`` that StandardScaler.transform applies, float64."""
    d = scaler.n_features_in_
    mean = (np.asarray(scaler.mean_, np.float64) if scaler.with_mean and scaler.mean_ is not None
            else np.zeros(d))
    scale = (np.asarray(scaler.scale_, np.float64)
             if scaler.with_std and scaler.scale_ is not None else np.ones(d))
    return mean, scale


def fold_scaler(scaler, W, b):
    """``(W', b')`` of ``linear(scaler(x))`` in float64, or None where float32 would lose
    to cancellation (:func:`cvfeat.export.onnx._fold_growth` above ``FOLD_MAX_GROWTH``)."""
    mean, scale = scaler_parameters(scaler)
    if _fold_growth(W, mean, scale) > FOLD_MAX_GROWTH:
        return None
    Wf = W / scale
    return Wf, b - Wf @ mean


def _scaler(program, step, d):
    mean, scale = scaler_parameters(step)
    m = program.table("scaler_mean", mean, what="StandardScaler mean_")
    s = program.table("scaler_scale", scale, what="StandardScaler scale_")
    program.emit(f"for (i = 0; i < {d}; ++i) feat[i] = (feat[i] - {m}[i]) / {s}[i];")
    return d, 0


def dot_function(program, kind="dot"):
    """The name of a static ``float NAME_dot(a, b, n)`` (``kind='dot'``) or
    ``NAME_dist2`` (squared distance), emitted on first use: four partial sums, so the
    loop is not one chain of dependent additions."""
    name = f"{program.name}_{kind}"
    if name not in program._used:
        program._used.add(name)
        term = ("s{k} += a[i + {k}] * b[i + {k}];" if kind == "dot" else
                "{{ const float e = a[i + {k}] - b[i + {k}]; s{k} += e * e; }}")
        four = "\n        ".join(term.format(k=k) for k in range(4))
        program.function(f"""
static float {name}(const float *a, const float *b, int n)
{{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int i;
    for (i = 0; i + 4 <= n; i += 4) {{
        {four}
    }}
    for (; i < n; ++i) {{
        {term.format(k=0).replace("i + 0", "i")}
    }}
    return (s0 + s1) + (s2 + s3);
}}""")
    return name


def _pca(program, step, d):
    comp = np.asarray(step.components_, np.float64)
    k = comp.shape[0]
    shift = comp @ np.asarray(step.mean_, np.float64)  # PCA.transform: x @ C.T - mean @ C.T
    scale = (np.sqrt(np.asarray(step.explained_variance_, np.float64)) if step.whiten
             else np.ones(k))
    C = program.table("pca_components", comp, what="PCA components_")
    sh = program.table("pca_shift", shift, what="PCA mean_ @ components_.T")
    sc = program.table("pca_scale", scale, what="PCA sqrt(explained_variance_)")
    dot = dot_function(program)
    # the k outputs go after the d inputs, then are copied down
    program.emit(
        f"for (j = 0; j < {k}; ++j)",
        f"    feat[{d} + j] = ({dot}(feat, {C} + j * {d}, {d}) - {sh}[j]) / {sc}[j];",
        f"for (j = 0; j < {k}; ++j) feat[j] = feat[{d} + j];",
    )
    return k, k


#: steps on the feature vector: class -> generator(program, step, d) -> (d_out, extra floats)
VECTOR_STEPS = {StandardScaler: _scaler, PCA: _pca}


# -- the final model -----------------------------------------------------------------------


class Final:
    """The last step in C: ``linear`` (W, b: the features can be streamed into it) or
    ``vector`` (``emit(program, d)`` writes ``out`` from the stored ``feat``)."""

    def __init__(self, kind, n_out, W=None, b=None, emit=None, name=""):
        self.kind, self.n_out = kind, n_out
        self.W, self.b, self.emit, self.name = W, b, emit, name


def _svr(model, d, where):
    from sklearn.svm import SVR, NuSVR

    if type(model) not in (SVR, NuSVR):
        return None
    if model.kernel not in ("linear", "rbf"):
        raise TypeError(f"to_c: {where} {type(model).__name__}(kernel={model.kernel!r}): only the "
                        "'rbf' and 'linear' kernels export to C. Refit with one of them.")
    sv = np.asarray(model.support_vectors_, np.float64)
    alpha = np.asarray(model.dual_coef_, np.float64).ravel()
    b = float(np.asarray(model.intercept_).ravel()[0])
    if model.kernel == "linear":  # sum_i a_i <sv_i, x> + b = <sum_i a_i sv_i, x> + b
        return Final("linear", 1, W=(alpha @ sv)[None, :], b=np.array([b]))
    gamma = float(model._gamma)

    def emit(program, dd):
        S = program.table("svr_vectors", sv, what="SVR support_vectors_")
        A = program.table("svr_dual", alpha, what="SVR dual_coef_")
        dist = dot_function(program, "dist2")
        program.emit(
            f"/* RBF SVR: {len(sv)} support vectors, gamma {gamma!r} */",
            "out[0] = 0.0f;",
            f"for (j = 0; j < {len(sv)}; ++j)",
            f"    out[0] += {A}[j] * expf({c_float(-gamma)} * {dist}({S} + j * {dd}, feat, {dd}));",
            f"out[0] += {c_float(b)};")

    return Final("vector", 1, emit=emit, name=f"SVR (rbf, {len(sv)} support vectors)")


# -- trees -----------------------------------------------------------------------------------


def _below(t64):
    """The largest float32 <= ``t64`` (float64): for a float32 x, ``x <= t64`` exactly
    when ``x <= _below(t64)``, the comparison scikit-learn's trees make."""
    t = np.float32(t64)
    return np.where(t > t64, np.nextafter(t, np.float32(-np.inf)), t).astype(np.float32)


class _Forest:
    """Trees as flat node arrays: feature (-1 at leaves), float32 threshold (go left when
    ``x <= threshold``), left, right, and ``k`` leaf values per node."""

    def __init__(self, k):
        self.k = k
        self.feature, self.threshold, self.left, self.right, self.value, self.roots = (
            [], [], [], [], [], [])

    def add(self, feature, threshold, left, right, value):
        base = sum(len(f) for f in self.feature)
        self.roots.append(base)
        leaf = left < 0
        self.feature.append(np.where(leaf, -1, feature))
        self.threshold.append(np.where(leaf, 0, threshold).astype(np.float32))
        self.left.append(np.where(leaf, -1, left + base))
        self.right.append(np.where(leaf, -1, right + base))
        self.value.append(np.asarray(value, np.float64).reshape(len(feature), self.k))

    def arrays(self):
        return [np.concatenate(a) for a in (self.feature, self.threshold, self.left,
                                            self.right, self.value)]

    def predict(self, X32):
        """numpy evaluation of the C code's arithmetic (float32 comparisons, float32 sum
        of the leaf values over the trees): checks the extraction."""
        feature, thr, left, right, value = self.arrays()
        value = value.astype(np.float32)
        out = np.zeros((len(X32), self.k), np.float32)
        for root in self.roots:
            node = np.full(len(X32), root)
            while True:
                inner = feature[node] >= 0
                if not inner.any():
                    break
                f = np.where(inner, feature[node], 0)
                go_left = X32[np.arange(len(X32)), f] <= thr[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            out += value[node]
        return out


def _sklearn_tree(forest, tree, scale=1.0):
    t = tree.tree_
    forest.add(t.feature, _below(t.threshold), t.children_left, t.children_right,
               t.value[:, :, 0] * scale)


def _trees(model, d, where):
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

    kind = type(model)
    offset = None
    if kind in (DecisionTreeRegressor, ExtraTreeRegressor):
        forest = _Forest(model.tree_.n_outputs)
        _sklearn_tree(forest, model)
        divide = 1
    elif kind in (RandomForestRegressor, ExtraTreesRegressor):
        forest = _Forest(model.estimators_[0].tree_.n_outputs)
        for tree in model.estimators_:
            _sklearn_tree(forest, tree)
        divide = len(model.estimators_)
    elif kind is GradientBoostingRegressor:
        forest = _Forest(1)
        for tree in model.estimators_[:, 0]:
            _sklearn_tree(forest, tree, model.learning_rate)
        probe = np.random.default_rng(0).normal(size=(3, d))
        init = np.asarray(model._raw_predict_init(probe), np.float64).ravel()
        if not np.all(init == init[0]):
            raise TypeError(f"to_c: {where} GradientBoostingRegressor has an init estimator "
                            "whose prediction depends on x; use init=None or 'zero'.")
        offset = np.array([init[0]])
        divide = 1
    else:
        forest = _xgboost(model, d, where)
        if forest is None:
            return None
        forest, offset = forest
        divide = 1
    return _tree_final(model, forest, offset, divide, d, where)


def _xgboost(model, d, where):
    try:
        from xgboost import XGBRegressor
    except ImportError:
        return None
    if not isinstance(model, XGBRegressor):
        return None
    import json

    booster = model.get_booster()
    raw = json.loads(booster.save_raw("json"))["learner"]
    trees = raw["gradient_booster"]["model"]["trees"]
    k = int(raw["learner_model_param"].get("num_target", "1") or 1)
    base = np.array(json.loads(raw["learner_model_param"]["base_score"].replace("E", "e")),
                    np.float64).reshape(-1)
    info = raw["gradient_booster"]["model"].get("tree_info", [0] * len(trees))
    forest = _Forest(k)
    for tree, target in zip(trees, info, strict=True):
        left = np.asarray(tree["left_children"])
        right = np.asarray(tree["right_children"])
        cond = np.asarray(tree["split_conditions"], np.float32)
        feature = np.asarray(tree["split_indices"])
        # XGBoost goes left when x < t (float32): for float32 x that is x <= the float
        # just below t
        thr = np.nextafter(cond, np.float32(-np.inf))
        value = np.zeros((len(left), k))
        value[:, target] = np.where(left < 0, cond, 0)
        forest.add(feature, thr, left, right, value)
    return forest, np.broadcast_to(base, (k,)).astype(np.float64)


def _tree_final(model, forest, offset, divide, d, where):
    k = forest.k
    offset = np.zeros(k) if offset is None else offset
    probe = np.random.default_rng(1).normal(size=(64, d)).astype(np.float32)
    mine = forest.predict(probe).astype(np.float64) / divide + offset
    theirs = np.asarray(model.predict(probe), np.float64).reshape(len(probe), -1)
    scale = max(np.abs(theirs).max(), 1e-30)
    if mine.shape != theirs.shape or np.abs(mine - theirs).max() > 1e-5 * scale:
        raise TypeError(
            f"to_c: {where} {type(model).__name__}: the trees read from the model do not "
            "reproduce its predict (an objective with a link function, early stopping, or "
            "categorical splits?); it cannot be exported to C.")
    feature, thr, left, right, value = forest.arrays()
    n_nodes = len(feature)
    itype = "int16_t" if max(n_nodes, d) < 2**15 else "int32_t"
    n_trees = len(forest.roots)

    def emit(program, dd):
        F = program.table("tree_feature", feature, itype, what="tree features")
        T = program.table("tree_threshold", thr, what="tree thresholds")
        L = program.table("tree_left", left, itype, what="tree children")
        R = program.table("tree_right", right, itype, what="tree children")
        V = program.table("tree_value", value, what="tree leaf values")
        roots = program.table("tree_roots", forest.roots, "int32_t", what="tree roots")
        program.emit(
            f"/* {n_trees} tree(s), {n_nodes} nodes: left when x <= threshold (float32) */",
            f"for (j = 0; j < {k}; ++j) out[j] = 0.0f;",
            f"for (i = 0; i < {n_trees}; ++i) {{",
            f"    int node = {roots}[i];",
            f"    while ({F}[node] >= 0)",
            f"        node = feat[{F}[node]] <= {T}[node] ? {L}[node] : {R}[node];",
            f"    for (j = 0; j < {k}; ++j) out[j] += {V}[node * {k} + j];",
            "}",
            *([f"for (j = 0; j < {k}; ++j) out[j] /= {c_float(divide)};"] if divide > 1 else []),
            *[f"out[{j}] += {c_float(offset[j])};" for j in range(k) if offset[j] != 0])

    return Final("vector", k, emit=emit,
                 name=f"{type(model).__name__} ({n_trees} trees, {n_nodes} nodes)")


def final_model(model, d, where):
    """The :class:`Final` of a fitted regressor, or None if there is no C generator."""
    linear = linear_parameters(model, d, where)
    if linear is not None:
        W, b = linear
        return Final("linear", W.shape[0], W=W, b=b)
    for make in (_svr, _trees):
        final = make(model, d, where)
        if final is not None:
            return final
    return None
