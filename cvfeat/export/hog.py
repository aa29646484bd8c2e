"""ONNX converter of :class:`cvfeat.features.HOG`.

The graph reproduces the numpy code of :mod:`cvfeat.features.hog` in three parts.

**Cell histograms of uint8 images without** ``transform_sqrt`` (what
:func:`cvfeat.export.to_onnx` feeds), by table look-up, as numpy does it:

1. central differences in int32 on a flat layout (:func:`_uint8_codes`): the
   whole-cell window (and the row and column beyond it) gets one mirrored row above
   and below (Pad ``reflect``: the difference along the columns is then zero on the
   image's first and last row, as numpy's), is flattened, and the four neighbours of
   every pixel are four contiguous Slices of that vector (a Slice or Pad along the
   image rows copies row by row and costs about twice as much); the difference along
   a row wraps around at the image's first and last column, where a constant factor
   sets it to zero (Mul); colour images are transposed to NCHW first;
2. the gradients are integers in [-255, 255], so ``code = g_row + 511 * g_col``
   (the same Mul by a constant holding 511 and those zeros, Add) indexes per-pair
   tables of the orientation bin and of the magnitude (GatherElements; negative codes
   count from the end); colour: a third table holds ``-4 * (g_row**2 + g_col**2)``;
   adding the channel index and taking the minimum over the channels, the low two
   bits name the channel of largest magnitude, the first on ties (ReduceMin,
   BitwiseAnd, GatherElements of the code);
3. one ScatterElements with ``reduction='add'`` adds every magnitude into its
   ``(cell, bin)`` slot (numpy's ``bincount``); the slot offsets of the cells come
   from Range / Div / Mod of constants; the positions on the column beyond the window
   go to a spare row of slots that nothing reads. The sums start from zeros except
   for one more row, ``[cell area * eps, 0, ...]``, which the blocks append (below).

The tables (511 x 511 entries) are **not stored in the file**: they are built in the
graph from a few scalars (Range, Div, LessOrEqual, ReduceSum, Sqrt on the grid of
all gradient pairs), a subgraph with constant inputs only, which ONNX Runtime
evaluates once when the session is created (constant folding; about 1 MB per table,
2 for grey, 3 for colour). A runtime that does not fold constants computes them on
every call: the same numbers, slower. The bin of a pair is decided exactly as the
comparison graph below decides it for uint8 (float32 ``g_col / g_row <= cot t_k``).

**Cell histograms of float images and with** ``transform_sqrt``, by comparisons:

1. NCHW layout, crop to the window (Transpose / Unsqueeze, Slice), Cast, optional
   ``Sqrt``; central differences (Slice, Sub, Pad);
2. colour: per pixel the channel of largest magnitude, the first on ties (ArgMax
   with ``select_last_index=0``, GatherElements); magnitude ``sqrt(g_row**2 +
   g_col**2)``;
3. orientation bins **without an angle**: ``orient = rad2deg(arctan2(g_row, g_col))
   mod 180`` is the gradient's angle folded into [0, 180); cot has period 180
   degrees and decreases on (0, 180), so for every bin edge ``t_k`` below 180
   degrees ``orient >= t_k  <=>  g_col / g_row <= cot t_k`` (``g_row == 0`` means
   ``orient == 0``: the quotient is made NaN, which is below no edge). One Div per
   pixel, one LessOrEqual per (pixel, edge). Edges at exactly 45, 90 and 135 degrees
   (even numbers of orientations) get the exact cotangents 1, 0, -1, so gradients
   lying exactly on them are binned as numpy bins them;
4. the indicator-difference trick, no bin index and no one-hot:
   ``P_0 = mean_cell(mag)`` (AveragePool), ``P_k = mean_cell(mag * [orient >= t_k])``
   as one MatMul of the float indicators ``[N, ncr, ncc, K, cr*cc]`` with the
   magnitudes ``[N, ncr, ncc, cr*cc, 1]`` (Transpose into cell-contiguous layout
   first), and ``hist_b = P_b - P_{b+1}`` (Sub; Relu removes the rounding-sized
   negatives of the difference).

**Blocks** (all inputs): one Gather takes the cells of every block in numpy's feature
order ``(n_blocks_row, n_blocks_col, b_row, b_col, orientation)`` (its indices come
from Range / Div / Mod of constants); the L1 / L1-sqrt / L2 / L2-Hys norm over each
block is ``LpNormalization`` of the block with more entries holding ``eps = 1e-5``
and zeros (the uint8 path's Gather appends the epsilon row of its sums to every block;
the float path pads ``eps``), which is ``b / sqrt(sum(b**2) + eps**2)`` (L2) or ``b /
(sum(|b|) + eps)`` (L1), numpy's formulas; L2-Hys clips at 0.2 and resets those
entries to ``[eps, 0, ...]`` (Min, Add, with constants of the blocks' full shape: a
broadcast costs more) before the second norm. The uint8 path leaves its sums
undivided by the cell area and scales ``eps`` by it instead. The last Slice drops the
epsilon entries; it is marked :data:`~cvfeat.export._ops.FINITE_SLICE_MARK` (they are
finite), so that a linear model right after HOG reads the blocks whole, with zero
weights on them (:func:`cvfeat.export.onnx._fuse_linear_head`).

Working precision, chosen so that the bin decisions agree with numpy's float64
``arctan2``:

* uint8 without ``transform_sqrt``: float32. The gradients are integers in
  [-255, 255]: squares and sums of squares are exact, and
  ``float32(g_col / g_row) <= float32(cot t_k)`` agrees with
  :func:`cvfeat.features.hog.orientation_bin` for all 511 x 511 gradient pairs and
  every number of orientations from 1 to 126 (tested in the graph for 4, 7, 8, 9
  and 12); the tables hold exactly these decisions;
* float32 images: gradients in float32 (bit-identical to numpy's), quotient and
  tests in float64: on random float32 images a float32 test misplaced 1 pixel in 20
  million, the float64 test none in 41 million (and none of the gradients placed a
  few float32 steps from every edge, see the tests). The colour choice compares
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
float32. The file holds no table: its constants are a few dozen numbers.
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..features.hog import _EPS, HOG, orientation_edges
from ._ops import FINITE_SLICE_MARK, Graph, image_input

__all__ = ["converter", "register", "shape_calculator"]

_G = 255  # largest |central difference| of a uint8 image
_SIDE = 2 * _G + 1  # gradient values per axis: -255 .. 255


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


def _gradients(g, x, h, w, rows, cols, axes=(2, 3), rank=4):
    """Central differences of ``x`` on the ``rows x cols`` window.

    ``axes``: the (row, column) axes of ``x`` (``(2, 3)`` for NCHW, ``(1, 2)`` for
    NHW / NHWC); ``rank``: its number of axes. ``g_row[r] = x[r + 1] - x[r - 1]``,
    zero on the full image's first and last row (likewise for columns), as
    :func:`cvfeat.features.hog._central_differences`.
    """

    def one(axis, length, other_axis, other_len, full, other_full):
        end = min(length - 1, full - 2)  # last index with a central difference
        # the other axis: cropped to the window where the input goes beyond it
        crop = other_len < min(other_len + 1, other_full)

        def part(start, stop):
            if crop:
                return g.slice(x, [start, 0], [stop, other_len], axes=[axis, other_axis])
            return g.slice(x, [start], [stop], axes=[axis])

        if end < 1:
            whole = part(0, length)
            return g.op("Sub", whole, whole)  # all zero
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = 1, length - 1 - end
        return g.op("Pad", g.op("Sub", part(2, end + 2), part(0, end)), g.const(pads, np.int64))

    row_axis, col_axis = axes
    return (one(row_axis, rows, col_axis, cols, h, w),
            one(col_axis, cols, row_axis, rows, w, h))


def _cell_layout(g, t, ncr, cr, ncc, cc, last):
    """``[N, 1, rows, cols]`` -> ``[N, ncr, ncc, 1, cr*cc]`` (``last``) or ``[..., cr*cc, 1]``."""
    t = g.reshape(t, [-1, ncr, cr, ncc, cc])
    t = g.op("Transpose", t, perm=[0, 1, 3, 2, 4])
    return g.reshape(t, [-1, ncr, ncc, 1, cr * cc] if last else [-1, ncr, ncc, cr * cc, 1])


class _Graph(Graph):
    """:class:`~cvfeat.export._ops.Graph` that stores each distinct constant once."""

    def __init__(self, scope, operator, container):
        super().__init__(scope, operator, container)
        self._consts = {}

    def const(self, value, dtype=None, hint="c"):
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = super().const(arr, hint=hint)
        return self._consts[key]


def _range(g, stop, dtype, start=0):
    """``Range(start, stop, 1)`` of ``dtype`` (constant inputs: folded at load time)."""
    dtype = np.dtype(dtype)
    return g.op("Range", g.const(dtype.type(start)), g.const(dtype.type(stop)),
                g.const(dtype.type(1)))


def _div(g, t, d, dtype):
    """``t // d`` of non-negative integers of ``dtype`` (``t`` itself for ``d == 1``)."""
    return t if d == 1 else g.op("Div", t, g.const(dtype.type(d)))


