"""C99 export of classical pipelines and micro-CNNs: flash, RAM, latency, parity.

For each pipeline (fitted on 600 synthetic images of the counting task from
``cvfeat.datasets``, 64x64, or 32x32 for the small micro-CNNs):
``cvfeat.export.to_c`` -> flash / RAM / stack measured with ``cc -Os`` (and
``arm-none-eabi-gcc`` for a Cortex-M4F when installed), the single-image latency of
the C code compiled at ``-O2`` (strict flags) against ONNX Runtime's (one thread,
batch of one) in the same run, interleaved rounds, medians (and, for comparison, the same
C built with ``-O3 -march=native -ffp-contract=fast``: this CPU's vector units and
fused multiply-add, which ONNX Runtime's kernels use), and the parity of the C
predictions with ``pipeline.predict`` on 200 held-out images.

    python benchmarks/bench_c_export.py [--out benchmarks/results/bench_c_export.json]
        [--only WORD ...] [--rounds 7] [--resume]

Targets: HOG(64x64 grey, 8x8 cells) + StandardScaler + Ridge: C latency <= ONNX
Runtime latency; flash <= 16 KB; RAM <= 8 KB beyond the input image. A 3,000-parameter
micro-CNN on 32x32 grey (``cnn_3k_grey32``, 20 epochs): C latency <= ONNX Runtime;
flash <= 24 KB; RAM <= 16 KB beyond the input image.
The JSON is written after every pipeline; ``--resume`` measures only the pipelines
missing from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cvfeat.export.c._build import STRICT_FLAGS, find_compiler  # noqa: E402

_TIMER = """\
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "{N}.h"

static uint8_t images[{K}][{U}_IN_BYTES];

static int cmp(const void *a, const void *b)
{{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}}

