"""Latency of exported pipelines: ONNX Runtime vs the scikit-learn Python path.

For HOG+Ridge, HOG+SVR, ColorHistogram+XGBoost and dense SIFT-BoW+Ridge on 64x64
images: single-image and batch-256 latency of the ONNX graph (uint8 pixels in)
and of ``pipeline.predict`` measured in the same run, the ratio, the parity of
the two on held-out images, and the fp32 vs int8 file sizes. Also the HOG part
alone: batched graph throughput vs ``HOG.transform``.

    python benchmarks/bench_export.py [--out benchmarks/results/bench_export.json]

Targets: HOG(64x64 grey)+Ridge single image <= 0.2 ms in ONNX Runtime and >= 10x
faster than the scikit-learn path; the HOG graph, batched, within 2x of the Python
``HOG.transform`` throughput.
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


def _best(fn, repeat):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _session(onx):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one core, like the Python path
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def pipelines(random_state=0):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR
    from xgboost import XGBRegressor

    from cvfeat.features import HOG, ColorHistogram, SIFTBoW

    return [
        ("HOG + Ridge", "grey", make_pipeline(HOG(), StandardScaler(), Ridge(10.0))),
        ("HOG + SVR (rbf)", "grey", make_pipeline(HOG(), StandardScaler(), SVR(C=10.0))),
        ("ColorHistogram + XGBoost", "rgb",
         make_pipeline(ColorHistogram(bins=4), XGBRegressor(
             n_estimators=100, max_depth=4, random_state=random_state, n_jobs=1))),
        ("dense SIFT-BoW + Ridge", "grey",
         make_pipeline(SIFTBoW(mode="dense", n_words=32, random_state=random_state),
                       StandardScaler(), Ridge(1.0))),
    ]


def run(args):
    from cvfeat.budget import count_params
    from cvfeat.datasets import make_counting
    from cvfeat.export import check_parity, to_onnx
    from cvfeat.features import HOG

    rows = []
    for name, color, pipe in pipelines():
        X, y = make_counting(n_samples=args.n_train + 256, size=64, color=color == "rgb",
                             random_state=0)
        Xtr, ytr, Xte = X[: args.n_train], y[: args.n_train], X[args.n_train:]
        pipe.fit(Xtr, ytr)
        onx = to_onnx(pipe, Xtr[:1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "nothing to quantize" for trees / SVR
            onx8 = to_onnx(pipe, Xtr[:1], quantize="int8", calibration=Xtr[:64])
        sess = _session(onx)
        inp = sess.get_inputs()[0].name
        one, batch = Xte[:1], Xte[:256]
        t_onnx_1 = _best(lambda s=sess, i=inp, x=one: s.run(None, {i: x}), args.repeat)
        t_onnx_b = _best(lambda s=sess, i=inp, x=batch: s.run(None, {i: x}), max(3, args.repeat // 20))
        t_py_1 = _best(lambda p=pipe, x=one: p.predict(x), args.repeat)
        t_py_b = _best(lambda p=pipe, x=batch: p.predict(x), max(3, args.repeat // 20))
        parity = check_parity(pipe, onx, Xte)
        row = dict(
            pipeline=name, params=count_params(pipe),
            onnx_single_ms=t_onnx_1 * 1e3, python_single_ms=t_py_1 * 1e3,
            single_speedup=t_py_1 / t_onnx_1,
            onnx_batch256_ms=t_onnx_b * 1e3, python_batch256_ms=t_py_b * 1e3,
            batch_speedup=t_py_b / t_onnx_b,
            bytes_fp32=len(onx.SerializeToString()), bytes_int8=len(onx8.SerializeToString()),
            parity_max_rel=parity["max_rel"],
        )
        rows.append(row)
        print(f"{name:<26} single: onnx {row['onnx_single_ms']:.3f} ms, python "
              f"{row['python_single_ms']:.2f} ms ({row['single_speedup']:.0f}x); batch 256: onnx "
              f"{row['onnx_batch256_ms']:.1f} ms, python {row['python_batch256_ms']:.1f} ms "
              f"({row['batch_speedup']:.1f}x); {row['bytes_fp32']:,d} B fp32, "
              f"{row['bytes_int8']:,d} B int8; parity {row['parity_max_rel']:.1e}", flush=True)

    # the HOG part alone, batched: graph throughput vs HOG.transform
    X = np.random.default_rng(0).integers(0, 256, (2000, 64, 64), dtype=np.uint8)
    hog = HOG().fit(X[:10])
    sess = _session(to_onnx(hog, X[:1]))
    inp = sess.get_inputs()[0].name
    t_py = _best(lambda: hog.transform(X), 3)
    hog_rows = []
    for bs in (64, 256):
        t_ort = _best(lambda b=bs: [sess.run(None, {inp: X[i:i + b]})
                                    for i in range(0, len(X), b)], 3)
        hog_rows.append(dict(batch=bs, onnx_images_per_s=len(X) / t_ort,
                             python_images_per_s=len(X) / t_py, python_over_onnx=t_ort / t_py))
        print(f"HOG graph, batches of {bs}: {len(X) / t_ort:,.0f} images/s vs HOG.transform "
              f"{len(X) / t_py:,.0f} images/s: the graph takes {t_ort / t_py:.2f}x the time "
              "(target <= 2x)")
    return rows, hog_rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--repeat", type=int, default=200, help="best of N for single images")
    p.add_argument("--out", default=str(HERE / "results" / "bench_export.json"))
    args = p.parse_args(argv)
    rows, hog_rows = run(args)
    result = dict(command="python benchmarks/bench_export.py " + " ".join(argv or sys.argv[1:]),
                  machine=dict(python=platform.python_version(), cores=os.cpu_count()),
                  pipelines=rows, hog_graph=hog_rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
