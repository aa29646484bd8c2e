"""``cvfeat demo``: budgeted classical pipelines, cross-validated, on a built-in task."""

from __future__ import annotations

import sys
import time

import numpy as np
from sklearn.base import clone
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from tqdm.auto import tqdm
from xgboost import XGBRegressor

from .budget import count_params
from .datasets import load_task
from .features import HOG, LBP, ColorHistogram, SIFTBoW


def demo_pipelines(random_state=0, n_jobs=None):
    """(name, pipeline, bounded) triples: four budgeted pipelines and one unbounded reference.

    The budgeted ones are sized for a 3,000-parameter budget on 64x64 images;
    ``count_params`` measures each fitted pipeline, so nothing here is taken on trust.
    """
    coarse_hog = HOG(orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2),
                     n_jobs=n_jobs)
    return [
        ("coarse HOG + Ridge", make_pipeline(clone(coarse_hog), StandardScaler(), Ridge(10.0)),
         True),
        ("coarse HOG + XGBoost (40 trees, depth 3)",
         make_pipeline(clone(coarse_hog), XGBRegressor(
             n_estimators=40, max_depth=3, learning_rate=0.15, subsample=0.8,
             random_state=random_state, n_jobs=1)), True),
        ("HSV histogram + Nystroem(20) + Ridge",
         make_pipeline(ColorHistogram(bins=4, space="hsv", n_jobs=n_jobs),
                       Nystroem(n_components=20, gamma=2.0, random_state=random_state),
                       Ridge(1.0)), True),
        ("dense SIFT-BoW(16) + Ridge",
         make_pipeline(SIFTBoW(mode="dense", n_words=16, step=8, random_state=random_state,
                               n_jobs=n_jobs), StandardScaler(), Ridge(1.0)), True),
        ("LBP 2x2 grid + Ridge",
         make_pipeline(LBP(P=8, R=1, grid=(2, 2), n_jobs=n_jobs), StandardScaler(), Ridge(1.0)),
         True),
        ("reference: HOG 8x8 + RBF SVR (unbounded)",
         make_pipeline(HOG(n_jobs=n_jobs), StandardScaler(), SVR(C=10.0)), False),
    ]


def leaderboard(X, y, pipelines, *, cv=5, budget=3000, random_state=0, progress=True):
    """Cross-validate each pipeline; return a list of result dicts sorted by MAE."""
    folds = list(KFold(cv, shuffle=True, random_state=random_state).split(X))
    rows = []
    bar = tqdm(total=len(pipelines) * cv, desc="pipelines x folds", disable=not progress,
               file=sys.stderr, leave=False)
    for name, pipe, bounded in pipelines:
        mae, r2, params, fit_s = [], [], [], []
        for train, test in folds:
            bar.set_postfix_str(name[:30])
            model = clone(pipe)
            t0 = time.perf_counter()
            model.fit(X[train], y[train])
            fit_s.append(time.perf_counter() - t0)
            pred = model.predict(X[test])
            mae.append(mean_absolute_error(y[test], pred))
            r2.append(r2_score(y[test], pred))
            params.append(count_params(model))
            bar.update()
        rows.append(dict(
            name=name, mae_mean=float(np.mean(mae)), mae_std=float(np.std(mae)),
            r2_mean=float(np.mean(r2)), params=int(max(params)),
            fit_s=float(np.mean(fit_s)), bounded=bounded,
            within_budget=bool(max(params) <= budget),
        ))
    bar.close()
    return sorted(rows, key=lambda r: r["mae_mean"])


def format_leaderboard(rows, budget):
    head = f"{'rank':>4}  {'pipeline':<42} {'CV MAE':>16} {'R2':>6} {'params':>10} {'fit s':>6}"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows, 1):
        flag = "" if r["within_budget"] else "  (over budget)"
        lines.append(
            f"{i:>4}  {r['name']:<42} {r['mae_mean']:>8.3f} +- {r['mae_std']:<5.3f}"
            f" {r['r2_mean']:>6.3f} {r['params']:>10,d} {r['fit_s']:>6.2f}{flag}"
        )
    best = next((r for r in rows if r["within_budget"]), None)
    if best is not None:
        lines.append("")
        lines.append(f"best within {budget:,d} parameters: {best['name']} "
                     f"(MAE {best['mae_mean']:.3f}, {best['params']:,d} params)")
    return "\n".join(lines)


def export_best(name, pipe, X, y, X_new, *, path, target_name, command, out=print):
    """Refit ``pipe`` on all images, export it, check parity on new images, time it."""
    import onnxruntime as ort

    from .export import check_parity, to_onnx

    model = clone(pipe).fit(X, y)
    onx = to_onnx(model, X[:1], target_name=target_name, command=command)
    data = onx.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    parity = check_parity(model, onx, X_new)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: X_new[:1]}
    sess.run(None, feed)
    best = float("inf")
    for _ in range(50):
        t = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t)
    out(f"exported '{name}' (refitted on all {len(X)} images) to {path}: {len(data):,d} bytes, "
        f"{count_params(model):,d} parameters; parity on {parity['n']} new images: max abs "
        f"{parity['max_abs']:.2g}, max rel {parity['max_rel']:.2g}; single-image latency in "
        f"ONNX Runtime {best * 1e3:.3f} ms")
    return dict(path=str(path), bytes=len(data), parity=parity, latency_ms=best * 1e3)


def run_demo(task="counting", n_samples=600, size=64, cv=5, budget=3000, random_state=0,
             n_jobs=None, export_path="cvfeat_demo_best.onnx", out=print):
    """Generate ``task`` in colour (the colour histogram needs RGB), print the leaderboard
    and export the best pipeline within the budget (``export_path=None``: no export)."""
    t0 = time.perf_counter()
    kw = {} if task == "color_temperature" else {"color": True}  # always RGB
    X, y = load_task(task, n_samples=n_samples, size=size, random_state=random_state, **kw)
    out(f"cvfeat demo: task '{task}', {len(X)} images {X.shape[1]}x{X.shape[2]}"
        f"{'x' + str(X.shape[3]) if X.ndim == 4 else ''}, target range "
        f"[{y.min():.3g}, {y.max():.3g}], {cv}-fold CV, budget {budget:,d} parameters")
    pipes = demo_pipelines(random_state, n_jobs)
    rows = leaderboard(X, y, pipes, cv=cv, budget=budget, random_state=random_state)
    out(format_leaderboard(rows, budget))
    best = next((r for r in rows if r["within_budget"]), None)
    if export_path and best is not None:
        X_new, _ = load_task(task, n_samples=64, size=size, random_state=random_state + 1, **kw)
        pipe = next(p for name, p, _ in pipes if name == best["name"])
        export_best(best["name"], pipe, X, y, X_new, path=export_path, target_name=task,
                    command=f"cvfeat demo --task {task} --n-samples {n_samples} --size {size} "
                    f"--cv {cv} --budget {budget} --random-state {random_state}", out=out)
    out(f"(always guessing the median: MAE {np.mean(np.abs(y - np.median(y))):.3f}; "
        f"total {time.perf_counter() - t0:.1f} s)")
    return rows
