"""compare_models: leaderboard columns, budget, Pareto front, refit, plot, text, grouped CV,
search modes, default candidates and ``cvfeat compare``."""

import csv
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold, cross_validate
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from xgboost import XGBRegressor

from cvfeat.budget import count_params, register_counter
from cvfeat.cli import main
from cvfeat.compare import (
    CompareResult,
    DistilledRegressor,
    compare_models,
    default_candidates,
    learned_macs,
    pareto_mask,
)
from cvfeat.compare._search import BudgetScorer, search_space
from cvfeat.datasets import load_task
from cvfeat.export import read_model_card
from cvfeat.features import HOG, LBP, ColorHistogram
from cvfeat.models import MicroCNNRegressor

COLUMNS = ["name", "params", "bytes_fp32", "bytes_int8", "macs", "mae_mean", "mae_std",
           "rmse_mean", "rmse_std", "r2_mean", "r2_std", "fit_s", "epochs", "latency_us",
           "within_budget"]


@pytest.fixture(scope="module")
def data():
    return load_task("counting", n_samples=72, size=24, color=True, random_state=0)


def _small_candidates():
    return [
        ("LBP & Ridge", make_pipeline(LBP(grid=(2, 2)), StandardScaler(), RidgeCV())),
        ("hist + Ridge", make_pipeline(ColorHistogram(bins=3), StandardScaler(), Ridge(1.0))),
        ("HOG 12 + Ridge", make_pipeline(HOG(pixels_per_cell=(12, 12)), StandardScaler(),
                                          Ridge(10.0))),
        # HOG 4px on 24x24: 5 x 5 blocks x 36 = 900 features -> 2,701 values: over 1,000
        ("big HOG", make_pipeline(HOG(pixels_per_cell=(4, 4)), StandardScaler(), Ridge(10.0))),
    ]


@pytest.fixture(scope="module")
def result(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_models(X, y, budget=1000, candidates=_small_candidates(), cv=3,
                              random_state=0, progress=False, include_over_budget=True)


def test_table_columns_dtypes_and_order(result):
    t = result.table
    assert list(t.columns) == COLUMNS
    assert len(t) == 4
    for col in ("params", "bytes_fp32", "bytes_int8"):
        assert t[col].dtype == np.int64, col
    for col in COLUMNS[4:-1]:
        assert t[col].dtype == np.float64, col
    assert t["within_budget"].dtype == bool
    assert (t["bytes_fp32"] == 4 * t["params"]).all()
    assert (t["bytes_int8"] == t["params"]).all()
    assert list(t["mae_mean"]) == sorted(t["mae_mean"])
    assert (t["fit_s"] > 0).all() and (t["latency_us"] > 0).all()
    assert set(result.details["latency_runtime"]) == {"onnx"}
    assert list(result.details["name"]) == list(t["name"])


def test_scores_and_params_match_scikit_learn_cross_validate(data, result):
    X, y = data
    folds = KFold(3, shuffle=True, random_state=0)
    for name, est in _small_candidates():
        ref = cross_validate(est, X, y, cv=folds, return_estimator=True,
                             scoring=("neg_mean_absolute_error", "r2"))
        row = result.table.set_index("name").loc[name]
        maes = -ref["test_neg_mean_absolute_error"]
        assert row["mae_mean"] == pytest.approx(maes.mean(), rel=1e-9)
        assert row["mae_std"] == pytest.approx(maes.std(), rel=1e-9)
        assert row["r2_mean"] == pytest.approx(ref["test_r2"].mean(), rel=1e-9)
        assert row["params"] == max(count_params(e) for e in ref["estimator"])


def test_within_budget_and_over_budget_candidates(data, result):
    t = result.table.set_index("name")
    assert t.loc["big HOG", "params"] == 2701 and not t.loc["big HOG", "within_budget"]
    assert t.drop(index="big HOG")["within_budget"].all()
    assert (t["within_budget"] == (t["params"] <= 1000)).all()
    assert result.best_name_ != "big HOG"
    # by default the over-budget candidate is dropped, with the reason
    X, y = data
    res = compare_models(X, y, budget=1000, candidates=_small_candidates()[2:], cv=2,
                         progress=False, latency=None)
    assert list(res.table["name"]) == ["HOG 12 + Ridge"]
    dropped = res.dropped.set_index("name")
    assert dropped.loc["big HOG", "params"] == 2701
    assert "2,701 parameters in fold 1 > budget 1,000" in dropped.loc["big HOG", "reason"]
    assert np.isnan(res.table["latency_us"]).all()


def _brute_front(params, errors):
    keep = []
    for i, (p, e) in enumerate(zip(params, errors, strict=True)):
        if np.isnan(e):
            continue
        beaten = False
        for j, (q, f) in enumerate(zip(params, errors, strict=True)):
            if j != i and not np.isnan(f) and q <= p and f <= e and (q < p or f < e):
                beaten = True
        if not beaten:
            keep.append(i)
    return keep


def test_pareto_front_is_the_brute_force_front(result):
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 15))
        params = rng.integers(1, 8, n)  # few distinct values: ties on params
        errors = np.round(rng.random(n), 1)  # and on errors
        errors[rng.random(n) < 0.1] = np.nan
        assert list(np.flatnonzero(pareto_mask(params, errors))) == _brute_front(params, errors)
    t = result.table
    want = _brute_front(list(t["params"]), list(t["mae_mean"]))
    front = result.pareto()
    assert sorted(front.index) == want
    assert list(front["params"]) == sorted(front["params"])