def _digits(g, t, radices, dtype):
    """Mixed-radix digits of the non-negative integers ``t``, most significant first."""
    digits = []
    for radix in reversed(radices[1:]):
        digits.append(g.op("Mod", t, g.const(dtype.type(radix))))
        t = _div(g, t, radix, dtype)
    return [t, *reversed(digits)]


def _rotate(g, table, shift):
    """``table[:, (j + shift) % size]`` for a ``[1, size]`` table (Slice, Slice, Concat)."""
    return g.op("Concat", g.slice(table, [shift], [None], axes=[1]),
                g.slice(table, [0], [shift], axes=[1]), axis=1)


def _uint8_tables(g, orientations, index_dtype, colour):
    """Per-gradient-pair tables ``[1, 511 * 511]``, built in the graph from a few scalars.

    Every node here has constant inputs only, so ONNX Runtime evaluates the tables
    once, when the session is created (constant folding): the file holds scalars, not
    tables. Returns ``(bins, magnitudes, keys)``:

    * the bin of a pair: the count of edges ``t_k <= orient``, decided exactly as the
      float graph decides it (:func:`cot_ratio` and ``LessOrEqual`` in float32, the
      decision tested for every pair and orientation count);
    * its magnitude ``sqrt(g_row**2 + g_col**2)`` in float32 (exact sum of squares);
    * colour only (else None): ``-4 * (g_row**2 + g_col**2)`` (int32), the key whose
      minimum over the channels (plus the channel index) picks the channel.

    Indexed by ``code = g_row + 511 * g_col`` in [-130560, 130560]: the grid of pairs
    (``g_col`` major) is rotated so that code 0 comes first and negative codes count
    from the end, as GatherElements allows.
    """
    f32 = np.dtype(np.float32)
    axis_values = _range(g, _G + 1, f32, start=-_G)  # -255 .. 255
    g_row = g.reshape(axis_values, [1, _SIDE])
    g_col = g.reshape(axis_values, [_SIDE, 1])
    squares = g.op("Add", g.op("Mul", g_row, g_row), g.op("Mul", g_col, g_col))
    mag = g.op("Sqrt", squares)
    cot = edge_cotangents(orientations)
    if len(cot):
        above = g.op("LessOrEqual", cot_ratio(g, g_row, g_col, f32),
                     g.const(cot.astype(f32).reshape(-1, 1, 1), hint="cot"))  # [K, 511, 511]
        bins = g.reduce("ReduceSum", g.cast(above, np.int32), [0], keepdims=0)
        if index_dtype != np.int32:
            bins = g.cast(bins, index_dtype)
    else:  # one orientation: every pixel in bin 0
        bins = g.cast(g.op("Mul", mag, g.const(f32.type(0))), index_dtype)
    tables = [g.reshape(t, [1, -1]) for t in (bins, mag)]
    if colour:  # -4 * (g_row**2 + g_col**2), an exact int32
        tables.append(g.reshape(g.cast(g.op("Mul", squares, g.const(f32.type(-4))), np.int32),
                                [1, -1]))
    shift = _G * _SIDE + _G  # flat index of code 0 in the [511, 511] grid
    return [_rotate(g, t, shift) for t in tables] + [None] * (not colour)


