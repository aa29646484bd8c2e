"""Shared machinery of cvfeat's image feature transformers.

A subclass provides ``_fit(X, y)`` (optional, for learned state such as a
codebook), ``_n_features()``, ``_feature_names()`` and ``_transform_batch(X)``
which maps a validated ``(n, h, w[, c])`` ndarray (or, for steps that accept
any size, one image at a time) to an ``(n, n_features)`` array. The base class
does validation, size checks, chunking (bounded memory) and ``n_jobs``.
"""

from __future__ import annotations

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
        n = len(X)
        dtype = output_dtype(X)
        out = np.empty((n, self.n_features_out_), dtype=dtype)
        if isinstance(X, list):
            chunks = [(i, i + 1) for i in range(n)]
            get = lambda a, b: X[a][None]  # noqa: E731
        else:
            per = max(1, CHUNK_PIXELS // (X.shape[1] * X.shape[2]))
            chunks = [(a, min(a + per, n)) for a in range(0, n, per)]
            get = lambda a, b: X[a:b]  # noqa: E731

        def work(a, b):
            out[a:b] = self._transform_batch(get(a, b))

        n_jobs = effective_n_jobs(getattr(self, "n_jobs", None))
        if n_jobs == 1 or len(chunks) == 1:
            for a, b in chunks:
                work(a, b)
        else:
            # Threads: the heavy lifting is in numpy/OpenCV, which release the GIL,
            # and every thread writes its own rows of one preallocated output.
            Parallel(n_jobs=n_jobs, prefer="threads")(delayed(work)(a, b) for a, b in chunks)
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output features (``input_features`` is ignored: the input is pixels)."""
        check_is_fitted(self)
        return np.asarray(self._feature_names(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