def test_best_is_refitted_on_all_data_and_within_budget(data, result):
    X, y = data
    best_row = result.table[result.table["within_budget"]].iloc[0]
    assert result.best_name_ == best_row["name"]
    assert result.best_params_ == count_params(result.best_) <= 1000
    ref = clone(dict(_small_candidates())[result.best_name_]).fit(X, y)
    np.testing.assert_allclose(result.best_.predict(X), ref.predict(X), rtol=1e-10)


def test_plot_writes_a_png(result, tmp_path):
    path = tmp_path / "pareto.png"
    result.plot(path)
    with Image.open(path) as img:
        assert img.format == "PNG"
        w, h = img.size
        assert 800 <= w <= 2000 and 400 <= h <= 1200


def test_markdown_and_html_list_every_row(result):
    md, html = result.to_markdown(), result.to_html()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + len(result.table)
    for i, name in enumerate(result.table["name"], 1):
        assert any(ln.startswith(f"| {i} | {name}") for ln in lines), name
        assert name.replace("&", "&amp;") in html
    assert "LBP &amp; Ridge" in html and "LBP & Ridge" not in html
    assert html.count("<tr>") == 1 + len(result.table)
    assert "budget 1,000 parameters" in md


def test_macs_of_each_kind(data):
    X, y = data
    lin = make_pipeline(LBP(grid=(2, 2)), StandardScaler(), Ridge()).fit(X, y)
    assert learned_macs(lin, X.shape[1:]) == (2.0 * 40, "")  # scaler d + linear d
    trees = make_pipeline(LBP(), XGBRegressor(n_estimators=3, max_depth=2)).fit(X, y)
    assert learned_macs(trees, X.shape[1:]) == (0.0, "")
    ny = make_pipeline(LBP(), Nystroem(n_components=5, random_state=0), Ridge()).fit(X, y)
    assert learned_macs(ny, X.shape[1:])[0] == 5 * 10 + 5 * 5 + 5
    cnn = MicroCNNRegressor(max_params=300, max_epochs=1, random_state=0).fit(X, y)
    assert learned_macs(cnn, X.shape[1:])[0] == cnn.n_macs_

    class Odd(RegressorMixin, BaseEstimator):
        def fit(self, X, y):
            self.mean_ = float(np.mean(y))
            return self

    macs, note = learned_macs(make_pipeline(LBP(), Odd()).fit(X, y), X.shape[1:])
    assert np.isnan(macs) and "Odd" in note


def test_latency_falls_back_to_python_when_not_exportable(data):
    X, y = data
    pipe = make_pipeline(LBP(), FunctionTransformer(np.sqrt), Ridge())
    res = compare_models(X, y, budget=100, candidates=[("sqrt", pipe)], cv=2, progress=False)
    d = res.details.iloc[0]
    assert d["latency_runtime"] == "python" and "FunctionTransformer" in d["notes"]
    assert res.table["latency_us"].iloc[0] > 0


