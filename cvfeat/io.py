"""Read image files into cvfeat image batches, and model files, safely.

:func:`read_images` and its scikit-learn face :class:`ImageLoader` are the only
places where file paths become pixels. Every other step takes arrays.
:func:`save_model` / :func:`load_model` write and read fitted models as skops files
(never pickles), trusting only the classes of cvfeat, scikit-learn, numpy, scipy and
XGBoost unless told otherwise.

How a file is read
------------------
1. The *header* is parsed with Pillow (which reads only the header, not the
   pixels) to learn the format and the size; an image with more than
   ``max_pixels`` pixels is refused here, before the rest of the file is read
   and before any pixel is decoded (decompression bombs).
2. The file structure is checked for truncation, which some OpenCV versions
   let through with only a warning and a half-grey image: a JPEG must reach its
   end-of-image marker (FFD9) after its last scan, a PNG must have complete
   chunks up to IEND, a BMP must hold all its pixel rows, a WebP its full RIFF
   payload. Other formats (TIFF, PPM, ...) are decoded once more by Pillow in
   strict mode, which fails on truncated data.
3. OpenCV decodes the pixels (``cv2.imdecode``, EXIF orientation applied),
   BGR is turned into RGB (or into grey, see ``color``) and the image is resized
   if ``size`` is given.

Source images: grey files are replicated to RGB (or read as grey); an alpha
channel is dropped, not composited; 16-bit and floating-point files
(16-bit PNG/TIFF, EXR, HDR) are refused with an error, because cvfeat will not
guess how to map them to 0-255. Formats must be identified by Pillow and
decoded by OpenCV (JPEG, PNG, BMP, WebP, TIFF, PPM/PGM, ...).
"""

from __future__ import annotations

import os
import re
import struct
from io import BytesIO
from numbers import Integral
from pathlib import Path

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.parallel import Parallel, delayed

from ._mixins import ImageOutputMixin

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLoader",
    "ImageReadError",
    "UntrustedModelError",
    "load_model",
    "read_images",
    "save_model",
]

#: Default limit on the pixels (height x width) of one image: 50 megapixels,
#: i.e. 150 MB once decoded as RGB. Larger files are refused before decoding;
#: pass a larger ``max_pixels`` (or None) to read them anyway.
DEFAULT_MAX_PIXELS = 50_000_000

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_COLORS = ("rgb", "gray")

_PARAMS = {
    "size": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
    "color": [StrOptions(set(_COLORS))],
    "interpolation": [StrOptions(set(_INTERPOLATION))],
    "max_pixels": [None, Interval(Integral, 1, None, closed="left")],
    "n_jobs": [None, Integral],
}


class ImageReadError(OSError, ValueError):
    """A file could not be read as an image; the message names the file.

    Subclasses both :class:`OSError` and :class:`ValueError`, so either catches it.
    ``path`` holds the offending file.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path

    def __str__(self):
        return self.args[0]


class ImageTooLargeError(ImageReadError):
    """The image header announces more pixels than ``max_pixels`` allows."""


# --------------------------------------------------------------------------------------
# Argument handling
# --------------------------------------------------------------------------------------
def _check_size(size, where="read_images"):
    """``None``, an int ``s`` (-> ``(s, s)``) or ``(h, w)`` of positive ints."""
    if size is None:
        return None
    if isinstance(size, Integral) and not isinstance(size, bool):
        return (int(size), int(size))
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(
        f"{where}: size must be None, a positive int or a (height, width) pair of positive "
        f"ints; got {size!r}."
    )


def _as_path_list(paths, where):
    """Turn a list / tuple / 1-D array / Series of str or PathLike into a list of str."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{where}: expected a list of file paths, got a single path {paths!r}; wrap it in "
            "a list: [path]."
        )
    if isinstance(paths, np.ndarray):
        arr = paths
    else:
        try:
            arr = np.empty(len(paths), dtype=object)
            arr[:] = list(paths.values if hasattr(paths, "values") else paths)
        except TypeError as exc:
            raise TypeError(
                f"{where}: expected a list of file paths, got {type(paths).__name__}."
            ) from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{where}: expected a 1-D list of file paths; got an array of shape {arr.shape}. "
            "Images already in memory need no loader: pass the array to the next step."
        )
    if len(arr) == 0:
        raise ValueError(f"{where}: got an empty list of paths; pass at least one file.")
    out = []
    for i, p in enumerate(arr.tolist()):
        if isinstance(p, (str, os.PathLike)):
            out.append(os.fspath(p))
        else:
            raise TypeError(
                f"{where}: item {i} of the paths is a {type(p).__name__} ({p!r}), not a str "
                "or pathlib.Path. Pass file paths; images already in memory need no loader."
            )
    return out


