"""ONNX converter of :class:`cvfeat.features.HOG`.

The graph follows the numpy code of :mod:`cvfeat.features.hog` step by step:

1. NCHW layout, crop to the pixels the whole-cell window needs (Transpose /
   Unsqueeze, Slice on the raw input), Cast (uint8 keeps its 0-255 values), optional
   ``Sqrt``;
2. central differences with zeros on the full image's first/last row and column,
   cropped to the whole-cell window (Slice, Sub, Pad);
3. colour: per pixel the channel of largest magnitude, the first on ties (ArgMax
   with ``select_last_index=0``, GatherElements); magnitude ``sqrt(g_row**2 +
   g_col**2)``;
4. orientation bins **without an angle**: ``orient = rad2deg(arctan2(g_row, g_col))
   mod 180`` is the gradient's angle folded into [0, 180); cot has period 180
   degrees and decreases on (0, 180), so for every bin edge ``t_k`` below 180
   degrees ``orient >= t_k  <=>  g_col / g_row <= cot t_k`` (``g_row == 0`` means
   ``orient == 0``: the quotient is made NaN, which is below no edge). One Div per
   pixel, one LessOrEqual per (pixel, edge). Edges at exactly 45, 90 and 135 degrees
   (even numbers of orientations) get the exact cotangents 1, 0, -1, so gradients
   lying exactly on them are binned as numpy bins them;
5. cell histograms by the indicator-difference trick, no bin index and no one-hot:
   ``P_0 = mean_cell(mag)`` (AveragePool), ``P_k = mean_cell(mag * [orient >= t_k])``
   as one MatMul of the float indicators ``[N, ncr, ncc, K, cr*cc]`` with the
   magnitudes ``[N, ncr, ncc, cr*cc, 1]`` (Transpose into cell-contiguous layout
   first: the weighting and the cell sum in one pass), and ``hist_b = P_b - P_{b+1}``
   (Sub; Relu removes the rounding-sized negatives of the difference);
6. block normalisation over the ``cells_per_block`` shifted windows (Slice, Concat),
   in numpy's feature order ``(n_blocks_row, n_blocks_col, b_row, b_col,
   orientation)``: L1 / L1-sqrt / L2 / L2-Hys with ``eps = 1e-5`` (ReduceL1,
   ReduceSumSquare, Add, Sqrt, Div, Min).

Working precision, chosen so that the bin decisions agree with numpy's float64
``arctan2``:

* uint8 without ``transform_sqrt`` (what :func:`cvfeat.export.to_onnx` feeds):
  float32. The gradients are integers in [-255, 255]: squares and sums of squares
  are exact, and ``float32(g_col / g_row) <= float32(cot t_k)`` agrees with
  :func:`cvfeat.features.hog.orientation_bin` for all 511 x 511 gradient pairs and
  every number of orientations from 1 to 126 (tested in the graph for 4, 7, 8, 9
  and 12);
* float32 images: gradients in float32 (bit-identical to numpy's), quotient and
  tests in float64: on random float32 images a float32 test misplaced 1 pixel in 20
  million, the float64 test none in 41 million (and none of the gradients placed a
  few float32 steps from every edge, see the tests); it costs about 30 % more time
  than the uint8 graph. The colour choice compares
  ``float32(sqrt(double(g_row)**2 + double(g_col)**2))``, which is what ``np.hypot``
  returns for float32;
* uint8 with ``transform_sqrt`` and float64 images: float64 up to the magnitude,
  as numpy.

What can still differ from numpy: a gradient whose orientation is within a float64
rounding of a bin edge or that numpy rounds to exactly 180 degrees (numpy then drops
it, the graph counts it in the last bin), and, on colour images, two channels whose
magnitudes are equal up to the last bit, where numpy takes the one its libm ``hypot``
happens to round up (the graph: the first). With uint8 (no ``transform_sqrt``) or
float32 input this is practically absent: the only case seen is the ``hypot`` tie on
uint8 colour, once in 8 million random pixels. It is common where the data make
exact ties in float64: float64 images of quantised values (``k / 255``: gradient
components equal up to the last bit lie on the 45 or 135 degree edge, where numpy's
bin is decided by the rounding of ``arctan2``), and ``transform_sqrt`` on posterised
colour uint8 images (``sqrt(192)**2 + 8**2 == 2 * sqrt(128)**2`` ties two channels).
Export such models with uint8 input without ``transform_sqrt``, or float32 input.

Input ``[N, H, W]`` or ``[N, H, W, 3]``, uint8 / float32 / float64, ``H`` and ``W``
those of the fitted ``image_shape_``, ``N`` dynamic. Output ``[N, n_features_out_]``
float32. The graph holds no lookup table: its constants are a few dozen numbers.
"""

from __future__ import annotations

import numpy as np

from ..features.hog import _EPS, HOG, orientation_edges
from ._ops import Graph, image_input

__all__ = ["converter", "register", "shape_calculator"]


