"""ONNX converter of :class:`cvfeat.features.LBP`.

The graph is :func:`cvfeat.features.lbp.lbp_codes` and ``LBP._transform_batch``
operator for operator:

* colour -> grey with :func:`cvfeat.export.preprocessing.rgb_to_gray` (the one ONNX
  definition of :class:`cvfeat.preprocessing.Grayscale`: OpenCV's fixed point for
  uint8, ``0.299 R + 0.587 G + 0.114 B`` in the input dtype for floats), then Cast to
  float64, as numpy;
* zero padding (Pad) and, per sample point, the four bilinear taps as Slices of the
  padded image (the offsets of :func:`cvfeat.features.lbp.circle_offsets` are the same
  for every pixel) weighted by the per-row / per-column fractions of
  :func:`cvfeat.features.lbp._axis_weights` (constants, bit-identical to numpy's), in
  numpy's order of operations and in float64, so every ``sample - centre >= 0``
  (Sub, GreaterOrEqual) is decided exactly as in numpy / scikit-image;
* codes from the ``[N, H, W, P]`` bits (exact small integers in float32):
  'default' ``bits @ 2**p`` (MatMul); 'ror' the minimum over the P cyclic rotations
  (one MatMul with the ``[P, P]`` rotated weights, ReduceMin); 'uniform' and
  'nri_uniform' from the number of ones, the number of changes along ``p`` and the
  first one / first zero (ReduceSum, Sub, Abs, ArgMax, Where);
* per-cell histograms: one ``ScatterElements(reduction='add')`` of ones at
  ``cell * n_bins + code`` (no one-hot tensor), divided by the cell's pixel count.

Input ``[N, H, W]`` or ``[N, H, W, 3]``, uint8 / float32 / float64, ``H`` and ``W``
fixed in the graph (the interpolation fractions and the grid depend on them), ``N``
dynamic. Output ``[N, n_features_out_]`` float32: codes exact, histograms within a
float32 rounding of numpy's.
"""

from __future__ import annotations

import numpy as np

from ..features.lbp import LBP, _axis_weights, circle_offsets, grid_edges, n_codes
from ._ops import Graph, image_input

__all__ = ["converter", "register", "shape_calculator"]


def _input_layout(operator):
    """(height, width, channels, numpy dtype of the input), checked against the fit."""
    inp = image_input(operator, fixed_size=True)
    gr, gc = operator.raw_operator._check_grid()
    if inp.h < gr or inp.w < gc:
        raise ValueError(
            f"{inp.where}: images of {inp.h}x{inp.w} pixels are too small for grid={(gr, gc)} "
            "(one pixel per cell at least). Use a smaller grid or cvfeat.preprocessing.Resize."
        )
    return inp.h, inp.w, inp.channels, inp.dtype


def shape_calculator(operator):
    """Output ``FloatTensorType([N, n_features_out_])``."""
    from skl2onnx.common.data_types import FloatTensorType

    _input_layout(operator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, operator.raw_operator.n_features_out_])


def _taps(size, offset, pad):
    """Start of the floor/ceil slices (into the padded axis) and the fractions."""
    lo, hi, frac = _axis_weights(size, offset, pad)
    start_lo, start_hi = lo - np.arange(size), hi - np.arange(size)
    # floor(i + offset) - i is the same for every i (the offset is not within a
    # rounding of an integer: it is rounded to 5 decimals); slices rely on it
    assert (start_lo == start_lo[0]).all() and (start_hi == start_hi[0]).all()
    return int(start_lo[0]), int(start_hi[0]), frac


def lbp_bits(g, img, h, w, P, R):
    """Bool ``[N, H, W]`` per sample point: ``bit_p = sample_p - img >= 0``, in float64.

    ``img``: ``[N, H, W]`` float64 grey images. Mirrors the loop of
    :func:`cvfeat.features.lbp.lbp_codes`.
    """
    f64 = np.float64
    rp, cp = circle_offsets(P, R)
    pad = int(np.ceil(float(np.float32(R)))) + 1
    padded = g.op("Pad", img, g.const([0, pad, pad, 0, pad, pad], np.int64))
    zero = g.const(f64(0))
    bits = []
    for p in range(P):
        r0, r1, dr = _taps(h, rp[p], pad)
        c0, c1, dc = _taps(w, cp[p], pad)

        def tap(r, c):
            return g.slice(padded, [r, c], [r + h, c + w], axes=[1, 2])

        def blend(a, b, frac, shape):
            # (1 - f) a + f b as numpy; with all f == 0 it is exactly a
            if not frac.any():
                return a
            return g.op("Add", g.op("Mul", g.const((1 - frac).reshape(shape)), a),
                        g.op("Mul", g.const(frac.reshape(shape)), b))

        top = blend(tap(r0, c0), tap(r0, c1), dc, (1, 1, w))
        bottom = top if not dr.any() else blend(tap(r1, c0), tap(r1, c1), dc, (1, 1, w))
        sample = blend(top, bottom, dr, (1, h, 1))
        bits.append(g.op("GreaterOrEqual", g.op("Sub", sample, img), zero, hint=f"bit{p}"))
    return bits