#: the files taken from a folder of images (``image_files``; searched recursively)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder):
    """The image files under ``folder`` (by :data:`IMAGE_SUFFIXES`, recursively), sorted;
    an empty list if there are none."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------------------
# Truncation checks (cheap: they read markers, not pixels)
# --------------------------------------------------------------------------------------
# A JPEG marker inside entropy-coded data: FF followed by anything but a stuffed 00,
# a restart marker D0-D7 or a fill byte FF.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_complete(data):
    """True when the JPEG segments are complete up to the EOI (FFD9) after the last scan.

    Segments are skipped by their lengths (so an EXIF thumbnail, which has its own
    EOI, is skipped as a whole); after a scan (SOS, FFDA) the next real marker is
    searched. Bytes after EOI are allowed.
    """
    n = len(data)
    pos = 2  # after SOI
    while True:
        if pos + 1 >= n:
            return False
        if data[pos] != 0xFF:
            # Stray bytes between segments (libjpeg tolerates them): find the next marker.
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                return False
            pos = m.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return True
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
            continue
        if pos + 4 > n:
            return False
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > n:
            return False
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            m = _JPEG_MARKER.search(data, end)
            if m is None:
                return False
            pos = m.start()
        else:
            pos = end


def _png_complete(data):
    """True when every PNG chunk is complete up to and including IEND."""
    n = len(data)
    pos = 8  # signature
    while pos + 12 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > n:
            return False
        if ctype == b"IEND":
            return True
    return False


def _bmp_complete(data):
    """True when an uncompressed BMP holds all its pixel rows (RLE: the declared size)."""
    try:
        offset = struct.unpack_from("<I", data, 10)[0]
        header = struct.unpack_from("<I", data, 14)[0]
        if header == 12:  # OS/2 BITMAPCOREHEADER
            w, h, _, bpp = struct.unpack_from("<HHHH", data, 18)
            compression = 0
        else:
            w, h, _, bpp, compression, image_size = struct.unpack_from("<iiHHII", data, 18)
    except struct.error:
        return False
    if compression in (0, 3, 6):  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS
        needed = offset + ((bpp * abs(w) + 31) // 32) * 4 * abs(h)
    else:  # RLE, embedded JPEG/PNG: trust the size field of the header
        needed = offset + image_size
    return len(data) >= needed


def _webp_complete(data):
    """True when the RIFF container holds the payload its header announces."""
    return len(data) >= 8 + int.from_bytes(data[4:8], "little")


_STRUCTURE_CHECKS = {
    "JPEG": _jpeg_complete,
    "MPO": _jpeg_complete,
    "PNG": _png_complete,
    "BMP": _bmp_complete,
    "WEBP": _webp_complete,
}

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


# --------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------
def _read_header(f, path, max_pixels):
    """Format and (width, height) from the header only; refuse images over max_pixels.

    ``f`` is the open file: Pillow reads the header from it, not the pixel data.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:  # a file object passed in stays open
            fmt, (width, height) = im.format, im.size
    except Image.DecompressionBombError as exc:
        # Pillow's own limit (2 * PIL.Image.MAX_IMAGE_PIXELS) fired before ours could.
        m = _BOMB_PIXELS.search(str(exc))
        pixels = int(m.group(1)) if m else None
        if max_pixels is not None and (pixels is None or pixels > max_pixels):
            raise ImageTooLargeError(
                f"{path}: the header announces {pixels} pixels, more than max_pixels="
                f"{max_pixels}; refused before decoding (possible decompression bomb). "
                "Pass a larger max_pixels if you trust this file.",
                path,
            ) from exc
        raise ImageTooLargeError(
            f"{path}: Pillow refuses to open this image ({exc}). To read it anyway, raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels.",
            path,
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageReadError(
            f"{path}: not a readable image file (cannot identify its format: {exc}). "
            "Check the file, or remove it from the list.",
            path,
        ) from exc
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: the image is {width}x{height} = {width * height} pixels, more than "
            f"max_pixels={max_pixels}; refused before decoding (possible decompression "
            "bomb). Pass a larger max_pixels if you trust this file.",
            path,
        )
    return fmt, width, height