def _input_layout(operator):
    """(height, width, channels, numpy dtype of the input), checked against the fit."""
    est = operator.raw_operator
    inp = image_input(operator, check_fit=False)  # HOG checks the whole shape itself
    h, w, c = est.image_shape_
    if (inp.channels == 1) != (c == 1) or any(
        s is not None and s != e for s, e in zip((inp.h, inp.w), (h, w), strict=True)
    ):
        expected = [h, w] + ([] if c == 1 else [3])
        raise ValueError(
            f"{inp.where}: HOG was fitted on images of shape {tuple(est.image_shape_)} "
            f"(h, w, c) but the input is declared as {inp.shape}; declare it as [N, "
            f"{', '.join(map(str, expected))}] (HOG's features depend on the image size)."
        )
    return h, w, inp.channels, inp.dtype


def shape_calculator(operator):
    """Output ``FloatTensorType([N, n_features_out_])``."""
    from skl2onnx.common.data_types import FloatTensorType

    _input_layout(operator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, operator.raw_operator.n_features_out_])


def edge_cotangents(orientations):
    """``cot t_k`` of the bin edges below 180 degrees, as a float64 ``(K,)`` array.

    The edges are :func:`cvfeat.features.hog.orientation_edges` (float32 values);
    those at exactly 45, 90 and 135 degrees get the exact values 1, 0 and -1.
    """
    edges = [float(t) for t in orientation_edges(orientations) if t < 180.0]
    exact = {45.0: 1.0, 90.0: 0.0, 135.0: -1.0}
    return np.array([exact.get(t, 1.0 / np.tan(np.deg2rad(t))) for t in edges])


def cot_ratio(g, g_row, g_col, dtype):
    """``g_col / g_row`` in ``dtype``, NaN where ``g_row == 0``.

    ``orient = rad2deg(arctan2(g_row, g_col)) mod 180`` is the gradient's angle folded
    into [0, 180). cot has period 180 degrees and decreases on (0, 180), so for
    ``g_row != 0``: ``cot(orient) = g_col / g_row`` and
    ``orient >= t  <=>  g_col / g_row <= cot t``. ``g_row == 0`` means ``orient == 0``
    (below every edge); the quotient is then +-inf or NaN (0 / 0), turned into NaN
    by ``r + 0 * r``, and NaN is ``<=`` nothing.
    """
    ratio = g.op("Div", g_col, g_row, hint="cot_orient")
    return g.op("Add", ratio, g.op("Mul", ratio, g.const(dtype.type(0))))


def _gradients(g, x, h, w, rows, cols):
    """Central differences of ``x`` (NCHW) on the ``rows x cols`` window.

    ``g_row[r] = x[r + 1] - x[r - 1]``, zero on the full image's first and last row
    (likewise for columns), as :func:`cvfeat.features.hog._central_differences`.
    """

    def one(axis, length, other_axis, other_len, full):
        end = min(length - 1, full - 2)  # last index with a central difference
        if end < 1:
            part = g.slice(x, [0, 0], [length, other_len], axes=[axis, other_axis])
            return g.op("Sub", part, part)  # all zero
        hi = g.slice(x, [2, 0], [end + 2, other_len], axes=[axis, other_axis])
        lo = g.slice(x, [0, 0], [end, other_len], axes=[axis, other_axis])
        pads = [0] * 8
        pads[axis], pads[4 + axis] = 1, length - 1 - end
        return g.op("Pad", g.op("Sub", hi, lo), g.const(pads, np.int64))

    return one(2, rows, 3, cols, h), one(3, cols, 2, rows, w)


def _cell_layout(g, t, ncr, cr, ncc, cc, last):
    """``[N, 1, rows, cols]`` -> ``[N, ncr, ncc, 1, cr*cc]`` (``last``) or ``[..., cr*cc, 1]``."""
    t = g.reshape(t, [-1, ncr, cr, ncc, cc])
    t = g.op("Transpose", t, perm=[0, 1, 3, 2, 4])
    return g.reshape(t, [-1, ncr, ncc, 1, cr * cc] if last else [-1, ncr, ncc, cr * cc, 1])