def test_failing_candidate_is_dropped_with_a_warning(data):
    X, y = data

    class Broken(RegressorMixin, BaseEstimator):
        def fit(self, X, y):
            raise RuntimeError("boom")

        def predict(self, X):
            return np.zeros(len(X))

    cands = [("ok", make_pipeline(LBP(), Ridge())), ("broken", Broken())]
    with pytest.warns(UserWarning, match="'broken' failed in fold 1: RuntimeError: boom"):
        res = compare_models(X, y, budget=100, candidates=cands, cv=2, progress=False,
                             latency=None)
    assert list(res.table["name"]) == ["ok"]
    assert res.dropped.set_index("name").loc["broken", "reason"].startswith("failed in fold 1")


# -- grouped cross-validation ------------------------------------------------------------


class Recorder(TransformerMixin, BaseEstimator):
    """Flattens images; records which images (ids in two pixels) each fit saw."""

    fits = []

    def fit(self, X, y=None):
        Recorder.fits.append(frozenset(_ids(X)))
        self.n_seen_ = len(X)
        return self

    def transform(self, X):
        return X.reshape(len(X), -1)[:, 2:16].astype(np.float64)


register_counter(Recorder, lambda est: 0)


def _ids(X):
    return X[:, 0, 0, 0].astype(int) + 256 * X[:, 0, 1, 0].astype(int)


def _whole_groups(fits, groups, n):
    members = {g: set(np.flatnonzero(groups == g)) for g in np.unique(groups)}
    for s in fits:
        if len(s) == n:
            continue  # the refit on all images
        for m in members.values():
            if m & s and not m <= s:
                return False
    return True


@pytest.mark.parametrize("search", [None, "grid"])
def test_groups_keep_every_group_on_one_side(data, search):
    X, y = data
    X = X.copy()
    X[:, 0, 0, 0] = np.arange(len(X)) % 256
    X[:, 0, 1, 0] = np.arange(len(X)) // 256
    groups = np.arange(len(X)) // 4  # 4 crops of each of 18 source images
    cand = [("rec", make_pipeline(Recorder(), Ridge()))]
    opts = {"cv": 2, "spaces": {"rec": {"ridge__alpha": [0.1, 10.0]}}} if search else None
    Recorder.fits.clear()
    res = compare_models(X, y, budget=100, candidates=cand, cv=3, groups=groups, search=search,
                         search_options=opts, progress=False, latency=None)
    assert list(res.table["name"]) == ["rec"] and res.cv_name == "GroupKFold"
    # training sets: per outer fold (and for best_, on all images) 2 inner folds + the
    # search's refit; the search's feature cache fits each set once, whatever the alpha
    n_sets = 4 * (2 + 1) if search else 3 + 1
    assert len(Recorder.fits) == len(set(Recorder.fits)) == n_sets
    assert _whole_groups(Recorder.fits, groups, len(X))
    # without groups, KFold splits the crops of one source image: the check can fail
    Recorder.fits.clear()
    compare_models(X, y, budget=100, candidates=cand, cv=3, progress=False, latency=None)
    assert not _whole_groups(Recorder.fits, groups, len(X))


def test_groups_need_enough_distinct_values(data):
    X, y = data
    with pytest.raises(ValueError, match="groups has only 2 distinct values"):
        compare_models(X, y, candidates=_small_candidates()[:1], cv=3,
                       groups=np.arange(len(X)) % 2, progress=False)
    with pytest.raises(ValueError, match=r"groups must have one value per image, shape \(72,\)"):
        compare_models(X, y, candidates=_small_candidates()[:1], groups=[1, 2], progress=False)


# -- search --------------------------------------------------------------------------------


