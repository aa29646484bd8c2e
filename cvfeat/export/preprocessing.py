"""ONNX converters of the image -> image steps of :mod:`cvfeat.preprocessing`.

:class:`~cvfeat.preprocessing.Resize`
    OpenCV's ``cv2.resize`` re-implemented from its definition (OpenCV 5,
    ``modules/imgproc/src/resize.cpp``), every case bit-exact on uint8 and float32
    images (tested against ``cv2.resize`` itself):

    * ``'area'`` when both sides shrink (or keep their size), uint8 with integer
      factors (OpenCV's "fast area" path): block sums (exact integers), then
      ``floor((s + 2) / 4)`` for 2 x 2 blocks and ``round_half_even(s * float32(1 /
      area))`` otherwise, as OpenCV's integer / float code does;
    * ``'area'`` otherwise when both sides shrink: OpenCV's area table (each output
      pixel a weighted sum of the source pixels its cell overlaps, float32 weights);
      the graph repeats OpenCV's float32 multiply-and-add in OpenCV's order, columns
      first, one ``Gather``/``Mul``/``Add`` per tap (at most ``ceil(scale) + 1`` taps),
      then ``Round`` (half to even, as ``cvRound``), ``Clip`` and ``Cast`` for uint8;
    * ``'linear'``, and ``'area'`` when a side grows (OpenCV then runs its bilinear
      code with the "area" coefficients): two taps per axis, source indices clamped to
      the image (edge replication). Float images: ``x0 * a0 + x1 * a1`` per axis.
      uint8 images: OpenCV's fixed-point arithmetic in int32 -- coefficients
      ``round(a * 2048)``, ``S = p0 a0 + p1 a1`` per row, then
      ``((b0 (S0 >> 4)) >> 16) + ((b1 (S1 >> 4)) >> 16) + 2) >> 2`` (``Div`` by powers
      of two, all values non-negative so truncation is the shift).

    Output ``[N, h, w(, 3)]`` of the input's element type (uint8 stays uint8).

:class:`~cvfeat.preprocessing.Grayscale`
    uint8: ``(9798 R + 19235 G + 3735 B + 2**14) >> 15`` in int32 (Cast, Mul, Add,
    ``Div`` by ``2**15``), equal to ``cv2.cvtColor(COLOR_RGB2GRAY)`` for all
    ``2**24`` colours; float: ``0.299 R + 0.587 G + 0.114 B`` in the input dtype, in
    numpy's operation order (bit-exact). Grey input passes through (Identity).

:class:`~cvfeat.preprocessing.ColorConvert`
    ``'hsv'`` / ``'lab'``: the graph helpers of :mod:`cvfeat.export.color` (the same
    operation sequence as :mod:`cvfeat._color`), then the per-channel scaling to
    [0, 1] of ``ColorConvert`` (Sub, Div), Concat on the channel axis; output float32
    (float64 for float64 input). ``'gray'``: as ``Grayscale``.

Inputs ``[N, H, W]`` or ``[N, H, W, 3]``, uint8 / float32 / float64, ``N`` dynamic;
``Resize`` needs ``H`` and ``W`` fixed (its weights depend on them).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _color
from ..preprocessing import ColorConvert, Grayscale, Resize
from ._ops import Graph, image_input

__all__ = [
    "area_taps",
    "linear_taps",
    "register",
    "resize_plan",
    "rgb_to_gray",
]

# OpenCV's fixed-point resize: INTER_RESIZE_COEF_BITS = 11
_COEF_SCALE = 2048


# -- the weights, from OpenCV's definition -------------------------------------------


def _scale(ssize, dsize):
    """OpenCV's ``scale = 1 / inv_scale`` with ``inv_scale = dsize / ssize`` (double)."""
    return 1.0 / (dsize / ssize)


def area_taps(ssize, dsize):
    """OpenCV's area table (``computeResizeAreaTab``) for one axis.

    Returns
    -------
    index : (T, dsize) int64 ndarray
        Source index of tap ``t`` of each output pixel, taps in OpenCV's order
        (increasing source index); unused taps repeat the last index.
    alpha : (T, dsize) float32 ndarray
        Weight of each tap (0 for unused taps, which add an exact zero).
    """
    scale = _scale(ssize, dsize)
    entries = []
    for dx in range(dsize):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, ssize - fsx1)
        sx1, sx2 = math.ceil(fsx1), math.floor(fsx2)
        sx2 = min(sx2, ssize - 1)
        sx1 = min(sx1, sx2)
        taps = []
        if sx1 - fsx1 > 1e-3:
            taps.append((sx1 - 1, (sx1 - fsx1) / cell))
        taps.extend((sx, 1.0 / cell) for sx in range(sx1, sx2))
        if fsx2 - sx2 > 1e-3:
            taps.append((sx2, min(min(fsx2 - sx2, 1.0), cell) / cell))
        entries.append(taps)
    n_taps = max(len(t) for t in entries)
    index = np.zeros((n_taps, dsize), np.int64)
    alpha = np.zeros((n_taps, dsize), np.float32)
    for dx, taps in enumerate(entries):
        for t, (sx, a) in enumerate(taps):
            index[t, dx] = sx
            alpha[t, dx] = a
        index[len(taps):, dx] = taps[-1][0]
    return index, alpha


