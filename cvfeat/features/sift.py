"""SIFT bag of visual words: local descriptors pooled into a fixed-length histogram.

Two descriptor sources share one encoder:

* ``mode='dense'`` -- cvfeat's own dense SIFT on a regular grid
  (:mod:`cvfeat.features._dense_sift`), built from simple array operations so
  that it exports to ONNX;
* ``mode='keypoints'`` -- OpenCV's SIFT detector and descriptor
  (``cv2.SIFT_create().detectAndCompute``), which has no ONNX equivalent.

``fit`` learns a codebook of ``n_words`` visual words with
:class:`~sklearn.cluster.MiniBatchKMeans`; ``transform`` counts (``'hard'``) or
softly spreads (``'soft'``) each image's descriptors over the words and
normalises the histogram. The output length is ``n_words`` whatever the image
size, so ragged lists of images are accepted.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._validation import check_images
from ._base import ImageFeatureTransformer, chunk_ranges, map_chunks
from ._dense_sift import compute_dtype, dense_sift, grey_images, normalize_sift

__all__ = ["SIFTBoW"]

N_DIMS = 128
_SEED_MAX = np.iinfo(np.int32).max


def _keypoint_sift(X):
    """OpenCV SIFT descriptors of each image: list of (m_i, 128) float32 arrays.

    OpenCV's SIFT takes 8-bit images only, so the grey image (same weights as
    the dense mode, in float) is scaled by 255 and rounded to uint8.
    """
    import cv2

    grey = np.rint(grey_images(X, np.float64) * 255).astype(np.uint8)
    sift = cv2.SIFT_create()  # one per call: chunks run in parallel threads
    out = []
    for img in grey:
        _, desc = sift.detectAndCompute(img, None)
        out.append(np.zeros((0, N_DIMS), np.float32) if desc is None else desc)
    return out


def _normalize_rows(hist, how):
    """'l1', 'l2' or 'power' (signed square root, then L2) per row; zero rows stay zero."""
    if how == "power":
        hist = np.sign(hist) * np.sqrt(np.abs(hist))
    if how == "l1":
        norm = np.abs(hist).sum(axis=1, keepdims=True)
    else:
        norm = np.sqrt((hist * hist).sum(axis=1, keepdims=True))
    return hist / np.where(norm > 0, norm, 1)


class SIFTBoW(ImageFeatureTransformer):
    """Bag of visual words over SIFT descriptors: ``n_words`` features per image.

    Descriptors come from a dense grid (cvfeat's own, ONNX-exportable dense
    SIFT) or from OpenCV's SIFT keypoints. ``fit`` clusters a random sample of
    the training descriptors into a codebook; ``transform`` encodes each image
    as a normalised histogram over the codebook.

    Parameters
    ----------
    mode : {'dense', 'keypoints'}, default='dense'
        ``'dense'``: one descriptor per ``patch_size`` x ``patch_size`` patch on a
        grid ``step`` pixels apart (see :meth:`dense_descriptors`); exportable to
        ONNX. ``'keypoints'``: ``cv2.SIFT_create()`` detect + compute on each
        image (scale/rotation invariant, not exportable; ``step`` and
        ``patch_size`` are unused). OpenCV only takes 8-bit images, so grey float
        images are scaled by 255 and rounded to uint8 first.
    n_words : int, default=64
        Size of the codebook, i.e. the number of output features.
    step : int, default=8
        Dense mode: distance in pixels between neighbouring patches.
    patch_size : int, default=16
        Dense mode: patch side in pixels, a multiple of 4 (4 x 4 cells of
        ``patch_size / 4`` pixels). Every image must be at least this large.
    encoding : {'hard', 'soft'}, default='hard'
        ``'hard'``: count of descriptors whose nearest word is each word.
        ``'soft'`` (kernel codebook): each descriptor ``d`` adds
        ``softmax_k(-beta_ * ||d - c_k||^2)`` to word ``k``.
    normalize : {'l2', 'l1', 'power'}, default='l2'
        Normalisation of each histogram: unit L2 norm, unit L1 norm (word
        frequencies), or ``'power'``: signed square root, then unit L2 norm. An
        all-zero histogram (keypoint mode, no keypoint found) stays zero.
    max_descriptors : int or None, default=100_000
        At most this many training descriptors, drawn uniformly at random
        without replacement (from ``random_state``), are clustered. ``None``
        uses them all.
    soft_beta : float or None, default=None
        Kernel sharpness of ``'soft'`` encoding. ``None`` derives it in ``fit``:
        ``beta_ = 1 / (2 m)``, ``m`` the median squared distance from the
        sampled training descriptors to their nearest word (those lying exactly
        on a word excluded; ``m = 1`` if all do).
    random_state : int, RandomState instance or None, default=None
        Seeds the descriptor sample and :class:`~sklearn.cluster.MiniBatchKMeans`.
        An int gives the same codebook on every fit.
    n_jobs : int, default=None
        Parallel tasks over chunks of the batch in ``fit`` and ``transform``
        (joblib: threads by default, -1 all cores; ``None`` means 1 unless a
        ``joblib.parallel_config`` context says otherwise). The result depends
        neither on it nor on the joblib back-end (loky, multiprocessing, Dask).

    Attributes
    ----------
    codebook_ : (n_words, 128) ndarray of float64
        The visual words (k-means centres of SIFT-normalised descriptors).
    beta_ : float
        Kernel sharpness used by ``encoding='soft'`` (``soft_beta`` if given).
    image_shape_ : (None, None, int)
        ``c`` (1 grey, 3 RGB) of the images seen in ``fit``; any size is accepted.
    n_features_out_ : int
        ``n_words``.

    See Also
    --------
    cvfeat.features.HOG : orientation histograms on a fixed grid of cells
        (size-dependent features, no codebook).
    sklearn.cluster.MiniBatchKMeans : the codebook learner.

    Notes
    -----
    Colour images are converted to grey as ``0.299 R + 0.587 G + 0.114 B``
    (OpenCV's RGB2GRAY weights) in floating point, uint8 pixels divided by 255
    first. float32 images give float32 features, uint8 and float64 give float64.
    The learned values needed at inference are ``codebook_`` (``n_words * 128``)
    and, for soft encoding, the scalar ``beta_``.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.features import SIFTBoW
    >>> X = np.random.default_rng(0).integers(0, 256, (6, 32, 32), dtype=np.uint8)
    >>> bow = SIFTBoW(n_words=8, random_state=0).fit(X)
    >>> bow.codebook_.shape
    (8, 128)
    >>> bow.transform(X).shape
    (6, 8)
    >>> bow.dense_descriptors(X).shape  # 3 x 3 patches of 16 x 16, 8 apart
    (6, 9, 128)
    """

    _parameter_constraints: dict = {
        "mode": [StrOptions({"dense", "keypoints"})],
        "n_words": [Interval(Integral, 2, None, closed="left")],
        "step": [Interval(Integral, 1, None, closed="left")],
        "patch_size": [Interval(Integral, 4, None, closed="left")],
        "encoding": [StrOptions({"hard", "soft"})],
        "normalize": [StrOptions({"l1", "l2", "power"})],
        "max_descriptors": [Interval(Integral, 1, None, closed="left"), None],
        "soft_beta": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        mode="dense",
        n_words=64,
        step=8,
        patch_size=16,
        encoding="hard",
        normalize="l2",
        max_descriptors=100_000,
        soft_beta=None,
        random_state=None,
        n_jobs=None,
    ):
        self.mode = mode
        self.n_words = n_words
        self.step = step
        self.patch_size = patch_size
        self.encoding = encoding
        self.normalize = normalize
        self.max_descriptors = max_descriptors
        self.soft_beta = soft_beta
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- checks ----------------------------------------------------------------
    def _check_patch_size(self):
        if self.patch_size % 4:
            raise ValueError(
                f"SIFTBoW: patch_size must be a multiple of 4 (4 x 4 cells per patch); got "
                f"{self.patch_size}. Use e.g. patch_size={4 * max(1, round(self.patch_size / 4))}."
            )

    def _check_min_size(self, X):
        """Dense mode: every image must hold at least one patch."""
        p = self.patch_size
        fix = (
            "Use a smaller patch_size, enlarge the images (cvfeat.preprocessing.Resize) or "
            "use mode='keypoints'."
        )
        if isinstance(X, np.ndarray):
            h, w = X.shape[1:3]
            if h < p or w < p:
                raise ValueError(
                    f"SIFTBoW: images are {h}x{w} pixels but mode='dense' needs at least "
                    f"{p}x{p} (one patch, patch_size={p}). {fix}"
                )
            return
        for i, img in enumerate(X):
            h, w = img.shape[:2]
            if h < p or w < p:
                raise ValueError(
                    f"SIFTBoW: image {i} is {h}x{w} pixels but mode='dense' needs at least "
                    f"{p}x{p} (one patch, patch_size={p}). {fix}"
                )

    # -- descriptors -------------------------------------------------------------
    def dense_descriptors(self, X):
        """cvfeat's dense SIFT descriptors of same-size images (any ``mode``).

        Needs no fit: the descriptor depends only on ``step`` and ``patch_size``.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of same-size (h, w[, c]) ndarrays
            uint8 (0-255) or float in [0, 1], grey or RGB; ``h, w >= patch_size``.

        Returns
        -------
        descriptors : (n, n_patches, 128) ndarray
            float32 for float32 images, float64 otherwise. Patches in row-major
            order on the grid ``grid_origins(h) x grid_origins(w)`` of
            :mod:`cvfeat.features._dense_sift` (``(h - patch_size) // step + 1``
            per column, leftover pixels split between both ends); values ordered
            (cell row, cell column, orientation bin ``k * 45`` degrees measured
            from +x towards +y, y pointing down), each descriptor of unit L2 norm
            after clipping at 0.2, or zero for a patch without gradient.
        """
        self._validate_params()
        self._check_patch_size()
        X = check_images(X, estimator=self, same_size=True)
        self._check_min_size(X)
        return dense_sift(grey_images(X), self.patch_size, self.step)

    def _descriptors(self, X):
        """Flat ``(m, 128)`` descriptors of a validated chunk and the count per image."""
        if isinstance(X, list):  # a ragged chunk: image by image
            parts = [self._descriptors(img[None]) for img in X]
            return (np.concatenate([flat for flat, _ in parts]),
                    np.concatenate([counts for _, counts in parts]))
        dtype = compute_dtype(X[0])
        if self.mode == "dense":
            desc = dense_sift(grey_images(X), self.patch_size, self.step)
            n, per = desc.shape[:2]
            return desc.reshape(n * per, N_DIMS), np.full(n, per)
        found = _keypoint_sift(X)
        counts = np.array([len(d) for d in found])
        flat = np.concatenate(found).astype(dtype)
        return normalize_sift(flat), counts

    def _sample_chunk(self, X, seed):
        """Descriptors of one chunk, at most ``max_descriptors`` of them, with random keys.

        Keeping the descriptors with the smallest uniform keys, chunk by chunk and
        then overall, is a uniform sample without replacement of the whole set.
        """
        flat, counts = self._descriptors(X)
        found = len(flat)
        if self.max_descriptors is None:
            return flat.astype(np.float64), None, found
        keys = np.random.RandomState(seed).random_sample(found)
        if found > self.max_descriptors:
            keep = np.argpartition(keys, self.max_descriptors - 1)[: self.max_descriptors]
            flat, keys = flat[keep], keys[keep]
        return flat.astype(np.float64), keys, found

    @staticmethod
    def _smallest_keys(desc, keys, k):
        if len(keys) > k:
            keep = np.argpartition(keys, k - 1)[:k]
            desc, keys = desc[keep], keys[keep]
        return desc, keys

    def _training_sample(self, X, rng):
        chunks = chunk_ranges(X)
        seeds = rng.randint(_SEED_MAX, size=len(chunks))
        results = map_chunks(self._sample_chunk, X, chunks, self.n_jobs, seeds)
        cap = self.max_descriptors
        descs, keys, total, held = [], [], 0, 0
        for desc, key, found in results:  # in chunk order whatever n_jobs
            descs.append(desc)
            keys.append(key)
            total += found
            held += len(desc)
            if cap is not None and held > 2 * cap:
                d, k = self._smallest_keys(np.concatenate(descs), np.concatenate(keys), cap)
                descs, keys, held = [d], [k], len(d)
        sample = np.concatenate(descs)
        if cap is not None:
            sample, key = self._smallest_keys(sample, np.concatenate(keys), cap)
            sample = sample[np.argsort(key, kind="stable")]
        return sample, total

    # -- fit / transform -----------------------------------------------------------
    def _fit(self, X, y=None):
        self._check_patch_size()
        if self.max_descriptors is not None and self.max_descriptors < self.n_words:
            raise ValueError(
                f"SIFTBoW: max_descriptors={self.max_descriptors} is smaller than "
                f"n_words={self.n_words}; k-means needs at least one descriptor per word. "
                "Raise max_descriptors or lower n_words."
            )
        if self.mode == "dense":
            self._check_min_size(X)
        rng = check_random_state(self.random_state)
        sample, total = self._training_sample(X, rng)
        if total < self.n_words:
            if self.mode == "dense":
                fix = "use a smaller step, more or larger training images"
            else:
                fix = (
                    "use more or larger (textured) training images, or mode='dense', which "
                    "gives a fixed number of descriptors per image"
                )
            raise ValueError(
                f"SIFTBoW: found only {total} descriptors in the {len(X)} training images "
                f"(mode={self.mode!r}) but n_words={self.n_words} needs at least "
                f"{self.n_words}. Lower n_words, or {fix}."
            )
        kmeans = MiniBatchKMeans(
            n_clusters=self.n_words, random_state=rng.randint(_SEED_MAX), n_init="auto"
        ).fit(sample)
        self.codebook_ = kmeans.cluster_centers_.astype(np.float64)
        if self.soft_beta is not None:
            self.beta_ = float(self.soft_beta)
        else:
            nearest = sample - self.codebook_[kmeans.labels_]
            d2 = np.einsum("ij,ij->i", nearest, nearest)
            d2 = d2[d2 > 0]
            self.beta_ = float(1.0 / (2.0 * (np.median(d2) if len(d2) else 1.0)))
        return self

    def _n_features(self):
        return self.n_words

    def _feature_names(self):
        return [f"siftbow_word{i}" for i in range(self.n_words)]

    def _histograms(self, flat, counts):
        """(n, n_words) unnormalised histograms of descriptors ``flat`` grouped by ``counts``."""
        n, k = len(counts), self.n_words
        owner = np.repeat(np.arange(n), counts)
        words = self.codebook_.astype(flat.dtype)
        cross = flat @ words.T  # (m, k)
        if self.encoding == "hard":
            # ||d||^2 is the same for every word: the nearest word maximises this
            nearest = np.argmax(cross - 0.5 * np.sum(words * words, axis=1), axis=1)
            hist = np.bincount(owner * k + nearest, minlength=n * k).reshape(n, k)
            return hist.astype(flat.dtype)
        d2 = np.sum(flat * flat, axis=1, keepdims=True) - 2 * cross + np.sum(words * words, axis=1)
        logits = -flat.dtype.type(self.beta_) * np.maximum(d2, 0)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        hist = np.zeros((n, k), dtype=flat.dtype)
        np.add.at(hist, owner, weights)
        return hist

    def _transform_batch(self, X):
        flat, counts = self._descriptors(X)
        return _normalize_rows(self._histograms(flat, counts), self.normalize)

    def transform(self, X):
        """Normalised bag-of-words histogram of each image.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of (h, w[, c]) ndarrays
            Any sizes (dense mode: at least ``patch_size`` on each side), the same
            colour mode as in ``fit``.

        Returns
        -------
        features : (n, n_words) ndarray
            float32 for float32 images, float64 otherwise.
        """
        check_is_fitted(self)
        if self.mode == "dense":
            X = check_images(X, estimator=self)
            self._check_min_size(X)  # here, where the index of a small image is known
        return super().transform(X)
