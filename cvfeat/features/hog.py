"""Histogram of Oriented Gradients, batched and vectorised.

Numerically the same as :func:`skimage.feature.hog` with ``feature_vector=True``
(and ``channel_axis=-1`` for colour), computed for a whole batch at once.

The computation is a chain of simple array operations, each of which has a
standard ONNX counterpart:

1. optional square root of the image (``Sqrt``);
2. central differences along rows and columns, zero on the border (``Slice``,
   ``Sub``, ``Pad``);
3. for colour images, per pixel the channel of largest gradient magnitude
   (``ArgMax`` + ``GatherElements``);
4. magnitude ``hypot(g_row, g_col)`` and unsigned orientation in degrees,
   ``rad2deg(arctan2(g_row, g_col)) mod 180``, assigned to the bin ``k`` whose
   half-open range ``[t_k, t_{k+1})`` holds it, by comparisons with the bin edges
   (``Greater``/``Less`` instead of a division, so the bin edges are exactly
   scikit-image's);
5. cell histograms as sums of magnitude over each ``pixels_per_cell`` window per
   bin (``ReduceSum``), divided by the cell area;
6. block normalisation over overlapping ``cells_per_block`` windows.

For uint8 images the gradients are integers in [-255, 255], so steps 4's
orientation bin and magnitude are read from a 511 x 511 lookup table built with
the very same formula (``Gather``): exact, and several times faster than
computing ``arctan2`` per pixel.
"""

from __future__ import annotations

from functools import lru_cache
from numbers import Integral

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import ImageFeatureTransformer

__all__ = ["HOG"]

_EPS = 1e-5  # scikit-image's block-normalisation epsilon


def orientation_edges(orientations):
    """Lower bin edges ``t_1 .. t_n`` in degrees, as scikit-image computes them.

    scikit-image's Cython kernel computes ``180 / n * (i + 1)`` in single
    precision (``cdef float``) and compares the double-precision orientation
    with it, so the edges are float32 values.
    """
    width = np.float32(180.0) / np.float32(orientations)
    return (width * np.arange(1, orientations + 1, dtype=np.float32)).astype(np.float64)


def orientation_bin(g_row, g_col, orientations):
    """Bin index per pixel from float64 gradients; ``orientations`` = no bin.

    A pixel whose orientation rounds to exactly 180 degrees falls in no bin in
    scikit-image; it gets the index ``orientations`` here and is dropped.
    """
    orient = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    edges = orientation_edges(orientations)
    # count of edges t_k <= orient  ==  k such that t_k <= orient < t_{k+1}
    return np.searchsorted(edges, orient, side="right").astype(np.intp)


@lru_cache(maxsize=8)
def _uint8_tables(orientations):
    """(bin, magnitude) lookup tables indexed by (g_row + 255) * 511 + g_col + 255."""
    g = np.arange(-255, 256, dtype=np.float64)
    g_row, g_col = np.meshgrid(g, g, indexing="ij")
    # int8 bins: a smaller table gathers faster (orientations <= 126 by the constraint)
    bins = orientation_bin(g_row, g_col, orientations).ravel().astype(np.int8)
    magnitude = np.hypot(g_row, g_col).ravel()
    bins.setflags(write=False)
    magnitude.setflags(write=False)
    return bins, magnitude


def _central_differences(img, rows, cols):
    """Gradients of ``img`` (n, h, w[, c]) on the top-left ``rows x cols`` window.

    ``g_row[r] = img[r + 1] - img[r - 1]`` inside, 0 on the first and last row
    of the full image (likewise for columns), as scikit-image.
    """
    n, h, w = img.shape[:3]
    shape = (n, rows, cols) + img.shape[3:]
    g_row = np.zeros(shape, dtype=img.dtype)
    g_col = np.zeros(shape, dtype=img.dtype)
    r_end = min(rows - 1, h - 2)  # last row with a central difference
    c_end = min(cols - 1, w - 2)
    if r_end >= 1:
        np.subtract(img[:, 2 : r_end + 2, :cols], img[:, : r_end, :cols],
                    out=g_row[:, 1 : r_end + 1])
    if c_end >= 1:
        np.subtract(img[:, :rows, 2 : c_end + 2], img[:, :rows, : c_end],
                    out=g_col[:, :, 1 : c_end + 1])
    return g_row, g_col


