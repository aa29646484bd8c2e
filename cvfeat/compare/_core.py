"""``compare_models``: every candidate on the same cross-validation, under one budget."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone

from .._validation import check_images, check_targets, image_shape
from ..budget import count_params
from ._candidates import default_candidates
from ._measure import deployable, learned_macs, measure_latency, unwrap_search
from ._metrics import METRICS, check_scoring
from ._result import CompareResult
from ._search import (
    BudgetScorer,
    check_search,
    ignore_optuna_deprecations,
    make_search,
    search_space,
)

__all__ = ["compare_models"]

_CNN = {"MicroCNNRegressor", "HybridCNNRegressor", "DistilledRegressor"}


def _kind(est):
    est = unwrap_search(est)
    return "cnn" if type(est).__name__ in _CNN else "classical"


def _epochs(model):
    """Training epochs of a fitted micro-CNN (itself, a pipeline's last step, a distilled
    student, a search's best model); None for a model that is not trained in epochs."""
    model = deployable(model)
    if hasattr(model, "steps"):
        model = model.steps[-1][1]
    n = getattr(model, "n_epochs_", None)
    return None if n is None else int(n)


def _with_cnn_time(est, cnn_time):
    """A clone whose micro-CNN(s) train for ``cnn_time`` seconds (``max_time``).

    A micro-CNN teacher inside a student (``...teacher__max_time``) gets half of it:
    the student's ``max_time`` covers its whole fit, the teacher's fit included, so
    the distilled candidate gets the same time as the others.
    """
    keys = [k for k in est.get_params() if k == "max_time" or k.endswith("__max_time")]
    if cnn_time is None or not keys:
        return est
    share = {k: float(cnn_time) / (2 if "teacher__" in k else 1) for k in keys}
    return clone(est).set_params(**share)


class _Factory:
    """Builds the model fitted in one fold: a clone, or a fresh search around a clone."""

    def __init__(self, estimator, search, space, options, scorer, inner_cv, seed,
                 cache_dir=None):
        self.estimator = estimator
        self.cache_dir = cache_dir
        self.search = search
        self.space = space
        self.options = options
        self.scorer = scorer
        self.inner_cv = inner_cv
        self.seed = seed

    @property
    def searching(self):
        return self.search is not None and bool(self.space)

    def __call__(self, fold):
        if not self.searching:
            return clone(self.estimator)
        return make_search(self.estimator, self.search, self.space, scorer=self.scorer,
                           inner_cv=self.inner_cv, options=self.options,
                           seed=self.seed + fold, cache_dir=self.cache_dir)


def _fit_fold(name, factory, X, y, groups, train, test, fold, metrics):
    """Fit one candidate on one training fold; scores, count, time, the fitted model."""
    out = {"name": name, "fold": fold}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_optuna_deprecations()
        try:
            model = factory(fold)
            t0 = time.perf_counter()
            if factory.searching and groups is not None:
                model.fit(X[train], y[train], groups=groups[train])
            else:
                model.fit(X[train], y[train])
            out["fit_s"] = time.perf_counter() - t0
            pred = np.asarray(model.predict(X[test]), dtype=np.float64)
            if not np.isfinite(pred).all():
                raise ValueError("its predictions on the test fold contain NaN or infinity")
            out["scores"] = {m: float(METRICS[m][0](y[test], pred)) for m in metrics}
            out["params"] = int(count_params(unwrap_search(model)))
            out["search_params"] = getattr(model, "best_params_", None)
            out["epochs"] = _epochs(model)
            out["model"] = model
        except Exception as exc:  # noqa: BLE001 - reported in `dropped`, never silent
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    msgs = []
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).splitlines()[0][:120]}"
        if text not in msgs:
            msgs.append(text)
    out["warnings"] = msgs
    return out


def _check_candidates(candidates, budget, shape, random_state, cnn_epochs, fast):
    skipped = []
    if isinstance(candidates, str):
        if candidates != "default":
            raise ValueError(
                f"compare_models: candidates must be 'default' or a list of (name, estimator); "
                f"got {candidates!r}."
            )
        return default_candidates(budget, shape, random_state, fast=fast, cnn_epochs=cnn_epochs,
                                  return_skipped=True)
    cands = list(candidates)
    if not cands:
        raise ValueError("compare_models: candidates is empty.")
    names = []
    for i, item in enumerate(cands):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and hasattr(item[1], "fit") and hasattr(item[1], "predict")):
            raise TypeError(
                f"compare_models: candidates[{i}] must be a (name, estimator) pair with an "
                f"unfitted regressor; got {item!r:.120}."
            )
        names.append(item[0])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"compare_models: candidate names must be unique; repeated: {dup}.")
    return cands, skipped