def linear_taps(ssize, dsize, area_mode):
    """OpenCV's two-tap coefficients (bilinear, or INTER_AREA when enlarging).

    Returns
    -------
    index : (2, dsize) int64 ndarray
        Source indices ``floor(x)`` and ``floor(x) + 1``, clamped to the image (OpenCV 5
        replicates the edge rows instead of zeroing the fraction there).
    alpha : (2, dsize) float32 ndarray
        ``1 - f`` and ``f``.
    """
    scale = _scale(ssize, dsize)
    inv = dsize / ssize
    index = np.zeros((2, dsize), np.int64)
    frac = np.zeros(dsize, np.float64)
    for dx in range(dsize):
        if area_mode:
            sx = math.floor(dx * scale)
            f = float(np.float32((dx + 1) - (sx + 1) * inv))
            f = 0.0 if f <= 0 else f - math.floor(f)
        else:
            fx = (dx + 0.5) * scale - 0.5
            sx = math.floor(fx)
            f = fx - sx
        index[:, dx] = np.clip([sx, sx + 1], 0, ssize - 1)
        frac[dx] = f
    f32 = frac.astype(np.float32)
    return index, np.stack([np.float32(1) - f32, f32])


def resize_plan(src, dst, interpolation, dtype):
    """How OpenCV resizes ``src`` ``(h, w)`` to ``dst`` ``(h, w)``.

    Returns
    -------
    kind : {'copy', 'area_fast', 'area', 'linear'}
    axes : tuple
        Per axis (rows, columns): ``(index, alpha)`` from :func:`area_taps` /
        :func:`linear_taps`, or for 'area_fast' the integer factor.
    """
    (sh, sw), (dh, dw) = src, dst
    if (sh, sw) == (dh, dw):
        return "copy", ()
    sy, sx = _scale(sh, dh), _scale(sw, dw)
    if interpolation == "area" and sx >= 1 and sy >= 1:
        iy, ix = round(sy), round(sx)
        fast = abs(sx - ix) < np.finfo(float).eps and abs(sy - iy) < np.finfo(float).eps
        if fast and np.dtype(dtype) == np.uint8:
            return "area_fast", (iy, ix)
        return "area", (area_taps(sh, dh), area_taps(sw, dw))
    area_mode = interpolation == "area"
    return "linear", (linear_taps(sh, dh, area_mode), linear_taps(sw, dw, area_mode))


# -- shared input checks -------------------------------------------------------------


def _input_layout(operator):
    """(height, width, channels, numpy dtype) of an image step's input."""
    inp = image_input(operator, check_fit=False)
    if len(inp.shape) == 4 and inp.channels != 3:
        raise ValueError(
            f"{inp.where}: input shape {inp.shape} is not an image batch; expected [N, H, W] "
            "(grey) or [N, H, W, 3] (RGB)."
        )
    return inp.h, inp.w, inp.channels, inp.dtype


def _tensor_type(dtype, shape):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, UInt8TensorType

    kinds = {np.uint8: UInt8TensorType, np.float32: FloatTensorType, np.float64: DoubleTensorType}
    return kinds[np.dtype(dtype).type](shape)


def _first_dim(operator):
    return operator.inputs[0].get_first_dimension()


# -- Resize --------------------------------------------------------------------------


def _resize_size(operator):
    est = operator.raw_operator
    est._check_params()
    h, w, channels, dtype = _input_layout(operator)
    if h is None or w is None:
        raise ValueError(
            f"Resize (ONNX export): the input size must be fixed in the graph, got "
            f"{operator.inputs[0].type.shape}; its interpolation weights depend on it. "
            "cvfeat.export.to_onnx fixes it from X_sample."
        )
    return (h, w), tuple(int(s) for s in est.size), channels, dtype