def _uint8_codes(g, x, h, w, rows, cols, colour):
    """``code = g_row + 511 * g_col`` (int32) of uint8 images, on a flat layout.

    The window's rows (and the row and column beyond it, where the image has them)
    are flattened with one mirrored row above and below (``reflect``: row -1 is row 1,
    so the central difference along the columns is zero on the image's first and last
    row, as numpy's; a single row is repeated instead, ``edge``). In that flat vector
    the four neighbours of every pixel are four contiguous Slices, at ``+-width`` and
    ``+-1``: fast copies, unlike Slices and Pads along the image rows. Along a row the
    difference wraps around at the first and last column, where numpy's is zero: the
    constant that multiplies it by 511 holds 0 there. Returns ``(code, width, n)``:
    ``code [N, 1 or 3, n]`` holds the pixels ``(y, x) = divmod(q, width)`` of the
    window's rows;
    positions on the column beyond the window (``x >= cols``) hold meaningless codes,
    which :func:`_slot_offsets` sends to a slot nobody reads.
    """
    axes = [2, 3] if colour else [1, 2]
    rank = 4 if colour else 3
    hh, ww = min(rows + 1, h), min(cols + 1, w)
    if hh < h or ww < w:
        x = g.slice(x, [0, 0], [hh, ww], axes=axes)
    pads = [0] * (2 * rank)
    pads[axes[0]] = pads[rank + axes[0]] = 1
    # a single row has no mirror image; its difference along the columns is zero anyway
    x = g.op("Pad", x, g.const(pads, np.int64), mode="reflect" if hh >= 2 else "edge")
    x = g.reshape(g.cast(x, np.int32), [-1, 3 if colour else 1, (hh + 2) * ww])
    n = (rows - 1) * ww + cols

    def at(shift):  # pixel q + shift of the window, q in [0, n)
        return g.slice(x, [ww + shift], [ww + shift + n], axes=[2])

    g_row = g.op("Sub", at(ww), at(-ww))
    # 511 * g_col in one Mul: by 511, and by 0 on the image's first and last column (the
    # row wraps around there)
    i32 = np.dtype(np.int32)
    col = g.op("Mod", _range(g, n, i32), g.const(np.int32(ww)))
    inner = g.op("And", g.op("Greater", col, g.const(np.int32(0))),
                 g.op("Less", col, g.const(np.int32(w - 1))))
    factor = g.op("Where", inner, g.const(np.int32(_SIDE)), g.const(np.int32(0)))
    code = g.op("Add", g_row, g.op("Mul", g.op("Sub", at(1), at(-1)), factor), hint="code")
    return code, ww, n