class HOG(ImageFeatureTransformer):
    """Histogram of Oriented Gradients of each image in a batch.

    The same numbers as :func:`skimage.feature.hog` (``feature_vector=True``;
    ``channel_axis=-1`` for RGB images) for every image, computed for the whole
    batch with array operations, in chunks of bounded memory.

    Parameters
    ----------
    orientations : int, default=9
        Number of unsigned orientation bins over [0, 180) degrees.
    pixels_per_cell : (int, int), default=(8, 8)
        Cell size (rows, columns) in pixels. Pixels beyond the last whole cell
        are ignored, as in scikit-image.
    cells_per_block : (int, int), default=(2, 2)
        Block size in cells; blocks overlap with a stride of one cell.
    block_norm : {'L1', 'L1-sqrt', 'L2', 'L2-Hys'}, default='L2-Hys'
        Block normalisation, as in scikit-image.
    transform_sqrt : bool, default=False
        Square root of the image before the gradients (power-law compression).
    n_jobs : int, default=None
        Parallel tasks over chunks of the batch in ``transform`` (joblib: threads
        by default, -1 all cores; ``None`` means 1 unless a
        ``joblib.parallel_config`` context says otherwise). Any joblib back-end
        (loky, multiprocessing, Dask) gives the serial result.

    Attributes
    ----------
    image_shape_ : (int, int, int)
        ``(h, w, c)`` of the images seen in ``fit`` (c = 1 for grey).
    n_features_out_ : int
        ``n_blocks_row * n_blocks_col * cells_per_block[0] * cells_per_block[1]
        * orientations``.

    See Also
    --------
    skimage.feature.hog : the single-image reference implementation.
    cvfeat.features.SIFTBoW : orientation histograms around a dense grid, pooled
        into a bag of words (size-independent features).

    Notes
    -----
    Output dtype follows scikit-image: float32 images give float32 features,
    uint8 and float64 images give float64. uint8 pixels are used as 0-255
    values (as scikit-image does); with the default ``'L2-Hys'`` norm this
    scale cancels out up to the tiny epsilon of the normalisation.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.features import HOG
    >>> X = np.random.default_rng(0).integers(0, 256, (4, 64, 64), dtype=np.uint8)
    >>> HOG().fit_transform(X).shape
    (4, 1764)
    """

    _needs_fixed_size = True

    _parameter_constraints: dict = {
        "orientations": [Interval(Integral, 1, 126, closed="both")],
        "pixels_per_cell": [tuple, list],
        "cells_per_block": [tuple, list],
        "block_norm": [StrOptions({"L1", "L1-sqrt", "L2", "L2-Hys"})],
        "transform_sqrt": ["boolean"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        transform_sqrt=False,
        n_jobs=None,
    ):
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm
        self.transform_sqrt = transform_sqrt
        self.n_jobs = n_jobs

    # -- geometry ------------------------------------------------------------------
    @staticmethod
    def _pair(value, name):
        ok = (
            len(value) == 2
            and all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in value)
        )
        if not ok:
            raise ValueError(f"HOG: {name} must be two positive integers (rows, cols); got {value!r}.")
        return int(value[0]), int(value[1])

    def _geometry(self, h, w):
        cr, cc = self._pair(self.pixels_per_cell, "pixels_per_cell")
        br, bc = self._pair(self.cells_per_block, "cells_per_block")
        ncr, ncc = h // cr, w // cc
        nbr, nbc = ncr - br + 1, ncc - bc + 1
        if nbr <= 0 or nbc <= 0:
            raise ValueError(
                f"HOG: images of {h}x{w} are too small for pixels_per_cell={(cr, cc)} and "
                f"cells_per_block={(br, bc)}: they need at least {br * cr}x{bc * cc} pixels. "
                "Use smaller cells or blocks, or Resize the images up."
            )
        return cr, cc, br, bc, ncr, ncc, nbr, nbc

    def _fit(self, X, y=None):
        h, w = self.image_shape_[:2]
        self._geometry(h, w)
        return self

    def _n_features(self):
        _, _, br, bc, _, _, nbr, nbc = self._geometry(*self.image_shape_[:2])
        return nbr * nbc * br * bc * self.orientations

    def _feature_names(self):
        _, _, br, bc, _, _, nbr, nbc = self._geometry(*self.image_shape_[:2])
        idx = np.indices((nbr, nbc, br, bc, self.orientations)).reshape(5, -1).T
        return [f"hog_b{r}_{c}_c{i}_{j}_o{o}" for r, c, i, j, o in idx]

    # -- computation -------------------------------------------------------------------
    def _gradients(self, X, rows, cols):
        """float64 g_row, g_col of the chosen channel, or for uint8 (bin, magnitude)."""
        colour = X.ndim == 4
        if X.dtype == np.uint8 and not self.transform_sqrt:
            bins_lut, mag_lut = _uint8_tables(self.orientations)
            g_row, g_col = _central_differences(X.astype(np.intp), rows, cols)
            code = g_row * 511
            code += g_col
            code += 255 * 511 + 255
            magnitude = np.take(mag_lut, code)
            if colour:
                best = magnitude.argmax(axis=-1)[..., None]
                code = np.take_along_axis(code, best, axis=-1)[..., 0]
                magnitude = np.take_along_axis(magnitude, best, axis=-1)[..., 0]
            return np.take(bins_lut, code), magnitude
        img = X.astype(np.float64) if X.dtype == np.uint8 else X
        if self.transform_sqrt:
            img = np.sqrt(img)
        g_row, g_col = _central_differences(img, rows, cols)
        if colour:
            best = np.hypot(g_row, g_col).argmax(axis=-1)[..., None]
            g_row = np.take_along_axis(g_row, best, axis=-1)[..., 0]
            g_col = np.take_along_axis(g_col, best, axis=-1)[..., 0]
        g_row = g_row.astype(np.float64, copy=False)
        g_col = g_col.astype(np.float64, copy=False)
        return orientation_bin(g_row, g_col, self.orientations), np.hypot(g_row, g_col)

    def cell_histograms(self, X):
        """Per-cell orientation histograms, before block normalisation.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray
            Validated images of the fitted size.

        Returns
        -------
        hist : (n, n_cells_row, n_cells_col, orientations) float64 ndarray
        """
        n, h, w = X.shape[:3]
        cr, cc, _, _, ncr, ncc, _, _ = self._geometry(h, w)
        nb = self.orientations
        bins, magnitude = self._gradients(X, ncr * cr, ncc * cc)
        # flat index of (image, cell_row, cell_col, bin) with one spare bin for
        # "no bin" (orientation == 180 after rounding): dropped below.
        cell_r = (np.arange(ncr * cr) // cr)[:, None]
        cell_c = (np.arange(ncc * cc) // cc)[None, :]
        cell = (cell_r * ncc + cell_c) * (nb + 1)
        index = cell + bins  # (n, rows, cols), intp
        index += (np.arange(n) * (ncr * ncc * (nb + 1)))[:, None, None]
        hist = np.bincount(index.ravel(), weights=magnitude.ravel(),
                           minlength=n * ncr * ncc * (nb + 1))
        hist = hist.reshape(n, ncr, ncc, nb + 1)[..., :nb]
        return hist / (cr * cc)

    def _normalize_blocks(self, hist):
        br, bc = self._pair(self.cells_per_block, "cells_per_block")
        n = hist.shape[0]
        # (n, nbr, nbc, nb, br, bc) -> (n, nbr, nbc, br, bc, nb), flattened per block
        blocks = sliding_window_view(hist, (br, bc), axis=(1, 2))
        blocks = blocks.transpose(0, 1, 2, 4, 5, 3).reshape(n, -1, br * bc * hist.shape[-1])
        method = self.block_norm
        if method == "L1":
            out = blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + _EPS)
        elif method == "L1-sqrt":
            out = np.sqrt(blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + _EPS))
        else:
            out = blocks / np.sqrt((blocks**2).sum(axis=-1, keepdims=True) + _EPS**2)
            if method == "L2-Hys":
                out = np.minimum(out, 0.2)
                out /= np.sqrt((out**2).sum(axis=-1, keepdims=True) + _EPS**2)
        return out.reshape(n, -1)

    def _transform_batch(self, X):
        return self._normalize_blocks(self.cell_histograms(X))
