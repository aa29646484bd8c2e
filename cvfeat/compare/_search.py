"""Budget-aware hyper-parameter search inside :func:`cvfeat.compare.compare_models`.

``search='grid' | 'halving' | 'optuna'`` wraps each candidate in
:class:`~sklearn.model_selection.GridSearchCV`,
:class:`~sklearn.model_selection.HalvingGridSearchCV` or optuna-integration's
``OptunaSearchCV``, built afresh in every outer training fold (nested: the search
never sees the outer test images). The space of each candidate comes from its steps:

===================  ==========================================  ===========================
step                 grid / halving                              optuna
===================  ==========================================  ===========================
Ridge, Lasso,        ``alpha`` in 1e-2 ... 1e3 (6 values)        log-uniform 1e-3 ... 1e4
ElasticNet
RidgeCV              (nothing: alpha is tuned by its own leave-one-out)
LinearSVR            ``C`` in 1e-2 ... 10 (4 values)             log-uniform 1e-3 ... 1e2
Nystroem             ``n_components`` in 8, 16, 32, 64, 128,     int 4 ... n_max
                     256 and the candidate's own, ``gamma`` x    ``gamma`` log-uniform
                     (1/3, 1, 3) of 1/d                          (0.1 ... 10) / d
XGBRegressor         ``max_depth`` 2-4 x ``n_estimators`` 25,    depth 2 ... D_max, trees
                     50, 100, 200, 400, ``learning_rate`` 0.1    10 ... n_max(D_max), rate
                                                                 log-uniform 0.02 ... 0.3
micro-CNN, hybrid    ``learning_rate`` 3e-3, 1e-2, 3e-2 x        log-uniform 1e-3 ... 5e-2,
regressors (and a    ``loss`` 'huber', 'ldl'                     ``weight_decay`` log-uniform
distilled student)                                               1e-5 ... 1e-2, ``loss``
                                                                 'huber' or 'ldl'
===================  ==========================================  ===========================

``loss='ldl'`` (label distribution learning) is searched because its head is solved
within the same ``max_params``; test-time flips (``tta``) are not: whether a flip keeps
the target is the user's call (set ``tta`` on the candidate).

The budget is a constraint. The count of a configuration is computed before any fit
where it can be: the feature steps in front (HOG, LBP, histograms, SIFT-BoW...) are
fitted once on a few training images to measure their output length ``d`` and their
own count, and the rest of the pipeline is counted analytically (scaler ``2d``,
Nystroem ``n d + n^2``, linear ``d + 1``, XGBoost at most ``t (3 * 2^D - 2) + 1``,
a micro-CNN at most its ``max_params``). Grid and halving: configurations whose count
exceeds the budget are removed from the grid. Optuna: the box is shrunk until its
largest corner fits (``n_max``, ``D_max``), so every sampled point fits. Steps whose
count cannot be computed up front are still checked after each fit: the search's
scorer gives a configuration over the budget a score of ``-inf``, so it can never be
chosen.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone

from ..budget import count_params
from ._candidates import _max_n

__all__ = ["BudgetScorer", "make_search", "search_space"]

SEARCHES = ("grid", "halving", "optuna")
SAMPLERS = ("tpe", "gp")
_OPTIONS = {"cv", "n_trials", "sampler", "timeout", "factor", "spaces", "probe_size"}

# -- known steps ----------------------------------------------------------------------------


def _cls(est):
    return type(est).__name__


def _is_cnn(est):
    return _cls(est) in {"MicroCNNRegressor", "HybridCNNRegressor", "MicroCNNClassifier"}


_LINEAR_ALPHA = {"Ridge", "Lasso", "ElasticNet"}
_LINEAR = _LINEAR_ALPHA | {"RidgeCV", "LinearRegression", "LinearSVR", "LassoCV",
                           "ElasticNetCV", "HuberRegressor", "BayesianRidge"}


def _tail_count(steps, d, overrides):
    """Learned values of the analytic tail of a pipeline on ``d`` input features, or None.

    ``steps``: ``[(name, estimator)]``; ``overrides``: ``{'name__param': value}``.
    """
    total = 0
    for name, est in steps:
        def get(p, default=None, name=name, est=est):
            return overrides.get(f"{name}__{p}", getattr(est, p, default))

        cls = _cls(est)
        if est is None or est == "passthrough":
            continue
        if cls == "StandardScaler":
            total += d * (int(bool(get("with_mean"))) + int(bool(get("with_std"))))
        elif cls in ("MinMaxScaler", "RobustScaler"):
            total += 2 * d
        elif cls == "MaxAbsScaler":
            total += d
        elif cls == "Nystroem":
            n = int(get("n_components"))
            total += n * d + n * n
            d = n
        elif cls == "PCA" and isinstance(get("n_components"), (int, np.integer)):
            k = int(get("n_components"))
            total += k * d + d + (k if get("whiten") else 0)
            d = k
        elif cls in _LINEAR:
            total += d + 1
            d = 1
        elif cls in ("XGBRegressor",):
            depth = get("max_depth")
            depth = 6 if depth is None else int(depth)
            total += int(get("n_estimators") or 100) * (3 * 2**depth - 2) + 1
            d = 1
        else:
            return None
    return total


def _split_pipeline(est):
    """``(prefix steps, tail steps)``: the tail is the longest suffix of countable steps."""
    steps = list(est.steps)
    i = len(steps)
    while i > 0 and _tail_count([steps[i - 1]], 1, {}) is not None:
        i -= 1
    return steps[:i], steps[i:]


class _Probe:
    """Output length and count of a pipeline's feature prefix, fitted on a few images."""

    def __init__(self, prefix, X, y):
        from sklearn.pipeline import Pipeline

        self.ok = False
        if not prefix:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = Pipeline([(n, clone(s)) for n, s in prefix]).fit(X, y)
                self.d = int(np.asarray(model.transform(X[:1])).shape[1])
                self.count = int(count_params(model))
            self.ok = True
        except Exception:  # noqa: BLE001 - unknown prefix: the scorer checks after fit
            self.ok = False


