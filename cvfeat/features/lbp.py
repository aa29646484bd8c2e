"""Local binary pattern (LBP) histograms over a grid of cells."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _color
from .._validation import check_image_shape, check_images
from ._base import ImageFeatureTransformer

__all__ = ["LBP"]

_METHODS = ("default", "ror", "uniform", "nri_uniform")


def n_codes(P, method):
    """Number of distinct codes (= histogram bins) of ``method`` with ``P`` points."""
    return {
        "default": 2**P,
        "ror": 2**P,
        "uniform": P + 2,
        "nri_uniform": P * (P - 1) + 3,
    }[method]


def circle_offsets(P, R):
    """Row and column offsets of the ``P`` sample points, exactly as scikit-image.

    ``skimage.feature._texture._local_binary_pattern`` takes ``R`` as a C float
    (float32), computes ``rr = -R sin(2 pi p / P)``, ``cc = R cos(2 pi p / P)`` in
    double and rounds both to 5 decimals.
    """
    R = float(np.float32(R))
    angles = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    rp = np.round(-R * np.sin(angles), 5)
    cp = np.round(R * np.cos(angles), 5)
    return rp, cp


def _axis_weights(size, offset, pad):
    """Floor/ceil indices (into the padded axis) and fraction for ``arange(size) + offset``.

    Computed per position, as skimage does per pixel (``floor(r + rp)``,
    ``r + rp - floor(r + rp)``), so the interpolation weights are bit-identical.
    """
    pos = np.arange(size, dtype=np.float64) + offset
    lo = np.floor(pos)
    hi = np.ceil(pos)
    frac = pos - lo
    return lo.astype(np.intp) + pad, hi.astype(np.intp) + pad, frac


def lbp_codes(images, P, R, method):
    """LBP code of every pixel of a batch of grey images, as scikit-image computes it.

    Parameters
    ----------
    images : (n, h, w) ndarray
        Grey images, any real dtype (converted to float64 as scikit-image does).
    P : int
        Number of sample points on the circle.
    R : float
        Radius of the circle in pixels.
    method : {'default', 'ror', 'uniform', 'nri_uniform'}

    Returns
    -------
    codes : (n, h, w) int64 ndarray
        Equal to ``skimage.feature.local_binary_pattern(images[i], P, R, method)``
        for every image ``i``.

    Notes
    -----
    Sample ``p`` sits at ``(r + rp[p], c + cp[p])`` (see :func:`circle_offsets`) and
    is read with bilinear interpolation from the image padded with zeros
    (skimage's ``mode='C'``, ``cval=0``)::

        top = (1 - dc) I[r0, c0] + dc I[r0, c1];  bottom = (1 - dc) I[r1, c0] + dc I[r1, c1]
        s_p = (1 - dr) top + dr bottom,  bit_p = (s_p - I[r, c] >= 0)

    in float64, with ``r0, r1 = floor, ceil`` of the row and ``dr`` its fraction
    (same for columns). Codes: 'default' ``sum bit_p 2**p``; 'ror' the minimum over
    the ``P`` cyclic rotations of that code; 'uniform' the number of ones if the
    pattern has at most 2 changes along ``p = 0..P-1`` (not wrapping), else ``P + 1``;
    'nri_uniform' skimage's index of the uniform pattern (``0``, ``1 + (n_ones - 1) P
    + rot``, ``P (P - 1) + 1`` for all ones) or ``P (P - 1) + 2`` for non-uniform ones.
    ONNX: Pad, Gather, Mul, Add, Sub, GreaterOrEqual, Cast, ReduceSum, Min, Where.
    """
    img = np.asarray(images, dtype=np.float64)
    n, h, w = img.shape
    rp, cp = circle_offsets(P, R)
    pad = int(np.ceil(float(np.float32(R)))) + 1
    padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    bits = np.empty((P, n, h, w), dtype=np.int8)
    for p in range(P):
        r0, r1, dr = _axis_weights(h, rp[p], pad)
        c0, c1, dc = _axis_weights(w, cp[p], pad)
        rows0, rows1 = padded[:, r0, :], padded[:, r1, :]
        dc_, ndc = dc[None, None, :], (1 - dc)[None, None, :]
        top = ndc * rows0[:, :, c0] + dc_ * rows0[:, :, c1]
        bottom = ndc * rows1[:, :, c0] + dc_ * rows1[:, :, c1]
        dr_, ndr = dr[None, :, None], (1 - dr)[None, :, None]
        sample = ndr * top + dr_ * bottom
        bits[p] = (sample - img) >= 0

    if method in ("default", "ror"):
        code = np.zeros((n, h, w), dtype=np.int64)
        for p in range(P):
            code += bits[p] * np.int64(2**p)
        if method == "ror":
            # Cyclic right shift of a P-bit value, in arithmetic (ONNX Div/Mod):
            # v >> 1 | (v & 1) << (P - 1).
            best = code
            top_bit = np.int64(2 ** (P - 1))
            for _ in range(P - 1):
                code = code // 2 + (code % 2) * top_bit
                best = np.minimum(best, code)
            code = best
        return code

    changes = np.abs(np.diff(bits, axis=0)).sum(axis=0)
    n_ones = bits.sum(axis=0)
    if method == "uniform":
        return np.where(changes <= 2, n_ones, P + 1)
    # nri_uniform
    first_one = np.argmax(bits, axis=0)  # index of the first 1 (0 when none)
    first_zero = np.argmax(1 - bits, axis=0)  # index of the first 0 (0 when none)
    rot = np.where(first_one == 0, n_ones - first_zero, P - first_one)
    code = 1 + (n_ones - 1) * P + rot
    code = np.where(n_ones == 0, 0, np.where(n_ones == P, P * (P - 1) + 1, code))
    return np.where(changes <= 2, code, P * (P - 1) + 2)


def grid_edges(size, cells):
    """Cell boundaries ``floor(k * size / cells)``, k = 0..cells (sizes differ by <= 1)."""
    return (np.arange(cells + 1) * size) // cells


class LBP(ImageFeatureTransformer):
    """Histograms of local binary patterns over a grid of cells.

    ``(n, h, w[, 3])`` ndarray or list of ``(h_i, w_i[, 3])`` arrays ->
    ``(n, gr * gc * n_bins)``, ``grid = (gr, gc)``. The length does not depend on
    the image size, so ragged lists are accepted. Features are float32 for float32
    images, float64 otherwise.

    Each pixel gets the LBP code of scikit-image's
    ``skimage.feature.local_binary_pattern(image, P, R, method)`` (bit-identical;
    see :meth:`codes`). The image is split into ``gr x gc`` cells (row boundaries
    ``floor(k h / gr)``, column boundaries ``floor(k w / gc)``, so cell sizes differ
    by at most one pixel), each cell's histogram of codes is L1-normalised (divided
    by its pixel count, so it sums to 1) and the histograms are concatenated in
    row-major cell order. Images need at least ``gr`` rows and ``gc`` columns.

    Colour images are first converted to grey with the formula of
    :class:`cvfeat.preprocessing.Grayscale` (uint8: OpenCV's fixed-point
    ``COLOR_RGB2GRAY``, result uint8; float: ``0.299 R + 0.587 G + 0.114 B``).

    Parameters
    ----------
    P : int, default=8
        Number of sample points on the circle (1 to 24). 'default' and 'ror' give
        ``2**P`` bins per cell, so keep P small for them.
    R : float, default=1
        Radius of the circle in pixels (> 0).
    method : {'default', 'ror', 'uniform', 'nri_uniform'}, default='uniform'
        Code type; bins per cell: ``2**P``, ``2**P``, ``P + 2``, ``P (P - 1) + 3``.
    grid : tuple of 2 int, default=(1, 1)
        Number of cells ``(rows, cols)``.
    n_jobs : int, default=None
        Parallel tasks over chunks of the batch in ``transform`` (joblib: threads
        by default, -1 all cores; ``None`` means 1 unless a
        ``joblib.parallel_config`` context says otherwise). Any joblib back-end
        (loky, multiprocessing, Dask) gives the serial result.

    Attributes
    ----------
    image_shape_ : tuple of 3
        ``(h, w, c)`` seen in ``fit`` (``h``, ``w`` are None for a ragged list).
    n_features_out_ : int
        ``grid[0] * grid[1] * n_bins``.

    See Also
    --------
    skimage.feature.local_binary_pattern : the reference per-pixel codes.
    ColorHistogram : colour histograms.

    Notes
    -----
    Pixels near the border sample outside the image; those samples read 0, as in
    scikit-image. The codes are computed in float64 (as scikit-image), so ties
    between a sample and the centre are decided exactly as there.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.features import LBP
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (3, 20, 20), dtype=np.uint8)
    >>> lbp = LBP(P=8, R=1, method="uniform", grid=(2, 2)).fit(X)
    >>> lbp.transform(X).shape
    (3, 40)
    >>> lbp.get_feature_names_out()[:2].tolist()
    ['lbp_r0c0_0', 'lbp_r0c0_1']
    """

    _parameter_constraints: dict = {
        "P": [Interval(Integral, 1, 24, closed="both")],
        "R": [Interval(Real, 0, None, closed="neither")],
        "method": [StrOptions(set(_METHODS))],
        "grid": [tuple, list],
        "n_jobs": [Integral, None],
    }

    def __init__(self, P=8, R=1, method="uniform", grid=(1, 1), n_jobs=None):
        self.P = P
        self.R = R
        self.method = method
        self.grid = grid
        self.n_jobs = n_jobs

    # -- helpers -------------------------------------------------------------
    def _check_grid(self):
        g = self.grid
        ok = len(g) == 2 and all(
            isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in g
        )
        if not ok:
            raise ValueError(
                f"LBP: grid must be (rows, cols), two integers >= 1; got {g!r}. "
                "Example: LBP(grid=(2, 2))."
            )
        return int(g[0]), int(g[1])

    def _check_sizes(self, X):
        gr, gc = self._check_grid()
        shapes = [X.shape[1:3]] if isinstance(X, np.ndarray) else [m.shape[:2] for m in X]
        for i, (h, w) in enumerate(shapes):
            if h < gr or w < gc:
                which = "" if isinstance(X, np.ndarray) else f"image {i} "
                raise ValueError(
                    f"LBP: {which}is {h}x{w} pixels but grid={(gr, gc)} needs at least {gr} "
                    f"rows and {gc} columns (one pixel per cell). Use a smaller grid or "
                    "cvfeat.preprocessing.Resize."
                )

    def _grey_float(self, X):
        grey = _color.rgb_to_gray(X) if X.ndim == 4 else X
        return grey.astype(np.float64)

    # -- ImageFeatureTransformer hooks ---------------------------------------
    def _fit(self, X, y=None):
        self._check_sizes(X)

    def _n_features(self):
        gr, gc = self._check_grid()
        return gr * gc * n_codes(self.P, self.method)

    def _feature_names(self):
        gr, gc = self._check_grid()
        k = n_codes(self.P, self.method)
        return [f"lbp_r{i}c{j}_{b}" for i in range(gr) for j in range(gc) for b in range(k)]

    def _transform_batch(self, X):
        gr, gc = self._check_grid()
        k = n_codes(self.P, self.method)
        codes = lbp_codes(self._grey_float(X), self.P, self.R, self.method)
        n, h, w = codes.shape
        row_cell = np.searchsorted(grid_edges(h, gr), np.arange(h), side="right") - 1
        col_cell = np.searchsorted(grid_edges(w, gc), np.arange(w), side="right") - 1
        cell = row_cell[:, None] * gc + col_cell[None, :]  # (h, w)
        flat = (np.arange(n)[:, None, None] * (gr * gc) + cell) * k + codes
        counts = np.bincount(flat.ravel(), minlength=n * gr * gc * k).reshape(n, gr * gc, k)
        cell_pixels = np.bincount(cell.ravel(), minlength=gr * gc)
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        hist = counts.astype(dtype) / cell_pixels[None, :, None].astype(dtype)
        return hist.reshape(n, gr * gc * k)

    # -- public API ----------------------------------------------------------
    def transform(self, X):
        """Compute the grid of LBP histograms of each image.

        Parameters
        ----------
        X : (n, h, w[, 3]) ndarray or list of (h, w[, 3]) ndarrays
            Same colour mode as in ``fit``; each image at least ``grid`` pixels.

        Returns
        -------
        features : (n, n_features_out_) ndarray
            float32 for float32 images, float64 otherwise.
        """
        check_is_fitted(self)
        self._check_sizes(check_images(X, estimator=self))
        return super().transform(X)

    def codes(self, X):
        """Per-pixel LBP codes, equal to ``skimage.feature.local_binary_pattern``.

        Parameters
        ----------
        X : (n, h, w[, 3]) ndarray or list of (h, w[, 3]) ndarrays
            Colour images are converted to grey first (see the class docstring).
            Needs no ``fit``.

        Returns
        -------
        codes : (n, h, w) int64 ndarray, or a list of (h_i, w_i) arrays for a ragged list
        """
        self._validate_params()
        X = check_images(X, estimator=self)
        if hasattr(self, "image_shape_"):
            check_image_shape(self, X, channels_only=True)
        if isinstance(X, list):
            return [
                lbp_codes(self._grey_float(m[None]), self.P, self.R, self.method)[0] for m in X
            ]
        return lbp_codes(self._grey_float(X), self.P, self.R, self.method)
