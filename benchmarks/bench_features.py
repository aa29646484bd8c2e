"""Throughput of cvfeat's feature transformers, and HOG against its references.

Prints a table and writes JSON (``--out``). Every ratio is measured in this one
run: cvfeat's batched HOG against a scikit-image loop and, when an OpenCV build
with ``cv2.HOGDescriptor`` is available, OpenCV's HOG loop.

opencv-python-headless 5.x moved ``HOGDescriptor`` to the contrib build, which
is not a cvfeat dependency; install it into a separate folder and pass it::

    pip install --target /tmp/cvfeat-opencv-contrib opencv-contrib-python-headless --no-deps
    python benchmarks/bench_features.py --opencv-contrib /tmp/cvfeat-opencv-contrib

OpenCV is timed in a subprocess that puts that folder first on ``sys.path`` so
the two ``cv2`` builds never meet in one interpreter.

``--against REV`` times the transformers of this tree against those of git revision
REV (e.g. the commit before a change) in the same run: REV's ``cvfeat`` package is
unpacked as ``cvfeat_ref`` into a temporary folder, both are imported side by side,
and each case is timed alternately (new, ref, ref, new, new, ref, ...) with the
median of each side; the ratio new/ref > 1 means this tree is faster::

    python benchmarks/bench_features.py --against HEAD~1 --repeats 7

``--memory`` measures the peak memory of ``HOG.transform`` on 100,000 64x64
images against the size of its output matrix (target: <= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_features.json"

OPENCV_SNIPPET = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
import cv2, numpy as np
cv2.setNumThreads(1)
size, n, repeats = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
X = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
hog = cv2.HOGDescriptor((size, size), (16, 16), (8, 8), (8, 8), 9)
for x in X[:50]:
    hog.compute(x)
best = float("inf")
for _ in range(repeats):
    t = time.perf_counter()
    for x in X:
        hog.compute(x)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"images_per_s": n / best, "version": cv2.__version__,
                  "n_features": int(hog.compute(X[0]).size)}))
"""