def test_grid_space_excludes_configurations_over_the_budget(data):
    X, y = data
    pipe = make_pipeline(LBP(grid=(2, 2)), XGBRegressor(n_estimators=10, max_depth=2))
    space, excluded = search_space(pipe, "grid", 2500, X[:16], y[:16])
    assert excluded > 0 and space
    for point in space:
        t = point["xgbregressor__n_estimators"][0]
        depth = point["xgbregressor__max_depth"][0]
        assert t * (3 * 2**depth - 2) + 1 <= 2500  # a full tree: 2 per split, 1 per leaf
    kept = {(p["xgbregressor__n_estimators"][0], p["xgbregressor__max_depth"][0])
            for p in space}
    assert (400, 2) not in kept and (200, 2) in kept  # 4,001 vs 2,001 values
    d = 40  # LBP uniform, 2x2 grid
    ny = make_pipeline(LBP(grid=(2, 2)), StandardScaler(), Nystroem(random_state=0), RidgeCV())
    space, excluded = search_space(ny, "grid", 3000, X[:16], y[:16])
    ns = {p["nystroem__n_components"][0] for p in space}
    assert ns == {n for n in (8, 16, 32, 64, 100, 128, 256)
                  if 2 * d + n * d + n * n + n + 1 <= 3000}
    dist, _ = search_space(ny, "optuna", 3000, X[:16], y[:16])
    n_max = dist["nystroem__n_components"].high
    assert 2 * d + n_max * d + n_max**2 + n_max + 1 <= 3000
    assert 2 * d + (n_max + 1) * d + (n_max + 1) ** 2 + n_max + 2 > 3000


def test_budget_scorer_refuses_models_over_the_budget(data):
    X, y = data
    pipe = make_pipeline(LBP(grid=(2, 2)), StandardScaler(), Ridge()).fit(X, y)  # 121
    assert BudgetScorer("mae", 100)(pipe, X, y) == -np.inf
    assert BudgetScorer("mae", 121)(pipe, X, y) == pytest.approx(
        -mean_absolute_error(y, pipe.predict(X)))
    assert BudgetScorer("r2", 500)(pipe, X, y) == pytest.approx(r2_score(y, pipe.predict(X)))


