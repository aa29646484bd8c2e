"""Colour histograms in RGB, HSV or CIE Lab."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .. import _color
from ._base import ImageFeatureTransformer

__all__ = ["ColorHistogram"]


def bin_index(values, low, high, bins):
    """Uniform bin of each value over ``[low, high]``; ``high`` goes to the last bin.

    ``floor((v - low) * bins / (high - low))`` (multiply before dividing, so a value
    exactly on an edge lands in the bin that starts there), then limited to
    ``[0, bins - 1]``: the top edge itself belongs to the last bin, as in
    ``np.histogram``. Values outside the range only arise from float rounding at
    the ends of a channel (e.g. L = 100.00001) and go to the end bins. ONNX: Sub,
    Mul, Div, Floor, Clip, Cast.
    """
    dt = values.dtype.type
    idx = np.floor((values - dt(low)) * dt(bins) / dt(high - low))
    return np.clip(idx, 0, bins - 1).astype(np.intp)


class ColorHistogram(ImageFeatureTransformer):
    """Colour histogram of each image, joint or per channel, in RGB, HSV or Lab.

    ``(n, h, w, 3)`` ndarray or list of ``(h_i, w_i, 3)`` arrays -> ``(n, n_features)``
    with ``n_features = bins**3`` (``joint=True``) or ``3 * bins`` (``joint=False``).
    The length does not depend on the image size, so ragged lists are accepted.
    Features are float32 for float32 images, float64 otherwise.

    Each pixel is converted (OpenCV float conventions, see ``cvfeat._color``; uint8
    ``p`` is first mapped to ``p / 255`` so a uint8 image and the same image as
    ``float32 x / 255`` give the same features) and binned with ``bins`` uniform
    bins over the channel's range:

    - 'rgb': R, G, B in [0, 1];
    - 'hsv': H in [0, 360] degrees, S and V in [0, 1] (``cv2.COLOR_RGB2HSV``);
    - 'lab': L in [0, 100], a and b in [-128, 127] (``cv2.COLOR_RGB2Lab``, sRGB, D65).

    Bin ``k`` of a channel with range ``[lo, hi]`` holds ``lo + k w <= v < lo + (k+1) w``
    with ``w = (hi - lo) / bins``; a value exactly at ``hi`` goes to the last bin.

    Grey images ``(n, h, w)``: with ``space='rgb'`` the feature is the intensity
    histogram (``bins`` bins over [0, 1], ``joint`` is ignored); 'hsv' and 'lab'
    raise a ValueError (a grey image has no hue or chroma) that says to use
    ``space='rgb'`` or RGB images.

    Parameters
    ----------
    bins : int, default=8
        Number of bins per channel (>= 1).
    space : {'hsv', 'rgb', 'lab'}, default='hsv'
        Colour space the pixels are binned in.
    joint : bool, default=True
        True: one joint 3-D histogram, ``bins**3`` features (index
        ``i0 * bins**2 + i1 * bins + i2``). False: the three per-channel
        histograms concatenated, ``3 * bins`` features.
    normalize : {'l1', 'l2'} or None, default='l1'
        Normalisation of each image's whole feature vector: 'l1' divides by the
        sum (for ``joint=False`` each channel's histogram then sums to 1/3), 'l2'
        by the Euclidean norm, None keeps raw pixel counts (which grow with the
        image size).
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
        Number of features.

    See Also
    --------
    cvfeat.preprocessing.ColorConvert : the same conversions, as images.
    LBP : texture histograms.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.features import ColorHistogram
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    >>> hist = ColorHistogram(bins=4, space="hsv").fit(X)
    >>> hist.transform(X).shape
    (4, 64)
    >>> hist.get_feature_names_out()[:2].tolist()
    ['hsv_h0_s0_v0', 'hsv_h0_s0_v1']
    """

    _parameter_constraints: dict = {
        "bins": [Interval(Integral, 1, None, closed="left")],
        "space": [StrOptions({"hsv", "rgb", "lab"})],
        "joint": ["boolean"],
        "normalize": [StrOptions({"l1", "l2"}), None],
        "n_jobs": [Integral, None],
    }

    def __init__(self, bins=8, space="hsv", joint=True, normalize="l1", n_jobs=None):
        self.bins = bins
        self.space = space
        self.joint = joint
        self.normalize = normalize
        self.n_jobs = n_jobs

    def _fit(self, X, y=None):
        self._check_grey(self.image_shape_[2])

    def _check_grey(self, channels):
        if channels == 1 and self.space != "rgb":
            raise ValueError(
                f"ColorHistogram(space={self.space!r}) needs RGB images (n, h, w, 3) but got "
                "grey images; a grey image has no hue or chroma. Use space='rgb' for an "
                "intensity histogram of grey images, or pass RGB images."
            )

    def _grey(self):
        return self.image_shape_[2] == 1

    def _n_features(self):
        if self._grey():
            return self.bins
        return self.bins**3 if self.joint else 3 * self.bins

    def _feature_names(self):
        b = self.bins
        if self._grey():
            return [f"gray_i{k}" for k in range(b)]
        s = self.space
        c0, c1, c2 = _color.CHANNEL_LETTERS[s]
        if self.joint:
            return [
                f"{s}_{c0}{i}_{c1}{j}_{c2}{k}" for i in range(b) for j in range(b) for k in range(b)
            ]
        return [f"{s}_{c}{k}" for c in (c0, c1, c2) for k in range(b)]

    def _transform_batch(self, X):
        n = len(X)
        b = self.bins
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        if X.ndim == 3:  # grey, space='rgb' (fit rejects the others)
            idx = bin_index(_color.to_float(X), 0.0, 1.0, b).reshape(n, -1)
            counts = _bincount_rows(idx, b)
        else:
            conv = _color.convert(X, self.space)
            ranges = _color.CHANNEL_RANGES[self.space]
            idx = [
                bin_index(conv[..., c], lo, hi, b).reshape(n, -1)
                for c, (lo, hi) in enumerate(ranges)
            ]
            if self.joint:
                counts = _bincount_rows((idx[0] * b + idx[1]) * b + idx[2], b**3)
            else:
                counts = np.concatenate([_bincount_rows(i, b) for i in idx], axis=1)
        hist = counts.astype(dtype)
        if self.normalize == "l1":
            hist /= hist.sum(axis=1, keepdims=True)
        elif self.normalize == "l2":
            hist /= np.sqrt((hist * hist).sum(axis=1, keepdims=True))
        return hist


def _bincount_rows(idx, n_bins):
    """Per-row counts of the integers in ``idx`` (n, m) over ``range(n_bins)``.

    One ``np.bincount`` over ``row * n_bins + idx``; in ONNX this is a
    ScatterElements(reduction='add') or OneHot + ReduceSum.
    """
    n = idx.shape[0]
    flat = (np.arange(n)[:, None] * n_bins + idx).ravel()
    return np.bincount(flat, minlength=n * n_bins).reshape(n, n_bins)