def _slot_offsets(g, n, width, geometry, slots, dummy, dtype):
    """``[n]`` offsets of the ``(cell, bin)`` slots of the positions of :func:`_uint8_codes`.

    Position ``q`` is window pixel ``(y, x) = divmod(q, width)``, slot ``((y // cr) *
    ncc + x // cc) * slots + bin``; positions beyond the window's columns (``x >=
    cols``) get ``dummy``. Built from Range, Div, Mod and Where of constants: folded
    when the session is created.
    """
    cr, cc, _, _, _, ncc, _, _ = geometry
    cols = ncc * cc
    c = lambda v: g.const(dtype.type(v))  # noqa: E731
    y, x = _digits(g, _range(g, n, dtype), [n, width], dtype)
    cell = g.op("Add", g.op("Mul", _div(g, y, cr, dtype), c(ncc)), _div(g, x, cc, dtype))
    return g.op("Where", g.op("Less", x, c(cols)), g.op("Mul", cell, c(slots)), c(dummy))


def _uint8_cell_histograms(g, est, x, h, w, colour, geometry):
    """Cell sums ``[N, cells + 2, nb]`` (not yet divided by the cell area) of uint8
    images, then a row ``[cell area * eps, 0, ...]`` (see :func:`_normalised_blocks`) and
    a spare row (the positions outside the window add into it; nothing reads it).

    The gradients are integers in [-255, 255]: ``code = g_row + 511 * g_col`` (int32,
    :func:`_uint8_codes`) indexes the tables of :func:`_uint8_tables`
    (GatherElements), and the magnitudes are added into their ``(cell, bin)`` slot by
    one ScatterElements with ``reduction='add'``, which is numpy's ``bincount``.
    Colour: ``c - 4 * (g_row**2 + g_col**2)`` of channel ``c`` is smallest at the
    channel of largest magnitude, the first on ties; its low two bits are that channel.
    """
    cr, cc, _, _, ncr, ncc, _, _ = geometry
    rows, cols = ncr * cr, ncc * cc
    cells = ncr * ncc
    nb = est.orientations
    # bins 0 .. K: with the last edge below 180 degrees (k == nb) the pixels at or above
    # it get bin nb, which is in no histogram (a spare slot, dropped as numpy drops it)
    width = len(edge_cotangents(nb)) + 1
    # slots: the cells, the epsilon row, a row for the positions outside the window
    size = (cells + 2) * width
    index_dtype = np.dtype(np.int32 if size < 2**31 else np.int64)
    if colour:  # NCHW: the channel reductions run over an outer axis (fast)
        x = g.op("Transpose", x, perm=[0, 3, 1, 2])
    code, row_width, n = _uint8_codes(g, x, h, w, rows, cols, colour)
    bin_table, mag_table, key_table = _uint8_tables(g, nb, index_dtype, colour)
    flat = g.reshape(code, [1, -1])
    channel = code  # [N, 1, n]
    if colour:  # the channel of largest magnitude, the first on ties
        keys = g.reshape(g.op("GatherElements", key_table, flat, axis=1), [-1, 3, n])
        keys = g.op("Add", keys, g.const(np.arange(3, dtype=np.int32).reshape(3, 1)))
        best = g.op("BitwiseAnd", g.reduce("ReduceMin", keys, [1], keepdims=1),
                    g.const(np.int32(3)))  # [N, 1, n]
        channel = g.op("GatherElements", code, best, axis=1)
        flat = g.reshape(channel, [1, -1])
    mag = g.reshape(g.op("GatherElements", mag_table, flat, axis=1, hint="magnitude"), [-1, n])
    bins = g.reshape(g.op("GatherElements", bin_table, flat, axis=1), [-1, n])
    slots = g.op("Add", bins, _slot_offsets(g, n, row_width, geometry, width,
                                            (cells + 1) * width, index_dtype))
    # the sums start from zeros, but for the epsilon row: cell area * eps, then zeros
    start = g.op("ConstantOfShape", g.const([1, 1], np.int64),
                 value=numpy_helper.from_array(np.array([cr * cc * _EPS], np.float32)))
    start = g.op("Pad", start, g.const([0, cells * width, 0, 2 * width - 1], np.int64))
    start = g.op("Expand", start, g.op("Shape", channel, start=0, end=2))  # to [N, ...]
    hist = g.op("ScatterElements", start, slots, mag, axis=1, reduction="add")
    hist = g.reshape(hist, [-1, cells + 2, width])
    if width > nb:
        hist = g.slice(hist, [0], [nb], axes=[2])
    return hist


