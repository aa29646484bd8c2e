"""cvfeat.distributed on a local Dask cluster: a folder larger than the workers' memory,
and the throughput of one vs two worker processes.

    python benchmarks/bench_distributed.py [--images /tmp/cvfeat_bench_images]
        [--n-images 50000] [--out benchmarks/results/bench_distributed.json] [--resume]

1. **Larger than memory.** ``extract_features`` streams ``--n-images`` 128x128 RGB images
   (decoded: 49,152 bytes each; 50,000 images = 2.46 GB, 3.07x the workers' 800 MB) into a
   zarr array, with HOG (16x16 cells), on ``LocalCluster(n_workers=2, threads_per_worker=1,
   memory_limit='400MB')``. Reported: wall-clock, peak worker memory (the scheduler's
   per-worker metric, polled every 0.25 s), spilled bytes, whether a worker restarted (its
   address changed), and the features of 300 random images against the in-memory path.
2. **Throughput.** HOG (8x8 cells) of the first 4,000 images at 128x128 with 1 and 2 worker
   processes (one thread each), ``transform`` of ``image_array`` reduced on the workers,
   alternating 3 times, medians. Target: 2 workers >= 1.6x one worker.

The images are generated once into ``--images`` (not the repository). On more cores,
run part 2 with ``--workers 1 2 4 8``.
The JSON is written after each part; ``--resume`` skips the parts already in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SIZE = 128


def make_images(folder, n):
    """n PNG files of 128x128 RGB (random rectangles on a gradient, mild noise)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.png")))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    base = np.stack([(yy + xx) % 256, (2 * yy) % 256, (3 * xx) % 256], -1).astype(np.uint8)
    for i in range(have, n):
        img = base.copy()
        for _ in range(3):
            y0, x0 = rng.integers(0, SIZE - 16, 2)
            h, w = rng.integers(8, 48, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
        img = np.clip(img.astype(np.int16) + rng.integers(-8, 9, img.shape), 0, 255)
        cv2.imwrite(str(folder / f"img{i:06d}.png"), img.astype(np.uint8))
    return sorted(str(p) for p in folder.glob("*.png"))[:n]


class MemoryWatch:
    """Polls the scheduler's per-worker metrics: peak memory, spilled bytes, addresses."""

    def __init__(self, client, every=0.25):
        self.client, self.every = client, every
        self.peak, self.spilled, self.addresses = {}, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self):
        for addr, w in self.client.scheduler_info()["workers"].items():
            m = w.get("metrics", {})
            self.peak[addr] = max(self.peak.get(addr, 0), int(m.get("memory", 0)))
            sb = m.get("spilled_bytes", {}) or {}
            self.spilled = max(self.spilled, int(sb.get("memory", 0)) + int(sb.get("disk", 0)))
            self.addresses.add(addr)

    def _run(self):
        while not self._stop.is_set():
            self._poll()
            time.sleep(self.every)

    def __enter__(self):
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._poll()


def part_memory(files, args):
    from distributed import Client, LocalCluster

    from cvfeat.distributed import configure_workers, extract_features
    from cvfeat.features import HOG
    from cvfeat.io import read_images

    limit = 400 * 10**6  # bytes: 2 x 400 MB = 800 MB, a third of the decoded images
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        configure_workers(client)
        before = set(client.scheduler_info()["workers"])
        with tempfile.TemporaryDirectory(dir=args.images.parent) as tmp:
            out = Path(tmp) / "hog.zarr"
            step = HOG(pixels_per_cell=(16, 16))
            t0 = time.perf_counter()
            with MemoryWatch(client) as watch:
                Z = extract_features(files, step, out, size=SIZE, chunk=256, client=client,
                                     progress=False)
            seconds = time.perf_counter() - t0
            after = set(client.scheduler_info()["workers"])
            rng = np.random.default_rng(1)
            idx = np.sort(rng.choice(len(files), 300, replace=False))
            X = read_images([files[i] for i in idx], size=SIZE)
            fitted = HOG(pixels_per_cell=(16, 16)).fit(X[:1])
            equal = bool(np.array_equal(Z.get_orthogonal_selection((idx, slice(None))),
                                        fitted.transform(X)))
            zarr_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    decoded = len(files) * SIZE * SIZE * 3
    return {
        "n_images": len(files), "decoded_bytes": decoded,
        "workers_memory_limit_bytes": 2 * limit, "ratio_to_limit": decoded / (2 * limit),
        "seconds": seconds, "images_per_second": len(files) / seconds,
        "peak_worker_memory_bytes": watch.peak,
        "peak_over_limit": max(watch.peak.values()) / limit,
        "spilled_bytes": watch.spilled, "worker_restarted": before != after,
        "sample_equal_in_memory": equal, "zarr_bytes": zarr_bytes,
    }


def part_throughput(files, args):
    from distributed import Client, LocalCluster

    from cvfeat.distributed import configure_workers, image_array, transform
    from cvfeat.features import HOG

    files = files[:4000]
    step = HOG()  # 8x8 cells
    step.fit(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    times = {n: [] for n in args.workers}
    clusters = {}
    try:
        for n in args.workers:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            clusters[n] = (cluster, Client(cluster))
            configure_workers(clusters[n][1])
        for r in range(args.rounds):
            order = args.workers if r % 2 == 0 else list(reversed(args.workers))
            for n in order:
                client = clusters[n][1]
                F = transform(step, image_array(files, SIZE, chunk=128)).sum(axis=1)
                t0 = time.perf_counter()
                client.compute(F).result()
                times[n].append(time.perf_counter() - t0)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    med = {n: float(np.median(t)) for n, t in times.items()}
    base = med[args.workers[0]]
    return {"n_images": len(files), "rounds": args.rounds,
            "seconds": {str(n): t for n, t in times.items()},
            "images_per_second": {str(n): len(files) / m for n, m in med.items()},
            "speedup_vs_first": {str(n): base / m for n, m in med.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(tempfile.gettempdir())
                    / "cvfeat_bench_images")
    ap.add_argument("--n-images", type=int, default=50_000)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_distributed.json"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "command": "python benchmarks/bench_distributed.py "
               + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.resume and out.exists():
        results.update({k: v for k, v in json.loads(out.read_text()).items()
                        if k in ("memory", "throughput")})
    t0 = time.perf_counter()
    files = make_images(args.images, args.n_images)
    results["generate_seconds"] = time.perf_counter() - t0
    print(f"{len(files):,d} images in {args.images} ({results['generate_seconds']:.0f} s)",
          flush=True)
    for name, part in (("memory", part_memory), ("throughput", part_throughput)):
        if name in results:
            continue
        results[name] = part(files, args)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(name, json.dumps(results[name], indent=1), flush=True)


if __name__ == "__main__":
    main()
