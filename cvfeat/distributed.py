"""Features of image folders larger than memory, on a Dask cluster (the ``dask`` extra).

* :func:`image_array` -- a lazy dask uint8 array ``(n, h, w[, 3])`` over a list of files
  or a folder, chunked along ``n`` only; each task reads its own slice of the path list
  with :func:`cvfeat.io.read_images`' checks (a corrupt file raises
  :class:`~cvfeat.io.ImageReadError` naming it; the decompression-bomb guard applies);
* :func:`transform` -- a fitted cvfeat feature step, FeatureUnion or feature pipeline
  applied blockwise: a dask array ``(n, n_features)``, equal to the in-memory result;
* :func:`configure_workers` -- one thread each for OpenCV, BLAS and torch on every
  worker of a client (no oversubscription).

dask and distributed are imported when a function is called, with the install hint
when they are missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageReadError,
    _as_path_list,
    _check_size,
    _read_chunk,
    image_files,
)

__all__ = ["IMAGE_SUFFIXES", "configure_workers", "extract_features", "fit_ridge", "image_array",
           "transform", "validation_mask"]



def _dask(where):
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"{where} needs dask, which is not installed: pip install 'cvfeat[dask]'."
        ) from exc
    return da


def _paths(paths_or_folder, where):
    if isinstance(paths_or_folder, (str, os.PathLike)):
        folder = Path(paths_or_folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{where}: {folder} is not a folder; pass a folder of images or a list of "
                "image files.")
        files = [str(p) for p in image_files(folder)]
        if not files:
            raise FileNotFoundError(
                f"{where}: no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
        return files
    return _as_path_list(paths_or_folder, where)


def _read_block(paths, start, size, color, interpolation, max_pixels):
    """The images of one chunk, or the first file's error naming it (and its index)."""
    results = _read_chunk(paths, size, color, interpolation, max_pixels)
    for i, (_, err) in enumerate(results):
        if err is not None:
            msg = f"{err} (file {start + i} of the list)"
            raise (type(err)(msg, getattr(err, "path", None)) if isinstance(err, ImageReadError)
                   else type(err)(msg)) from err
    return np.stack([img for img, _ in results])


def image_array(paths_or_folder, size, color="rgb", *, chunk=256, interpolation="area",
                max_pixels=DEFAULT_MAX_PIXELS):
    """A lazy uint8 dask array of images read from files, chunked along the images.

    Parameters
    ----------
    paths_or_folder : str, Path, or list of str / Path
        A folder (its image files, searched recursively, sorted by path) or the files.
    size : int or (height, width)
        Every image is resized to this size (a dask array needs one shape).
    color : {'rgb', 'gray'}, default='rgb'
        As :func:`cvfeat.io.read_images`.
    chunk : int, default=256
        Images per chunk: one task reads one chunk (its slice of the path list), so the
        graph has ``ceil(n / chunk)`` reading tasks, not one per file.
    interpolation, max_pixels
        As :func:`cvfeat.io.read_images` (the decompression-bomb guard included).

    Returns
    -------
    A : dask.array.Array
        uint8 ``(n, h, w, 3)`` (rgb) or ``(n, h, w)`` (gray), chunks ``(chunk, h, w[, 3])``.
        Computing a chunk that holds an unreadable file raises
        :class:`~cvfeat.io.ImageReadError` naming the file and its index.
    """
    where = "image_array"
    da = _dask(where)
    import dask

    paths = _paths(paths_or_folder, where)
    size = _check_size(size, where)
    if size is None:
        raise ValueError(f"{where}: size is required (a dask array has one image shape); "
                         "e.g. size=64 or size=(48, 64).")
    if color not in ("rgb", "gray"):
        raise ValueError(f"{where}: color must be 'rgb' or 'gray'; got {color!r}.")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"{where}: chunk must be a positive int (images per task); got "
                         f"{chunk!r}.")
    shape = size + ((3,) if color == "rgb" else ())
    blocks = []
    for a in range(0, len(paths), chunk):
        part = paths[a:a + chunk]
        task = dask.delayed(_read_block, pure=True)(part, a, size, color, interpolation,
                                                    max_pixels)
        blocks.append(da.from_delayed(task, shape=(len(part), *shape), dtype=np.uint8))
    return da.concatenate(blocks, axis=0)


def _transform_block(block, estimator, n_features, dtype):
    out = np.asarray(estimator.transform(block))
    if out.shape != (len(block), n_features):
        raise ValueError(
            f"transform: {type(estimator).__name__} returned shape {out.shape} for a block of "
            f"{len(block)} images; expected ({len(block)}, {n_features}).")
    return out.astype(dtype, copy=False)