def _check_complete(data, fmt, path):
    check = _STRUCTURE_CHECKS.get(fmt)
    if check is not None:
        complete = check(data)
        reason = f"the {fmt} data stops before its end marker"
    else:
        from PIL import Image

        try:
            with Image.open(BytesIO(data)) as im:
                im.load()  # strict: ImageFile.LOAD_TRUNCATED_IMAGES is False by default
            complete, reason = True, ""
        except (OSError, ValueError, SyntaxError, struct.error) as exc:
            complete, reason = False, f"Pillow: {exc}"
    if not complete:
        raise ImageReadError(
            f"{path}: the {fmt} file is truncated or corrupt ({reason}); re-download or "
            "re-export it, or remove it from the list.",
            path,
        )


def _read_one(path, size, color, interpolation, max_pixels):
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such image file (working directory {os.getcwd()}). Check the path."
        ) from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, not an image file.", path) from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc}).", path) from exc
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageReadError(f"{path}: the file is empty (0 bytes), not an image.", path)
        # the header first: a huge or hostile file is refused before it is read whole
        fmt, _, _ = _read_header(f, path, max_pixels)
        try:
            f.seek(0)
            data = f.read()
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read the file ({exc}).", path) from exc
    _check_complete(data, fmt, path)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:
        img, detail = None, f": {exc}"
    else:
        detail = ""
    if img is None:
        raise ImageReadError(
            f"{path}: OpenCV could not decode this {fmt} file{detail}. Convert it to PNG or "
            "JPEG, or remove it from the list.",
            path,
        )
    if img.dtype != np.uint8:
        raise ImageReadError(
            f"{path}: the image has {img.dtype} pixels (a 16-bit or floating-point file); "
            "cvfeat reads 8-bit images only and does not guess a conversion. Convert the "
            "file to 8 bits, or read it yourself and pass uint8 (0-255) or float in [0, 1].",
            path,
        )
    code = cv2.COLOR_BGR2GRAY if color == "gray" else cv2.COLOR_BGR2RGB
    img = cv2.cvtColor(img, code)
    if size is not None and img.shape[:2] != size:
        img = cv2.resize(img, (size[1], size[0]), interpolation=_INTERPOLATION[interpolation])
    return img


def _read_or_error(path, *args):
    try:
        return _read_one(path, *args), None
    except (OSError, ValueError) as exc:  # ImageReadError is both
        return None, exc


#: At most this many files per parallel task: a task is a chunk of files, not one
#: file, so a cluster back-end gets few tasks; small enough to balance the workers.
FILES_PER_TASK = 32