int main(int argc, char **argv)
{{
    static double t[100000];
    float out[{U}_N_OUTPUTS];
    volatile float sink = 0.0f;
    int reps = argc > 2 ? atoi(argv[2]) : 1000, i;
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL || fread(images, 1, sizeof images, f) != sizeof images) return 2;
    for (i = 0; i < 20; ++i) {N}_predict(images[i % {K}], out);  /* warm-up */
    for (i = 0; i < reps; ++i) {{
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        {N}_predict(images[i % {K}], out);
        clock_gettime(CLOCK_MONOTONIC, &b);
        sink += out[0];
        t[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) * 1e-3;
    }}
    qsort(t, (size_t)reps, sizeof t[0], cmp);
    printf("%.4f\\n", t[reps / 2]);
    return 0;
}}
"""


def pipelines():
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR
    from xgboost import XGBRegressor

    from cvfeat.features import HOG, LBP, ColorHistogram
    from cvfeat.preprocessing import Grayscale, Resize

    def cnn(**kw):
        from cvfeat.models import MicroCNNRegressor

        return lambda: MicroCNNRegressor(max_epochs=20, random_state=0, **kw)

    def hybrid():
        from cvfeat.models import HybridCNNRegressor

        return HybridCNNRegressor(features=HOG(pixels_per_cell=(16, 16)), max_params=5000,
                                  max_epochs=20, random_state=0)

    return {
        # (colour, image size, make): the micro-CNN target is the 3k net on 32x32 grey
        "cnn_3k_grey32": (False, 32, cnn(max_params=3000)),
        "cnn_5k_rgb64_ldl_hflip": (True, 64, cnn(max_params=5000, loss="ldl", tta="hflip")),
        "cnn_3k_residual_grey32": (False, 32, cnn(max_params=3000, block="residual",
                                                  conv="standard")),
        "hybrid_5k_hog_rgb64": (True, 64, hybrid),
        "hog_ridge_grey": (False, 64, lambda: make_pipeline(HOG(), StandardScaler(), Ridge())),
        "hog_ridge_rgb": (True, 64, lambda: make_pipeline(HOG(), StandardScaler(), Ridge())),
        "resize_gray_hog_ridge": (True, 64, lambda: make_pipeline(
            Resize((32, 32)), Grayscale(), HOG(), StandardScaler(), Ridge())),
        "hog_hist_lbp_ridge": (True, 64, lambda: make_pipeline(
            FeatureUnion([("hog", HOG()), ("hist", ColorHistogram()),
                          ("lbp", LBP(grid=(2, 2)))]), StandardScaler(), Ridge())),
        "hog_svr_rbf": (False, 64, lambda: make_pipeline(HOG(), StandardScaler(), SVR(C=10))),
        "hog_pca_forest": (False, 64, lambda: make_pipeline(
            HOG(), PCA(32, random_state=0), RandomForestRegressor(
                50, max_depth=8, random_state=0))),
        "hog_boosting": (False, 64, lambda: make_pipeline(HOG(), GradientBoostingRegressor(
            n_estimators=100, max_depth=3, random_state=0))),
        "hist_xgboost": (True, 64, lambda: make_pipeline(ColorHistogram(), XGBRegressor(
            n_estimators=100, max_depth=4, random_state=0))),
    }


#: the host build the targets are measured with, and a native one for comparison (this
#: CPU's vector units and fused multiply-add, which ONNX Runtime's kernels use)
FLAGS = {"c": ("-O2",), "c_native": ("-O3", "-march=native", "-ffp-contract=fast")}


def c_timer(exported, X, tmp, cc, flags=FLAGS["c"], exe="timer"):
    N = exported.name
    exported.save(tmp)
    k = len(X)
    Path(tmp, "timer.c").write_text(_TIMER.format(N=N, U=N.upper(), K=k))
    subprocess.run([cc, *STRICT_FLAGS, *flags, "-Wno-unused-result", f"{N}.c", "timer.c",
                    "-o", exe, "-lm"], cwd=tmp, check=True)
    X.tofile(Path(tmp, "images.bin"))
    return lambda reps: float(subprocess.run(
        [str(Path(tmp, exe)), str(Path(tmp, "images.bin")), str(reps)], capture_output=True,
        text=True, check=True).stdout)


def ort_timer(onx, X):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    batches = [X[i:i + 1] for i in range(len(X))]
    for b in batches[:20]:
        sess.run(None, {name: b})

    def run(reps):
        t = np.empty(reps)
        for i in range(reps):
            b = batches[i % len(batches)]
            a = time.perf_counter()
            sess.run(None, {name: b})
            t[i] = time.perf_counter() - a
        return float(np.median(t) * 1e6)

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "bench_c_export.json"))
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in --out and measure only the missing ones")
    args = ap.parse_args(argv)

    from cvfeat.datasets import make_counting
    from cvfeat.export import check_parity_c, to_c, to_onnx

    cc = find_compiler()
    if cc is None:
        sys.exit("bench_c_export: no C compiler (cc / $CC)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpus": os.cpu_count(), "cc": version.splitlines()[0]},
               "command": "python benchmarks/bench_c_export.py " + " ".join(argv or sys.argv[1:]),
               "rounds": args.rounds, "reps_per_round": args.reps, "pipelines": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.resume and out.exists():
        results["pipelines"] = json.loads(out.read_text())["pipelines"]
    for name, (color, size, make) in pipelines().items():
        if args.only and not any(w in name for w in args.only):
            continue
        if name in results["pipelines"]:
            continue
        X, y = make_counting(n_samples=600, size=size, color=color, random_state=0)
        X_new, _ = make_counting(n_samples=200, size=size, color=color, random_state=1)
        t0 = time.perf_counter()
        est = make().fit(X, y)
        fit_s = time.perf_counter() - t0
        exported = to_c(est, X[:1], name="m", command=results["command"])
        parity = check_parity_c(est, exported, X_new)
        onx = to_onnx(est, X[:1])
        with tempfile.TemporaryDirectory() as tmp:
            imgs = np.ascontiguousarray(X_new[:64])
            runs = {"c": c_timer(exported, imgs, tmp, cc),
                    "c_native": c_timer(exported, imgs, tmp, cc, FLAGS["c_native"], "native"),
                    "onnx": ort_timer(onx, X_new[:64])}
            times = {k: [] for k in runs}
            for r in range(args.rounds):  # interleaved, the order rotating each round
                keys = list(runs)[r % 3:] + list(runs)[:r % 3]
                for key in keys:
                    times[key].append(runs[key](args.reps))
            c_t, o_t = times["c"], times["onnx"]
        rep = exported.report
        c_med, o_med = float(np.median(c_t)), float(np.median(o_t))
        row = {
            "steps": rep["card"]["steps"], "input": rep["input"],
            "flash_bytes": rep["flash_bytes"], "ram_bytes": rep["ram_bytes"],
            "stack_bytes": rep["stack_bytes"], "const_bytes": rep["const_bytes"],
            "work_bytes": rep["work_bytes"], "features_streamed": rep["features_streamed"],
            "activation_bytes": rep["activation_bytes"], "macs": rep["macs"],
            "cortex_m": rep["cortex_m"], "uses_double": rep["uses_double"],
            "c_latency_us": c_med, "onnx_latency_us": o_med, "c_over_onnx": c_med / o_med,
            "c_latency_rounds_us": c_t, "onnx_latency_rounds_us": o_t,
            "c_native_latency_us": float(np.median(times["c_native"])),
            "c_native_flags": " ".join(FLAGS["c_native"]),
            "parity_max_rel": parity["max_rel"], "parity_n_over_rtol": parity["n_over_rtol"],
            "parity_n": parity["n"], "fit_seconds": fit_s,
        }
        results["pipelines"][name] = row
        out.write_text(json.dumps(results, indent=2) + "\n")
        cm = rep["cortex_m"]
        print(f"{name:24s} flash {row['flash_bytes']:7,d} B  RAM {row['ram_bytes']:6,d} B  "
              f"C {c_med:8.1f} us  ORT {o_med:8.1f} us  ratio {c_med / o_med:5.2f}  "
              f"native {row['c_native_latency_us']:8.1f} us  "
              f"max_rel {parity['max_rel']:.1e} ({parity['n_over_rtol']} over)"
              + (f"  M4 flash {cm['flash_bytes']:,d} RAM {cm['ram_bytes']:,d}"
                 if "flash_bytes" in cm else ""), flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
