"""cvfeat's dense SIFT descriptor, vectorised over a batch of same-size images.

This is the exportable half of :class:`cvfeat.features.SIFTBoW` (``mode='dense'``).
Every step is a standard ONNX operator, so the ONNX converter can rebuild the
same graph node by node:

1. grey = ``0.299 R + 0.587 G + 0.114 B`` in floating point (OpenCV's RGB2GRAY
   weights), uint8 divided by 255 first (``Cast``, ``Div``, ``MatMul``);
2. central differences ``g_x[y, x] = I[y, x+1] - I[y, x-1]`` and
   ``g_y[y, x] = I[y+1, x] - I[y-1, x]`` with the image edge replicated
   (``Pad(mode='edge')``, ``Slice``, ``Sub``); ``y`` points down;
3. magnitude ``|g| = sqrt(g_x^2 + g_y^2)`` (``Mul``, ``Add``, ``Sqrt``);
4. orientation weights for 8 bins ``u_k = (cos k*45deg, sin k*45deg)`` without any
   angle: the gradient is written as a non-negative combination
   ``g = a u_k + b u_{k+1}`` of the two bin directions around it, which for
   every bin is ``r_k = max(0, <u_k, g> - |u_k x g|)`` (``MatMul``, ``Abs``,
   ``Sub``, ``Relu``); the pair is then rescaled to sum to ``|g|``:
   ``w_k = r_k |g| / sum_j r_j`` (``ReduceSum``, ``Max``, ``Div``). The split
   ``b / (a + b)`` differs from linear interpolation in angle by at most 0.0103
   (at 9.3 degrees from a bin), and the weights of a pixel sum to ``|g|``;
5. a regular grid of ``patch_size`` x ``patch_size`` patches, ``step`` pixels
   apart, centred in the image (see :func:`grid_origins`); each patch has 4 x 4
   cells of ``patch_size / 4`` pixels, and each cell sums the weights of its
   pixels per bin (``Gather``, ``ReduceSum``; equivalently a box ``Conv``);
6. the 128 values, ordered ``(cell_row, cell_col, bin)`` as OpenCV's SIFT, are
   normalised like SIFT: L2, clip at 0.2, L2 again (``ReduceL2``, ``Max``,
   ``Div``, ``Min``). A patch without any gradient gives the zero descriptor.

There is no Gaussian window and no trilinear spatial interpolation: each pixel
counts once, in its own cell, with its magnitude.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GREY_WEIGHTS",
    "CLIP",
    "bin_directions",
    "dense_sift",
    "grey_images",
    "grid_origins",
    "normalize_sift",
    "orientation_weights",
]

GREY_WEIGHTS = (0.299, 0.587, 0.114)  # OpenCV COLOR_RGB2GRAY
N_BINS = 8
N_CELLS = 4  # cells per patch side
CLIP = 0.2  # SIFT's clipping threshold after the first L2 normalisation
# Divisor floor in the L2 normalisations: only exactly flat (or ~1e-12) patches
# are affected, and they come out as zero instead of NaN.
_NORM_FLOOR = 1e-12
# Pixels per internal sub-batch: the intermediate maps (8 bins and their cell
# sums) then take a few tens of MB whatever the batch size.
_SUB_BATCH_PIXELS = 1 << 16


def compute_dtype(X):
    """float32 for float32 images, float64 for uint8 and float64 images."""
    return np.float32 if X.dtype == np.float32 else np.float64


def grey_images(X, dtype=None):
    """Grey float images in [0, 1] from a validated (n, h, w[, 3]) batch.

    Parameters
    ----------
    X : (n, h, w) or (n, h, w, 3) ndarray
        uint8 (0-255) or float in [0, 1], RGB.
    dtype : dtype, optional
        Defaults to :func:`compute_dtype` of ``X``.

    Returns
    -------
    grey : (n, h, w) ndarray of ``dtype``
        ``0.299 R + 0.587 G + 0.114 B`` (uint8 divided by 255 first).
    """
    dtype = compute_dtype(X) if dtype is None else dtype
    img = X.astype(dtype)
    if X.dtype == np.uint8:
        img /= 255
    if img.ndim == 4:
        w = np.asarray(GREY_WEIGHTS, dtype=dtype)
        img = img[..., 0] * w[0] + img[..., 1] * w[1] + img[..., 2] * w[2]
    return img


def grid_origins(length, patch_size, step):
    """Top (or left) pixel of each patch along one image axis.

    ``n = (length - patch_size) // step + 1`` patches, ``step`` apart, with the
    leftover ``length - patch_size - (n - 1) * step`` pixels split between the
    two ends (the extra pixel, if odd, at the far end).
    """
    if length < patch_size:
        raise ValueError(f"length {length} is smaller than patch_size {patch_size}")
    n = (length - patch_size) // step + 1
    offset = (length - patch_size - (n - 1) * step) // 2
    return offset + step * np.arange(n)


def bin_directions(dtype=np.float64):
    """(cos, sin) of the 8 bin angles k * 45 degrees, exact 0 and +-1 where due."""
    c = np.sqrt(0.5)
    cos = np.array([1, c, 0, -c, -1, -c, 0, c], dtype=dtype)
    sin = np.array([0, c, 1, c, 0, -c, -1, -c], dtype=dtype)
    return cos, sin


def orientation_weights(grey):
    """Per-pixel weights of the 8 orientation bins (steps 2-4 of the module doc).

    Parameters
    ----------
    grey : (n, h, w) float ndarray

    Returns
    -------
    weights : (n, h, w, 8) ndarray, same dtype
        At most two adjacent non-zero bins per pixel, summing to ``|g|``.
    """
    dtype = grey.dtype.type
    padded = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])[..., None]
    gy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])[..., None]
    cos, sin = bin_directions(dtype)
    proj = gx * cos + gy * sin  # <u_k, g>
    cross = np.abs(gx * sin - gy * cos)  # |u_k x g|
    r = np.maximum(proj - cross, dtype(0))
    magnitude = np.sqrt(gx * gx + gy * gy)
    total = np.maximum(r.sum(axis=-1, keepdims=True), np.finfo(dtype).tiny)
    return r * (magnitude / total)


def normalize_sift(desc):
    """SIFT normalisation along the last axis: L2, clip at 0.2, L2 again.

    A zero descriptor stays zero. Works in place on float arrays and returns them.
    """
    floor = desc.dtype.type(_NORM_FLOOR)
    norm = np.sqrt(np.sum(desc * desc, axis=-1, keepdims=True))
    desc /= np.maximum(norm, floor)
    np.minimum(desc, desc.dtype.type(CLIP), out=desc)
    norm = np.sqrt(np.sum(desc * desc, axis=-1, keepdims=True))
    desc /= np.maximum(norm, floor)
    return desc


def _cell_sums(weights, origins_y, origins_x, cell):
    """(n, ny, nx, 4, 4, 8) sums of ``weights`` over every cell of every patch."""
    n, h, w, nb = weights.shape
    starts_y = (origins_y[:, None] + cell * np.arange(N_CELLS)).ravel()  # (ny*4,)
    starts_x = (origins_x[:, None] + cell * np.arange(N_CELLS)).ravel()
    rows = starts_y[:, None] + np.arange(cell)  # (ny*4, cell)
    cols = starts_x[:, None] + np.arange(cell)
    s = weights[:, rows].sum(axis=2)  # (n, ny*4, w, 8)
    s = s[:, :, cols].sum(axis=3)  # (n, ny*4, nx*4, 8)
    ny, nx = len(origins_y), len(origins_x)
    s = s.reshape(n, ny, N_CELLS, nx, N_CELLS, nb)
    return s.transpose(0, 1, 3, 2, 4, 5)


def dense_sift(grey, patch_size, step):
    """Dense SIFT descriptors of a batch of grey images.

    Parameters
    ----------
    grey : (n, h, w) float ndarray
        Grey images (see :func:`grey_images`), ``h, w >= patch_size``.
    patch_size : int
        Patch side in pixels, a multiple of 4 (cells of ``patch_size // 4``).
    step : int
        Distance between neighbouring patches in pixels.

    Returns
    -------
    descriptors : (n, ny * nx, 128) ndarray, same dtype as ``grey``
        Patches in row-major grid order (``ny = len(grid_origins(h, ...))``),
        values ordered ``(cell_row, cell_col, bin)``, SIFT-normalised.
    """
    n, h, w = grey.shape
    oy = grid_origins(h, patch_size, step)
    ox = grid_origins(w, patch_size, step)
    cell = patch_size // N_CELLS
    out = np.empty((n, len(oy) * len(ox), N_CELLS * N_CELLS * N_BINS), dtype=grey.dtype)
    per = max(1, _SUB_BATCH_PIXELS // (h * w))
    for a in range(0, n, per):
        sums = _cell_sums(orientation_weights(grey[a : a + per]), oy, ox, cell)
        out[a : a + per] = sums.reshape(len(sums), out.shape[1], out.shape[2])
    return normalize_sift(out)
