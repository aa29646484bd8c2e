"""Pack UTKFace (age) at 64x64 into one small .npz for bench_micro_cnn.py on another machine.

Reads ``DIR/labels.csv`` + ``DIR/images`` (default ``../shared/data/utkface``),
resizes every image to 64x64 RGB with OpenCV's INTER_AREA (what the measured
baselines used) and writes an ``.npz`` with

- ``y``: float64 ages, in ``labels.csv`` order;
- either ``X``: uint8 (n, 64, 64, 3) (``--format raw``; about 110 MB compressed,
  too big for the 64 MiB that travels to a device machine),
- or ``jpeg``: the concatenated JPEG files (uint8) with ``offsets`` (int64,
  n + 1) (``--format jpeg``, the default; quality 95 gives about 25 MB and a mean
  absolute pixel error of about 2 grey levels: the originals are JPEGs too).

``bench_micro_cnn.py --npz FILE`` reads both layouts. The data set's terms
(non-commercial research only) apply to the file: keep it out of the repository
(``.git/info/exclude`` it, or write it outside the checkout).

Usage::

    python benchmarks/make_utkface_npz.py --out /path/utkface64.npz [DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np


def load(folder, size=64):
    import pandas as pd

    folder = Path(folder)
    df = pd.read_csv(folder / "labels.csv")
    X = np.empty((len(df), size, size, 3), np.uint8)
    for i, f in enumerate(df["file"]):
        img = cv2.imread(str(folder / f), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read {folder / f}")
        X[i] = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (size, size),
                          interpolation=cv2.INTER_AREA)
    return X, df["age"].to_numpy(np.float64)


def encode_jpeg(X, quality):
    parts = []
    for x in X:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(x, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:  # pragma: no cover
            raise RuntimeError("JPEG encoding failed")
        parts.append(buf.ravel())
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([p.size for p in parts])
    return np.concatenate(parts), offsets


def decode_npz(path):
    """``(X, y)`` from a file written by this script (either layout)."""
    data = np.load(path)
    y = data["y"]
    if "X" in data:
        return data["X"], y
    jpeg, offsets = data["jpeg"], data["offsets"]
    X = np.stack([
        cv2.cvtColor(cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ])
    return X, y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="../shared/data/utkface")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--format", choices=["jpeg", "raw"], default="jpeg")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    args = p.parse_args(argv)
    t = time.perf_counter()
    X, y = load(args.folder)
    if args.format == "raw":
        np.savez_compressed(args.out, X=X, y=y)
    else:
        jpeg, offsets = encode_jpeg(X, args.quality)
        np.savez(args.out, jpeg=jpeg, offsets=offsets, y=y)
    size = Path(args.out).stat().st_size
    msg = f"{args.out}: {len(X)} images 64x64x3, {size / 1e6:.1f} MB ({args.format})"
    if args.format == "jpeg":
        err = np.abs(decode_npz(args.out)[0].astype(np.int16) - X).mean()
        msg += f", mean abs pixel error of the JPEG round trip {err:.2f}"
    print(f"{msg}; {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
