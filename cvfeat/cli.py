"""The ``cvfeat`` command line: ``demo``, ``compare``, ``export``, ``features``, ``predict`` and ``info``.

``cvfeat predict`` is what runs on a device: it imports only numpy, OpenCV and
ONNX Runtime (:mod:`cvfeat.runtime`), so this module imports nothing heavy at
the top; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
from importlib import metadata

CORE = [
    "numpy", "scikit-learn", "opencv-python-headless", "scikit-image", "joblib", "xgboost",
    "skl2onnx", "onnxruntime", "onnxmltools", "tqdm", "matplotlib", "pandas",
]
# extra -> (distribution, import name) pairs that make it usable
EXTRAS = {
    "cnn": [("torch", "torch")],
    "tune": [("optuna", "optuna"), ("optuna-integration", "optuna_integration")],
    "dask": [("dask", "dask"), ("distributed", "distributed")],
    "dev": [("pytest", "pytest"), ("hypothesis", "hypothesis"), ("ruff", "ruff"),
            ("nbclient", "nbclient")],
}


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _importable(module):
    """Whether ``module`` can be imported (without importing it).

    A module already imported counts as importable: ``find_spec`` raises ValueError on
    modules whose ``__spec__`` is None, as optuna-integration's lazy module has.
    """
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def info_lines():
    """Versions of cvfeat, Python and the dependencies, and which extras are installed."""
    from . import __version__

    lines = [f"cvfeat {__version__}", f"python {platform.python_version()} "
             f"({platform.system()} {platform.machine()})", "", "core dependencies:"]
    for dist in CORE:
        lines.append(f"  {dist:<24} {_version(dist) or 'MISSING'}")
    lines += ["", "extras:"]
    for extra, deps in EXTRAS.items():
        found = [(d, _version(d)) for d, mod in deps if _importable(mod)]
        ok = len(found) == len(deps)
        detail = ", ".join(f"{d} {v}" for d, v in found) if found else "-"
        hint = "" if ok else f"   (pip install 'cvfeat[{extra}]')"
        lines.append(f"  {extra:<6} {'installed' if ok else 'not installed':<14} {detail}{hint}")
    return lines


# the built-in synthetic tasks (cvfeat.datasets.TASKS; kept here so that building the
# parser imports no scikit-learn; a test checks the two agree)
TASK_NAMES = ("blur", "color_temperature", "counting", "orientation", "scale")


def _cmd_info(args):
    if args.model is None:
        print("\n".join(info_lines()))
        return 0
    if _is_model_file(args.model):
        from .budget import count_params
        from .export import input_spec

        est = _load_model_file(args)
        print(f"fitted model in {args.model}:")
        print(f"  {est!r}")
        print(f"  parameters (count_params): {count_params(est):,d}")
        try:
            h, w, c = input_spec(est)
            print(f"  input: {h}x{w} {'RGB' if c == 3 else 'grey'} images")
        except ValueError as exc:
            print(f"  input: {exc}")
        return 0
    from .export import read_model_card

    card = read_model_card(args.model)
    width = max(map(len, card), default=0)
    print(f"model card of {args.model}:")
    for key, value in card.items():
        print(f"  {key:<{width}}  {value}")
    return 0


def _image_files(folder):
    from .io import image_files

    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no image files (png, jpg, bmp, tif, webp) found in {folder}")
    return files


PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def _load_model_file(args):
    """The fitted model of ``args.model``: a ``.skops`` file, or a pickle only when the
    user passed ``--trust-pickle`` (loading a pickle runs the code it carries)."""
    from pathlib import Path

    from .io import load_model
    from .runtime import file_kind

    path = Path(args.model)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {args.model}")
    if path.suffix.lower() in PICKLE_SUFFIXES or file_kind(path) == "pickle":
        if not args.trust_pickle:
            raise ValueError(
                f"{args.model} is a pickle (joblib/pickle file), so it was not loaded: "
                "unpickling runs whatever code the file carries, and a model file from "
                "someone else could do anything on this machine. Save models with "
                "cvfeat.io.save_model(model, 'model.skops') and pass the .skops file, or "
                "give --trust-pickle if you wrote this file yourself."
            )
        import joblib

        return joblib.load(path)
    return load_model(path, trusted=args.trust)


def _trust_options(parser):
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load a .joblib/.pkl pickle (it can run any code: only files "
                        "you made yourself)")
    parser.add_argument("--trust", action="append", metavar="TYPE",
                        help="trust one more type named in a .skops file (repeatable)")


def _cmd_export(args):
    import os

    import numpy as np

    from .export import input_spec, to_onnx
    from .io import read_images

    model = _load_model_file(args)
    h, w, c = input_spec(model)
    sample = np.zeros((1, h, w, 3) if c == 3 else (1, h, w), np.uint8)
    command = "cvfeat " + " ".join(args.argv)
    if args.c:
        from .export import to_c

        if args.int8:
            raise ValueError("--int8 applies to the ONNX export; --c writes float32 C.")
        exported = to_c(model, sample, name=args.name or "cvfeat_model", target_name=args.target_name,
                        command=command)
        paths = exported.save(args.out)
        r = exported.report
        print(f"wrote {', '.join(str(p) for p in paths)}: input uint8 [{h}, {w}"
              f"{', 3' if c == 3 else ''}], {r['n_outputs']} output(s), flash "
              f"{r['flash_bytes']:,d} B, RAM {r['ram_bytes']:,d} B"
              f"{'' if r['sizes_measured'] else ' (estimated: no C compiler)'}")
        return 0
    if args.name is not None:
        raise ValueError("--name names the C files; it needs --c.")
    calibration = None
    if args.int8:
        if args.calibration is None:
            raise ValueError("--int8 needs --calibration DIR: images to calibrate the int8 ranges.")
        calibration = read_images(_image_files(args.calibration), size=(h, w),
                                  color="rgb" if c == 3 else "gray")
    onx = to_onnx(model, sample, quantize="int8" if args.int8 else None,
                  calibration=calibration, target_name=args.target_name, command=command)
    with open(args.out, "wb") as f:
        f.write(onx.SerializeToString())
    print(f"wrote {args.out}: {os.path.getsize(args.out):,d} bytes, input uint8 "
          f"[N, {h}, {w}{', 3' if c == 3 else ''}]{' (int8)' if args.int8 else ''}")
    return 0


def _feature_steps(args):
    from sklearn.pipeline import FeatureUnion

    from .features import HOG, LBP, ColorHistogram

    if args.steps:
        if args.hog or args.hist or args.lbp:
            raise ValueError("--steps replaces --hog/--hist/--lbp; give one or the other.")
        args.model = args.steps
        return _load_model_file(args)
    chosen = [("hog", HOG())] if args.hog or not (args.hist or args.lbp) else []
    if args.hist:
        chosen.append(("hist", ColorHistogram(space="hsv" if args.color == "rgb" else "rgb")))
    if args.lbp:
        chosen.append(("lbp", LBP()))
    return chosen[0][1] if len(chosen) == 1 else FeatureUnion(chosen)


def _scheduler(spec):
    """``(client, cluster)`` for ``--scheduler`` (both None without it)."""
    if spec is None:
        return None, None
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("--scheduler needs the dask extra: pip install 'cvfeat[dask]'.") from exc
    if spec.startswith("local:"):
        n = spec.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--scheduler local:N needs a positive N; got {spec!r}.")
        cluster = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    if spec.startswith("tcp://"):
        return Client(spec), None
    raise ValueError(f"--scheduler takes tcp://HOST:PORT or local:N; got {spec!r}.")


def _cmd_features(args):
    import time

    from .distributed import configure_workers, extract_features

    steps = _feature_steps(args)
    client, cluster = _scheduler(args.scheduler)
    t0 = time.perf_counter()
    try:
        if client is not None:
            configure_workers(client)
        Z = extract_features(args.source, steps, args.out, size=args.size, color=args.color,
                             chunk=args.chunk, client=client)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    print(f"wrote {args.out}: {Z.shape[0]:,d} images x {Z.shape[1]:,d} features ({Z.dtype}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _is_model_file(path):
    """True for a fitted-model file (``.skops``, or a pickle): not an ONNX graph."""
    from pathlib import Path

    from .runtime import file_kind

    p = Path(path)
    return p.suffix.lower() in (".skops", *PICKLE_SUFFIXES) or (
        p.is_file() and file_kind(p) != "other")


def _cmd_predict(args):
    if _is_model_file(args.model):  # a fitted model in Python (imports scikit-learn)
        import numpy as np

        from .export import input_spec
        from .runtime import read_image

        est = _load_model_file(args)
        h, w, c = input_spec(est)
        batch = np.stack([read_image(p, (h, w), "rgb" if c == 3 else "gray")
                          for p in args.images])
        preds, target = np.asarray(est.predict(batch), dtype=np.float64), None
    else:  # the device path: onnxruntime, numpy and OpenCV only
        from .runtime import Model

        model = Model(args.model)
        preds = model.predict_files(args.images)
        target = model.metadata.get("target_name")
    rows = [(str(p), float(v)) for p, v in zip(args.images, preds.reshape(len(preds), -1)[:, 0], strict=True)]
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", target or "prediction"])
            writer.writerows(rows)
    for path, value in rows:
        print(f"{path}\t{value:.6g}")
    return 0


def _cmd_demo(args):
    from ._demo import run_demo

    run_demo(task=args.task, n_samples=args.n_samples, size=args.size, cv=args.cv,
             budget=args.budget, random_state=args.random_state, n_jobs=args.n_jobs,
             cnn_time=60.0 * args.cnn_minutes, out=args.out)
    return 0


def _cmd_compare(args):
    from .compare._report import print_summary, run_compare

    options = {}
    if args.inner_cv is not None:
        options["cv"] = args.inner_cv
    if args.n_trials is not None:
        options["n_trials"] = args.n_trials
    if args.sampler is not None:
        options["sampler"] = args.sampler
    if options and args.search is None:
        raise ValueError("--inner-cv, --n-trials and --sampler need --search.")
    scoring = tuple(s.strip() for s in args.scoring.split(",") if s.strip())
    summary = run_compare(
        args.data_dir, target=args.target, size=args.size, color=args.color,
        budget=args.budget, cv=args.cv, out=args.out, n_samples=args.n_samples,
        cnn_epochs=args.cnn_epochs,
        cnn_time=None if args.cnn_minutes is None else 60.0 * args.cnn_minutes,
        search=args.search, search_options=options or None,
        groups=args.groups, holdout=args.holdout, scoring=scoring,
        random_state=args.random_state, n_jobs=args.n_jobs, fast=args.fast,
        include_over_budget=args.include_over_budget,
        command="cvfeat " + " ".join(args.argv))
    print_summary(summary)
    return 0


def _positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def build_parser():
    from ._demo import DEMO_CNN_TIME

    parser = argparse.ArgumentParser(
        prog="cvfeat",
        description="Image regression under a parameter budget: classical features first.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="cvfeat compare on a built-in task: leaderboard, report and best model",
        description="Generate a built-in task, cross-validate the fast default candidates "
        "sized to the budget (classical pipelines, micro-CNNs, a hybrid, a distilled CNN) "
        "and an unbounded HOG + RBF SVR reference, then write OUT/report.md, leaderboard.csv, "
        "pareto.png and best.onnx (parity checked on held-out images).",
    )
    demo.add_argument("--task", default="counting", choices=TASK_NAMES,
                      help="built-in synthetic task, generated in colour (default: %(default)s)")
    demo.add_argument("--n-samples", type=int, default=600, help="images (default: %(default)s)")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    demo.add_argument("--cv", type=int, default=5, help="folds (default: %(default)s)")
    demo.add_argument("--budget", type=int, default=3000,
                      help="parameter budget for the whole pipeline (default: %(default)s)")
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--n-jobs", type=int, default=-1,
                      help="processes over candidates x folds (default: all cores)")
    demo.add_argument("--cnn-minutes", type=_positive_float, default=DEMO_CNN_TIME / 60,
                      metavar="M", help="training time of every micro-CNN per fold "
                                        f"(default: {DEMO_CNN_TIME / 60:.3g}, i.e. "
                                        f"{DEMO_CNN_TIME:g} s)")
    demo.add_argument("--out", default="cvfeat_demo",
                      help="output folder for the report and best.onnx (default: %(default)s)")
    demo.set_defaults(func=_cmd_demo)

    cmp = sub.add_parser(
        "compare", help="cross-validate classical pipelines and micro-CNNs under a budget on "
        "a folder; write a report and the best model as ONNX",
        description="Read DATA_DIR (images/ + labels.csv), cross-validate the default "
        "candidates sized to the budget (classical pipelines, micro-CNNs, a hybrid, a "
        "distilled CNN) and write OUT/report.md, leaderboard.csv, pareto.png and best.onnx "
        "(parity checked on held-out images).")
    cmp.add_argument("data_dir", metavar="DATA_DIR", help="folder with labels.csv and images")
    cmp.add_argument("--target", required=True, help="target column of labels.csv")
    cmp.add_argument("--size", type=int, default=64,
                     help="images are resized to SIZE x SIZE (default: %(default)s)")
    cmp.add_argument("--color", choices=("rgb", "gray"), default="rgb",
                     help="read the images as (default: %(default)s)")
    cmp.add_argument("--budget", type=int, default=3000,
                     help="parameter budget for the whole model (default: %(default)s)")
    cmp.add_argument("--cv", type=int, default=5, help="folds (default: %(default)s)")
    cmp.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    cmp.add_argument("--n-samples", type=int, default=None,
                     help="use a random subset of this many images (faster)")
    cmp.add_argument("--cnn-epochs", type=int, default=None,
                     help="epochs of the micro-CNNs (default 20; 2 with --fast)")
    cmp.add_argument("--cnn-minutes", type=_positive_float, default=None, metavar="M",
                     help="train every micro-CNN for M minutes per fold (a time budget, "
                          "instead of a number of epochs); the leaderboard gives the epochs")
    cmp.add_argument("--search", choices=("grid", "halving", "optuna"), default=None,
                     help="tune each candidate inside every training fold (nested)")
    cmp.add_argument("--inner-cv", type=int, default=None,
                     help="folds of the inner search (default 3)")
    cmp.add_argument("--n-trials", type=int, default=None,
                     help="trials per optuna search (default 20)")
    cmp.add_argument("--sampler", choices=("tpe", "gp"), default=None,
                     help="optuna sampler (default tpe)")
    cmp.add_argument("--groups", metavar="COLUMN", default=None,
                     help="labels.csv column of groups (e.g. the source image of crops): "
                     "grouped folds and hold-out")
    cmp.add_argument("--holdout", type=float, default=0.1,
                     help="share of images kept out for the export check (default: %(default)s)")
    cmp.add_argument("--scoring", default="mae,rmse,r2",
                     help="comma-separated metrics, the first ranks (default: %(default)s)")
    cmp.add_argument("--random-state", type=int, default=0)
    cmp.add_argument("--n-jobs", type=int, default=None,
                     help="processes over candidates x folds (default: one)")
    cmp.add_argument("--fast", action="store_true",
                     help="quick candidates (2 CNN epochs, 20 trees) for a first look")
    cmp.add_argument("--include-over-budget", action="store_true",
                     help="keep candidates over the budget in the leaderboard")
    cmp.set_defaults(func=_cmd_compare)

    export = sub.add_parser(
        "export", help="write a fitted model (.skops) as one ONNX graph, uint8 pixels in",
        description="Export a fitted pipeline saved with cvfeat.io.save_model to ONNX: raw "
        "uint8 pixels in, prediction out; writes the model card into the file. Pickles "
        "(.joblib, .pkl) are refused unless --trust-pickle: loading one runs its code.")
    export.add_argument("model", help="MODEL.skops (a fitted cvfeat pipeline)")
    _trust_options(export)
    export.add_argument("--out", required=True,
                        help="the .onnx file to write (with --c: the folder for NAME.h/.c/.json)")
    export.add_argument("--c", action="store_true",
                        help="write dependency-free C99 for a microcontroller instead of ONNX")
    export.add_argument("--name", help="with --c: prefix of the C identifiers and file names "
                        "(default: cvfeat_model)")
    export.add_argument("--int8", action="store_true", help="static int8 (QDQ) quantization")
    export.add_argument("--calibration", metavar="DIR",
                        help="folder of images for int8 calibration")
    export.add_argument("--target-name", help="name of the target, written to the model card")
    export.set_defaults(func=_cmd_export)

    predict = sub.add_parser(
        "predict", help="predict with an exported model (needs only onnxruntime, numpy, OpenCV)",
        description="Read images, resize them (INTER_AREA) to the model's input size and colour, "
        "and print one prediction per image.")
    predict.add_argument("model", help="the .onnx file (or a fitted MODEL.skops, in Python)")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--csv", metavar="OUT", help="also write file,prediction rows to OUT")
    _trust_options(predict)
    predict.set_defaults(func=_cmd_predict)

    feats = sub.add_parser(
        "features", help="stream a folder of images through feature steps into a zarr array",
        description="Read SOURCE's images in chunks, compute their features (on a Dask "
        "cluster with --scheduler) and write them to OUT.zarr; a rerun resumes an interrupted "
        "run. Needs the dask extra.")
    feats.add_argument("source", help="a folder of images (searched recursively)")
    feats.add_argument("--out", required=True, help="the zarr array to write (OUT.zarr)")
    feats.add_argument("--size", type=int, default=64, help="images are resized to SIZE x SIZE "
                       "(default: %(default)s)")
    feats.add_argument("--color", choices=["rgb", "gray"], default="rgb")
    feats.add_argument("--hog", action="store_true", help="HOG (the default feature)")
    feats.add_argument("--hist", action="store_true", help="colour histogram (HSV; grey: "
                       "intensity)")
    feats.add_argument("--lbp", action="store_true", help="LBP histogram")
    feats.add_argument("--steps", metavar="MODEL.skops",
                       help="fitted feature steps from a model file instead of the flags")
    feats.add_argument("--chunk", type=int, default=256, help="images per task "
                       "(default: %(default)s)")
    feats.add_argument("--scheduler", metavar="tcp://HOST:PORT | local:N",
                       help="a Dask scheduler, or local:N to start N worker processes here; "
                       "none: in this process")
    _trust_options(feats)
    feats.set_defaults(func=_cmd_features)

    info = sub.add_parser("info", help="versions and installed extras, or a model's card")
    info.add_argument("model", nargs="?", help="an exported .onnx file: print its model card "
                      "(a MODEL.skops: its steps, parameters and input)")
    _trust_options(info)
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"cvfeat {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