def resize_shape_calculator(operator):
    """Output ``[N, size[0], size[1](, 3)]`` of the input's element type."""
    _, (dh, dw), channels, dtype = _resize_size(operator)
    shape = [_first_dim(operator), dh, dw] + ([3] if channels == 3 else [])
    operator.outputs[0].type = _tensor_type(dtype, shape)


def _taps(g, x, index, alpha, ndim, dtype, shift=None):
    """OpenCV's sequential weighted sum ``sum_t x[index_t] * alpha_t`` along axis 0.

    The resized axis is kept first so that each Gather copies whole contiguous slabs.
    ``shift``: integer path, each term is divided by ``2**shift`` (``>> shift``).
    """
    bshape = [-1] + [1] * (ndim - 1)
    acc = None
    for t, idx in enumerate(index):
        term = g.op("Mul", g.op("Gather", x, g.const(idx, np.int64), axis=0),
                    g.const(alpha[t].astype(dtype).reshape(bshape)))
        if shift is not None:
            term = g.op("Div", term, g.const(np.int32(1 << shift)))
        acc = term if acc is None else g.op("Add", acc, term)
    return acc


def resize_converter(scope, operator, container):
    """``cv2.resize`` (INTER_AREA / INTER_LINEAR), bit-exact; see the module docstring."""
    g = Graph(scope, operator, container)
    est = operator.raw_operator
    src, dst, channels, dtype = _resize_size(operator)
    x, out = operator.inputs[0].full_name, operator.outputs[0].full_name
    ndim = 3 if channels == 1 else 4
    kind, axes = resize_plan(src, dst, est.interpolation, dtype)
    if kind == "copy":
        g.identity(x, out)
        return
    if kind == "area_fast":
        # block sums of integers (< 2**24: exact in float32 in any order), then OpenCV's
        # rounding: (s + 2) >> 2 for 2 x 2 blocks, cvRound(s * float(1 / area)) otherwise
        (fy, fx), (dh, dw) = axes, dst
        blocks = g.reshape(g.cast(x, np.float32), [-1, dh, fy, dw, fx] + [3] * (channels == 3))
        s = g.reduce("ReduceSum", blocks, [2, 4])
        if (fy, fx) == (2, 2):
            v = g.op("Floor", g.op("Mul", g.op("Add", s, g.const(np.float32(2))),
                                   g.const(np.float32(0.25))))
        else:
            v = g.op("Round", g.op("Mul", s, g.const(np.float32(1.0 / (fy * fx)))))
        g.op("Cast", v, to=_onnx_uint8(), out=out)
        return
    (iy, ay), (ix, ax) = axes
    rest = [3] if channels == 3 else []
    # [N, H, W(, C)] -> [W, H, N(, C)]: columns first (as OpenCV), then rows
    to_cols = [2, 1, 0] + rest
    cols_to_rows = [1, 0, 2] + rest
    to_out = [2, 0, 1] + rest
    xt = g.op("Transpose", x, perm=to_cols)
    if kind == "area" or dtype != np.uint8:
        work = np.dtype(np.float32 if dtype == np.uint8 else dtype)
        if dtype == np.uint8:
            xt = g.cast(xt, np.float32)
        v = _taps(g, xt, ix, ax, ndim, work)                          # [w, H, N(, C)]
        v = _taps(g, g.op("Transpose", v, perm=cols_to_rows), iy, ay, ndim, work)
        v = g.op("Transpose", v, perm=to_out)
        if dtype == np.uint8:  # saturate_cast<uchar>: cvRound (half to even), clamp
            v = g.op("Clip", g.op("Round", v), g.const(np.float32(0)), g.const(np.float32(255)))
            g.op("Cast", v, to=_onnx_uint8(), out=out)
        else:
            g.identity(v, out)
        return
    # uint8 bilinear: OpenCV's fixed-point arithmetic in int32 (coefficients * 2048)
    a_fix = np.round(ax * np.float32(_COEF_SCALE)).astype(np.int32)
    b_fix = np.round(ay * np.float32(_COEF_SCALE)).astype(np.int32)
    rows = _taps(g, g.cast(xt, np.int32), ix, a_fix, ndim, np.int32)  # S = p0 a0 + p1 a1
    rows = g.op("Div", rows, g.const(np.int32(16)))                    # S >> 4
    rows = g.op("Transpose", rows, perm=cols_to_rows)
    v = _taps(g, rows, iy, b_fix, ndim, np.int32, shift=16)            # sum (b S) >> 16
    v = g.op("Div", g.op("Add", v, g.const(np.int32(2))), g.const(np.int32(4)))
    g.op("Cast", g.op("Transpose", v, perm=to_out), to=_onnx_uint8(), out=out)