def _best_rate(fn, n, repeats):
    fn()  # warm-up (caches, lookup tables)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def opencv_hog_rate(contrib, size, n, repeats):
    if not contrib:
        return None, "no --opencv-contrib folder given"
    proc = subprocess.run(
        [sys.executable, "-c", OPENCV_SNIPPET, str(contrib), str(size), str(n), str(repeats)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
    return json.loads(proc.stdout), None


def run_throughput(args):
    from skimage.feature import hog as sk_hog

    from cvfeat.features import HOG, LBP, ColorHistogram, SIFTBoW

    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        grey = rng.integers(0, 256, (args.n, size, size), dtype=np.uint8)
        rgb = rng.integers(0, 256, (args.n, size, size, 3), dtype=np.uint8)
        cases = [
            ("HOG 8x8 cells, 2x2 blocks (grey)", HOG(), grey),
            ("ColorHistogram hsv 8^3 (rgb)", ColorHistogram(), rgb),
            ("SIFTBoW dense step 8 patch 16, 64 words (grey)",
             SIFTBoW(mode="dense", n_words=64, random_state=0), grey),
            ("LBP P=8 R=1 uniform (grey)", LBP(), grey),
        ]
        for name, est, X in cases:
            est.fit(X[: min(len(X), 500)])
            for n_jobs in (None, 2):
                est.set_params(n_jobs=n_jobs)
                rate = _best_rate(lambda e=est, x=X: e.transform(x), len(X), args.repeats)
                rows.append(dict(feature=name, size=size, impl="cvfeat",
                                 n_jobs=n_jobs or 1, images_per_s=rate))
                print(f"{name:<48} {size:>4}px n_jobs={n_jobs or 1}: {rate:>10,.0f} images/s",
                      flush=True)
        # references for HOG: a scikit-image loop, OpenCV's HOGDescriptor loop
        sub = grey[: args.n_skimage]
        rate = _best_rate(
            lambda s=sub: [sk_hog(x, 9, (8, 8), (2, 2), "L2-Hys") for x in s], len(sub), 1)
        rows.append(dict(feature=cases[0][0], size=size, impl="skimage loop", n_jobs=1,
                         images_per_s=rate))
        print(f"{'  reference: skimage.feature.hog loop':<48} {size:>4}px n_jobs=1: "
              f"{rate:>10,.0f} images/s", flush=True)
        cv, why = opencv_hog_rate(args.opencv_contrib, size, args.n, args.repeats)
        if cv is None:
            print(f"  reference: OpenCV HOGDescriptor not measured ({why})")
        else:
            rows.append(dict(feature=cases[0][0], size=size,
                             impl=f"OpenCV {cv['version']} HOGDescriptor loop", n_jobs=1,
                             images_per_s=cv["images_per_s"]))
            print(f"{'  reference: OpenCV HOGDescriptor loop':<48} {size:>4}px n_jobs=1: "
                  f"{cv['images_per_s']:>10,.0f} images/s", flush=True)
    return rows


def _import_revision(rev):
    """REV's ``cvfeat.features`` and ``cvfeat.io``, imported from a temporary folder where
    REV's package is unpacked as ``cvfeat_ref``."""
    import importlib
    import tarfile
    import tempfile
    from io import BytesIO

    folder = Path(tempfile.mkdtemp(prefix="cvfeat_ref_"))
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "cvfeat"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "cvfeat").rename(folder / "cvfeat_ref")
    sys.path.insert(0, str(folder))
    return (importlib.import_module("cvfeat_ref.features"),
            importlib.import_module("cvfeat_ref.io"))


def _time_pair(name, size, n_jobs, n, calls, args):
    """Interleaved medians of ``calls['new']()`` and ``calls['ref']()``; one result row."""
    import statistics

    times = {"new": [], "ref": []}
    for side in ("new", "ref"):  # warm-up
        calls[side]()
    for i in range(args.repeats):
        for side in ("new", "ref") if i % 2 == 0 else ("ref", "new"):  # no order bias
            t = time.perf_counter()
            calls[side]()
            times[side].append(time.perf_counter() - t)
    med = {side: statistics.median(v) for side, v in times.items()}
    print(f"{name:<32} {size:>4}px n_jobs={n_jobs or 1}: this tree {n / med['new']:>9,.0f}/s, "
          f"{args.against} {n / med['ref']:>9,.0f}/s, ratio {med['ref'] / med['new']:.3f}",
          flush=True)
    return dict(feature=name, size=size, n_jobs=n_jobs or 1, new_images_per_s=n / med["new"],
                ref_images_per_s=n / med["ref"], new_over_ref=med["ref"] / med["new"])


def run_against(args, save=lambda rows: None):
    """Interleaved medians of this tree's transform against REV's, same images, same n_jobs.

    ``save(rows)`` is called after every measured case (partial results survive a stop).
    """
    import tempfile

    import cv2

    import cvfeat.io
    from cvfeat import features as new

    ref, ref_io = _import_revision(args.against)
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        grey = rng.integers(0, 256, (args.n, size, size), dtype=np.uint8)
        rgb = rng.integers(0, 256, (args.n, size, size, 3), dtype=np.uint8)
        ragged = [grey[i, : size - i % 9, : size - i % 7] for i in range(args.n)]
        cases = [
            ("HOG (grey)", lambda m: m.HOG(), grey),
            ("ColorHistogram (rgb)", lambda m: m.ColorHistogram(), rgb),
            ("SIFTBoW dense 64 words (grey)",
             lambda m: m.SIFTBoW(mode="dense", n_words=64, random_state=0), grey),
            ("LBP (grey)", lambda m: m.LBP(), grey),
            ("LBP (ragged grey list)", lambda m: m.LBP(), ragged),
        ]
        for name, make, X in cases:
            if args.only and not any(k.lower() in name.lower() for k in args.only):
                continue
            fitted = {"new": make(new).fit(X[:500]), "ref": make(ref).fit(X[:500])}
            for n_jobs in (None, 2):
                for est in fitted.values():
                    est.set_params(n_jobs=n_jobs)
                calls = {side: (lambda e=est, x=X: e.transform(x)) for side, est in fitted.items()}
                rows.append(_time_pair(name, size, n_jobs, len(X), calls, args))
                save(rows)
        # reading files: PNG files of this size, RGB
        if args.only and not any(k.lower() in "read_images" for k in args.only):
            continue
        with tempfile.TemporaryDirectory() as folder:
            paths = [f"{folder}/{i}.png" for i in range(min(args.n, 1000))]
            for p, img in zip(paths, rgb, strict=False):
                cv2.imwrite(p, img)
            for n_jobs in (None, 2):
                calls = {"new": lambda j=n_jobs, p=paths: cvfeat.io.read_images(p, n_jobs=j),
                         "ref": lambda j=n_jobs, p=paths: ref_io.read_images(p, n_jobs=j)}
                rows.append(_time_pair("read_images (PNG, rgb)", size, n_jobs, len(paths),
                                       calls, args))
                save(rows)
    return rows


def hog_ratios(rows):
    """cvfeat HOG (one process) / each reference, per size."""
    out = []
    for size in sorted({r["size"] for r in rows}):
        hog = [r for r in rows if r["size"] == size and r["feature"].startswith("HOG")]
        ours = next(r["images_per_s"] for r in hog if r["impl"] == "cvfeat" and r["n_jobs"] == 1)
        for r in hog:
            if r["impl"] != "cvfeat":
                out.append(dict(size=size, reference=r["impl"], ratio=ours / r["images_per_s"]))
    return out


def run_memory(n=100_000, size=64):
    """Peak memory of HOG.transform (tracemalloc: numpy reports its buffers) vs output size."""
    import tracemalloc

    from cvfeat.features import HOG

    X = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    est = HOG().fit(X[:10])
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    F = est.transform(X)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    res = dict(n_images=n, size=size, output_bytes=int(F.nbytes), peak_bytes=int(peak),
               peak_over_output=peak / F.nbytes)
    print(f"HOG.transform on {n:,d} {size}x{size} images: output {F.nbytes / 2**20:,.0f} MiB, "
          f"peak {peak / 2**20:,.0f} MiB = {res['peak_over_output']:.3f}x the output "
          "(target <= 1.5x)")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="batch size (default 2000)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--repeats", type=int, default=3, help="best of N timings")
    p.add_argument("--n-skimage", type=int, default=300, help="images for the skimage loop")
    p.add_argument("--opencv-contrib", default=os.environ.get("CVFEAT_OPENCV_CONTRIB"),
                   help="folder holding opencv-contrib-python-headless (for HOGDescriptor)")
    p.add_argument("--memory", action="store_true", help="also run the 100,000-image memory check")
    p.add_argument("--against", metavar="REV",
                   help="only time this tree against git revision REV, interleaved")
    p.add_argument("--only", nargs="+", metavar="WORD",
                   help="with --against: only the cases whose name contains a WORD "
                        "(e.g. HOG read_images)")
    p.add_argument("--out", default=None,
                   help=f"JSON file (default {DEFAULT_OUT.name}, or "
                        "bench_features_against.json with --against)")
    args = p.parse_args(argv)
    if args.out is None:
        name = "bench_features_against.json" if args.against else DEFAULT_OUT.name
        args.out = str(DEFAULT_OUT.with_name(name))

    result = dict(command="python benchmarks/bench_features.py " + " ".join(argv or sys.argv[1:]),
                  machine=dict(python=platform.python_version(), cpu=platform.processor(),
                               cores=os.cpu_count()))
    if args.against:
        def save(rows):
            result["against"] = dict(revision=args.against, repeats=args.repeats, n=args.n,
                                     rows=rows)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2))

        run_against(args, save)
        print(f"\nwrote {args.out}")
        return
    result["throughput"] = run_throughput(args)
    result["hog_ratios"] = hog_ratios(result["throughput"])
    print()
    for r in result["hog_ratios"]:
        print(f"HOG {r['size']}px: cvfeat (1 process) / {r['reference']} = {r['ratio']:.2f}x")
    if args.memory:
        result["memory"] = run_memory()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