def converter(scope, operator, container):
    """HOG -> Slice/Cast/Sub/Pad, ArgMax, Div, LessOrEqual, MatMul, block normalisation."""
    est = operator.raw_operator
    h, w, channels, in_dtype = _input_layout(operator)
    cr, cc, br, bc, ncr, ncc, nbr, nbc = est._geometry(h, w)
    rows, cols = ncr * cr, ncc * cc
    nb = est.orientations
    g = Graph(scope, operator, container)
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)

    # working precision of the gradients and of the bin tests (module docstring);
    # float32 images: float32 gradients, widened to float64 for the tests
    if in_dtype == np.uint8 and not est.transform_sqrt:
        work, decide = f32, f32  # integer gradients: exact in float32
    elif in_dtype == np.float32:
        work, decide = f32, f64
    else:
        work, decide = f64, f64
    widen = work != decide

    # 1. NCHW, cropped to the pixels the window needs, in the working dtype
    x = operator.inputs[0].full_name
    if len(operator.inputs[0].type.shape) == 4:
        x = g.op("Transpose", x, perm=[0, 3, 1, 2])
    else:
        x = g.op("Unsqueeze", x, g.const([1], np.int64))
    if rows + 1 < h or cols + 1 < w:
        x = g.slice(x, [0, 0], [min(rows + 1, h), min(cols + 1, w)], axes=[2, 3])
    if in_dtype != work:
        x = g.cast(x, work)
    if est.transform_sqrt:
        x = g.op("Sqrt", x)

    # 2. gradients [N, C, rows, cols]
    g_row, g_col = _gradients(g, x, h, w, rows, cols)

    # 3. magnitude (float32) and, for colour, the channel of largest magnitude
    if widen:
        g_row, g_col = g.cast(g_row, f64), g.cast(g_col, f64)
    key = g.op("Add", g.op("Mul", g_row, g_row), g.op("Mul", g_col, g_col))
    if decide == f64:
        # the magnitude as numpy's hypot rounds it, so that the colour choice sees the
        # same ties: float32 images: float32(sqrt(double sum of squares)) is exactly
        # np.hypot's float32 result; float64: sqrt(a**2 + b**2) is hypot(a, b) up to
        # the platform's last-bit rounding (sqrt(a**2) == |a| exactly)
        key = g.op("Sqrt", key)
        if widen:
            key = g.cast(key, f32)
    # uint8: the sums of squares are exact integers (and sqrt is injective on them)
    if channels == 3:
        best = g.op("ArgMax", key, axis=1, keepdims=1, select_last_index=0)
        g_row = g.op("GatherElements", g_row, best, axis=1)
        g_col = g.op("GatherElements", g_col, best, axis=1)
        key = g.reduce("ReduceMax", key, [1], keepdims=1)
    if decide == f32:
        mag = g.op("Sqrt", key, hint="magnitude")
    else:
        mag = key if widen else g.cast(key, f32)

    # 4.-5. cell sums P_0 (all magnitude) and P_k (magnitude with orient >= t_k)
    # (cell means, as numpy's sums / (cr * cc))
    area = g.const(np.float32(cr * cc))
    p0 = g.op("AveragePool", mag, kernel_shape=[cr, cc], strides=[cr, cc])  # [N,1,ncr,ncc]
    p0 = g.reshape(p0, [-1, ncr, ncc, 1])
    cot = edge_cotangents(nb)
    k = len(cot)
    if k == 0:  # one bin: every pixel
        hist = p0
    else:
        mag_cells = _cell_layout(g, mag, ncr, cr, ncc, cc, last=False)  # [N,ncr,ncc,cr*cc,1]
        ratio = _cell_layout(g, cot_ratio(g, g_row, g_col, decide), ncr, cr, ncc, cc, last=True)
        above = g.op("LessOrEqual", ratio, g.const(cot.astype(decide).reshape(k, 1), hint="cot"))
        # [N, ncr, ncc, K, cr*cc] @ [N, ncr, ncc, cr*cc, 1]: the weighting by the magnitude
        # and the cell sum in one pass (a broadcasting Where or Mul is several times slower)
        sums = g.op("MatMul", g.cast(above, f32), mag_cells)  # [N, ncr, ncc, K, 1]
        means = g.op("Div", g.reshape(sums, [-1, ncr, ncc, k]), area)  # P_1 .. P_K
        lower = g.op("Concat", p0, means, axis=3)  # P_0 .. P_K
        if k == nb:  # t_n < 180 after float32 rounding: [t_n, 180) is in no bin
            lower, upper = g.slice(lower, [0], [nb], axes=[3]), means
        else:  # P_nb = 0
            upper = g.op("Pad", means, g.const([0, 0, 0, 0, 0, 0, 0, 1], np.int64))
        # hist_b = P_b - P_{b+1} >= 0; Relu drops the rounding-sized negatives
        hist = g.op("Relu", g.op("Sub", lower, upper), hint="cell_hist")

    # 6. blocks [N, nbr, nbc, br * bc * nb] in numpy's order, normalised
    windows = [
        g.slice(hist, [i, j], [i + nbr, j + nbc], axes=[1, 2])
        for i in range(br) for j in range(bc)
    ]
    blocks = windows[0] if len(windows) == 1 else g.op("Concat", *windows, axis=3)
    if est.block_norm in ("L1", "L1-sqrt"):
        norm = g.op("Add", g.reduce("ReduceL1", blocks, [3], keepdims=1),
                    g.const(np.float32(_EPS)))
        out = g.op("Div", blocks, norm)
        if est.block_norm == "L1-sqrt":
            out = g.op("Sqrt", out)
    else:
        eps2 = g.const(np.float32(_EPS**2))

        def l2(t):
            ss = g.reduce("ReduceSumSquare", t, [3], keepdims=1)
            return g.op("Div", t, g.op("Sqrt", g.op("Add", ss, eps2)))

        out = l2(blocks)
        if est.block_norm == "L2-Hys":
            out = l2(g.op("Min", out, g.const(np.float32(0.2))))
    out = g.reshape(out, [-1, est.n_features_out_])
    g.identity(out, operator.outputs[0].full_name)


def register():
    """Register the shape calculator and converter of HOG with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(HOG, "CvfeatHOG", shape_calculator, converter)