def _read_chunk(paths, *args):
    """``(image, error)`` for each file of one chunk; run by a joblib task, so it
    returns what it read (the task may run in another process)."""
    return [_read_or_error(p, *args) for p in paths]


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
@validate_params(
    {"paths": "no_validation", **_PARAMS},
    prefer_skip_nested_validation=True,
)
def read_images(
    paths,
    size=None,
    color="rgb",
    interpolation="area",
    max_pixels=DEFAULT_MAX_PIXELS,
    n_jobs=None,
):
    """Read image files into a batch of uint8 images.

    Parameters
    ----------
    paths : list, tuple, 1-D ndarray or Series of str or pathlib.Path, length n
        The files to read (JPEG, PNG, BMP, WebP, TIFF, PPM, ...).
    size : None, int or (height, width), default=None
        Resize every image to this size with OpenCV (``cv2.resize``); an int
        ``s`` means ``(s, s)``. None keeps the file's size.
    color : {'rgb', 'gray'}, default='rgb'
        ``'rgb'``: (h, w, 3) RGB images (grey files are replicated to three
        channels). ``'gray'``: (h, w) luma, OpenCV's ``cvtColor`` weights
        0.299 R + 0.587 G + 0.114 B. Alpha channels are dropped.
    interpolation : {'area', 'linear', 'nearest', 'cubic', 'lanczos'}, default='area'
        OpenCV interpolation for ``size``; ``'area'`` is right for shrinking.
        Colour conversion happens before the resize.
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS (50,000,000)
        Refuse any image whose header announces more than ``height * width``
        pixels, before decoding it. None: no cvfeat limit. Pillow, which reads
        the header, has its own limits: it warns above
        ``PIL.Image.MAX_IMAGE_PIXELS`` (about 89 M) and refuses above twice that.
    n_jobs : int or None, default=None
        Parallel tasks reading chunks of files (joblib threads by default, -1 = all
        cores; ``joblib.parallel_config`` selects another back-end, e.g. Dask).

    Returns
    -------
    X : (n, h, w, 3) or (n, h, w) uint8 ndarray, or list of n such images
        An ndarray when ``size`` is given or all files have the same size; a
        list of (h_i, w_i[, 3]) arrays otherwise (ragged batch).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ImageReadError
        A file is not an image, is truncated or corrupt, is 16-bit or float,
        or is larger than ``max_pixels`` (:class:`ImageTooLargeError`). It is
        both an OSError and a ValueError.

    All files are tried before an error is raised: the message names the
    first failing file and counts (and lists up to five of) the others.

    See Also
    --------
    ImageLoader : the same as a scikit-learn transformer (first step of a Pipeline).
    cvfeat.datasets.load_image_folder : read an ``images/`` + ``labels.csv`` folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import cv2, numpy as np
    >>> from cvfeat.io import read_images
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> bgr = np.zeros((4, 6, 3), np.uint8); bgr[..., 2] = 255  # red in OpenCV's BGR
    >>> cv2.imwrite(str(d / "red.png"), bgr)
    True
    >>> X = read_images([d / "red.png", d / "red.png"])
    >>> X.shape, X.dtype, X[0, 0, 0].tolist()
    ((2, 4, 6, 3), dtype('uint8'), [255, 0, 0])
    >>> read_images([d / "red.png"], size=(2, 3), color="gray").shape
    (1, 2, 3)
    """
    paths = _as_path_list(paths, "read_images")
    size = _check_size(size)
    args = (size, color, interpolation, max_pixels)
    from joblib import effective_n_jobs

    workers = effective_n_jobs(n_jobs)
    if len(paths) == 1 or workers == 1:
        results = _read_chunk(paths, *args)
    else:
        per = max(1, min(FILES_PER_TASK, -(-len(paths) // workers)))
        parts = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(_read_chunk)(paths[a : a + per], *args) for a in range(0, len(paths), per)
        )
        results = [r for part in parts for r in part]
    errors = [(i, e) for i, (_, e) in enumerate(results) if e is not None]
    if errors:
        i, first = errors[0]
        msg = f"{first} (file {i} of the list)"
        if len(errors) > 1:
            others = ", ".join(paths[j] for j, _ in errors[1:6])
            more = " ..." if len(errors) > 6 else ""
            msg += f"; {len(errors) - 1} more file(s) failed too: {others}{more}"
        if isinstance(first, ImageReadError):
            raise type(first)(msg, first.path) from first
        raise type(first)(msg) from first
    images = [img for img, _ in results]
    if len({img.shape for img in images}) == 1:
        return np.stack(images)
    return images


class ImageLoader(ImageOutputMixin, TransformerMixin, BaseEstimator):
    """Read image files: the first step of a Pipeline that starts from paths.

    ``transform`` maps a list of n file paths to an image batch (see
    :func:`read_images`, which it calls). The loader is stateless: ``fit``
    only validates the parameters, and ``transform`` works without ``fit``.

    Parameters
    ----------
    size : None, int or (height, width), default=None
        Resize every image with OpenCV; None keeps the files' sizes (then
        differently sized files give a list of images).
    color : {'rgb', 'gray'}, default='rgb'
        RGB (h, w, 3) or grey (h, w) output; alpha channels are dropped.
    interpolation : {'area', 'linear', 'nearest', 'cubic', 'lanczos'}, default='area'
        OpenCV interpolation used when ``size`` is given.
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS (50,000,000)
        Refuse images whose header announces more pixels, before decoding.
    n_jobs : int or None, default=None
        Parallel tasks reading chunks of files (joblib; see :func:`read_images`).

    See Also
    --------
    read_images : the function behind ``transform``.
    cvfeat.datasets.load_image_folder : read an ``images/`` + ``labels.csv`` folder.

    Notes
    -----
    The output is images, not a feature table: there are no feature names, and
    ``set_output`` is accepted (so ``Pipeline.set_output`` works) but has no
    effect on this step.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import cv2, numpy as np
    >>> from cvfeat.io import ImageLoader
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     _ = cv2.imwrite(str(d / f"{i}.png"), np.full((10, 12, 3), 40 * i, np.uint8))
    >>> loader = ImageLoader(size=(8, 8), color="gray")
    >>> X = loader.fit_transform(sorted(d.glob("*.png")))
    >>> X.shape, X.dtype, X[:, 0, 0].tolist()
    ((3, 8, 8), dtype('uint8'), [0, 40, 80])
    """

    _parameter_constraints = dict(_PARAMS)

    def __init__(
        self,
        size=None,
        color="rgb",
        interpolation="area",
        max_pixels=DEFAULT_MAX_PIXELS,
        n_jobs=None,
    ):
        self.size = size
        self.color = color
        self.interpolation = interpolation
        self.max_pixels = max_pixels
        self.n_jobs = n_jobs

    def fit(self, X=None, y=None):
        """Validate the parameters; nothing is learned.

        Parameters
        ----------
        X : list of n file paths, ignored
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        _check_size(self.size, "ImageLoader")
        return self

    def transform(self, X):
        """Read the files.

        Parameters
        ----------
        X : list, tuple, 1-D ndarray or Series of str or pathlib.Path, length n

        Returns
        -------
        images : (n, h, w, 3) or (n, h, w) uint8 ndarray, or list of n images
            A list only when ``size`` is None and the files differ in size.
        """
        self._validate_params()
        size = _check_size(self.size, "ImageLoader")
        try:
            return read_images(
                _as_path_list(X, "ImageLoader"),
                size=size,
                color=self.color,
                interpolation=self.interpolation,
                max_pixels=self.max_pixels,
                n_jobs=self.n_jobs,
            )
        except ImageReadError as exc:
            raise type(exc)(f"ImageLoader: {exc}", exc.path) from exc
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"ImageLoader: {exc}") from exc

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = []
        return tags


# ----------------------------------------------------------------------------------------
# Model files: skops, never pickle
# ----------------------------------------------------------------------------------------
#: packages whose classes ``load_model`` trusts without being asked
TRUSTED_PACKAGES = ("cvfeat", "sklearn", "numpy", "scipy", "xgboost")


class UntrustedModelError(ValueError):
    """A model file holds types that :func:`load_model` was not told to trust."""


def _known_class(name):
    """True if ``name`` (``module.Class``) is a class of a package in TRUSTED_PACKAGES.

    Functions and other callables of those packages are not trusted this way (a
    file could name e.g. a function that reads or writes files); pass them in
    ``trusted`` when a model needs them (``FunctionTransformer(np.log1p)``).
    """
    import importlib

    module, _, attr = name.rpartition(".")
    if module.split(".")[0] not in TRUSTED_PACKAGES or not attr:
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and not issubclass(obj, BaseException)


def save_model(estimator, path):
    """Write a fitted estimator or pipeline to a ``.skops`` file (no pickle).

    Parameters
    ----------
    estimator : estimator
        Any cvfeat step, micro-CNN or hybrid (torch weights stored as arrays), or a
        pipeline mixing them with scikit-learn and XGBoost steps.
    path : str or path-like
        Must end in ``.skops``. Written to a temporary name in the same folder, then
        renamed: a reader never sees a partial file.

    Returns
    -------
    path : pathlib.Path

    See Also
    --------
    load_model
    """
    from pathlib import Path

    skio = _import_skops("save_model")
    path = Path(path)
    if path.suffix != ".skops":
        raise ValueError(f"save_model: {str(path)!r} does not end in .skops; model files are "
                         "skops files (e.g. 'model.skops').")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        skio.dump(estimator, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_model(path, trusted=None):
    """Read a model written by :func:`save_model`, trusting only known types.

    Parameters
    ----------
    path : str or path-like
        A ``.skops`` file.
    trusted : list of str, optional
        More type names to trust (``'package.module.Name'``), beyond the classes of
        cvfeat, scikit-learn, numpy, scipy and XGBoost. Only for files whose author
        you trust: a trusted name can be called while the file is read.

    Returns
    -------
    estimator

    Raises
    ------
    UntrustedModelError
        The file names a type outside that set; the message lists them and says how
        to trust them.
    ValueError
        The file is not a skops file (a pickle, say).
    """
    from pathlib import Path

    from .runtime import file_kind

    skio = _import_skops("load_model")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_model: no such file: {str(path)!r}")
    kind = file_kind(path)
    if kind != "skops":
        raise ValueError(
            f"load_model: {str(path)!r} is not a skops model file (skops files are zip "
            "archives)" + (
                "; it looks like a pickle. Loading a pickle can run any code it carries, so "
                "cvfeat does not; re-save the model with cvfeat.io.save_model from a Python "
                "session you trust." if kind == "pickle" else "."))
    try:
        names = skio.get_untrusted_types(file=path)
    except Exception as exc:  # zipfile.BadZipFile, a missing schema entry, bad JSON...
        raise ValueError(
            f"load_model: {str(path)!r} is not a valid skops model file (corrupt or "
            f"truncated: {type(exc).__name__}: {exc}); save it again with "
            "cvfeat.io.save_model."
        ) from None
    extra = set(trusted or ())
    unknown = sorted(t for t in names if t not in extra and not _known_class(t))
    if unknown:
        raise UntrustedModelError(
            f"load_model: {str(path)!r} holds types that cvfeat does not trust: "
            f"{', '.join(unknown)}. Loading would let the file call them. If you trust the "
            f"file's author, pass them: load_model(path, trusted={unknown!r}) (command line: "
            f"--trust {' --trust '.join(unknown)})."
        )
    return skio.load(path, trusted=names)


def _import_skops(where):
    try:
        import skops.io as skio
    except ImportError as exc:  # pragma: no cover - skops is a dependency
        raise ImportError(f"{where} needs skops: pip install skops") from exc
    return skio
