"""The best-practice study: what pays off for image regression at 1k, 3k and 10k parameters.

Each experiment changes one thing in a baseline micro-CNN and measures the test MAE
of both on the same split with the same seed, at budgets of 1,000, 3,000 and 10,000
parameters, on two built-in tasks and two real data sets:

* ``counting`` (built-in, RGB): number of blobs; ``orientation`` (built-in, grey):
  angle of a bar;
* ``utkface``: age from a face (``../shared/data/utkface``, a fixed random subset);
* ``bccd``: red blood cell count of a blood smear (``../shared/data/bccd``, rows with
  ``rbc > 0``: 15 images with a missed annotation are dropped, see its README).

The baseline is what ``MicroCNNRegressor`` does by default: plain blocks, separable
convolutions, global-average-pooling head, Huber loss, AdamW with a one-cycle
schedule, automatic depth, plus the augmentations that keep the task's target
unchanged (``TASK_AUGMENT`` in ``bench_micro_cnn.py``; flips for counts, none that
rotate for the angle). Experiments: depth vs width at a fixed budget; plain vs
residual vs dense blocks; SAM vs AdamW; augmentation on/off; Huber vs MSE; GAP vs
dense head; separable vs standard convolutions; coordinate channels; hybrid
(classical features in the head) vs pure CNN vs the best classical pipeline;
distillation from a large HOG(+colour) RBF-SVR teacher; int8 quantization (ONNX
Runtime, static QDQ) and 50 % magnitude pruning with fine-tuning; and "classical
first": the best classical pipeline within the budget (chosen by cross-validation
on the training images among ``cvfeat.compare.default_candidates``) against the
best CNN.

Every (data set, budget, seed) uses its own 80/20 split, shared by all configurations
of that seed, so differences are paired: the report gives, per setting, the mean MAE
over seeds with a 95 % t-interval, and the paired relative change against the
reference configuration with its 95 % t-interval; then, across the 12 settings, the
mean change with a 95 % interval over settings, which the rules of thumb rest on.

Results are appended to a JSON file as each fit ends (``--resume`` skips what is
there), and ``docs/STUDY.md`` with its plots is written from that file
(``--report-only`` rewrites it without fitting).

Examples::

    python benchmarks/study.py                 # the full study (78 min measured on 2 cores)
    python benchmarks/study.py --quick --out-dir /tmp/study   # smoke run, a few minutes
    python benchmarks/study.py --report-only   # rewrite docs/STUDY.md from the results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing cvfeat
sys.path.insert(0, str(HERE))

from bench_micro_cnn import TASK_AUGMENT, svr_pipeline_predict, teacher_pipeline  # noqa: E402

BUDGETS = (1000, 3000, 10000)
DATASETS = ("counting", "orientation", "utkface", "bccd")
REAL = {"utkface": ("utkface", "age"), "bccd": ("bccd", "rbc")}
AUGMENT = {**TASK_AUGMENT, "bccd": {"hflip": 0.5, "vflip": 0.5}}  # a count: flips keep it

FULL = dict(n=2000, size=32, epochs=20, seeds=(0, 1, 2), classical_cv=3, fast=False)
QUICK = dict(n=150, size=16, epochs=2, seeds=(0, 1), classical_cv=2, fast=True)

#: configuration -> (kind, MicroCNN parameters changed from the baseline, label)
CONFIGS = {
    "base": ("cnn", {}, "baseline (plain, separable, GAP, Huber, AdamW, augmented, auto depth)"),
    "depth2": ("cnn", {"depth": 2}, "depth 2 (wider)"),
    "depth3": ("cnn", {"depth": 3}, "depth 3"),
    "depth6": ("cnn", {"depth": 6}, "depth 6 (narrower)"),
    "residual": ("cnn", {"block": "residual"}, "residual blocks"),
    "dense": ("cnn", {"block": "dense"}, "dense (concatenating) blocks"),
    "sam": ("cnn", {"optimizer": "sam"}, "SAM (2 gradient passes per step)"),
    "noaug": ("cnn", {"augment": None}, "no augmentation"),
    "mse": ("cnn", {"loss": "mse"}, "MSE loss"),
    "densehead": ("cnn", {"head": "dense"}, "dense (flatten) head"),
    "standard": ("cnn", {"conv": "standard"}, "standard convolutions"),
    "coord": ("cnn", {"coord_channels": True}, "coordinate channels"),
    "hybrid": ("hybrid", {}, "hybrid: LBP histogram in the head"),
    "distilled": ("distilled", {"alpha": 0.5}, "distilled from HOG(+colour) RBF SVR, alpha 0.5"),
    "pruned50": ("cnn", {"prune_amount": 0.5}, "50 % magnitude pruning + 5 fine-tuning epochs"),
    "int8": ("post", {}, "int8 ONNX (cvfeat's default: layers of >= 256 weights)"),
    "int8_all": ("post", {}, "int8 ONNX, every conv/linear layer"),
    "classical": ("classical", {}, "best classical pipeline within budget (CV-chosen)"),
}
FITTED = [c for c, (kind, _, _) in CONFIGS.items() if kind != "post"]

#: (key, title, reference, variants, what it answers)
EXPERIMENTS = [
    ("depth", "Depth vs width at a fixed budget", "base", ["depth2", "depth3", "depth6"],
     "The solver keeps the budget, so a deeper net is a narrower one; the last column "
     "gives each net's depth and widths (the baseline's depth is automatic)."),
    ("blocks", "Plain vs residual vs dense blocks", "base", ["residual", "dense"],
     "Skip connections at the same budget (a residual block adds a 1x1 projection where "
     "the width changes; a dense block concatenates)."),
    ("sam", "SAM vs AdamW", "base", ["sam"],
     "Sharpness-aware minimisation, same epochs (so twice the gradient computations)."),
    ("augment", "Augmentation on vs off", "base", ["noaug"],
     "Only augmentations that keep the target: flips for counts and ages, "
     "brightness/contrast for the angle."),
    ("loss", "Huber vs MSE", "base", ["mse"],
     "Training loss on standardised targets (Huber threshold 1 standard deviation); "
     "the metric is the MAE."),
    ("head", "GAP vs dense head", "base", ["densehead"],
     "Global average pooling then a small MLP, against flattening the last feature map "
     "into the head (which spends the budget on head weights)."),
    ("conv", "Separable vs standard convolutions", "base", ["standard"],
     "Depthwise-separable convolutions buy width for the same parameters."),
    ("coord", "Coordinate channels", "base", ["coord"],
     "Two extra input channels with the x and y position (CoordConv)."),
    ("hybrid", "Hybrid vs pure CNN vs pure classical", "base", ["hybrid", "classical"],
     "A 10-bin LBP histogram standardised into the head of the CNN (the budget counts "
     "it), and the best classical pipeline within the same budget."),
    ("distill", "Distillation from a large teacher", "base", ["distilled"],
     "The teacher is unbounded (HOG + colour histogram + RBF SVR, tens of thousands "
     "to hundreds of thousands of values); the student keeps the budget."),
    ("int8", "int8 quantization cost", "base", ["int8", "int8_all"],
     "The fitted baseline exported with cvfeat.export.to_onnx and quantized (static QDQ, "
     "per channel, calibrated on 64 training images); MAE in ONNX Runtime."),
    ("prune", "Pruning cost", "base", ["pruned50"],
     "Half the conv and linear weights (smallest magnitude) set to zero after training, "
     "then 5 fine-tuning epochs at a tenth of the learning rate."),
]


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
def default_data_root():
    return Path(os.environ.get("CVFEAT_REAL_DATA", ROOT.parent / "shared" / "data"))


def load_dataset(name, settings, data_root):
    """``(X, y, note)``; real data sets give None when their folder is absent."""
    n, size = settings["n"], settings["size"]
    if name in REAL:
        folder, target = REAL[name]
        path = Path(data_root) / folder
        if not (path / "labels.csv").is_file():
            return None
        from cvfeat.datasets import load_image_folder

        X, y = load_image_folder(path, target, size=(size, size), interpolation="area")
        y = np.asarray(y, dtype=np.float64)
        note = f"{len(X)} images in {path}"
        if name == "bccd":
            keep = y > 0
            note += f"; {int((~keep).sum())} with rbc = 0 dropped (missed annotations)"
            X, y = X[keep], y[keep]
        if len(X) > n:
            idx = np.sort(np.random.default_rng(0).choice(len(X), n, replace=False))
            X, y = X[idx], y[idx]
            note += f"; a fixed random subset of {n}"
        return X, y, note
    from cvfeat.datasets import load_task

    kw = {"color": True} if name == "counting" else {}
    X, y = load_task(name, n_samples=n, size=size, random_state=0, **kw)
    return X, np.asarray(y, dtype=np.float64), f"built-in, {n} images, seed 0"


def split(n, seed):
    from sklearn.model_selection import ShuffleSplit

    return next(ShuffleSplit(1, test_size=0.2, random_state=seed).split(np.zeros(n)))


# ----------------------------------------------------------------------------------------
# one fit (runs in a worker process)
# ----------------------------------------------------------------------------------------
def make_cnn(config, dataset, budget, seed, settings, shape):
    from cvfeat.features import LBP
    from cvfeat.models import HybridCNNRegressor, MicroCNNRegressor

    kind, params = CONFIGS[config][:2]
    kw = dict(max_params=budget, max_epochs=settings["epochs"], augment=AUGMENT[dataset],
              random_state=seed, n_jobs=1, device="cpu")
    kw.update(params)
    if kind == "hybrid":
        return HybridCNNRegressor(features=LBP(P=8, R=1, grid=(1, 1)), **kw)
    return MicroCNNRegressor(**kw)


def onnx_mae(onx, X, y):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    pred = sess.run(None, {sess.get_inputs()[0].name: X})[0].ravel()
    return float(np.abs(pred - y).mean()), len(onx.SerializeToString())


def int8_rows(model, X_tr, X_te, y_te, common):
    """The fitted baseline in ONNX Runtime: fp32 (check), int8 default, int8 all layers."""
    from cvfeat.export import quantize as Q
    from cvfeat.export import to_onnx

    onx = to_onnx(model, X_tr[:1])
    fp32_mae, fp32_bytes = onnx_mae(onx, X_te, y_te)
    rows = []
    for config, min_weights in (("int8", Q.MIN_WEIGHTS), ("int8_all", 0)):
        saved = Q.MIN_WEIGHTS
        Q.MIN_WEIGHTS = min_weights
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                q = Q.quantize_int8(onx, X_tr[:64])
        finally:
            Q.MIN_WEIGHTS = saved
        mae, nbytes = onnx_mae(q, X_te, y_te)
        rows.append(dict(common, config=config, mae=mae, n_params=int(model.n_params_),
                         bytes=nbytes, bytes_fp32=fp32_bytes, fp32_onnx_mae=fp32_mae,
                         note="; ".join(sorted({str(w.message).splitlines()[0]
                                                for w in caught}))))
    return rows


def classical_row(dataset, budget, seed, settings, X_tr, y_tr, X_te):
    from sklearn.pipeline import Pipeline

    from cvfeat.budget import count_params
    from cvfeat.compare import compare_models, default_candidates

    cands = [(name, est) for name, est in default_candidates(
        budget, X_tr.shape[1:], random_state=seed, fast=settings["fast"])
        if isinstance(est, Pipeline)]
    res = compare_models(X_tr, y_tr, budget=budget, candidates=cands,
                         cv=settings["classical_cv"], scoring=("mae",), latency=None,
                         progress=False, random_state=seed)
    if res.best_ is None:
        return None, {"note": "no classical pipeline fits the budget"}
    cv_mae = float(res.table.set_index("name").loc[res.best_name_, "mae_mean"])
    return res.best_.predict(X_te), {"pipeline": res.best_name_, "cv_mae": cv_mae,
                                     "n_params": int(count_params(res.best_)),
                                     "candidates": len(cands)}


def run_one(dataset, budget, seed, config, X_tr, y_tr, X_te, y_te, settings):
    """Fit one configuration; returns a list of result rows (the baseline adds int8 rows)."""
    import torch

    torch.set_num_threads(1)
    common = dict(dataset=dataset, budget=budget, seed=seed)
    t0 = time.perf_counter()
    kind = CONFIGS[config][0]
    try:
        if kind == "classical":
            pred, extra = classical_row(dataset, budget, seed, settings, X_tr, y_tr, X_te)
            row = dict(common, config=config, fit_seconds=time.perf_counter() - t0, **extra)
            if pred is not None:
                row["mae"] = float(np.abs(pred - y_te).mean())
            return [row]
        model = make_cnn(config, dataset, budget, seed, settings, X_tr.shape)
        extra = {}
        if kind == "distilled":
            teacher = teacher_pipeline(X_tr.ndim == 4).fit(X_tr, y_tr)
            from cvfeat.budget import count_params

            extra = dict(teacher_params=int(count_params(teacher)),
                         teacher_mae=float(np.abs(svr_pipeline_predict(teacher, X_te)
                                                  - y_te).mean()))
            model.set_params(teacher=svr_pipeline_predict(teacher, X_tr))
        model.fit(X_tr, y_tr)
        pred = model.predict(X_te)
        row = dict(common, config=config, mae=float(np.abs(pred - y_te).mean()),
                   n_params=int(model.n_params_), n_macs=int(model.n_macs_),
                   epochs=len(model.history_), fit_seconds=time.perf_counter() - t0,
                   architecture=model.architecture_.splitlines()[0], **extra)
        if kind == "cnn" and CONFIGS[config][1].get("prune_amount"):
            row["n_nonzero"] = int(model.n_nonzero_params_)
        rows = [row]
        if config == "base":
            rows += int8_rows(model, X_tr, X_te, y_te, common)
        return rows
    except Exception as exc:  # noqa: BLE001 - recorded and reported, never hidden
        return [dict(common, config=config, error=f"{type(exc).__name__}: {exc}"[:500],
                     fit_seconds=time.perf_counter() - t0)]


# ----------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------
def run(args, settings, state, save):
    from joblib import Parallel, delayed

    done = {(r["dataset"], r["budget"], r["seed"], r["config"]) for r in state["results"]
            if "error" not in r}
    jobs = []
    for dataset in args.datasets:
        loaded = load_dataset(dataset, settings, args.data)
        if loaded is None:
            state["skipped"][dataset] = f"no labels.csv under {args.data}"
            print(f"{dataset}: skipped ({state['skipped'][dataset]})", flush=True)
            continue
        X, y, note = loaded
        splits = {seed: split(len(X), seed) for seed in settings["seeds"]}
        state["datasets"][dataset] = dict(
            note=note, n=len(X), shape=list(X.shape[1:]),
            median_guess_mae=float(np.mean([np.abs(y[te] - np.median(y[tr])).mean()
                                            for tr, te in splits.values()])))
        print(f"{dataset}: {note}, {X.shape[1:]}", flush=True)
        for seed, (tr, te) in splits.items():
            for budget in args.budgets:
                for config in FITTED:
                    if (dataset, budget, seed, config) in done:
                        continue
                    jobs.append((dataset, budget, seed, config, X[tr], y[tr], X[te], y[te]))
    save()
    print(f"{len(jobs)} fits on {args.jobs} worker(s)", flush=True)
    tasks = (delayed(run_one)(*job, settings) for job in jobs)
    t0 = time.perf_counter()
    for i, rows in enumerate(Parallel(n_jobs=args.jobs, return_as="generator_unordered")(tasks)):
        state["results"].extend(rows)
        save()
        r = rows[0]
        what = (f"MAE {r['mae']:.3f}" if "mae" in r else r.get("error", r.get("note", "?")))
        print(f"[{i + 1}/{len(jobs)} {time.perf_counter() - t0:6.0f} s] {r['dataset']} "
              f"{r['budget']} seed {r['seed']} {r['config']}: {what}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK['n']} images of {QUICK['size']}px per data set, "
                   f"{QUICK['epochs']} epochs, {len(QUICK['seeds'])} seeds")
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help="comma-separated, from %(default)s")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--data", type=Path, default=default_data_root(),
                   help="folder holding utkface/ and bccd/ (default: $CVFEAT_REAL_DATA or "
                   "../shared/data)")
    p.add_argument("--jobs", type=int, default=2, help="parallel fits (processes)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where STUDY.md, its plots and study.json go (default: docs/ and "
                   "benchmarks/results/study.json; --quick: ./study_quick)")
    p.add_argument("--resume", action="store_true", help="keep the results already saved")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from the saved results, fit nothing")
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(args.datasets) - set(DATASETS)
    if unknown:
        p.error(f"unknown data sets {sorted(unknown)}; choose from {list(DATASETS)}")
    try:
        args.budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        p.error(f"--budgets must be comma-separated integers; got {args.budgets!r}")
    settings = dict(QUICK if args.quick else FULL)
    if args.out_dir is None:
        docs = Path("study_quick") if args.quick else ROOT / "docs"
        results = docs / "study.json" if args.quick else HERE / "results" / "study.json"
    else:
        docs, results = args.out_dir, args.out_dir / "study.json"
    docs.mkdir(parents=True, exist_ok=True)
    results.parent.mkdir(parents=True, exist_ok=True)

    if args.report_only or args.resume:
        if not results.is_file():
            p.error(f"{results} does not exist: run the study first")
        state = json.loads(results.read_text())
    if not args.report_only:
        import torch

        command = "python benchmarks/study.py" + "".join(
            f" {a}" for a in (sys.argv[1:] if argv is None else argv))
        if args.resume:  # failed fits are tried again
            state["results"] = [r for r in state["results"] if "error" not in r]
        else:
            state = dict(results=[], datasets={}, skipped={})
        state.update(
            command=command, settings=settings, budgets=args.budgets,
            started=state.get("started", time.strftime("%Y-%m-%d %H:%M:%S")),
            python=platform.python_version(), torch=torch.__version__,
            cpu_count=os.cpu_count(), jobs=args.jobs)

        def save():
            tmp = results.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1, default=str))
            tmp.replace(results)

        t0 = time.perf_counter()
        run(args, settings, state, save)
        state["seconds"] = state.get("seconds_before", 0.0) + time.perf_counter() - t0
        state["seconds_before"] = state["seconds"]
        save()
    from study_report import write_report

    path = write_report(state, docs, results)
    print(f"wrote {path} from {results}")


if __name__ == "__main__":
    main()