def _float_cell_histograms(g, est, x, h, w, colour, in_dtype, geometry):
    """Cell histograms ``[N, cells, nb]`` (means) by edge comparisons (module notes)."""
    cr, cc, _, _, ncr, ncc, _, _ = geometry
    rows, cols = ncr * cr, ncc * cc
    nb = est.orientations
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)

    # working precision of the gradients and of the bin tests (module docstring);
    # float32 images: float32 gradients, widened to float64 for the tests (uint8
    # without transform_sqrt takes the table path)
    if in_dtype == np.float32:
        work, decide = f32, f64
    else:
        work, decide = f64, f64
    widen = work != decide

    # 1. NCHW, cropped to the pixels the window needs, in the working dtype
    if colour:
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
    # the magnitude as numpy's hypot rounds it, so that the colour choice sees the same
    # ties: float32 images: float32(sqrt(double sum of squares)) is exactly np.hypot's
    # float32 result; float64: sqrt(a**2 + b**2) is hypot(a, b) up to the platform's
    # last-bit rounding (sqrt(a**2) == |a| exactly)
    key = g.op("Sqrt", g.op("Add", g.op("Mul", g_row, g_row), g.op("Mul", g_col, g_col)))
    if widen:
        key = g.cast(key, f32)
    if colour:
        best = g.op("ArgMax", key, axis=1, keepdims=1, select_last_index=0)
        g_row = g.op("GatherElements", g_row, best, axis=1)
        g_col = g.op("GatherElements", g_col, best, axis=1)
        key = g.reduce("ReduceMax", key, [1], keepdims=1)
    mag = key if widen else g.cast(key, f32)

    # 4. cell sums P_0 (all magnitude) and P_k (magnitude with orient >= t_k)
    # (cell means, as numpy's sums / (cr * cc))
    area = g.const(np.float32(cr * cc))
    p0 = g.op("AveragePool", mag, kernel_shape=[cr, cc], strides=[cr, cc])  # [N,1,ncr,ncc]
    p0 = g.reshape(p0, [-1, ncr, ncc, 1])
    cot = edge_cotangents(nb)
    k = len(cot)
    if k == 0:  # one bin: every pixel
        return g.reshape(p0, [-1, ncr * ncc, 1])
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
    return g.reshape(g.op("Relu", g.op("Sub", lower, upper), hint="cell_hist"),
                     [-1, ncr * ncc, nb])