@pytest.mark.parametrize("search, options", [
    ("grid", {"cv": 2}),
    ("halving", {"cv": 2}),
    ("optuna", {"cv": 2, "n_trials": 3, "sampler": "tpe"}),
    ("optuna", {"cv": 2, "n_trials": 2, "sampler": "gp"}),
])
def test_search_modes_run_nested_within_the_budget(data, search, options):
    X, y = data
    cands = [("LBP + Nystroem", make_pipeline(LBP(grid=(2, 2)), StandardScaler(),
                                              Nystroem(n_components=8, random_state=0),
                                              RidgeCV())),
             ("hist + Ridge", make_pipeline(ColorHistogram(bins=3), StandardScaler(),
                                            Ridge()))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare_models(X, y, budget=1500, candidates=cands, cv=2, search=search,
                             search_options=options, progress=False, latency=None)
    assert len(res.table) == 2 and res.table["within_budget"].all()
    details = res.details.set_index("name")
    for name in ("LBP + Nystroem", "hist + Ridge"):
        chosen = details.loc[name, "search_params"]
        assert len(chosen) == 2 and all(c for c in chosen)
    ny = details.loc["LBP + Nystroem", "search_params"]
    assert all("nystroem__n_components" in c for c in ny)
    assert res.best_params_ <= 1500
    if search == "grid":
        assert details.loc["LBP + Nystroem", "n_excluded"] > 0


def test_bad_search_arguments(data):
    X, y = data
    with pytest.raises(ValueError, match="search must be None, 'grid', 'halving' or 'optuna'"):
        compare_models(X, y, candidates=_small_candidates()[:1], search="random")
    with pytest.raises(ValueError, match="sampler'] must be 'tpe' or 'gp'"):
        compare_models(X, y, candidates=_small_candidates()[:1], search="optuna",
                       search_options={"sampler": "cmaes"})
    with pytest.raises(ValueError, match="unknown search_options \\['trials'\\]"):
        compare_models(X, y, candidates=_small_candidates()[:1], search="grid",
                       search_options={"trials": 3})
    with pytest.raises(ValueError, match=r"spaces'\] names \['nope'\], which are not"):
        compare_models(X, y, candidates=_small_candidates()[:1], search="grid",
                       search_options={"spaces": {"nope": {}}})
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        compare_models(X, y, candidates=_small_candidates()[:1], scoring=("accuracy",))
    with pytest.raises(ValueError, match="names must be unique"):
        compare_models(X, y, candidates=_small_candidates()[:1] * 2)
    with pytest.raises(ValueError, match="budget must be a positive int"):
        compare_models(X, y, budget=0, candidates=_small_candidates()[:1])


# -- default candidates --------------------------------------------------------------------


def test_default_candidates_are_sized_to_the_budget():
    names = {b: [n for n, _ in default_candidates(b, (64, 64, 3))] for b in (1000, 3000, 10000)}
    assert names[1000][0] == "HOG 16px + RidgeCV" and names[10000][0] == "HOG 6px + RidgeCV"
    for b in names:
        assert any("Nystroem" in n for n in names[b]) and any("XGBoost" in n for n in names[b])
        assert {"CNN plain (standard conv)", "CNN separable", "CNN residual",
                "CNN distilled from a larger CNN"} <= set(names[b])
    grey = [n for n, _ in default_candidates(3000, (64, 64))]
    assert not any("hist" in n for n in grey) and "LBP 2x2 + Nystroem(37) + RidgeCV" in grey
    cands, skipped = default_candidates(15, (32, 32, 3), return_skipped=True)
    assert {f for f, _ in skipped} >= {"SIFT-BoW", "XGBoost"}


@pytest.mark.parametrize("budget, shape", [(1000, (32, 32, 3)), (3000, (24, 24))])
def test_default_candidates_fit_within_the_budget(budget, shape):
    X, y = load_task("blur", n_samples=40, size=shape[:2], color=len(shape) == 3,
                     random_state=1)
    cands = default_candidates(budget, shape, random_state=0, fast=True, cnn_epochs=1)
    assert len(cands) >= 11
    for name, est in cands:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = clone(est).fit(X, y)
        n = count_params(model)
        assert n <= budget, (name, n)
        if isinstance(est, (MicroCNNRegressor, DistilledRegressor)):
            assert n >= 0.85 * budget, (name, n)
        if name == "CNN distilled from a larger CNN":  # fitted inside, 15x the budget
            assert model.teacher_.n_params_ > 10 * budget and not hasattr(est, "teacher_")


def test_default_candidates_real_run(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare_models(X, y, budget=1000, cv=2, fast=True, cnn_epochs=1, progress=False)
    assert isinstance(res, CompareResult)
    assert len(res.table) + len(res.dropped) >= 12
    assert set(res.details["kind"]) == {"classical", "cnn"}
    assert res.table["within_budget"].all() and res.best_params_ <= 1000
    cnn = res.table.set_index("name").loc["CNN separable"]
    assert cnn["macs"] > 0 and cnn["params"] <= 1000


# -- the command line ----------------------------------------------------------------------


def _image_folder(folder, n_samples):
    """``folder/images/*.png`` + ``labels.csv`` (column ``area``) of the colour scale task."""
    X, y = load_task("scale", n_samples=n_samples, size=24, color=True, random_state=2)
    (folder / "images").mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "area"])
        for i, (img, t) in enumerate(zip(X, y, strict=True)):
            cv2.imwrite(str(folder / "images" / f"{i}.png"), img[..., ::-1])
            w.writerow([f"images/{i}.png", t])


def test_cli_compare_writes_the_report(tmp_path, capsys):
    _image_folder(tmp_path / "data", 60)
    out = tmp_path / "report"
    rc = main(["compare", str(tmp_path / "data"), "--target", "area", "--size", "24",
               "--budget", "800", "--cv", "2", "--fast", "--cnn-epochs", "1", "--out", str(out)])
    assert rc == 0
    for f in ("report.md", "leaderboard.csv", "pareto.png", "best.onnx", "best.skops"):
        assert (out / f).is_file(), f
    stdout = capsys.readouterr().out
    parity = next(ln for ln in stdout.splitlines() if ln.startswith("parity of"))
    assert float(parity.split("max rel ")[1]) < 1e-4
    report = (out / "report.md").read_text()
    table = pd.read_csv(out / "leaderboard.csv")
    assert list(table.columns) == COLUMNS
    for name in table["name"]:
        assert name in report
    for section in ("## Data", "## Command", "## Environment", "## Machine", "## Pareto front",
                    "## Best model", "## Export", "scikit-learn 1."):
        assert section in report, section
    assert "cvfeat compare " in report and "parity with the Python model on the 6" in report
    card = read_model_card(out / "best.onnx")
    assert card["target_name"] == "area" and int(card["count_params"]) <= 800
    # the same fitted model as a skops file, which exports to the same graph
    assert "the fitted model in `best.skops`" in report
    again = out / "again.onnx"
    assert main(["export", str(out / "best.skops"), "--out", str(again)]) == 0
    assert read_model_card(again)["count_params"] == card["count_params"]