# -- spaces ---------------------------------------------------------------------------------


def _grid_values(kind, cls, est, d):
    """{param: grid values} of one step (without the budget), for grid/halving."""
    if cls in _LINEAR_ALPHA:
        return {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}
    if cls == "LinearSVR":
        return {"C": [0.01, 0.1, 1.0, 10.0]}
    if cls == "Nystroem":
        ns = sorted({8, 16, 32, 64, 128, 256, int(est.n_components)})
        g0 = 1.0 / max(d or 1, 1) if est.gamma is None else float(est.gamma)
        return {"n_components": ns, "gamma": [g0 / 3, g0, 3 * g0]}
    if cls == "XGBRegressor":
        return {"max_depth": [2, 3, 4], "n_estimators": [25, 50, 100, 200, 400],
                "learning_rate": [0.1]}
    if cls in {"MicroCNNRegressor", "HybridCNNRegressor"}:
        return {"learning_rate": [0.003, 0.01, 0.03], "loss": ["huber", "ldl"]}
    return {}


def _step_plan(estimator):
    """``[(prefix, estimator)]`` of the searchable steps, and the pipeline split (or None)."""
    from sklearn.pipeline import Pipeline

    from ._distill import DistilledRegressor

    if isinstance(estimator, DistilledRegressor):
        return [("student__", estimator.student)], None
    if isinstance(estimator, Pipeline):
        prefix, tail = _split_pipeline(estimator)
        return [(f"{n}__", s) for n, s in tail], (prefix, tail)
    return [("", estimator)], None


def search_space(estimator, kind, budget, X_probe=None, y_probe=None):
    """Budget-aware search space of one candidate.

    Parameters
    ----------
    estimator : estimator
        The candidate (Pipeline, micro-CNN, DistilledRegressor...).
    kind : {'grid', 'halving', 'optuna'}
    budget : int
    X_probe, y_probe : arrays, optional
        A few training images and targets to measure the feature prefix (output
        length and count); without them nothing is excluded up front.

    Returns
    -------
    space : list of dict or dict
        grid/halving: a list of one-point grids ``[{param: [value], ...}, ...]`` (the
        budget-feasible configurations); optuna: ``{param: optuna distribution}``. Empty
        when the candidate has nothing to tune.
    n_excluded : int
        Grid configurations removed because their count exceeds the budget.
    """
    plan, split = _step_plan(estimator)
    probe = None
    if split is not None and X_probe is not None and split[0]:
        probe = _Probe(split[0], X_probe, y_probe)
    d = probe.d if probe is not None and probe.ok else None

    def count(overrides):
        if split is None:
            return None  # micro-CNNs: max_params, unchanged by the search
        if probe is None or not probe.ok:
            return None
        tail = _tail_count(split[1], probe.d, overrides)
        return None if tail is None else probe.count + tail

    if kind == "optuna":
        return _optuna_space(plan, d, count, budget), 0

    grids = {}
    for prefix, step in plan:
        cls = _cls(step)
        for p, values in _grid_values(kind, cls, step, d).items():
            grids[prefix + p] = values
    if not grids:
        return [], 0
    keys = sorted(grids)
    points, excluded = [], 0
    for combo in _product([grids[k] for k in keys]):
        over = dict(zip(keys, combo, strict=True))
        n = count(over)
        if n is not None and n > budget:
            excluded += 1
            continue
        points.append({k: [v] for k, v in over.items()})
    return points, excluded


def _product(lists):
    import itertools

    return itertools.product(*lists)