def _splitter(cv, groups, n, random_state, where="cv"):
    from sklearn.model_selection import GroupKFold, KFold

    if isinstance(cv, Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"compare_models: {where} must be at least 2 folds; got {cv}.")
        if groups is not None:
            n_groups = len(np.unique(groups))
            if n_groups < cv:
                raise ValueError(
                    f"compare_models: {where}={cv} folds but groups has only {n_groups} "
                    "distinct values; use fewer folds or more groups."
                )
            return GroupKFold(n_splits=int(cv), shuffle=True, random_state=random_state)
        if cv > n:
            raise ValueError(f"compare_models: {where}={cv} folds but only {n} images.")
        return KFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    if hasattr(cv, "split"):
        return cv
    raise TypeError(
        f"compare_models: {where} must be an int or a scikit-learn splitter; got {cv!r}."
    )


def compare_models(X, y, *, budget=3000, candidates="default", cv=5, groups=None,
                   scoring=("mae", "rmse", "r2"), search=None, search_options=None,
                   n_jobs=None, random_state=0, include_over_budget=False, cnn_epochs=None,
                   cnn_time=None, fast=False, latency="onnx", progress=True):
    """Cross-validate candidates under a parameter budget: leaderboard, Pareto front, best.

    Every candidate is fitted on the same folds; its fold models are scored on the
    held-out fold and counted with :func:`cvfeat.budget.count_params`.

    Parameters
    ----------
    X : (n, h, w[, 3]) ndarray
        Images of one size, uint8 (0-255) or float in [0, 1] (see the image contract).
    y : (n,) array-like
        Finite numeric targets.
    budget : int, default=3000
        Learned values the deployed model may hold (the whole pipeline).
    candidates : 'default' or list of (str, estimator), default='default'
        ``'default'``: :func:`default_candidates` sized for ``budget`` and the image
        size (classical pipelines, micro-CNNs, a hybrid, a distilled micro-CNN).
    cv : int or splitter, default=5
        Folds: ``KFold(cv, shuffle=True, random_state)``, or ``GroupKFold(cv,
        shuffle=True, random_state)`` with ``groups``; or any scikit-learn splitter
        (its ``split(X, y, groups)`` is used).
    groups : (n,) array-like, optional
        Group of each image (e.g. the source image of each crop): no group is ever in
        both a training and a test fold, nor across the folds of a nested search.
    scoring : str or tuple of str, default=('mae', 'rmse', 'r2')
        Metrics (``'mae', 'rmse', 'mse', 'medae', 'mape', 'max_error', 'r2'``); the first
        ranks the candidates, picks ``best_`` and the Pareto front.
    search : {None, 'grid', 'halving', 'optuna'}, default=None
        Tune each candidate inside every outer training fold over its budget-aware space
        (:mod:`cvfeat.compare._search`): GridSearchCV, HalvingGridSearchCV or
        optuna-integration's OptunaSearchCV (extra ``tune``).
    search_options : dict, optional
        ``cv`` (inner folds, default 3; grouped when ``groups`` is given), ``n_trials``
        (optuna, default 20), ``sampler`` (optuna: ``'tpe'`` (default) or ``'gp'``),
        ``timeout`` (optuna, seconds per search), ``factor`` (halving, default 3),
        ``spaces`` (``{candidate name: space}`` replacing the built-in space: a grid
        dict / list of dicts, or a dict of optuna distributions), ``probe_size``
        (images used to measure feature lengths for the budget, default 32).
    n_jobs : int, optional
        Processes over candidates x folds (joblib); None: one, in this process.
    random_state : int, default=0
        Seeds the folds, the default candidates and the searches.
    include_over_budget : bool, default=False
        Keep candidates whose fold models exceed the budget in ``table`` (with
        ``within_budget=False``) instead of moving them to ``dropped``.
    cnn_epochs : int, optional
        ``max_epochs`` of the default micro-CNNs (default 20; 2 with ``fast``).
    cnn_time : float, optional
        Seconds of training per fold for every micro-CNN candidate (its ``max_time``,
        also inside pipelines and distillation): equal time instead of equal epochs.
        Each CNN fits as many epochs as its whole schedule allows in that time;
        ``table['epochs']`` reports them. None: the candidates' own settings.
    fast : bool, default=False
        Quick default candidates (:func:`default_candidates`).
    latency : {'onnx', 'python', None}, default='onnx'
        How ``latency_us`` is measured; None skips it (NaN).
    progress : bool, default=True
        A tqdm bar over candidates x folds on stderr.

    Returns
    -------
    result : CompareResult
        ``table``, ``details``, ``dropped``, ``best_``, ``pareto()``, ``plot(path)``,
        ``to_markdown()``, ``to_html()``, ``refit(name)``.

    Notes
    -----
    The columns of ``result.table``:

    * ``params``: ``count_params`` of each fold's fitted model (with ``search``: the
      configuration the inner search chose), the largest over the folds;
      ``within_budget`` is ``params <= budget``. ``best_`` is refitted on all the data
      and counted again (a kernel or tree model can grow with more data); if the refit
      exceeds the budget, the next candidate is taken and a warning says so.
    * ``bytes_fp32 = 4 * params`` and ``bytes_int8 = params`` (one byte per value): the
      payload of the learned values, not a file size (an ONNX file adds the graph;
      trees and SVMs are not quantized by :func:`cvfeat.export.to_onnx`).
    * ``macs``: multiply-accumulates with learned values for one image, of the fold
      model with the most parameters (:mod:`cvfeat.compare._measure`: CNN
      ``n_macs_``; classical steps counted, feature extraction arithmetic excluded);
      NaN when unknown, with the reason in ``details['notes']``.
    * ``<metric>_mean`` / ``_std``: over the test folds (``np.std``, ddof 0).
    * ``fit_s``: mean wall-clock seconds of one fold's ``fit`` (the inner search
      included).
    * ``epochs``: mean training epochs over the folds of a micro-CNN (with
      ``cnn_time``, the epochs its time allowed); NaN for other models.
    * ``latency_us``: best single-image predict of the fold model with the most
      parameters (same architecture and size as a refit: refitting every candidate
      only to time it would cost one more fit each), in ONNX Runtime on one thread
      when the model exports, else in Python (``details['latency_runtime']``).

    A candidate that raises while fitting or predicting, or predicts NaN, is moved to
    ``dropped`` with the error and a warning is issued.

    Examples
    --------
    >>> from sklearn.linear_model import RidgeCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from cvfeat.compare import compare_models
    >>> from cvfeat.datasets import make_blur
    >>> from cvfeat.features import HOG, LBP
    >>> X, y = make_blur(60, size=24, random_state=0)
    >>> res = compare_models(X, y, budget=500, cv=3, progress=False, latency=None,
    ...     candidates=[("LBP", make_pipeline(LBP(), RidgeCV())),
    ...                 ("HOG", make_pipeline(HOG(pixels_per_cell=(8, 8)), RidgeCV()))])
    >>> list(res.table.columns[:5])
    ['name', 'params', 'bytes_fp32', 'bytes_int8', 'macs']
    >>> res.best_name_ in {"LBP", "HOG"}, res.best_params_ <= 500
    (True, True)
    """
    t_start = time.perf_counter()
    where = "compare_models"
    if isinstance(budget, bool) or not isinstance(budget, Integral) or budget < 1:
        raise ValueError(f"{where}: budget must be a positive int; got {budget!r}.")
    if latency not in ("onnx", "python", None):
        raise ValueError(f"{where}: latency must be 'onnx', 'python' or None; got {latency!r}.")
    X = check_images(X, estimator=where, same_size=True)
    y = check_targets(y, len(X), estimator=where)
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be one target per image, shape (n,); got {y.shape}.")
    y = np.asarray(y, dtype=np.float64)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(X),):
            raise ValueError(
                f"{where}: groups must have one value per image, shape ({len(X)},); got "
                f"{groups.shape}."
            )
    if cnn_time is not None and (isinstance(cnn_time, bool) or not isinstance(cnn_time, Real)
                                 or not np.isfinite(cnn_time) or cnn_time <= 0):
        raise ValueError(
            f"{where}: cnn_time must be a positive number of seconds per fold (or None); got "
            f"{cnn_time!r}."
        )
    metrics = check_scoring(scoring)
    options = check_search(search, search_options)
    shape = image_shape(X)
    if isinstance(random_state, bool) or not isinstance(random_state, Integral):
        raise TypeError(
            f"{where}: random_state must be an int (it seeds the folds, the default "
            f"candidates and the searches); got {random_state!r}."
        )
    rs = int(random_state)
    cands, skipped = _check_candidates(candidates, int(budget), shape, rs, cnn_epochs, fast)
    cands = [(name, _with_cnn_time(est, cnn_time)) for name, est in cands]
    outer = _splitter(cv, groups, len(X), rs)
    folds = list(outer.split(X, y, groups))
    n_splits = len(folds)
    cv_name = type(outer).__name__

    # -- factories (search spaces measured on a probe of the first training fold)
    factories, n_excluded = {}, {}
    scorer = BudgetScorer(metrics[0], int(budget))
    inner_cv = None
    cache_dir = None
    if options is not None:
        # a search refits the same feature steps on the same images for every
        # configuration: Pipeline(memory=...) computes them once per inner fold
        cache_dir = tempfile.mkdtemp(prefix="cvfeat-compare-")
        inner_cv = _splitter(options["cv"], groups, len(folds[0][0]), rs, where="inner cv")
        probe = np.random.default_rng(rs).permutation(folds[0][0])[:options["probe_size"]]
        probe = np.sort(probe)
    unknown = sorted(set(options["spaces"]) - {n for n, _ in cands}) if options else []
    if unknown:
        raise ValueError(
            f"{where}: search_options['spaces'] names {unknown}, which are not candidates; "
            f"candidates: {[n for n, _ in cands]}."
        )
    for name, est in cands:
        space, excl = [], 0
        if options is not None:
            if name in options["spaces"]:
                space = options["spaces"][name]
            else:
                space, excl = search_space(est, search, int(budget), X[probe], y[probe])
        factories[name] = _Factory(est, search if space else None, space, options, scorer,
                                   inner_cv, rs, cache_dir)
        n_excluded[name] = excl

    # -- candidates x folds
    from tqdm import tqdm  # text bars: tqdm.auto warns in notebooks without ipywidgets

    bar = tqdm(total=len(cands) * n_splits, desc="candidates x folds", file=sys.stderr,
               disable=not progress, leave=False, mininterval=0.5)
    results = {name: [] for name, _ in cands}
    early = {}
    if n_jobs in (None, 1):
        for name, _ in cands:
            for k, (train, test) in enumerate(folds):
                bar.set_postfix_str(name[:32])
                r = _fit_fold(name, factories[name], X, y, groups, train, test, k, metrics)
                results[name].append(r)
                bar.update()
                over = r.get("params", 0) > budget and not include_over_budget
                if "error" in r or over:
                    bar.update(n_splits - k - 1)
                    early[name] = k + 1
                    break
    else:
        from joblib import Parallel, delayed

        jobs = (delayed(_fit_fold)(name, factories[name], X, y, groups, train, test, k, metrics)
                for name, _ in cands for k, (train, test) in enumerate(folds))
        for r in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            results[r["name"]].append(r)
            bar.update()
    bar.close()

    # -- rows
    rows, details, dropped = [], [], [(f, None, f"not sized: {why}") for f, why in skipped]
    for name, _ in cands:
        rs_ = sorted(results[name], key=lambda r: r["fold"])
        failed = next((r for r in rs_ if "error" in r), None)
        notes = sorted({m for r in rs_ for m in r["warnings"]})
        if failed is not None:
            msg = f"failed in fold {failed['fold'] + 1}: {failed['error']}"
            warnings.warn(f"compare_models: candidate {name!r} {msg}; it is left out "
                          "(see result.dropped).", UserWarning, stacklevel=2)
            dropped.append((name, None, msg))
            continue
        params = [r["params"] for r in rs_]
        if max(params) > budget and not include_over_budget:
            k = int(np.argmax(params))
            dropped.append((name, max(params), f"{max(params):,d} parameters in fold {k + 1} "
                                               f"> budget {budget:,d}"))
            continue
        big = rs_[int(np.argmax(params))]["model"]
        macs, macs_note = learned_macs(big, shape)
        if latency is None:
            lat, runtime, lat_note = float("nan"), "", ""
        else:
            lat, runtime, lat_note = measure_latency(big, X[:1], runtime=latency)
        row = {"name": name, "params": max(params), "bytes_fp32": 4 * max(params),
               "bytes_int8": max(params), "macs": macs}
        for m in metrics:
            vals = [r["scores"][m] for r in rs_]
            row[f"{m}_mean"] = float(np.mean(vals))
            row[f"{m}_std"] = float(np.std(vals))
        row["fit_s"] = float(np.mean([r["fit_s"] for r in rs_]))
        epochs = [r["epochs"] for r in rs_ if r["epochs"] is not None]
        row["epochs"] = float(np.mean(epochs)) if epochs else float("nan")
        row["latency_us"] = float(lat)
        row["within_budget"] = bool(max(params) <= budget)
        rows.append(row)
        details.append({
            "name": name, "kind": _kind(big), "latency_runtime": runtime,
            "params_per_fold": params,
            "search_params": [r["search_params"] for r in rs_] if options else None,
            "n_excluded": n_excluded[name],
            "notes": "; ".join(n for n in [lat_note, macs_note, *notes] if n),
        })

    import pandas as pd

    columns = (["name", "params", "bytes_fp32", "bytes_int8", "macs"]
               + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
               + ["fit_s", "epochs", "latency_us", "within_budget"])
    table = pd.DataFrame(rows, columns=columns)
    table = table.astype({"name": object, "params": np.int64, "bytes_fp32": np.int64,
                          "bytes_int8": np.int64, "macs": np.float64, "fit_s": np.float64,
                          "epochs": np.float64,
                          "latency_us": np.float64, "within_budget": bool,
                          **{c: np.float64 for c in columns if c.endswith(("_mean", "_std"))}})
    primary = f"{metrics[0]}_mean"
    ascending = not METRICS[metrics[0]][1]
    order = table.sort_values([primary, "params"], ascending=[ascending, True],
                              kind="stable").index
    table = table.loc[order].reset_index(drop=True)
    details = pd.DataFrame(details, columns=["name", "kind", "latency_runtime",
                                             "params_per_fold", "search_params", "n_excluded",
                                             "notes"])
    if len(details):
        details = details.set_index("name").loc[table["name"]].reset_index()
    dropped = pd.DataFrame(dropped, columns=["name", "params", "reason"])

    result = CompareResult(
        table=table, details=details, dropped=dropped, budget=int(budget), scoring=metrics,
        cv_name=cv_name, n_splits=n_splits, n_samples=len(X), image_shape=shape,
        search=search, estimators=factories,
        data=(X, y, groups))
    try:
        _refit_best(result, progress)
    finally:
        if cache_dir is not None:
            for factory in factories.values():
                factory.cache_dir = None  # later refits (result.refit) do not cache
            shutil.rmtree(cache_dir, ignore_errors=True)
    result.total_s = time.perf_counter() - t_start
    return result


def _refit_best(result, progress):
    """Refit the best within-budget candidate on all data; fall back if the refit is over."""
    inside = result.table[result.table["within_budget"]]
    for name in inside["name"]:
        if progress:
            print(f"compare_models: refitting {name!r} on all {result.n_samples} images",
                  file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            ignore_optuna_deprecations()
            model = result.refit(name)
        if hasattr(model, "memory"):
            model.set_params(memory=None)  # the search's feature cache is deleted after this
        n = int(count_params(model))
        if n <= result.budget:
            result.best_, result.best_name_, result.best_params_ = model, name, n
            return
        warnings.warn(
            f"compare_models: {name!r} refitted on all the data has {n:,d} parameters, over "
            f"the budget {result.budget:,d} (its fold models were within it); taking the next "
            "candidate as best_.", UserWarning, stacklevel=3)
    warnings.warn(f"compare_models: no candidate fits the budget {result.budget:,d}; "
                  "best_ is None (see result.dropped).", UserWarning, stacklevel=3)
