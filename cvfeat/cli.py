"""The ``cvfeat`` command line: ``cvfeat demo`` and ``cvfeat info``."""

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


def info_lines():
    """Versions of cvfeat, Python and the dependencies, and which extras are installed."""
    from . import __version__

    lines = [f"cvfeat {__version__}", f"python {platform.python_version()} "
             f"({platform.system()} {platform.machine()})", "", "core dependencies:"]
    for dist in CORE:
        lines.append(f"  {dist:<24} {_version(dist) or 'MISSING'}")
    lines += ["", "extras:"]
    for extra, deps in EXTRAS.items():
        found = [(d, _version(d)) for d, mod in deps if importlib.util.find_spec(mod)]
        ok = len(found) == len(deps)
        detail = ", ".join(f"{d} {v}" for d, v in found) if found else "-"
        hint = "" if ok else f"   (pip install 'cvfeat[{extra}]')"
        lines.append(f"  {extra:<6} {'installed' if ok else 'not installed':<14} {detail}{hint}")
    return lines


def _cmd_info(args):
    print("\n".join(info_lines()))
    return 0


def _cmd_demo(args):
    from ._demo import run_demo

    run_demo(task=args.task, n_samples=args.n_samples, size=args.size, cv=args.cv,
             budget=args.budget, random_state=args.random_state, n_jobs=args.n_jobs)
    return 0


def build_parser():
    from .datasets import TASKS

    parser = argparse.ArgumentParser(
        prog="cvfeat",
        description="Image regression under a parameter budget: classical features first.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="cross-validate budgeted classical pipelines on a built-in task",
        description="Generate a built-in task and print a cross-validated leaderboard of "
        "classical pipelines that fit the parameter budget, plus an unbounded reference.",
    )
    demo.add_argument("--task", default="counting", choices=sorted(TASKS),
                      help="built-in synthetic task, generated in colour (default: %(default)s)")
    demo.add_argument("--n-samples", type=int, default=600, help="images (default: %(default)s)")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    demo.add_argument("--cv", type=int, default=5, help="folds (default: %(default)s)")
    demo.add_argument("--budget", type=int, default=3000,
                      help="parameter budget for the whole pipeline (default: %(default)s)")
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--n-jobs", type=int, default=None, help="threads for feature extraction")
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="versions and installed extras")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"cvfeat {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
