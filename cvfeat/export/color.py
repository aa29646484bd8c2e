"""ONNX converter of :class:`cvfeat.features.ColorHistogram`.

The graph is the numpy code of :mod:`cvfeat.features.color` and :mod:`cvfeat._color`
operator for operator, in the same working precision and the same order of
operations, so that every pixel lands in the same bin as in numpy (checked on all
2**24 uint8 colours and on 2**24 random float32 / float64 colours, every space):

* uint8 ``p`` -> float32 ``p / 255`` (Cast, Div); float32 stays float32, float64
  stays float64;
* HSV: Max, Min, Sub, Abs, Add, Div, Mul, Equal, Less -- the exact sequence of
  :func:`cvfeat._color.rgb_to_hsv`; ``np.where`` becomes :func:`select`
  (``a * m + b * (1 - m)``, exact for finite values and much faster than ORT's Where);
* Lab: the sRGB gamma (Div, Add, Pow; for uint8 a 256-entry table of numpy's own
  values, Gather), the XYZ matrix (Mul, Add), the cube root (Pow(t, 1/3)) and the
  L, a, b formulas; ``** 2.4`` and the cube root in float64, rounded once to float32,
  exactly as :func:`cvfeat._color.rgb_to_lab` evaluates them;
* bin index ``floor((v - lo) * bins / (hi - lo))`` limited to ``[0, bins - 1]``
  (Sub, Mul, Div, Floor, Clip), the joint index ``(i0 * b + i1) * b + i2``;
* counting: one ``ScatterElements(reduction='add')`` of ones into a zero
  ``(N, n_bins)`` tensor (no one-hot tensor is built); per-channel histograms are
  the marginals of the joint one (ReduceSum) while ``bins**3 <= 4096``;
* normalisation: ReduceSum / Sqrt / Div.

Input ``[N, H, W]`` (grey, ``space='rgb'`` only) or ``[N, H, W, 3]``, uint8 / float32
/ float64; ``H`` and ``W`` may be dynamic. Output ``[N, n_features_out_]`` float32.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .. import _color
from ..features.color import ColorHistogram
from ._ops import Graph, image_input

__all__ = ["converter", "register", "shape_calculator"]

# joint=False with bins**3 up to this: count the joint histogram (one scattered update
# per pixel instead of three) and sum its marginals
_MARGINALS_MAX_BINS = 4096
# name hint of the per-pixel joint bin index [N, H*W] (tests read it as an extra output)
JOINT_INDEX_HINT = "joint_bin_index"


def _input_layout(operator):
    """(rank, channels, numpy dtype of the input) with the checks shared by both hooks."""
    inp = image_input(operator)
    return len(inp.shape), inp.channels, inp.dtype


def shape_calculator(operator):
    """Output ``FloatTensorType([N, n_features_out_])``."""
    from skl2onnx.common.data_types import FloatTensorType

    _input_layout(operator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, operator.raw_operator.n_features_out_])


def to_float(g, x, dtype):
    """:func:`cvfeat._color.to_float`: uint8 -> float32 ``p / 255``; returns (name, dtype)."""
    if dtype == np.uint8:
        xf = g.op("Div", g.cast(x, np.float32), g.const(np.float32(255)), hint="pixels")
        return xf, np.dtype(np.float32)
    return x, dtype


def select(g, cond, a, b, dt):
    """``Where(cond, a, b)`` for finite ``a``, ``b``, as ``a * m + b * (1 - m)``.

    Exact (``a * 1 + b * 0`` is ``a``, up to the sign of a zero, which no bin
    decision sees) and ~5x faster than ONNX Runtime's Where on CPU.
    """
    m = g.cast(cond, dt)
    not_m = g.cast(g.op("Not", cond), dt)
    return g.op("Add", g.op("Mul", a, m), g.op("Mul", b, not_m))


def rgb_to_hsv(g, r, gg, b, dt):
    """:func:`cvfeat._color.rgb_to_hsv` on channel tensors, same operation order."""
    def c(v):
        return g.const(dt.type(v))

    eps = c(np.finfo(np.float32).eps)
    v = g.op("Max", g.op("Max", r, gg), b)
    d = g.op("Sub", v, g.op("Min", g.op("Min", r, gg), b))
    s = g.op("Div", d, g.op("Add", g.op("Abs", v), eps))
    k = g.op("Div", c(60), g.op("Add", d, eps))  # finite: d + eps >= eps
    h_r = g.op("Mul", g.op("Sub", gg, b), k)
    h_g = g.op("Add", g.op("Mul", g.op("Sub", b, r), k), c(120))
    h_b = g.op("Add", g.op("Mul", g.op("Sub", r, gg), k), c(240))
    h = select(g, g.op("Equal", v, r), h_r,
               select(g, g.op("Equal", v, gg), h_g, h_b, dt), dt)
    # h + 360 where h < 0: h + 360 * [h < 0] adds exactly 360 or 0
    h = g.op("Add", h, g.op("Mul", g.cast(g.op("Less", h, c(0)), dt), c(360)))
    return [h, s, v]


def _pow(g, x, exponent, dt):
    """``x ** exponent`` as :func:`cvfeat._color.rgb_to_lab` evaluates it.

    float32: in float64, rounded once to float32 (``_color._power`` / ``_color._cbrt``);
    float64: in float64. The cube root is ``Pow(t, 1/3)`` (ONNX has no Cbrt): it is
    within an ulp of float64 ``np.cbrt``, which the float32 rounding absorbs.
    """
    if dt == np.float32:
        xd = g.cast(x, np.float64)
        y = g.op("Pow", xd, g.const(np.float64(exponent)))
        return g.cast(y, np.float32)
    return g.op("Pow", x, g.const(np.float64(exponent)))


def srgb_to_linear(g, x, dt):
    """:func:`cvfeat._color._srgb_to_linear` on a float tensor."""
    def c(v):
        return g.const(dt.type(v))

    low = g.op("Div", x, c(12.92))
    base = g.op("Div", g.op("Add", x, c(0.055)), c(1.055))
    high = _pow(g, g.op("Max", base, c(0)), 2.4, dt)  # Max: finite even for x < -0.055
    return select(g, g.op("LessOrEqual", x, c(0.04045)), low, high, dt)


def srgb_to_linear_u8(g, channel):
    """The same for uint8 pixels: a 256-entry float32 table of the numpy values (Gather)."""
    table = _color._srgb_to_linear(_color.to_float(np.arange(256, dtype=np.uint8)))
    return g.op("Gather", g.const(table), g.cast(channel, np.int64), axis=0)


def rgb_to_lab(g, r, gg, b, dt):
    """:func:`cvfeat._color.rgb_to_lab` on float channel tensors, same operation order."""
    return lab_from_linear(g, [srgb_to_linear(g, ch, dt) for ch in (r, gg, b)], dt)


def rgb_to_lab_u8(g, r, gg, b):
    """The same on uint8 channel tensors (gamma from a table): float32 L, a, b."""
    return lab_from_linear(g, [srgb_to_linear_u8(g, ch) for ch in (r, gg, b)],
                           np.dtype(np.float32))


def lab_from_linear(g, lin, dt):
    """The rest of :func:`cvfeat._color.rgb_to_lab` from the linear R, G, B channels."""
    def c(v):
        return g.const(dt.type(v))

    lr, lg, lb = lin
    m = _color._RGB_TO_XYZ_WHITE.astype(dt)
    xyz = []
    for i in range(3):
        acc = g.op("Add", g.op("Mul", lr, c(m[i, 0])), g.op("Mul", lg, c(m[i, 1])))
        xyz.append(g.op("Add", acc, g.op("Mul", lb, c(m[i, 2]))))
    thr = c(0.008856)
    f = []
    for t in xyz:
        cube_root = _pow(g, g.op("Max", t, c(0)), 1.0 / 3.0, dt)  # finite for select
        linear = g.op("Add", g.op("Mul", c(7.787), t), c(16.0 / 116.0))
        f.append(select(g, g.op("Greater", t, thr), cube_root, linear, dt))
    y = xyz[1]
    lum = select(g, g.op("Greater", y, thr),
                 g.op("Sub", g.op("Mul", c(116), f[1]), c(16)), g.op("Mul", c(903.3), y), dt)
    a = g.op("Mul", c(500), g.op("Sub", f[0], f[1]))
    bb = g.op("Mul", c(200), g.op("Sub", f[1], f[2]))
    return [lum, a, bb]


def bin_index(g, v, low, high, bins, dt):
    """:func:`cvfeat.features.color.bin_index`, kept as (integral) floats of ``dt``."""
    def c(x):
        return g.const(dt.type(x))

    idx = g.op("Floor", g.op("Div", g.op("Mul", g.op("Sub", v, c(low)), c(bins)), c(high - low)))
    return g.op("Clip", idx, c(0), c(bins - 1))


def count_rows(g, idx, depth):
    """Per-row counts ``(N, depth)`` float32 of the int64 indices ``idx`` ``(N, M)``.

    ``ScatterElements(reduction='add')`` of ones into zeros: memory O(N * (M + depth)).
    """
    from onnx import helper

    n = g.slice(g.op("Shape", idx), [0], [1], axes=[0])
    shape = g.op("Concat", n, g.const([depth], np.int64), axis=0)
    zero = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    one = helper.make_tensor("value", TensorProto.FLOAT, [1], [1.0])
    zeros = g.op("ConstantOfShape", shape, value=zero)
    ones = g.op("ConstantOfShape", g.op("Shape", idx), value=one)
    return g.op("ScatterElements", zeros, idx, ones, axis=1, reduction="add", hint="counts")


def converter(scope, operator, container):
    """ColorHistogram -> Cast/Div, colour conversion, bins, ScatterElements, normalisation."""
    est = operator.raw_operator
    _, channels, in_dtype = _input_layout(operator)
    g = Graph(scope, operator, container)
    pixels = operator.inputs[0].full_name
    b = est.bins
    # Work on [N, H*W] tensors: ORT broadcasts a scalar over [N, H, W, 1] ~20x slower.
    flat = g.const([0, -1], np.int64)
    if channels == 1:  # grey, space='rgb' (fit rejects the others)
        x, dt = to_float(g, g.op("Reshape", pixels, flat), in_dtype)
        idx = bin_index(g, x, 0.0, 1.0, b, dt)
    else:
        rgb = [g.op("Reshape", g.op("Gather", pixels, g.const(np.int64(i)), axis=3), flat)
               for i in range(3)]
        if est.space == "lab" and in_dtype == np.uint8:
            dt = np.dtype(np.float32)
            conv = rgb_to_lab_u8(g, *rgb)
        else:
            rgb, dt = zip(*(to_float(g, ch, in_dtype) for ch in rgb), strict=True)
            dt = dt[0]
            if est.space == "hsv":
                conv = rgb_to_hsv(g, *rgb, dt)
            elif est.space == "lab":
                conv = rgb_to_lab(g, *rgb, dt)
            else:
                conv = list(rgb)
        ranges = _color.CHANNEL_RANGES[est.space]
        idx = [bin_index(g, v, lo, hi, b, dt) for v, (lo, hi) in zip(conv, ranges, strict=True)]
        nb = g.const(dt.type(b))
        if b**3 > 2**24:  # the joint index would not be exact in float32
            idx = [g.cast(i, np.int64) for i in idx]
            nb = g.const(np.int64(b))
        if est.joint or b**3 <= _MARGINALS_MAX_BINS:
            # (i0 * b + i1) * b + i2
            joint = g.op("Add", g.op("Mul", g.op("Add", g.op("Mul", idx[0], nb), idx[1]), nb),
                         idx[2])
            joint = g.op("Cast", joint, to=TensorProto.INT64, hint=JOINT_INDEX_HINT)
            hist = count_rows(g, joint, b**3)
            if not est.joint:
                # per-channel histograms as the marginals of the joint one: a third of the
                # scattered updates; sums of integers, exact
                cube = g.reshape(hist, [-1, b, b, b])
                hist = g.op("Concat", *(g.reshape(g.reduce("ReduceSum", cube, axes), [-1, b])
                                        for axes in ([2, 3], [1, 3], [1, 2])), axis=1)
        else:
            two_b = g.op("Add", nb, nb)
            idx = g.op("Concat", idx[0], g.op("Add", idx[1], nb), g.op("Add", idx[2], two_b),
                       axis=1)
            hist = count_rows(g, g.cast(idx, np.int64), 3 * b)
    if channels == 1:
        hist = count_rows(g, g.cast(idx, np.int64), b)
    # numpy normalises in float64 for uint8 / float64 images and in float32 for float32;
    # the float32 output of the graph is within a rounding of either.
    if dt == np.float64:
        hist = g.cast(hist, np.float64)
    if est.normalize == "l1":
        hist = g.op("Div", hist, g.reduce("ReduceSum", hist, [1], keepdims=1))
    elif est.normalize == "l2":
        sq = g.reduce("ReduceSum", g.op("Mul", hist, hist), [1], keepdims=1)
        hist = g.op("Div", hist, g.op("Sqrt", sq))
    if dt == np.float64:
        hist = g.cast(hist, np.float32)
    g.identity(hist, operator.outputs[0].full_name)


def register():
    """Register the shape calculator and converter of ColorHistogram with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(
        ColorHistogram, "CvfeatColorHistogram", shape_calculator, converter
    )
