"""Shared machinery of cvfeat's image feature transformers.

A subclass provides ``_fit(X, y)`` (optional, for learned state such as a
codebook), ``_n_features()``, ``_feature_names()`` and ``_transform_batch(X)``
which maps a validated ``(n, h, w[, c])`` ndarray (or, for steps that accept
any size, one image at a time) to an ``(n, n_features)`` array. The base class
does validation, size checks, chunking (bounded memory) and ``n_jobs``.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted

from .._validation import check_image_shape, check_images, fitted_image_shape

# Pixels per chunk in transform (64 images of 64x64): bounds the working memory
# to a few MB whatever the batch size, and keeps the chunk's arrays in cache.
CHUNK_PIXELS = 1 << 18


def output_dtype(X):
    """float32 input stays float32; uint8 and float64 give float64 (as scikit-image)."""
    first = X[0] if isinstance(X, list) else X
    return np.float32 if first.dtype == np.float32 else np.float64


def effective_n_jobs(n_jobs):
    from joblib import effective_n_jobs as _ej

    return max(1, _ej(n_jobs))


def chunk_ranges(X):
    """``(start, stop)`` ranges of about ``CHUNK_PIXELS`` pixels each, in order.

    An ndarray is cut into equal runs of images; a ragged list into runs of
    consecutive images that together reach ``CHUNK_PIXELS`` (so a task is a chunk
    of images, never one small image).
    """
    n = len(X)
    if not isinstance(X, list):
        per = max(1, CHUNK_PIXELS // (X.shape[1] * X.shape[2]))
        return [(a, min(a + per, n)) for a in range(0, n, per)]
    ranges, start, pixels = [], 0, 0
    for i, img in enumerate(X):
        pixels += img.shape[0] * img.shape[1]
        if pixels >= CHUNK_PIXELS or i == n - 1:
            ranges.append((start, i + 1))
            start, pixels = i + 1, 0
    return ranges


def map_chunks(fn, X, chunks, n_jobs, *per_chunk):
    """``fn(X[a:b], *args)`` for each ``(a, b)`` of ``chunks``, yielded in chunk order.

    ``per_chunk``: sequences with one item per chunk, passed as extra arguments
    (e.g. a random seed per chunk).

    Serial when ``n_jobs`` resolves to one worker (or there is one chunk); otherwise
    one joblib task per chunk that *returns* its result, so every back-end works:
    threads by default, and loky, multiprocessing or Dask when the user selects one
    with ``joblib.parallel_config``. Only the chunk is sent to a task, never all of
    ``X``. Results stream back in order (``return_as='generator'``), so the caller
    holds the output plus the few results in flight; the multiprocessing back-end,
    which has no generator output, gets the tasks in waves of ``4 x workers``
    through one pool instead.
    """
    tasks = list(zip(chunks, *per_chunk, strict=True))
    workers = effective_n_jobs(n_jobs)
    if workers == 1 or len(chunks) == 1:
        return (fn(X[a:b], *args) for (a, b), *args in tasks)
    jobs = (delayed(fn)(X[a:b], *args) for (a, b), *args in tasks)
    try:
        parallel = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")
    except ValueError:  # a back-end without generator output (multiprocessing)
        return _waves(jobs, n_jobs, 4 * workers)
    return parallel(jobs)


def fill_rows(out, fn, X, chunks, n_jobs):
    """``out[a:b] = fn(X[a:b])`` for each chunk; returns ``out``.

    Where the active joblib back-end shares this process's memory (threads, the
    default), each task writes its own rows of ``out``: no copy in the calling
    thread (measured: copying the rows there cost HOG 5-7 % with ``n_jobs=2``).
    Elsewhere (loky, multiprocessing, Dask) a task may run in another process, where
    writing into ``out`` would write into a copy: the tasks return their rows
    (:func:`map_chunks`) and they are copied here, in chunk order.
    """
    from joblib.parallel import get_active_backend

    shared = getattr(get_active_backend(prefer="threads")[0], "supports_sharedmem", False)
    if shared and effective_n_jobs(n_jobs) > 1 and len(chunks) > 1:

        def write(a, b):
            out[a:b] = fn(X[a:b])

        Parallel(n_jobs=n_jobs, require="sharedmem")(delayed(write)(a, b) for a, b in chunks)
        return out
    for (a, b), rows in zip(chunks, map_chunks(fn, X, chunks, n_jobs), strict=True):
        out[a:b] = rows
    return out


def _waves(jobs, n_jobs, wave):
    """The results of ``jobs`` in order, ``wave`` tasks at a time through one pool."""
    with Parallel(n_jobs=n_jobs, prefer="threads") as parallel:
        while batch := list(itertools.islice(jobs, wave)):
            yield from parallel(batch)


class ImageFeatureTransformer(TransformerMixin, BaseEstimator):
    """Base class: fit/transform over image batches with chunking and n_jobs.

    Class attributes a subclass may set:

    ``_needs_fixed_size``: the number of features depends on the image size,
    so ``transform`` requires the size seen in ``fit`` (HOG).
    """

    _needs_fixed_size = False

    # -- hooks -------------------------------------------------------------
    def _fit(self, X, y=None):  # pragma: no cover - default: stateless
        return None

    def _n_features(self):
        raise NotImplementedError

    def _feature_names(self):
        prefix = type(self).__name__.lower()
        return [f"{prefix}{i}" for i in range(self.n_features_out_)]

    def _transform_batch(self, X):
        raise NotImplementedError

    # -- public API ----------------------------------------------------------
    def fit(self, X, y=None):
        """Validate the images, record their shape and learn any state.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of (h, w[, c]) ndarrays
            uint8 (0-255) or float in [0, 1], RGB, channels last.
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X = check_images(X, estimator=self, same_size=self._needs_fixed_size)
        self.image_shape_ = fitted_image_shape(X)
        self._fit(X, y)
        self.n_features_out_ = self._n_features()
        return self

    def transform(self, X):
        """Compute the features of each image.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of (h, w[, c]) ndarrays
            Same colour mode (and, for size-dependent steps, the same size) as
            in ``fit``.

        Returns
        -------
        features : (n, n_features_out_) ndarray
            float32 for float32 images, float64 otherwise.
        """
        check_is_fitted(self)
        X = check_images(X, estimator=self, same_size=self._needs_fixed_size)
        check_image_shape(self, X, channels_only=not self._needs_fixed_size)
        dtype = output_dtype(X)
        out = np.empty((len(X), self.n_features_out_), dtype=dtype)
        return fill_rows(out, self._transform_chunk, X, chunk_ranges(X),
                         getattr(self, "n_jobs", None))

    def _transform_chunk(self, X):
        """Rows of one chunk: a batch, or a ragged list of images done one by one."""
        if isinstance(X, list):
            return np.concatenate([self._transform_batch(m[None]) for m in X])
        return self._transform_batch(X)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features (``input_features`` is ignored: the input is pixels)."""
        check_is_fitted(self)
        return np.asarray(self._feature_names(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
