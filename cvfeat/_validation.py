"""The one place where cvfeat checks images and targets.

Every estimator validates its input through :func:`check_images` (and, after
``fit``, :func:`check_image_shape`), so the same bad input gets the same clear
message whatever step receives it.

The image contract
------------------
A batch is an ndarray of shape ``(n, h, w)`` (grey) or ``(n, h, w, c)``
(``c`` = 3, RGB, channels last), either ``uint8`` (0-255) or floating point
(``float32`` / ``float64``) in ``[0, 1]``; or a list of such arrays, one per
image, when sizes differ. A single trailing channel ``(n, h, w, 1)`` is
treated as grey ``(n, h, w)``.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_images", "check_image_shape", "check_targets", "image_shape"]

SUPPORTED_DTYPES = (np.uint8, np.float32, np.float64)
SUPPORTED_CHANNELS = (1, 3)


def _where(estimator):
    if estimator is None:
        return ""
    name = estimator if isinstance(estimator, str) else type(estimator).__name__
    return f"{name}: "


def _check_dtype(dtype, where, index=None):
    if dtype in SUPPORTED_DTYPES:
        return
    at = "" if index is None else f" (image {index})"
    if np.issubdtype(dtype, np.complexfloating):
        # ValueError, as scikit-learn raises for complex input
        raise ValueError(f"{where}Complex data not supported{at}; images are real-valued.")
    if dtype == np.float16:
        hint = "convert with X.astype(np.float32)"
    elif np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        hint = (
            "if the values are 0-255 use X.astype(np.uint8); otherwise scale them to "
            "[0, 1] and use float32"
        )
    else:
        hint = "pass uint8 pixels (0-255) or float32/float64 in [0, 1]"
    raise TypeError(
        f"{where}unsupported image dtype {dtype}{at}; cvfeat takes uint8 (0-255) or "
        f"float32/float64 in [0, 1]: {hint}."
    )


def _check_values(arr, where, offset=0):
    """NaN/inf and range checks for float images; ``offset`` = index of arr[0]."""
    if arr.dtype == np.uint8:
        return
    flat = arr.reshape(len(arr), -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0]) + offset
        raise ValueError(
            f"{where}image {i} contains NaN or infinite values; images must be finite. "
            "Remove or repair that image before fitting or predicting."
        )
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    bad = (lo < 0) | (hi > 1)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}float images must have values in [0, 1]; image {j + offset} has values "
            f"in [{lo[j]:.4g}, {hi[j]:.4g}]. Divide 0-255 data by 255 (or pass it as "
            "uint8); cvfeat does not clip or rescale silently."
        )


def _check_one_image(img, where, index):
    if not isinstance(img, np.ndarray):
        raise TypeError(
            f"{where}image {index} of the list is a {type(img).__name__}, not an ndarray; "
            "a list must hold (h, w) or (h, w, c) arrays. To read files use "
            "cvfeat.io.ImageLoader or cvfeat.io.read_images."
        )
    if img.ndim not in (2, 3):
        raise ValueError(
            f"{where}image {index} of the list has shape {img.shape}; each image must be "
            "(h, w) or (h, w, c)."
        )
    _check_dtype(img.dtype, where, index)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] not in SUPPORTED_CHANNELS:
        raise ValueError(
            f"{where}image {index} has {img.shape[2]} channels; cvfeat takes grey (h, w) or "
            "RGB (h, w, 3) images. Drop an alpha channel with img[..., :3]."
        )
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{where}image {index} is empty (shape {img.shape}).")
    _check_values(img[None], where, offset=index)
    return img


def check_images(X, *, estimator=None, same_size=False, copy=False):
    """Validate a batch of images against the cvfeat image contract.

    Parameters
    ----------
    X : (n, h, w[, c]) ndarray or list of (h, w[, c]) ndarrays
        uint8 in 0-255 or float32/float64 in [0, 1], RGB, channels last.
    estimator : estimator or str, optional
        Named in error messages so the user knows which step complained.
    same_size : bool, default=False
        If True, a ragged list is an error (the step needs one image size).
    copy : bool, default=False
        Return a copy even when no conversion is needed.

    Returns
    -------
    X : (n, h, w[, c]) ndarray, or list of (h, w[, c]) ndarrays
        An ndarray whenever all images share one size (lists of equal-size
        images are stacked), a list only for ragged input. A single trailing
        channel is squeezed: ``(n, h, w, 1)`` becomes ``(n, h, w)``.

    Raises
    ------
    TypeError
        Not an array or list of arrays, or an unsupported dtype.
    ValueError
        Wrong ndim, empty batch, mixed channel counts, NaN/inf, floats outside
        [0, 1], or (``same_size=True``) images of different sizes.
    """
    where = _where(estimator)
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError(f"{where}got an empty list of images; pass at least one image.")
        imgs = [_check_one_image(img, where, i) for i, img in enumerate(X)]
        ndims = {img.ndim for img in imgs}
        if len(ndims) > 1:
            grey = next(i for i, m in enumerate(imgs) if m.ndim == 2)
            colour = next(i for i, m in enumerate(imgs) if m.ndim == 3)
            raise ValueError(
                f"{where}mixed channel counts: image {grey} is grey and image {colour} is "
                "RGB. Convert all images to one colour mode first (cvfeat.io.ImageLoader("
                "color=...) or cvfeat.preprocessing.Grayscale)."
            )
        dtypes = {img.dtype for img in imgs}
        if len(dtypes) > 1:
            raise TypeError(
                f"{where}mixed dtypes in the list ({sorted(str(d) for d in dtypes)}); "
                "use one dtype for all images."
            )
        shapes = {img.shape for img in imgs}
        if len(shapes) == 1:
            return np.stack(imgs)
        if same_size:
            first = imgs[0].shape[:2]
            other = next(i for i, m in enumerate(imgs) if m.shape[:2] != first)
            raise ValueError(
                f"{where}images have different sizes (image 0 is {first[0]}x{first[1]}, "
                f"image {other} is {imgs[other].shape[0]}x{imgs[other].shape[1]}) but this "
                "step needs one size. Put cvfeat.preprocessing.Resize(size=(h, w)) before it."
            )
        return [img.copy() for img in imgs] if copy else imgs

    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"{where}sparse input is not supported: images must be dense arrays "
            "(n, h, w[, c]). Convert with X.toarray() only if it really holds pixels."
        )
    if not isinstance(X, np.ndarray):
        hint = ""
        if isinstance(X, str):
            hint = " To read image files use cvfeat.io.ImageLoader or cvfeat.io.read_images."
        raise TypeError(
            f"{where}expected an ndarray of images (n, h, w) or (n, h, w, c), or a list of "
            f"(h, w[, c]) arrays; got {type(X).__name__}.{hint}"
        )
    _check_dtype(X.dtype, where)
    if X.ndim not in (3, 4):
        hint = (
            " For a single image use X[np.newaxis]."
            if X.ndim in (2, 3)
            else ""
        )
        if X.ndim == 2:
            hint += " A 2-D table of features is not an image batch: put the image step first."
        raise ValueError(
            f"{where}expected images of shape (n, h, w) or (n, h, w, c); got an array with "
            f"ndim={X.ndim} and shape {X.shape}.{hint}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{where}got an empty batch (0 images); pass at least one image.")
    if X.ndim == 4:
        if X.shape[3] == 1:
            X = X[..., 0]
        elif X.shape[3] not in SUPPORTED_CHANNELS:
            raise ValueError(
                f"{where}images have {X.shape[3]} channels (shape {X.shape}); cvfeat takes "
                "grey (n, h, w) or RGB (n, h, w, 3), channels last. Drop an alpha channel "
                "with X[..., :3]; move a channels-first batch with X.transpose(0, 2, 3, 1)."
            )
    if X.shape[1] == 0 or X.shape[2] == 0:
        raise ValueError(f"{where}images are empty (shape {X.shape}).")
    _check_values(X, where)
    return X.copy() if copy else X


def image_shape(X):
    """``(h, w, c)`` of a validated batch (c = 1 for grey); None for ragged lists."""
    if isinstance(X, list):
        return None
    return (X.shape[1], X.shape[2], 1 if X.ndim == 3 else X.shape[3])


def fitted_image_shape(X):
    """``image_shape_`` to record in ``fit``: ``(h, w, c)``, or ``(None, None, c)`` for a
    ragged list (only the channel count is fixed)."""
    shape = image_shape(X)
    return shape if shape is not None else (None, None, n_channels(X))


def n_channels(X):
    """Channel count (1 or 3) of a validated batch or list."""
    first = X[0]
    return 1 if first.ndim == 2 else first.shape[2]


def check_image_shape(estimator, X, *, fitted_shape=None, channels_only=False):
    """Check a validated batch against what ``estimator`` saw in ``fit``.

    ``fitted_shape`` defaults to ``estimator.image_shape_`` ``(h, w, c)``; with
    ``channels_only`` only the channel count must match (steps that take any size).
    """
    fitted = estimator.image_shape_ if fitted_shape is None else fitted_shape
    name = type(estimator).__name__
    c = n_channels(X)
    if c != fitted[2]:
        mode = {1: "grey", 3: "RGB"}
        raise ValueError(
            f"{name} was fitted on {mode[fitted[2]]} images but got {mode[c]} images; use the "
            "same colour mode as in fit (cvfeat.preprocessing.Grayscale or ImageLoader(color=...))."
        )
    if channels_only:
        return
    shape = image_shape(X)
    if shape is None or shape[:2] != tuple(fitted[:2]):
        got = "images of different sizes" if shape is None else f"{shape[0]}x{shape[1]} images"
        raise ValueError(
            f"{name} was fitted on {fitted[0]}x{fitted[1]} images but got {got}; its number of "
            f"features depends on the size. Put cvfeat.preprocessing.Resize(size=({fitted[0]}, "
            f"{fitted[1]})) before it."
        )


def check_targets(y, n_samples, *, estimator=None):
    """Validate regression targets: 1-D (or 2-D) finite numbers, one per image."""
    where = _where(estimator)
    y = np.asarray(y)
    if y.dtype == object or not (
        np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_
    ):
        raise TypeError(f"{where}targets must be numeric; got dtype {y.dtype}.")
    if y.ndim not in (1, 2):
        raise ValueError(f"{where}targets must be 1-D (n,) or 2-D (n, k); got shape {y.shape}.")
    if len(y) != n_samples:
        raise ValueError(
            f"{where}got {n_samples} images but {len(y)} targets; pass one target per image."
        )
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))[0])
        raise ValueError(f"{where}target {i} is NaN or infinite; targets must be finite.")
    return y


def check_positive_int(value, name, estimator, minimum=1):
    """Raise a clear ValueError unless ``value`` is an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"{type(estimator).__name__}: {name} must be an integer >= {minimum}; got {value!r}."
        )
    return int(value)
