"""Micro-CNN benchmark: training cost against a hand-written loop, and cross-validated accuracy.

Cost (``--cost``): seconds per epoch on 10,000 32x32 grey images at 3,000
parameters, ``MicroCNNRegressor`` (no validation split, no augmentation) against a
plain hand-written eager NCHW torch loop over the same network (its weights, the
layers in the textbook order conv, BN, ReLU, max-pool), batch size, AdamW and
loss, and ``optimizer='sam'`` against the estimator; all measured in this one run,
interleaved (targets: <= 0.8x and <= 2.2x).

Time budget (``--max-time 20``): one ``MicroCNNRegressor(max_params=3000,
max_time=20)`` fit on 3,000 32x32 grey images; the fit's wall-clock and the epochs
chosen (target: within 25 s, more than one epoch).

Accuracy: k-fold cross-validated MAE of the configurations in ``CONFIGS`` on
built-in tasks (``--task NAME``, repeatable) and on UTKFace age at 64x64
(``--utkface DIR`` with ``labels.csv`` + ``images/``, or ``--npz FILE`` written by
``benchmarks/make_utkface_npz.py``). Results are appended to the JSON file
(``--out``) as each fold finishes, so a partial run keeps what it measured; a
markdown table is printed at the end; ``--resume`` keeps the results already in
``--out`` and runs only the missing (config, fold, seed) fits. Folds run in parallel
processes (``--jobs``): tiny networks leave a GPU mostly idle, so several fits share
it. Where the task's augmentation flips images (UTKFace, most built-in tasks), each
fit also reports its MAE with test-time flips (``tta='hflip'``, no refit). ``--task
disk``: 32x32 grey disks of radius 2-12 px (``make_disks``), target the radius.

Label distribution learning against the Huber head (issue 20's target), one fixed
80/20 split (fold 0 of 5), two fits at a time::

    .venv/bin/python benchmarks/bench_micro_cnn.py --utkface ../shared/data/utkface \
        --configs cnn_1k,cnn_1k_ldl,cnn_5k,cnn_5k_ldl --epochs 30 --first-folds 1 \
        --seeds 2 --jobs 2 --out benchmarks/results/bench_ldl_utkface.json --resume

Distillation from a 40k-parameter CNN fitted inside the 3k student's fit, against the
same student alone (the ``distilled_cnn_3k`` rows also give the teacher's MAE, size and
training seconds; issue 21's target)::

    .venv/bin/python benchmarks/bench_micro_cnn.py --task scale --task counting --n 2000 \
        --size 32 --epochs 40 --folds 5 --configs cnn_3k,distilled_cnn_3k --jobs 2 \
        --out benchmarks/results/bench_distill_tasks.json --resume
    .venv/bin/python benchmarks/bench_micro_cnn.py --utkface ../shared/data/utkface \
        --configs cnn_3k,distilled_cnn_3k --epochs 20 --first-folds 1 --jobs 2 \
        --out benchmarks/results/bench_distill_utkface.json --resume

Imports only numpy, scikit-learn, scikit-image, OpenCV, pandas, torch and cvfeat
(no xgboost / skl2onnx / onnxmltools), and runs from the repository root
without installing cvfeat (``PYTHONPATH=.``).

Examples::

    python benchmarks/bench_micro_cnn.py --cost
    python benchmarks/bench_micro_cnn.py --quick --task scale
    PYTHONPATH=. python benchmarks/bench_micro_cnn.py --npz utkface64.npz --jobs 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing cvfeat
sys.path.insert(0, str(HERE))  # the other benchmarks' helpers, however this file is run
DEFAULT_OUT = HERE / "results" / "bench_micro_cnn.json"

# Augmentations that keep each target unchanged (see cvfeat.models.training)
TASK_AUGMENT = {
    "utkface": {"hflip": 0.5, "shift": 0.05, "scale": 0.05, "rotate": 5.0},
    "scale": {"hflip": 0.5, "vflip": 0.5},          # area: flips keep it
    "counting": {"hflip": 0.5, "vflip": 0.5},       # count: flips keep it
    "blur": {"hflip": 0.5, "vflip": 0.5},           # no noise, no zoom: they change blur
    "orientation": {"brightness": 0.2, "contrast": 0.2},  # no flips, no rotation
    "color_temperature": {"hflip": 0.5, "vflip": 0.5},    # no brightness / contrast
    "disk": {"hflip": 0.5, "vflip": 0.5},           # radius: flips keep it
}

# name -> (estimator kind, parameters[, architecture constants]); make_estimator adds the
# base parameters. The third item overrides module constants of cvfeat.models.architectures
# (GROWTH, POOL_PLACEMENT) for ablations of the defaults.
CONFIGS = {
    "cnn_1k": ("cnn", {"max_params": 1000}),
    "cnn_3k": ("cnn", {"max_params": 3000}),
    "cnn_3k_residual": ("cnn", {"max_params": 3000, "block": "residual"}),
    "cnn_5k": ("cnn", {"max_params": 5000}),
    "cnn_10k": ("cnn", {"max_params": 10000}),
    "hybrid_3k": ("hybrid", {"max_params": 3000}),
    "distilled_3k": ("distilled", {"max_params": 3000, "alpha": 0.5}),
    # ablations, run with --configs
    "cnn_1k_residual": ("cnn", {"max_params": 1000, "block": "residual"}),
    "cnn_5k_residual": ("cnn", {"max_params": 5000, "block": "residual"}),
    "cnn_5k_sam": ("cnn", {"max_params": 5000, "optimizer": "sam"}),
    "cnn_5k_mse": ("cnn", {"max_params": 5000, "loss": "mse"}),
    "cnn_5k_noval": ("cnn", {"max_params": 5000, "validation_fraction": 0.0}),
    "cnn_5k_depth5": ("cnn", {"max_params": 5000, "depth": 5}),
    "cnn_5k_strong": ("cnn", {"max_params": 5000, "augment": "strong"}),
    "cnn_5k_bs128": ("cnn", {"max_params": 5000, "batch_size": 128, "learning_rate": 0.02}),
    "cnn_5k_lr02": ("cnn", {"max_params": 5000, "learning_rate": 0.02}),
    "cnn_5k_lr005": ("cnn", {"max_params": 5000, "learning_rate": 0.005}),
    "cnn_5k_late": ("cnn", {"max_params": 5000}, {"POOL_PLACEMENT": "late"}),
    "cnn_1k_late": ("cnn", {"max_params": 1000}, {"POOL_PLACEMENT": "late"}),
    "cnn_5k_g2": ("cnn", {"max_params": 5000}, {"GROWTH": 2.0}),
    "cnn_1k_nohidden": ("cnn", {"max_params": 1000, "head_units": 0}),
    "cnn_5k_nohidden": ("cnn", {"max_params": 5000, "head_units": 0}),
    "hybrid_3k_hoglbp": ("hybrid", {"max_params": 3000}, {"FEATURES": "hog+lbp"}),
    # label distribution learning (12 bins, sigma half a bin); every row also reports the
    # MAE with test-time flips (tta='hflip', same fit) where the task's augment flips
    "cnn_1k_ldl": ("cnn", {"max_params": 1000, "loss": "ldl"}),
    "cnn_3k_ldl": ("cnn", {"max_params": 3000, "loss": "ldl"}),
    "cnn_5k_ldl": ("cnn", {"max_params": 5000, "loss": "ldl"}),
    # distillation from a larger CNN fitted inside the student's fit (issue 21): the row
    # reports the student, the teacher (teacher_mae, teacher_params) and its time
    "distilled_cnn_3k": ("distilled_cnn", {"max_params": 3000, "alpha": 0.5},
                         {"TEACHER": 40000}),
    "cnn_5k_delta1": ("cnn", {"max_params": 5000, "huber_delta": 1.0}),  # the default delta
    "cnn_5k_ldl_s1": ("cnn", {"max_params": 5000, "loss": "ldl", "label_sigma": 1.0}),
    "cnn_5k_ldl_s025": ("cnn", {"max_params": 5000, "loss": "ldl", "label_sigma": 0.25}),
}
DEFAULT_CONFIGS = ["distilled_3k", "cnn_1k", "cnn_3k", "cnn_3k_residual", "cnn_5k", "cnn_10k",
                   "hybrid_3k"]


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
def make_disks(n, size=32, seed=0):
    """Grey images of one bright disk of radius 2-12 px on a noisy background; y = radius."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(2.0, 12.0, n)
    cy, cx = rng.uniform(r, size - r), rng.uniform(r, size - r)
    yy, xx = np.mgrid[:size, :size] + 0.5
    inside = ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2
              <= r[:, None, None] ** 2)
    img = 60 + 120 * inside + rng.normal(0, 10, (n, size, size))
    return np.clip(img, 0, 255).astype(np.uint8), r