def _optuna_space(plan, d, count, budget):
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space = {}
    for prefix, step in plan:
        cls = _cls(step)
        if cls in _LINEAR_ALPHA:
            space[prefix + "alpha"] = FloatDistribution(1e-3, 1e4, log=True)
        elif cls == "LinearSVR":
            space[prefix + "C"] = FloatDistribution(1e-3, 1e2, log=True)
        elif cls in {"MicroCNNRegressor", "HybridCNNRegressor"}:
            space[prefix + "learning_rate"] = FloatDistribution(1e-3, 5e-2, log=True)
            space[prefix + "weight_decay"] = FloatDistribution(1e-5, 1e-2, log=True)
            space[prefix + "loss"] = CategoricalDistribution(["huber", "ldl"])
        elif cls == "Nystroem":
            key = prefix + "n_components"
            n_max = _max_n(lambda n, key=key: count({key: n}), budget, 4, 512)
            n_max = n_max if n_max is not None else max(4, int(step.n_components))
            if n_max >= 4:
                space[key] = IntDistribution(4, n_max)
            g0 = 1.0 / max(d or 1, 1) if step.gamma is None else float(step.gamma)
            space[prefix + "gamma"] = FloatDistribution(0.1 * g0, 10 * g0, log=True)
        elif cls == "XGBRegressor":
            kd, kn = prefix + "max_depth", prefix + "n_estimators"
            d_max, n_max = 2, None
            for depth in (6, 5, 4, 3, 2):
                n = _max_n(lambda t, depth=depth, kd=kd, kn=kn: count({kd: depth, kn: t}),
                             budget, 10, 1000)
                if n is None:  # not computable: the scorer refuses what exceeds the budget
                    d_max, n_max = 5, 400
                    break
                if n >= 20 or depth == 2:
                    d_max, n_max = depth, n
                    break
            if n_max and n_max >= 10:
                space[kd] = IntDistribution(2, d_max)
                space[kn] = IntDistribution(10, n_max)
            space[prefix + "learning_rate"] = FloatDistribution(0.02, 0.3, log=True)
    return space


# -- the scorer and the search objects -----------------------------------------------------


class BudgetScorer:
    """Scorer (higher is better) that refuses fitted models over the budget.

    ``scorer(estimator, X, y)`` is ``sign * metric(y, estimator.predict(X))`` (sign -1
    for errors), or ``-inf`` when ``count_params`` of the fitted estimator exceeds
    ``budget`` (checked first: such a configuration can never be chosen).
    """

    def __init__(self, metric, budget):
        self.metric = metric
        self.budget = budget

    def __call__(self, estimator, X, y):
        from ._measure import unwrap_search
        from ._metrics import METRICS

        if count_params(unwrap_search(estimator)) > self.budget:
            return -np.inf
        func, greater_is_better = METRICS[self.metric]
        value = float(func(y, estimator.predict(X)))
        return value if greater_is_better else -value


def check_search(search, options):
    """Validate ``search`` and ``search_options``; returns the options with defaults."""
    if search is None:
        return None
    if search not in SEARCHES:
        raise ValueError(
            f"compare_models: search must be None, 'grid', 'halving' or 'optuna'; got {search!r}."
        )
    options = dict(options or {})
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ValueError(
            f"compare_models: unknown search_options {sorted(unknown)}; known: {sorted(_OPTIONS)}."
        )
    options.setdefault("cv", 3)
    options.setdefault("n_trials", 20)
    options.setdefault("sampler", "tpe")
    options.setdefault("timeout", None)
    options.setdefault("factor", 3)
    options.setdefault("spaces", {})
    options.setdefault("probe_size", 32)
    if options["sampler"] not in SAMPLERS:
        raise ValueError(
            f"compare_models: search_options['sampler'] must be 'tpe' or 'gp'; got "
            f"{options['sampler']!r}."
        )
    if search == "optuna":
        import_optuna()
    return options


def ignore_optuna_deprecations():
    """OptunaSearchCV calls ``optuna.terminator`` (deprecated in optuna 4.9) in every
    trial; its FutureWarning says nothing about the models: keep it out of the notes."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna\.")


def import_optuna():
    try:
        import optuna
        from optuna_integration import OptunaSearchCV
    except ImportError as exc:
        raise ImportError(
            "compare_models(search='optuna') needs optuna and optuna-integration: "
            "pip install 'cvfeat[tune]' (or use search='grid' / 'halving')."
        ) from exc
    return optuna, OptunaSearchCV


def make_search(estimator, search, space, *, scorer, inner_cv, options, seed, cache_dir=None):
    """A fresh search object around ``clone(estimator)`` (one per outer fold).

    ``cache_dir``: a Pipeline gets ``memory=cache_dir``, so that its feature steps are
    fitted and applied once per inner fold, not once per configuration.
    """
    est = clone(estimator)
    if cache_dir is not None and "memory" in est.get_params(deep=False):
        est.set_params(memory=cache_dir)
    if search == "grid":
        from sklearn.model_selection import GridSearchCV

        return GridSearchCV(est, space, scoring=scorer, cv=inner_cv, refit=True, n_jobs=1,
                            error_score=np.nan)
    if search == "halving":
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingGridSearchCV

        return HalvingGridSearchCV(est, space, scoring=scorer, cv=inner_cv, refit=True,
                                   factor=options["factor"], random_state=seed, n_jobs=1,
                                   error_score=np.nan)
    optuna, OptunaSearchCV = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning of the samplers / the class
        if options["sampler"] == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        return OptunaSearchCV(est, space, cv=inner_cv, n_trials=options["n_trials"],
                              timeout=options["timeout"], scoring=scorer, study=study,
                              refit=True, random_state=seed, n_jobs=1, error_score=np.nan)