def _normalised_blocks(g, est, hist, geometry, scale, out, eps_cell=False):
    """Blocks of ``hist [N, cells(, ...), nb]`` in numpy's feature order, normalised, into
    ``out``.

    ``hist`` holds the cell histograms times ``scale`` (1: means, as numpy; the cell
    area: sums). One Gather takes the cells of every block (its indices are built from
    Range: folded at load time); the block norm runs over the last axis with
    ``eps = 1e-5``: entries holding ``scale * eps`` and zeros are appended so that
    ``LpNormalization`` divides by ``sqrt(sum(b**2) + eps**2)`` (L2) or
    ``sum(|b|) + eps`` (L1) as numpy does, the scale cancelling out. With ``eps_cell``
    row ``cells`` of ``hist`` is ``[scale * eps, 0, ..., 0]`` and the Gather appends it
    to every block (rows after it are not read); otherwise a Pad appends
    ``scale * eps``.
    """
    _, _, br, bc, ncr, ncc, nbr, nbc = geometry
    nb = est.orientations
    i64 = np.dtype(np.int64)
    n_blocks, length = nbr * nbc, br * bc * nb
    if br * bc > 1 or eps_cell:
        # entry t of (block row, block col, i, j): cell (block row + i) * ncc + block col + j
        r, c, i, j = _digits(g, _range(g, n_blocks * br * bc, i64), [nbr, nbc, br, bc], i64)
        cells = g.op("Add", g.op("Mul", g.op("Add", r, i), g.const(i64.type(ncc))),
                     g.op("Add", c, j))
        if eps_cell:  # [n_blocks, br * bc + 1]: the cells of each block, then the eps row
            cells = g.op("Concat", g.reshape(cells, [n_blocks, br * bc]),
                         g.op("Expand", g.const(i64.type(ncr * ncc)),
                              g.const([n_blocks, 1], np.int64)), axis=1)
        hist = g.op("Gather", hist, cells, axis=1)  # [N, blocks * br * bc (+ 1), nb]
    extra = nb if eps_cell else 1  # the epsilon entries after each block's values
    blocks = g.reshape(hist, [-1, n_blocks, length + (nb if eps_cell else 0)])
    if not eps_cell:
        blocks = g.op("Pad", blocks, g.const([0, 0, 0, 0, 0, 1], np.int64),
                      g.const(np.float32(scale * _EPS)))

    def values(t):  # drop the epsilon entries (finite: eps / norm, or eps)
        return g.slice(t, [0], [length], axes=[2], mark=FINITE_SLICE_MARK)

    shape = g.const([-1, est.n_features_out_], np.int64)
    if est.block_norm in ("L1", "L1-sqrt"):
        blocks = values(g.op("LpNormalization", blocks, axis=-1, p=1))
        if est.block_norm == "L1-sqrt":
            blocks = g.op("Sqrt", blocks)
    elif est.block_norm == "L2":
        blocks = values(g.op("LpNormalization", blocks, axis=-1, p=2))
    else:  # L2-Hys
        first = g.op("LpNormalization", blocks, axis=-1, p=2)
        # clip the values at 0.2 and reset the epsilon entries to [eps, 0, ...] (they hold
        # eps' / norm): Min with [0.2, ..., 0.2, 0, ...], then Add [0, ..., 0, eps, 0, ...];
        # whole [n_blocks, length + extra] constants (a broadcast over the blocks costs
        # more), built from scalars and folded at load time
        f32 = np.dtype(np.float32)
        whole = g.const([n_blocks, length], np.int64)
        tail = g.const([0, 0, 0, extra], np.int64)
        cap = g.op("Pad", g.op("Expand", g.const(f32.type(0.2)), whole), tail)
        eps = g.op("Pad", g.op("ConstantOfShape", whole), g.const([0, 0, 0, 1], np.int64),
                   g.const(f32.type(_EPS)))
        if extra > 1:
            eps = g.op("Pad", eps, g.const([0, 0, 0, extra - 1], np.int64))
        second = g.op("Add", g.op("Min", first, cap), eps)
        blocks = values(g.op("LpNormalization", second, axis=-1, p=2))
    g.op("Reshape", blocks, shape, out=out)


def converter(scope, operator, container):
    """HOG -> cell histograms (uint8: table look-up + ScatterElements; float: edge
    comparisons + MatMul), then Gather of the blocks and LpNormalization."""
    est = operator.raw_operator
    h, w, channels, in_dtype = _input_layout(operator)
    geometry = est._geometry(h, w)
    g = _Graph(scope, operator, container)
    x = operator.inputs[0].full_name
    colour = len(operator.inputs[0].type.shape) == 4
    if colour and channels == 1:  # [N, H, W, 1]: a grey image
        x = g.reshape(x, [-1, h, w])
        colour = False
    if in_dtype == np.uint8 and not est.transform_sqrt:
        hist = _uint8_cell_histograms(g, est, x, h, w, colour, geometry)
        scale, eps_cell = float(geometry[0] * geometry[1]), True
    else:
        hist = _float_cell_histograms(g, est, x, h, w, colour, in_dtype, geometry)
        scale, eps_cell = 1.0, False
    _normalised_blocks(g, est, hist, geometry, scale, operator.outputs[0].full_name,
                       eps_cell=eps_cell)


def register():
    """Register the shape calculator and converter of HOG with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(HOG, "CvfeatHOG", shape_calculator, converter)