def load_dataset(args, name):
    """``(X, y, augment)`` for a built-in task, the disk-radius task or UTKFace."""
    if name == "disk":
        return make_disks(args.n, size=args.size)
    if name == "utkface":
        if args.npz:
            from make_utkface_npz import decode_npz

            X, y = decode_npz(args.npz)
        else:
            from cvfeat.datasets import load_image_folder

            X, y = load_image_folder(args.utkface, "age", size=(64, 64), interpolation="area",
                                     n_samples=args.max_images, random_state=0)
        if args.max_images and args.max_images < len(X):
            keep = np.sort(np.random.default_rng(0).choice(len(X), args.max_images, replace=False))
            X, y = X[keep], y[keep]
        return X, y.astype(np.float64)
    from cvfeat.datasets import load_task

    return load_task(name, n_samples=args.n, size=args.size, random_state=0)


def hybrid_features(shape, which=None):
    """LBP histograms on a 2x2 grid (40 features at 64x64): texture the CNN's few channels
    miss, at 120 of the budget's values; ``which='hog+lbp'`` adds a coarse HOG (4x4 cells,
    144 features), which measured worse at 3k on UTKFace (its 552 values starve the CNN)."""
    from sklearn.pipeline import make_union

    from cvfeat.features import HOG, LBP

    h, w = shape[1], shape[2]
    grid = (2, 2) if min(h, w) >= 48 else (1, 1)
    if which != "hog+lbp":
        return LBP(grid=grid)
    return make_union(
        HOG(pixels_per_cell=(h // 4, w // 4), cells_per_block=(1, 1)), LBP(grid=grid)
    )


def teacher_pipeline(colour):
    """The large classical teacher: HOG (+ HSV histogram) -> StandardScaler -> RBF SVR."""
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    from cvfeat.features import HOG, ColorHistogram

    feats = make_union(HOG(), ColorHistogram(bins=8)) if colour else HOG()
    # a 2 GB kernel cache holds the whole kernel matrix of a UTKFace training fold
    return make_pipeline(feats, StandardScaler(), SVR(C=10.0, cache_size=2000))


def svr_pipeline_predict(pipe, X, chunk=2048):
    """``pipe.predict(X)`` for a fitted features -> scaler -> RBF SVR pipeline, with BLAS.

    libsvm evaluates the kernel one support vector at a time; the same sum as a
    matrix product is many times faster for thousands of support vectors (same
    values up to float64 rounding).
    """
    from sklearn.metrics.pairwise import rbf_kernel

    svr = pipe[-1]
    F = pipe[:-1].transform(X)
    coef = svr.dual_coef_[0]
    out = np.empty(len(F))
    for a in range(0, len(F), chunk):
        K = rbf_kernel(F[a:a + chunk], svr.support_vectors_, gamma=svr._gamma)
        out[a:a + chunk] = K @ coef + svr.intercept_[0]
    return out


ARCH_CONSTANTS = ("GROWTH", "POOL_PLACEMENT")


def set_arch_constants(config):
    """Apply a configuration's architecture constants (workers are reused: reset the rest)."""
    from cvfeat.models import architectures as A

    if not hasattr(A, "_bench_defaults"):
        A._bench_defaults = {k: getattr(A, k) for k in ARCH_CONSTANTS}
    overrides = CONFIGS[config][2] if len(CONFIGS[config]) > 2 else {}
    for k in ARCH_CONSTANTS:
        setattr(A, k, overrides.get(k, A._bench_defaults[k]))
    return overrides


def make_estimator(config, fold, args, dataset, shape):
    from cvfeat.models import HybridCNNRegressor, MicroCNNRegressor

    kind, params = CONFIGS[config][:2]
    overrides = set_arch_constants(config)
    base = dict(
        max_epochs=args.epochs, batch_size=64, learning_rate=0.01, huber_delta=args.huber_delta,
        augment=TASK_AUGMENT.get(dataset), random_state=fold, device=args.device, n_jobs=1,
    )
    base.update(params)
    if kind == "hybrid":
        return HybridCNNRegressor(hybrid_features(shape, overrides.get("FEATURES")), **base)
    if kind == "distilled_cnn":  # the same training, TEACHER parameters, another seed
        teacher = MicroCNNRegressor(**{**base, "max_params": overrides["TEACHER"],
                                       "random_state": fold + 500})
        return MicroCNNRegressor(**base, teacher=teacher)
    return MicroCNNRegressor(**base)


# ----------------------------------------------------------------------------------------
# one fold of one configuration (runs in a worker process)
# ----------------------------------------------------------------------------------------
def run_job(config, fold, train, test, X, y, args, dataset, seed=0):
    import torch

    from cvfeat.budget import count_params

    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    est = make_estimator(config, fold, args, dataset, X.shape)
    est.set_params(random_state=fold + 1000 * seed)
    row = {"dataset": dataset, "config": config, "fold": fold, "seed": seed}
    if CONFIGS[config][0] == "distilled":
        teacher = teacher_pipeline(X.ndim == 4).fit(X[train], y[train])
        row["teacher_params"] = count_params(teacher)
        row["teacher_fit_seconds"] = time.perf_counter() - t0
        # the teacher's predictions for the training images (an array: with flips the
        # student's view differs from the teacher's, harmless for a flip-invariant target)
        est.set_params(teacher=svr_pipeline_predict(teacher, X[train]))
        row["teacher_mae"] = float(np.abs(svr_pipeline_predict(teacher, X[test])
                                          - y[test]).mean())
        row["teacher_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    est.fit(X[train], y[train])
    fit_s = time.perf_counter() - t1
    pred = est.predict(X[test])
    if CONFIGS[config][0] == "distilled_cnn":  # the teacher was fitted inside est.fit
        t = est.teacher_
        row.update(teacher_mae=float(np.abs(t.predict(X[test]) - y[test]).mean()),
                   teacher_params=int(t.n_params_),
                   teacher_seconds=float(sum(r["seconds"] for r in t.history_)))
    if "hflip" in (TASK_AUGMENT.get(dataset) or {}):  # flips keep the target: average them
        row["mae_hflip"] = float(np.abs(est.set_params(tta="hflip").predict(X[test])
                                        - y[test]).mean())
        est.set_params(tta=None)
    row.update(
        mae=float(np.abs(pred - y[test]).mean()),
        r2=float(1 - np.square(pred - y[test]).sum() / np.square(y[test] - y[test].mean()).sum()),
        n_params=int(est.n_params_), n_macs=int(est.n_macs_),
        epochs=int(est.n_epochs_), best_epoch=est.best_epoch_,
        fit_seconds=fit_s, seconds_per_epoch=fit_s / max(1, len(est.history_)),
        total_seconds=time.perf_counter() - t0, device=est.device_,
        architecture=est.architecture_.splitlines()[0],
        curve=[[round(h["train_loss"], 4), None if h["val_loss"] is None
                else round(h["val_loss"], 4)] for h in est.history_],
    )
    return row


# ----------------------------------------------------------------------------------------
# accuracy driver
# ----------------------------------------------------------------------------------------
def fold_indices(n, folds, seed=0):
    from sklearn.model_selection import KFold

    return list(KFold(folds, shuffle=True, random_state=seed).split(np.arange(n)))


def run_accuracy(args, dataset, state, save):
    from joblib import Parallel, delayed

    X, y = load_dataset(args, dataset)
    splits = fold_indices(len(X), args.folds)
    folds = range(args.first_folds or args.folds)
    done = {(r["config"], r["fold"], r.get("seed", 0)) for r in state["results"]
            if r["dataset"] == dataset}
    jobs = [(c, f, s) for s in range(args.seeds) for c in args.configs for f in folds
            if (c, f, s) not in done]
    guess = float(np.mean([np.abs(np.median(y[tr]) - y[te]).mean() for tr, te in splits]))
    state.setdefault("baselines", {})[dataset] = {"median_guess_mae": guess, "n_images": len(X),
                                                 "shape": list(X.shape[1:])}
    save()
    print(f"{dataset}: {len(X)} images {X.shape[1:]}, {len(jobs)} fits on {args.jobs} "
          f"worker(s) ({len(done)} done before); always guessing the median: MAE {guess:.3f}",
          flush=True)
    tasks = (delayed(run_job)(c, f, splits[f][0], splits[f][1], X, y, args, dataset, s)
             for c, f, s in jobs)
    try:
        results = Parallel(n_jobs=args.jobs, return_as="generator_unordered")(tasks)
    except (TypeError, ValueError):  # joblib < 1.4: results in order, still one at a time
        results = Parallel(n_jobs=args.jobs, return_as="generator")(tasks)
    for row in results:
        state["results"].append(row)
        save()
        print(f"  {row['config']:>14} fold {row['fold']} seed {row['seed']}: MAE "
              f"{row['mae']:.3f}"
              + (f" (flips {row['mae_hflip']:.3f})" if "mae_hflip" in row else "") + " "
              f"({row['n_params']:,} params, {row['epochs']} epochs, "
              f"{row['seconds_per_epoch']:.2f} s/epoch, {row['total_seconds']:.0f} s)"
              + (f" teacher MAE {row['teacher_mae']:.3f}" if "teacher_mae" in row else ""),
              flush=True)


def table(state):
    lines = []
    rows = state["results"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        base = state.get("baselines", {}).get(dataset, {})
        lines.append(f"\n**{dataset}** ({base.get('n_images', '?')} images "
                     f"{'x'.join(map(str, base.get('shape', [])))}; median guess MAE "
                     f"{base.get('median_guess_mae', float('nan')):.3f})\n")
        lines.append("| config | params | MACs | MAE (mean ± std over fits) | MAE with flips "
                     "| R2 | fits | epochs | s/epoch |")
        lines.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
        for config in dict.fromkeys(r["config"] for r in rows if r["dataset"] == dataset):
            rs = [r for r in rows if r["dataset"] == dataset and r["config"] == config]
            mae = np.array([r["mae"] for r in rs])
            extra = ""
            if "teacher_mae" in rs[0]:
                extra = (f" (teacher {np.mean([r['teacher_mae'] for r in rs]):.3f} with "
                         f"{np.mean([r['teacher_params'] for r in rs]):,.0f} params"
                         + (f", {np.mean([r['teacher_seconds'] for r in rs]):.0f} s"
                            if "teacher_seconds" in rs[0] else "") + ")")
            lines.append(
                f"| {config} | {np.mean([r['n_params'] for r in rs]):,.0f} | "
                f"{np.mean([r['n_macs'] for r in rs]):,.0f} | {mae.mean():.3f} ± "
                f"{mae.std():.3f}{extra} | "
                + (f"{np.mean([r['mae_hflip'] for r in rs]):.3f}" if "mae_hflip" in rs[0]
                   else "") + " | "
                + (f"{np.mean([r['r2'] for r in rs]):.3f}" if "r2" in rs[0] else "")
                + f" | {len(rs)} | "
                f"{np.mean([r['epochs'] for r in rs]):.0f} | "
                f"{np.mean([r['seconds_per_epoch'] for r in rs]):.2f} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# cost
# ----------------------------------------------------------------------------------------
def plain_loop_epochs(arch, X, y, epochs, batch_size, lr, device, delta):
    """A hand-written loop over the same network: AdamW, Huber, fixed lr, no extras, the
    layers in the textbook order (``bench_epoch_variants.textbook_forward``)."""
    import torch
    import torch.nn.functional as F
    from bench_epoch_variants import textbook_forward

    from cvfeat.models import architectures as A

    torch.manual_seed(0)
    module = A.build_module(arch).to(device)
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    x = torch.as_tensor(X[..., None] if X.ndim == 3 else X).to(device)
    t = torch.as_tensor(((y - y.mean()) / y.std()).astype(np.float32))[:, None].to(device)
    rng = np.random.default_rng(0)
    n_batches = len(X) // batch_size
    times = []
    module.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.as_tensor(rng.permutation(len(X)), device=device)
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            out = textbook_forward(module, module.to_nchw(x[idx]))
            loss = F.huber_loss(out, t[idx], delta=delta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def run_cost(args, state, save):
    import torch

    from cvfeat.datasets import make_scale
    from cvfeat.models import MicroCNNRegressor

    X, y = make_scale(args.cost_n, size=args.cost_size, random_state=0)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.set_num_threads(1)
    common = dict(max_params=args.cost_budget, max_epochs=args.cost_epochs, batch_size=64,
                  learning_rate=0.01, validation_fraction=0.0, patience=None, augment=None,
                  random_state=0, device=str(device), n_jobs=1)
    times = {"plain": [], "estimator": [], "sam": []}
    arch = None
    for r in range(args.cost_rounds):
        est = MicroCNNRegressor(**common).fit(X, y)
        arch = est.module_.arch
        times["estimator"] += [h["seconds"] for h in est.history_][1:]  # first: warm-up
        times["plain"] += plain_loop_epochs(arch, X, y, args.cost_epochs, 64, 0.01, device,
                                            1.0)[1:]
        sam = MicroCNNRegressor(**common, optimizer="sam").fit(X, y)
        times["sam"] += [h["seconds"] for h in sam.history_][1:]
        print(f"  round {r + 1}: " + ", ".join(f"{k} {np.median(v):.2f} s/epoch"
                                              for k, v in times.items()), flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    state["cost"] = {
        "images": args.cost_n, "size": args.cost_size, "max_params": args.cost_budget,
        "n_params": int(est.n_params_), "batch_size": 64, "device": str(device),
        "threads": 1, "epochs_timed": {k: len(v) for k, v in times.items()},
        "seconds_per_epoch": med,
        "ratio_estimator_vs_plain": med["estimator"] / med["plain"],
        "ratio_sam_vs_plain": med["sam"] / med["plain"],
        "ratio_sam_vs_estimator": med["sam"] / med["estimator"],
    }
    save()
    c = state["cost"]
    print(f"cost on {device}: {args.cost_n} images {args.cost_size}x{args.cost_size}, "
          f"{c['n_params']:,} params: plain loop {med['plain']:.2f} s/epoch, MicroCNNRegressor "
          f"{med['estimator']:.2f} ({c['ratio_estimator_vs_plain']:.2f}x, target <= 0.8x), "
          f"SAM {med['sam']:.2f} ({c['ratio_sam_vs_estimator']:.2f}x the estimator, "
          "target <= 2.2x)")


# ----------------------------------------------------------------------------------------
def run_time_budget(args, state, save):
    """``max_time`` kept: one fit with a time budget, its wall-clock and its epochs."""
    from cvfeat.datasets import make_scale
    from cvfeat.models import MicroCNNRegressor

    X, y = make_scale(args.time_n, size=args.time_size, random_state=0)
    model = MicroCNNRegressor(max_params=3000, max_time=args.max_time, random_state=0, n_jobs=1)
    t = time.perf_counter()
    model.fit(X, y)
    elapsed = time.perf_counter() - t
    state["time_budget"] = {
        "images": args.time_n, "size": args.time_size, "max_params": 3000,
        "max_time": args.max_time, "fit_seconds": elapsed, **model.time_budget_,
        "seconds_per_epoch": [r["seconds"] for r in model.history_],
    }
    save()
    tb = model.time_budget_
    print(f"max_time={args.max_time:g} s on {args.time_n} {args.time_size}x{args.time_size} grey "
          f"images: fit took {elapsed:.1f} s, {tb['epochs']} epochs (estimated "
          f"{tb['epoch_seconds']:.2f} s each, measured median "
          f"{np.median(state['time_budget']['seconds_per_epoch']):.2f} s; "
          f"{tb['seconds_before_training']:.2f} s before training)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cost", action="store_true", help="run the training-cost comparison")
    p.add_argument("--cost-n", type=int, default=10000)
    p.add_argument("--cost-size", type=int, default=32)
    p.add_argument("--cost-budget", type=int, default=3000)
    p.add_argument("--cost-epochs", type=int, default=3, help="epochs per timed run (>= 2)")
    p.add_argument("--cost-rounds", type=int, default=2)
    p.add_argument("--max-time", type=float, default=None,
                   help="time one fit with this max_time (seconds) on --time-n images")
    p.add_argument("--time-n", type=int, default=3000)
    p.add_argument("--time-size", type=int, default=32)
    p.add_argument("--task", action="append", default=[],
                   help="built-in task, or 'disk' (disk radius; repeatable)")
    p.add_argument("--n", type=int, default=2000, help="images per built-in task")
    p.add_argument("--size", type=int, default=32, help="built-in task image size")
    p.add_argument("--utkface", help="UTKFace folder (labels.csv + images/)")
    p.add_argument("--npz", help="UTKFace .npz from benchmarks/make_utkface_npz.py")
    p.add_argument("--max-images", type=int, help="random subset of UTKFace (sanity runs)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--first-folds", type=int, help="run only the first K folds")
    p.add_argument("--seeds", type=int, default=1,
                   help="seeds per fold (random_state = fold + 1000 * seed)")
    p.add_argument("--resume", action="store_true",
                   help="keep the results already in --out and run only the missing fits")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--huber-delta", type=float, default=0.1,
                   help="Huber threshold in target std (0.1: close to the MAE)")
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help=f"comma-separated, from {sorted(CONFIGS)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="parallel fits (processes)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2 folds, 2 epochs, 300 images, 1k/3k configs")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown configs {sorted(unknown)}; choose from {sorted(CONFIGS)}")
    if args.quick:
        args.folds, args.epochs, args.n = 2, 2, 300
        args.max_images = args.max_images or 300
        args.cost_n, args.cost_epochs, args.cost_rounds = 1000, 2, 1
        if "--configs" not in " ".join(argv or sys.argv):
            args.configs = ["cnn_1k", "cnn_3k", "hybrid_3k", "distilled_3k"]
    datasets = list(args.task)
    if args.utkface or args.npz:
        datasets.append("utkface")
    if not datasets and not args.cost and args.max_time is None:
        p.error("nothing to run: give --cost, --max-time S, --task NAME, --utkface DIR or "
                "--npz FILE")

    import torch

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(), "results": [],
    }
    if datasets:
        state.update(epochs=args.epochs, folds=args.folds, seeds=args.seeds,
                     configs={c: CONFIGS[c] for c in args.configs})
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        for key in ("epochs", "folds"):
            if key in old and old[key] != state.get(key):
                p.error(f"--resume: {out} was run with {key}={old[key]}, not "
                        f"{state.get(key)}; use the same settings or another --out")
        state["results"] = old.get("results", [])
        state["baselines"] = old.get("baselines", {})
        state["configs"] = {**old.get("configs", {}), **state.get("configs", {})}

    def save():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, default=str))
        tmp.replace(out)

    t0 = time.perf_counter()
    if args.cost:
        run_cost(args, state, save)
    if args.max_time is not None:
        run_time_budget(args, state, save)
    for dataset in datasets:
        run_accuracy(args, dataset, state, save)
    state["seconds"] = time.perf_counter() - t0
    save()
    if state["results"]:
        print(table(state))
    print(f"\n{out} ({state['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