def lbp_codes(g, bits, P, method):
    """float32 ``[N, H, W]`` codes (exact integers) from the P bool ``[N, H, W]`` bits."""
    f32 = np.float32
    axis = g.const([3], np.int64)
    b = g.cast(g.op("Concat", *[g.op("Unsqueeze", t, axis) for t in bits], axis=3), f32)
    if method in ("default", "ror"):
        # code of the j-th right rotation: sum_q bit_q 2**((q - j) mod P)
        n_rot = 1 if method == "default" else P
        weights = np.array([[2.0 ** ((q - j) % P) for j in range(n_rot)] for q in range(P)])
        codes = g.op("MatMul", b, g.const(weights.astype(f32), hint="powers"))
        return g.reduce("ReduceMin", codes, [3], keepdims=0)

    def c(v):
        return g.const(f32(v))

    n_ones = g.reduce("ReduceSum", b, [3], keepdims=0)
    if P > 1:
        steps = g.op("Sub", g.slice(b, [1], [P], axes=[3]), g.slice(b, [0], [P - 1], axes=[3]))
        uniform = g.op("LessOrEqual", g.reduce("ReduceSum", g.op("Abs", steps), [3]), c(2))
    else:
        uniform = None  # one bit: no changes, always uniform
    if method == "uniform":
        code = n_ones
        non_uniform = P + 1
    else:  # nri_uniform
        first_one = g.cast(g.op("ArgMax", b, axis=3, keepdims=0, select_last_index=0), f32)
        first_zero = g.cast(
            g.op("ArgMax", g.op("Sub", c(1), b), axis=3, keepdims=0, select_last_index=0), f32)
        rot = g.op("Where", g.op("Equal", first_one, c(0)), g.op("Sub", n_ones, first_zero),
                   g.op("Sub", c(P), first_one))
        code = g.op("Add", g.op("Add", c(1), g.op("Mul", g.op("Sub", n_ones, c(1)), c(P))), rot)
        code = g.op("Where", g.op("Equal", n_ones, c(0)), c(0),
                    g.op("Where", g.op("Equal", n_ones, c(P)), c(P * (P - 1) + 1), code))
        non_uniform = P * (P - 1) + 2
    if uniform is None:
        return code
    return g.op("Where", uniform, code, c(non_uniform))


def converter(scope, operator, container):
    """LBP -> grey, Pad, bilinear taps, GreaterOrEqual, codes, ScatterElements histograms."""
    from .color import count_rows
    from .preprocessing import rgb_to_gray

    est = operator.raw_operator
    h, w, channels, in_dtype = _input_layout(operator)
    gr, gc = est._check_grid()
    P, method = est.P, est.method
    k = n_codes(P, method)
    g = Graph(scope, operator, container)

    x = operator.inputs[0].full_name
    if channels == 3:
        x = rgb_to_gray(g, x, in_dtype)
    elif len(operator.inputs[0].type.shape) == 4:  # [N, H, W, 1]
        x = g.reshape(x, [-1, h, w])
    img = g.cast(x, np.float64)

    codes = lbp_codes(g, lbp_bits(g, img, h, w, P, est.R), P, method)

    # flat index cell * k + code of every pixel, [N, H * W] int64
    row_cell = np.searchsorted(grid_edges(h, gr), np.arange(h), side="right") - 1
    col_cell = np.searchsorted(grid_edges(w, gc), np.arange(w), side="right") - 1
    base = g.op("Add", g.const((row_cell * gc * k).reshape(h, 1), np.int64),
                g.const((col_cell * k).reshape(1, w), np.int64))  # [H, W]
    index = g.op("Add", g.cast(codes, np.int64), base)
    counts = count_rows(g, g.reshape(index, [-1, h * w]), gr * gc * k)  # [N, gr*gc*k]
    cell = row_cell[:, None] * gc + col_cell[None, :]
    pixels = np.bincount(cell.ravel(), minlength=gr * gc)
    hist = g.op("Div", counts, g.const(np.repeat(pixels, k).astype(np.float32).reshape(1, -1)))
    g.identity(hist, operator.outputs[0].full_name)


def register():
    """Register the shape calculator and converter of LBP with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(LBP, "CvfeatLBP", shape_calculator, converter)
