"""Image -> image steps: Resize, Grayscale and ColorConvert.

They take a batch of images (an ``(n, h, w[, c])`` ndarray or a list of
``(h, w[, c])`` arrays) and return images, not features, so they sit before the
feature transformers in a pipeline. They are stateless: ``fit`` only validates
and records the input shape (``image_shape_``), and ``transform`` works without
``fit`` too (tag ``requires_fit=False``); once fitted, ``transform`` checks that the
images have the channel count seen in ``fit``.
"""

from __future__ import annotations

import numbers

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions

from . import _color
from ._mixins import ImageOutputMixin
from ._validation import check_image_shape, check_images, fitted_image_shape, n_channels

__all__ = ["Resize", "Grayscale", "ColorConvert"]


class _ImageToImage(ImageOutputMixin, TransformerMixin, BaseEstimator):
    """Shared fit/transform of the stateless image -> image steps."""

    _parameter_constraints: dict = {}

    def _check_params(self):
        self._validate_params()

    def _check_channels(self, X):
        """Hook: raise if this step cannot take images with these channels."""

    def _transform_images(self, X):
        raise NotImplementedError

    def fit(self, X, y=None):
        """Validate the images and record their shape.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of (h, w[, c]) ndarrays
            uint8 (0-255) or float in [0, 1], RGB, channels last.
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        X = check_images(X, estimator=self)
        self._check_channels(X)
        self.image_shape_ = fitted_image_shape(X)
        return self

    def transform(self, X):
        """Apply the step to each image.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of (h, w[, c]) ndarrays
            uint8 (0-255) or float in [0, 1], RGB, channels last; once fitted, the
            same colour mode as in ``fit``.

        Returns
        -------
        images : ndarray or list of ndarrays
            See the class docstring for the shape and dtype.
        """
        self._check_params()
        X = check_images(X, estimator=self)
        if hasattr(self, "image_shape_"):
            check_image_shape(self, X, channels_only=True)
        self._check_channels(X)
        return self._transform_images(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.requires_fit = False
        return tags


class Resize(_ImageToImage):
    """Resize every image to one size with OpenCV (the usual fix for ragged data).

    ``(n, h, w[, c])`` ndarray or list of ``(h_i, w_i[, c])`` arrays ->
    ``(n, size[0], size[1][, c])`` ndarray of the input dtype.

    Parameters
    ----------
    size : tuple of 2 int
        Output ``(height, width)`` in pixels (note: rows first, unlike
        ``cv2.resize``'s ``dsize=(width, height)``).
    interpolation : {'area', 'linear'}, default='area'
        ``cv2.INTER_AREA`` (pixel-area averaging, the right choice to shrink) or
        ``cv2.INTER_LINEAR`` (bilinear). Both are convex combinations of input
        pixels, so float images stay in [0, 1].

    Attributes
    ----------
    image_shape_ : tuple of 3 int
        ``(h, w, c)`` of the images seen in ``fit`` (``h``, ``w`` are None for a
        ragged list).

    See Also
    --------
    Grayscale : RGB -> grey.
    cvfeat.features.HOG : needs one image size; put ``Resize`` before it.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.preprocessing import Resize
    >>> imgs = [np.zeros((40, 30, 3), np.uint8), np.zeros((20, 25, 3), np.uint8)]
    >>> Resize(size=(16, 16)).fit_transform(imgs).shape
    (2, 16, 16, 3)
    """

    _parameter_constraints: dict = {
        "size": [tuple, list],
        "interpolation": [StrOptions({"area", "linear"})],
    }

    def __init__(self, size, interpolation="area"):
        self.size = size
        self.interpolation = interpolation

    def _check_params(self):
        super()._check_params()
        size = self.size
        ok = len(size) == 2 and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in size
        )
        if not ok:
            raise ValueError(
                f"Resize: size must be (height, width), two integers >= 1; got {size!r}. "
                "Example: Resize(size=(64, 64))."
            )

    def _transform_images(self, X):
        h, w = (int(s) for s in self.size)
        flag = cv2.INTER_AREA if self.interpolation == "area" else cv2.INTER_LINEAR
        first = X[0]
        out = np.empty((len(X), h, w) + first.shape[2:], dtype=first.dtype)
        for i, img in enumerate(X):
            # cv2.resize takes dsize=(width, height); it needs a contiguous array.
            out[i] = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=flag)
        return out


class Grayscale(_ImageToImage):
    """Convert RGB images to grey with OpenCV's weights; grey images pass through.

    ``(n, h, w, 3)`` -> ``(n, h, w)`` of the same dtype (a ragged list gives a
    list). uint8 images give exactly ``cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)``,
    computed in integer arithmetic as ``(9798 R + 19235 G + 3735 B + 2**14) >> 15``;
    float images give ``0.299 R + 0.587 G + 0.114 B`` in the input dtype. Grey
    input is returned unchanged.

    Attributes
    ----------
    image_shape_ : tuple of 3 int
        ``(h, w, c)`` of the images seen in ``fit``.

    See Also
    --------
    ColorConvert : RGB -> HSV / Lab / grey.
    cvfeat.features.LBP : uses the same grey conversion for colour input.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.preprocessing import Grayscale
    >>> rgb = np.full((1, 2, 2, 3), (255, 0, 0), np.uint8)
    >>> Grayscale().fit_transform(rgb)[0, 0, 0]
    np.uint8(76)
    """

    def __init__(self):
        pass

    def _transform_images(self, X):
        return _gray(X)


def _gray(X):
    if isinstance(X, list):
        return [_color.rgb_to_gray(img) if img.ndim == 3 else img for img in X]
    return _color.rgb_to_gray(X) if X.ndim == 4 else X


class ColorConvert(_ImageToImage):
    """Convert RGB images to another colour space.

    ``(n, h, w, 3)`` -> ``(n, h, w, 3)`` float for 'hsv' and 'lab' (float32 for
    uint8 and float32 input, float64 for float64), ``(n, h, w)`` of the input dtype
    for 'gray' (identical to :class:`Grayscale`). A ragged list gives a list.

    The conversions are OpenCV's float conventions and are the ones
    :class:`cvfeat.features.ColorHistogram` bins (``cvfeat._color``): uint8 ``p`` is
    first mapped to ``p / 255``. The output is then scaled channel by channel to
    [0, 1], so that it is again an image of the cvfeat contract and can feed any
    other cvfeat step (e.g. ``HOG`` on Lab):

    - 'hsv': H / 360, S, V, from H in [0, 360] degrees, S and V in [0, 1]
      (``cv2.COLOR_RGB2HSV``);
    - 'lab': L / 100, (a + 128) / 255, (b + 128) / 255, from L in [0, 100] and a, b
      in [-128, 127] (``cv2.COLOR_RGB2Lab``, sRGB, D65);
    - 'gray': one channel, dtype kept (``cv2.COLOR_RGB2GRAY``).

    These ranges hold exactly (white is L = 100; H reaches at most 360), so
    nothing is clipped.

    Parameters
    ----------
    space : {'hsv', 'lab', 'gray'}, default='hsv'
        Target colour space. 'hsv' and 'lab' need RGB input; 'gray' passes grey
        images through unchanged.

    Attributes
    ----------
    image_shape_ : tuple of 3 int
        ``(h, w, c)`` of the images seen in ``fit``.

    See Also
    --------
    Grayscale : RGB -> grey.
    cvfeat.features.ColorHistogram : histograms in these spaces.

    Examples
    --------
    >>> import numpy as np
    >>> from cvfeat.preprocessing import ColorConvert
    >>> red = np.full((1, 2, 2, 3), (255, 0, 0), np.uint8)
    >>> ColorConvert(space="hsv").fit_transform(red)[0, 0, 0].round(3).tolist()
    [0.0, 1.0, 1.0]
    """

    _parameter_constraints: dict = {"space": [StrOptions({"hsv", "lab", "gray"})]}

    def __init__(self, space="hsv"):
        self.space = space

    def _check_channels(self, X):
        if self.space != "gray" and n_channels(X) == 1:
            raise ValueError(
                f"ColorConvert(space={self.space!r}) needs RGB images (n, h, w, 3) but got grey "
                "images; a grey image has no hue or chroma. Use ColorConvert(space='gray') or "
                "pass RGB images."
            )

    def _convert(self, X):
        out = _color.convert(X, self.space)
        for ch, (lo, hi) in enumerate(_color.CHANNEL_RANGES[self.space]):
            out[..., ch] -= lo
            out[..., ch] /= hi - lo
        return out

    def _transform_images(self, X):
        if self.space == "gray":
            return _gray(X)
        if isinstance(X, list):
            return [self._convert(img) for img in X]
        return self._convert(X)