def transform(estimator, A):
    """Apply a fitted feature step to a dask image array, block by block.

    Parameters
    ----------
    estimator : fitted transformer
        A cvfeat feature step (HOG, ColorHistogram, LBP, SIFTBoW, ...), image step
        followed by features, FeatureUnion or fitted feature Pipeline: anything whose
        ``transform`` maps ``(n, h, w[, 3])`` images to ``(n, d)`` features.
    A : dask.array.Array
        uint8 images ``(n, h, w[, 3])`` (e.g. from :func:`image_array`); chunks along the
        images only (it is rechunked whole along the other axes otherwise).

    Returns
    -------
    F : dask.array.Array
        ``(n, d)`` features, one chunk per image chunk, the dtype of the in-memory
        ``estimator.transform`` (probed on one blank image, which also checks that the
        estimator is fitted and takes images of this shape).
    """
    da = _dask("transform")
    if not isinstance(A, da.Array):
        raise TypeError(f"transform: A must be a dask array of images (see image_array); got "
                        f"{type(A).__name__}. For images in memory call estimator.transform.")
    if A.ndim not in (3, 4) or (A.ndim == 4 and A.shape[3] != 3):
        raise ValueError(f"transform: A must hold images (n, h, w) or (n, h, w, 3); got shape "
                         f"{A.shape}.")
    if any(len(c) > 1 for c in A.chunks[1:]):
        A = A.rechunk({i: -1 for i in range(1, A.ndim)})
    probe = np.asarray(estimator.transform(np.zeros((1, *A.shape[1:]), A.dtype)))
    if probe.ndim != 2:
        raise ValueError(f"transform: {type(estimator).__name__}.transform returns shape "
                         f"{probe.shape} per image batch, not (n, d) features.")
    d, dtype = probe.shape[1], probe.dtype
    return da.map_blocks(_transform_block, A, estimator, d, dtype, dtype=dtype,
                         drop_axis=list(range(2, A.ndim)), chunks=(A.chunks[0], (d,)),
                         meta=np.empty((0, d), dtype))


def _one_thread():
    """Run on a worker: OpenCV, BLAS (threadpoolctl) and torch on one thread each."""
    import cv2

    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        pass
    # torch only where it is already loaded: importing it costs a worker about 300 MB,
    # which a memory-limited worker may not have (its later import reads OMP_NUM_THREADS,
    # which LocalCluster's nannies set to 1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    return {"opencv": cv2.getNumThreads(),
            "torch": None if torch is None else torch.get_num_threads()}


try:  # the plugin's base class; without distributed, configure_workers says so
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - exercised only without the extra
    _WorkerPlugin = object


class _OneThreadPlugin(_WorkerPlugin):
    """A distributed WorkerPlugin: :func:`_one_thread` on every worker, also on workers
    that join later."""

    name = "cvfeat-one-thread"

    def setup(self, worker):
        _one_thread()

    def teardown(self, worker):
        pass


def configure_workers(client):
    """One thread each for OpenCV, BLAS and torch on every worker of ``client``.

    torch is set where a worker has already imported it (importing it costs about
    300 MB); a later import there follows ``OMP_NUM_THREADS`` (1 on LocalCluster).

    Registers a worker plugin (so workers that join later are set up too) and returns
    ``{worker address: {'opencv': n, 'torch': n}}`` of the current workers.
    """
    if _WorkerPlugin is object:  # pragma: no cover - exercised only without the extra
        raise ImportError("configure_workers needs distributed: pip install 'cvfeat[dask]'.")
    client.register_plugin(_OneThreadPlugin())
    return client.run(_one_thread)


# -- streaming a folder into a zarr array ---------------------------------------------