def test_cnn_time_gives_every_cnn_the_same_seconds_and_reports_epochs(data):
    X, y = data
    cands = [("cnn", MicroCNNRegressor(max_params=400, batch_size=16, random_state=0)),
             ("distilled", DistilledRegressor(
                 student=MicroCNNRegressor(max_params=400, batch_size=16, random_state=0),
                 teacher=make_pipeline(LBP(grid=(2, 2)), StandardScaler(), RidgeCV()))),
             ("hist + Ridge", _small_candidates()[1][1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare_models(X, y, budget=1000, candidates=cands, cv=2, cnn_time=1.0,
                             progress=False, latency=None)
    t = res.table.set_index("name")
    for name in ("cnn", "distilled"):
        assert t.loc[name, "epochs"] >= 1  # as many as 1 s allowed, not max_epochs=60
        assert t.loc[name, "fit_s"] < 1.0 * 3 + 2  # generous: a shared machine's noise
    assert np.isnan(t.loc["hist + Ridge", "epochs"])
    refit = res.best_ if res.best_name_ != "hist + Ridge" else res.refit("cnn")
    params = refit.get_params()
    assert params.get("max_time", params.get("student__max_time")) == 1.0
    assert "epochs" in res.to_markdown()
    # the user's candidates are not changed in place
    assert cands[0][1].max_time is None and cands[1][1].student.max_time is None


@pytest.mark.parametrize("bad", [0, -2.0, float("nan"), "60", True])
def test_cnn_time_must_be_positive_seconds(data, bad):
    X, y = data
    with pytest.raises(ValueError, match="cnn_time must be a positive number of seconds"):
        compare_models(X, y, candidates=_small_candidates()[:1], cnn_time=bad, progress=False)


def test_cli_compare_cnn_minutes(tmp_path, capsys):
    _image_folder(tmp_path / "data", 48)
    args = ["compare", str(tmp_path / "data"), "--target", "area", "--size", "24", "--budget",
            "800", "--cv", "2", "--fast", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        main(args + ["--cnn-minutes", "0"])
    assert info.value.code == 2 and "must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(args + ["--cnn-minutes", "0.01"]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "micro-CNN training: 0.6 s per fold for every CNN" in report
    table = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    details = {r.name: r for r in table.itertuples()}
    cnn = [n for n in details if "CNN" in n]
    assert cnn and all(details[n].epochs >= 1 for n in cnn)
    assert all(np.isnan(details[n].epochs) for n in details if n not in cnn)


def test_parallel_folds_give_the_same_table(data):
    X, y = data
    kw = dict(budget=1000, candidates=_small_candidates()[:2], cv=2, progress=False,
              latency=None)
    one, two = compare_models(X, y, **kw), compare_models(X, y, n_jobs=2, **kw)
    cols = ["name", "params", "mae_mean", "mae_std", "r2_mean"]
    pd.testing.assert_frame_equal(one.table[cols], two.table[cols])


def test_report_exports_the_next_candidate_when_the_best_does_not_export(
        result, data, monkeypatch, tmp_path):
    import cvfeat.export
    from cvfeat.compare._report import _export_best, _report_text

    real = cvfeat.export.to_onnx

    def refuse_best(est, *args, **kwargs):
        if est is result.best_:
            raise TypeError("steps[0] Fake has no ONNX converter")
        return real(est, *args, **kwargs)

    monkeypatch.setattr(cvfeat.export, "to_onnx", refuse_best)
    X, y = data
    info = _export_best(result, X, X[:8], y[:8], out=tmp_path, target="count", command="test",
                        say=lambda *a: None)
    inside = list(result.table.loc[result.table["within_budget"], "name"])
    assert info["skipped"] == [(inside[0], "TypeError: steps[0] Fake has no ONNX converter")]
    assert info["name"] == inside[1] and (tmp_path / "best.onnx").is_file()
    assert info["parity"]["max_rel"] < 1e-4
    text = _report_text(result, info, title="test (count)", data_lines=["80 images"],
                        n_total=80, n_hold=8, y=y, groups=None, command="test", cnn_epochs=None,
                        fast=False, search_options=None, seconds=1.0)
    assert f"The best model, {inside[0]}, could not be exported" in text
    assert f"**{inside[1]}**, instead" in text


def test_search_refuses_configurations_over_the_budget_after_fit(data):
    from optuna.distributions import IntDistribution

    X, y = data
    # KNN stores its training set: 36 images x 10 LBP features + 36 targets = 396 values,
    # a count the search cannot compute up front; the scorer gives it -inf
    cands = [("knn", make_pipeline(LBP(), KNeighborsRegressor())),
             ("ridge", make_pipeline(LBP(), Ridge()))]
    space = {"kneighborsregressor__n_neighbors": IntDistribution(1, 10)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = compare_models(X, y, budget=100, candidates=cands, cv=2, search="optuna",
                             progress=False, latency=None,
                             search_options={"cv": 2, "n_trials": 2, "spaces": {"knn": space}})
    assert not [w for w in caught if "optuna" in str(w.message)]
    assert list(res.table["name"]) == ["ridge"]
    assert res.dropped.set_index("name").loc["knn", "reason"] == (
        "396 parameters in fold 1 > budget 100")


def test_distilled_regressor_fits_the_teacher_on_its_own_data_only(data):
    import pickle

    from sklearn.exceptions import NotFittedError

    X, y = data
    teacher = make_pipeline(LBP(grid=(2, 2)), StandardScaler(), RidgeCV())
    model = DistilledRegressor(
        student=MicroCNNRegressor(max_params=300, max_epochs=1, validation_fraction=0.0,
                                  random_state=0),
        teacher=teacher)
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X[:40], y[:40])
    ref = clone(teacher).fit(X[:40], y[:40])  # no validation split: all 40 training rows
    np.testing.assert_allclose(model.teacher_.predict(X), ref.predict(X), rtol=1e-10)
    assert model.student_.teacher_ is model.teacher_ and model.teacher is teacher
    assert not hasattr(teacher, "n_features_in_")  # the user's teacher is not fitted
    assert count_params(model) == model.student_.n_params_
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict(X[40:]), model.predict(X[40:]), rtol=1e-6)
    assert clone(model).get_params()["student__max_params"] == 300
    with pytest.raises(ValueError, match="student Ridge has no 'teacher' parameter"):
        DistilledRegressor(student=Ridge(), teacher=teacher).fit(X, y)


def test_best_falls_back_when_the_refit_outgrows_the_budget(data):
    from sklearn.dummy import DummyRegressor

    X, y = data
    # KNN stores its training set: 36 images x (10 + 1) = 396 values per fold model, but
    # 72 x 11 = 792 once refitted on all the images
    cands = [("knn", make_pipeline(LBP(), KNeighborsRegressor(n_neighbors=3))),
             ("mean", make_pipeline(LBP(), DummyRegressor()))]
    with pytest.warns(UserWarning, match="'knn' refitted on all the data has 792 parameters"):
        res = compare_models(X, y, budget=500, candidates=cands, cv=2, progress=False,
                             latency=None)
    assert list(res.table["name"]) == ["knn", "mean"] and res.table["within_budget"].all()
    assert res.best_name_ == "mean" and res.best_params_ == 1


def test_info_still_works_after_an_optuna_search(capsys):
    import optuna_integration  # noqa: F401 - a lazy module whose __spec__ is None

    assert main(["info"]) == 0
    assert "tune   installed" in capsys.readouterr().out


def test_cli_compare_bad_input_writes_nothing(tmp_path, capsys):
    from cvfeat.cli import main

    out = tmp_path / "never"
    assert main(["compare", str(tmp_path / "no_such_dir"), "--target", "y",
                 "--out", str(out)]) == 2
    assert "no_such_dir" in capsys.readouterr().err
    assert not out.exists()