def _onnx_uint8():
    from onnx import TensorProto

    return TensorProto.UINT8


# -- Grayscale and ColorConvert ------------------------------------------------------


def _channels(g, x):
    """The three channel tensors ``[N, H, W]`` of an ``[N, H, W, 3]`` tensor."""
    return [g.op("Gather", x, g.const(np.int64(i)), axis=3) for i in range(3)]


def rgb_to_gray(g, x, dtype):
    """:func:`cvfeat._color.rgb_to_gray` on an ``[N, H, W, 3]`` tensor; returns ``[N, H, W]``.

    uint8: OpenCV's fixed point in int32, then uint8; float: the input dtype.
    """
    if np.dtype(dtype) == np.uint8:
        r, gg, b = _channels(g, g.cast(x, np.int32))
        wr, wg, wb = (g.const(np.int32(w)) for w in _color._GRAY_FIXED)
        acc = g.op("Add", g.op("Add", g.op("Mul", r, wr), g.op("Mul", gg, wg)),
                   g.op("Mul", b, wb))
        acc = g.op("Add", acc, g.const(np.int32(1 << (_color._GRAY_SHIFT - 1))))
        return g.cast(g.op("Div", acc, g.const(np.int32(1 << _color._GRAY_SHIFT))), np.uint8)
    dt = np.dtype(dtype).type
    r, gg, b = _channels(g, x)
    wr, wg, wb = (g.const(dt(w)) for w in _color._GRAY_FLOAT)
    return g.op("Add", g.op("Add", g.op("Mul", r, wr), g.op("Mul", gg, wg)), g.op("Mul", b, wb))


def _gray_shape(operator, space="gray"):
    h, w, channels, dtype = _input_layout(operator)
    shape = list(operator.inputs[0].type.shape)
    if space == "gray":
        operator.outputs[0].type = _tensor_type(dtype, shape[:3])
        return
    if channels == 1:
        raise ValueError(
            f"ColorConvert(space={space!r}) (ONNX export): the input {shape} is grey; a grey "
            "image has no hue or chroma. Use ColorConvert(space='gray') or RGB input."
        )
    out = np.float64 if dtype == np.float64 else np.float32
    operator.outputs[0].type = _tensor_type(out, shape)


def grayscale_shape_calculator(operator):
    """Output ``[N, H, W]`` of the input's element type."""
    _gray_shape(operator)


def grayscale_converter(scope, operator, container):
    """RGB -> grey with OpenCV's weights; grey input passes through."""
    g = Graph(scope, operator, container)
    _, _, channels, dtype = _input_layout(operator)
    x, out = operator.inputs[0].full_name, operator.outputs[0].full_name
    g.identity(x if channels == 1 else rgb_to_gray(g, x, dtype), out)


def colorconvert_shape_calculator(operator):
    """'gray': ``[N, H, W]`` of the input dtype; 'hsv'/'lab': ``[N, H, W, 3]`` float."""
    est = operator.raw_operator
    est._validate_params()
    _gray_shape(operator, est.space)


def colorconvert_converter(scope, operator, container):
    """:meth:`ColorConvert.transform` (``cvfeat._color`` then scaling to [0, 1])."""
    from . import color as _graph_color  # the ColorHistogram converter's colour helpers

    g = Graph(scope, operator, container)
    est = operator.raw_operator
    _, _, channels, dtype = _input_layout(operator)
    x, out = operator.inputs[0].full_name, operator.outputs[0].full_name
    if est.space == "gray":
        g.identity(x if channels == 1 else rgb_to_gray(g, x, dtype), out)
        return
    xf, dt = _graph_color.to_float(g, x, dtype)
    convert = _graph_color.rgb_to_hsv if est.space == "hsv" else _graph_color.rgb_to_lab
    chans = convert(g, *_channels(g, xf), dt)
    scaled = []
    for ch, (lo, hi) in zip(chans, _color.CHANNEL_RANGES[est.space], strict=True):
        v = g.op("Div", g.op("Sub", ch, g.const(dt.type(lo))), g.const(dt.type(hi - lo)))
        scaled.append(g.op("Unsqueeze", v, g.const(np.array([3], np.int64))))
    g.op("Concat", *scaled, axis=3, out=out)


def register():
    """Register the Resize, Grayscale and ColorConvert converters with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(Resize, "CvfeatResize", resize_shape_calculator,
                                resize_converter)
    update_registered_converter(Grayscale, "CvfeatGrayscale", grayscale_shape_calculator,
                                grayscale_converter)
    update_registered_converter(ColorConvert, "CvfeatColorConvert",
                                colorconvert_shape_calculator, colorconvert_converter)