def _fingerprint(paths, size, color, chunk, estimator, d):
    import hashlib

    h = hashlib.sha256()
    for part in ("\n".join(paths), repr(size), color, repr(chunk), repr(estimator), repr(d)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _extract_chunk(paths, start, args, estimator, out, d):
    """Read, transform and store one chunk (run by a task, possibly in a worker)."""
    import zarr

    F = np.asarray(estimator.transform(_read_block(paths, start, *args)))
    if F.shape != (len(paths), d):
        raise ValueError(f"extract_features: the steps returned {F.shape} for {len(paths)} "
                         f"images; expected ({len(paths)}, {d}).")
    zarr.open_array(out, mode="r+")[start:start + len(paths)] = F
    return start


def _fitted(estimator):
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except Exception:  # noqa: BLE001 - NotFittedError, or a Pipeline of unfitted steps
        return False
    return True


def extract_features(source, steps, out, *, size=64, color="rgb", chunk=256, client=None,
                     interpolation="area", max_pixels=DEFAULT_MAX_PIXELS, progress=True):
    """Stream a folder (or list) of images through feature steps into a zarr array.

    Each chunk of ``chunk`` images is read, transformed and written to ``out`` by one
    task (on ``client``'s workers, or in this process without a client), so memory holds
    a few chunks at a time however large the folder. The array records which chunks are
    done: a rerun with the same inputs skips them (an interrupted run resumes); a rerun
    with other inputs (files, size, colour, chunk, steps) is refused.

    Parameters
    ----------
    source : folder, or list of image files
    steps : transformer
        Feature steps (e.g. HOG, a FeatureUnion, a fitted feature pipeline). An unfitted
        one is fitted on the first chunk (for cvfeat's stateless feature steps this only
        records the image shape).
    out : str or Path
        The zarr array to write (created, or resumed), float ``(n, d)``, chunked like the
        images.
    size, color, chunk, interpolation, max_pixels
        As :func:`image_array`.
    client : distributed.Client, optional
        Run the chunks on this cluster (the path ``out`` must be reachable by its
        workers); None: in this process.
    progress : bool, default=True
        A progress bar (tqdm) on stderr.

    Returns
    -------
    zarr.Array
        The features, opened read-only.
    """
    import zarr

    where = "extract_features"
    paths = _paths(source, where)
    size = _check_size(size, where)
    if size is None:
        raise ValueError(f"{where}: size is required; e.g. size=64.")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"{where}: chunk must be a positive int; got {chunk!r}.")
    args = (size, color, interpolation, max_pixels)
    if not _fitted(steps):
        from sklearn.base import clone

        steps = clone(steps).fit(_read_block(paths[:chunk], 0, *args))
    shape = size + ((3,) if color == "rgb" else ())
    probe = np.asarray(steps.transform(np.zeros((1, *shape), np.uint8)))
    d, dtype = probe.shape[1], probe.dtype
    key = _fingerprint(paths, size, color, chunk, steps, d)
    out = str(out)
    if Path(out).exists():
        arr = zarr.open_array(out, mode="r+")
        if arr.attrs.get("cvfeat_fingerprint") != key:
            raise ValueError(
                f"{where}: {out} exists but was written from other inputs (files, size, "
                "colour, chunk or steps differ); it is not resumed. Remove it or write to "
                "another path.")
    else:
        arr = zarr.open_array(out, mode="w", shape=(len(paths), d), chunks=(chunk, d),
                              dtype=dtype)
        arr.attrs.update({"cvfeat_fingerprint": key, "cvfeat_done": [], "n_images": len(paths),
                          "size": list(size), "color": color, "steps": repr(steps)})
    done = set(arr.attrs.get("cvfeat_done", []))
    todo = [a for a in range(0, len(paths), chunk) if a not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=-(-len(paths) // chunk), initial=len(done), unit="chunk",
                   desc="features", file=None)

    def finished(start):
        done.add(int(start))
        arr.attrs["cvfeat_done"] = sorted(done)  # recorded after the chunk is stored
        if bar is not None:
            bar.update(1)

    try:
        if client is None:
            for a in todo:
                finished(_extract_chunk(paths[a:a + chunk], a, args, steps, out, d))
        else:
            from distributed import as_completed

            est = client.scatter(steps, broadcast=True)
            futures = [client.submit(_extract_chunk, paths[a:a + chunk], a, args, est, out, d,
                                     pure=False) for a in todo]
            for fut in as_completed(futures):
                finished(fut.result())
    finally:
        if bar is not None:
            bar.close()
    return zarr.open_array(out, mode="r")


# -- exact linear fits from one pass over a dask feature matrix ------------------------


def validation_mask(n, validation_fraction, random_state):
    """The held-out rows of :func:`fit_ridge`: ``rng.random(n) < validation_fraction``
    with ``rng = numpy.random.default_rng(random_state)``."""
    return np.random.default_rng(random_state).random(n) < validation_fraction


def _moments(X, y, weights, shift):
    """Lazy weighted sums of the shifted rows ``x - shift``: n, sum x, x^T x, x^T y,
    sum y, y^T y (dask reductions sharing one pass over ``X``)."""
    Xs = X - shift
    wX = Xs * weights[:, None]
    return (weights.sum(), wX.sum(axis=0), wX.T @ Xs, wX.T @ y, (weights * y).sum(),
            (weights * y * y).sum())


def _ridge_from(m, alpha):
    """(mean, var, scale, coef, intercept) of StandardScaler + Ridge(alpha) from sums
    of shifted rows ``m = (n, sx, G, sxy, sy, syy)`` (float64)."""
    n, sx, G, sxy, sy, _ = m
    mu = sx / n  # shifted mean
    C = G - n * np.outer(mu, mu)  # centred Gram
    var = np.maximum(np.diag(C) / n, 0.0)
    scale = np.sqrt(var)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # as StandardScaler: constant -> 1
    ybar = sy / n
    cxy = sxy - n * mu * ybar
    A = C / np.outer(scale, scale) + alpha * np.eye(len(mu))
    coef = np.linalg.solve(A, cxy / scale)
    return mu, var, scale, coef, ybar


def fit_ridge(features, y, *, alphas=(0.1, 1.0, 10.0, 100.0), validation_fraction=0.2,
              random_state=0):
    """``StandardScaler`` + ``Ridge`` fitted exactly from one pass over a dask matrix.

    The sums that the fit needs -- per feature the sum and, with each other feature and
    the target, the products (``X^T X``, ``X^T y``), for the training and the held-out
    rows -- are computed blockwise in one pass (on the cluster when a ``Client`` is
    active); the solve happens here, on ``d x d`` matrices. ``alpha`` is the one of
    ``alphas`` with the smallest squared error on the held-out rows
    (:func:`validation_mask`) when fitted on the others; the model is then refitted on
    all rows.

    Parameters
    ----------
    features : dask.array.Array or ndarray, (n, d)
        Finite features (e.g. :func:`transform` of :func:`image_array`, or a zarr array
        through ``dask.array.from_zarr``), chunked along the rows.
    y : array-like, (n,)
        Targets.
    alphas : sequence of float, default=(0.1, 1, 10, 100)
    validation_fraction : float in (0, 1), default=0.2
    random_state : int, default=0

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        ``make_pipeline(StandardScaler(), Ridge(alpha))`` with its fitted attributes
        (``mean_``, ``var_``, ``scale_``, ``coef_``, ``intercept_``), whose predictions
        equal those of the same pipeline fitted in memory. Its ``validation_mse_`` maps
        each alpha to the held-out squared error.
    """
    da = _dask("fit_ridge")
    import dask
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = features if isinstance(features, da.Array) else da.from_array(np.asarray(features))
    if X.ndim != 2:
        raise ValueError(f"fit_ridge: features must be (n, d); got shape {X.shape}.")
    n, d = X.shape
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != n:
        raise ValueError(f"fit_ridge: features have {n} rows but y has {len(y)} values; "
                         "they must be the same images in the same order.")
    if not np.isfinite(y).all():
        raise ValueError("fit_ridge: y holds NaN or infinite values; drop those rows.")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"fit_ridge: validation_fraction must be in (0, 1); got "
                         f"{validation_fraction!r}.")
    alphas = [float(a) for a in alphas]
    if not alphas or any(not np.isfinite(a) or a <= 0 for a in alphas):
        raise ValueError(f"fit_ridge: alphas must be positive finite numbers; got {alphas!r}.")
    X = X.rechunk({1: -1}).astype(np.float64)
    rows = X.chunks[0]
    yd = da.from_array(y, chunks=(rows,))
    val = validation_mask(n, validation_fraction, random_state)
    if val.all() or not val.any():
        raise ValueError("fit_ridge: the held-out split is empty or takes every row; use "
                         "more rows or another validation_fraction.")
    w_train = da.from_array((~val).astype(np.float64), chunks=(rows,))
    shift = np.asarray(X[:1].compute(), dtype=np.float64)[0]  # conditions the sums
    if not np.isfinite(shift).all():
        raise ValueError("fit_ridge: the features hold NaN or infinite values (row 0); "
                         "remove or repair those images before fitting.")
    ones = da.ones(n, chunks=(rows,))
    train, full = dask.compute(_moments(X, yd, w_train, shift), _moments(X, yd, ones, shift))
    train = [np.asarray(v, dtype=np.float64) for v in train]
    full = [np.asarray(v, dtype=np.float64) for v in full]
    if not all(np.isfinite(v).all() for v in full):
        raise ValueError("fit_ridge: the features hold NaN or infinite values; remove or "
                         "repair those images (e.g. F[da.isfinite(F).all(axis=1)]) first.")
    held = [f - t for f, t in zip(full, train, strict=True)]
    mse = {}
    for alpha in alphas:
        mu, _, scale, coef, ybar = _ridge_from(train, alpha)
        u = coef / scale  # prediction = (x - shift) . u + k
        k = ybar - mu @ u
        nv, sx, G, sxy, sy, syy = held
        sse = syy - 2 * u @ sxy - 2 * k * sy + u @ G @ u + 2 * k * (u @ sx) + nv * k * k
        mse[alpha] = float(max(sse, 0.0) / nv)
    best = min(alphas, key=lambda a: (mse[a], a))
    mu, var, scale, coef, ybar = _ridge_from(full, best)
    scaler = StandardScaler()
    scaler.mean_ = mu + shift
    scaler.var_ = var
    scaler.scale_ = scale
    scaler.n_features_in_ = d
    scaler.n_samples_seen_ = n
    ridge = Ridge(alpha=best)
    ridge.coef_ = coef
    ridge.intercept_ = np.float64(ybar)  # a numpy scalar, as Ridge sets it
    ridge.n_features_in_ = d
    pipe = make_pipeline(scaler, ridge)
    pipe.validation_mse_ = mse
    return pipe
