"""ONNX converter of :class:`cvfeat.features.SIFTBoW` (``mode='dense'``).

The graph rebuilds :mod:`cvfeat.features._dense_sift` and the encoder of
:mod:`cvfeat.features.sift` node by node, with numpy's order of operations, in
float32 for uint8 and float32 images and in float64 for float64 images (numpy
works in float64 for uint8 images: the float32 graph is within ~1e-7 of it, see
``converter`` for why it is not float64):

1. grey ``0.299 R + 0.587 G + 0.114 B`` (Cast, Div by 255 for uint8, Gather, Mul, Add);
2. central differences with the edge replicated (``Pad(mode='edge')``, Slice, Sub);
3. orientation weights without angles: projections on 4 of the 8 bin directions
   (the other 4 are their exact negatives) (Mul, Add, Sub, Abs, Neg, Relu),
   magnitude (Sqrt), rescaled to sum to it (ReduceSum, Max, Div, Mul), as two
   ``[N, 4, H, W]`` halves;
4. cell sums: for the distinct cell rows, then columns, of all patches, a Slice +
   Reshape + ReduceSum (cells on a lattice, e.g. the default step 8, cells of 4) or a
   Gather + ReduceSum; one Gather then places each patch's 16 cells, giving
   ``[N, 128, P]`` with the 128 values in the order (bin, cell row, cell column);
5. SIFT normalisation over the 128 values: L2, clip at 0.2, L2 (Mul, ReduceSum,
   Sqrt, Max, Div, Min);
6. codebook (its columns permuted to the graph's order, :func:`graph_order`):
   ``'hard'`` -- ArgMax of ``c_k . d - |c_k|^2 / 2`` (MatMul, Sub), counted per image
   with ``ScatterElements(reduction='add')``; ``'soft'`` -- Softmax of
   ``-beta * max(|d|^2 - 2 c_k . d + |c_k|^2, 0)`` summed over the patches;
7. histogram normalisation 'l1' / 'l2' / 'power' with zero histograms kept zero
   (Sign, Abs, Sqrt, ReduceSum, Greater, Where, Div).

The input's ``H`` and ``W`` must be fixed (the grid depends on them); the output
is ``[N, n_words]`` float32. ``mode='keypoints'`` (OpenCV's detector) has no ONNX
equivalent and raises at export, naming ``mode='dense'``.
"""

from __future__ import annotations

import numpy as np

from ..features import _dense_sift as ds
from ..features.sift import SIFTBoW
from ._ops import Graph, image_input
from .color import count_rows

__all__ = ["converter", "register", "shape_calculator"]

# name hints of two intermediates, [N, 128, P] descriptors and [N, P] nearest words
# (tests add them as graph outputs)
DESCRIPTOR_HINT = "dense_sift_descriptors"
ASSIGNMENT_HINT = "nearest_word"


def _input_layout(operator):
    """(h, w, channels, numpy dtype of the input) after the export checks."""
    est = operator.raw_operator
    if est.mode != "dense":
        raise ValueError(
            f"SIFTBoW(mode={est.mode!r}) cannot be exported to ONNX: OpenCV's SIFT keypoint "
            "detector has no equivalent in standard ONNX operators. Use SIFTBoW(mode='dense') "
            "(cvfeat's own dense SIFT on a regular grid), which exports, and refit the pipeline."
        )
    inp = image_input(operator, fixed_size=True)
    p = est.patch_size
    if inp.h < p or inp.w < p:
        raise ValueError(
            f"{inp.where}: images are {inp.h}x{inp.w} pixels but mode='dense' needs at least "
            f"{p}x{p} (patch_size={p}). Use a smaller patch_size or a Resize step first."
        )
    return inp.h, inp.w, inp.channels, inp.dtype


def shape_calculator(operator):
    """Output ``FloatTensorType([N, n_words])``."""
    from skl2onnx.common.data_types import FloatTensorType

    _input_layout(operator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, operator.raw_operator.n_words])


def grey_images(g, x, h, w, channels, in_dtype, dt):
    """:func:`cvfeat.features._dense_sift.grey_images` as ``[N, 1, H, W]`` of ``dt``."""
    img = g.cast(x, dt)
    if in_dtype == np.uint8:
        img = g.op("Div", img, g.const(dt.type(255)))
    if channels == 3:
        wr, wg, wb = (g.const(dt.type(v)) for v in ds.GREY_WEIGHTS)
        # [N, H, W] channels: ORT broadcasts a scalar over [N, H, W, 1] ~20x slower
        r, gg, b = (g.op("Gather", img, g.const(np.int64(i)), axis=3) for i in range(3))
        img = g.op("Add", g.op("Add", g.op("Mul", r, wr), g.op("Mul", gg, wg)), g.op("Mul", b, wb))
    return g.reshape(img, [-1, 1, h, w])


def orientation_weights(g, grey, dt):
    """:func:`cvfeat.features._dense_sift.orientation_weights`, as two ``[N, 4, H, W]`` halves.

    Bins ``k + 4`` point opposite to bins ``k``: their projection is exactly
    ``-<u_k, g>`` and their cross term exactly the same, so only 4 directions are
    multiplied out (numpy's values, bit for bit, at half the memory traffic).
    Returns (weights of bins 0-3, weights of bins 4-7).
    """
    pads = g.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    padded = g.op("Pad", grey, pads, mode="edge")
    gx = g.op("Sub", g.slice(padded, [1, 2], [-1, None], axes=[2, 3]),
              g.slice(padded, [1, 0], [-1, -2], axes=[2, 3]), hint="gx")
    gy = g.op("Sub", g.slice(padded, [2, 1], [None, -1], axes=[2, 3]),
              g.slice(padded, [0, 1], [-2, -1], axes=[2, 3]), hint="gy")
    cos, sin = ds.bin_directions(dt)
    half = ds.N_BINS // 2
    assert np.array_equal(cos[half:], -cos[:half]) and np.array_equal(sin[half:], -sin[:half])
    cos = g.const(cos[:half].reshape(1, half, 1, 1))
    sin = g.const(sin[:half].reshape(1, half, 1, 1))
    proj = g.op("Add", g.op("Mul", gx, cos), g.op("Mul", gy, sin))  # <u_k, g>
    cross = g.op("Abs", g.op("Sub", g.op("Mul", gx, sin), g.op("Mul", gy, cos)))
    r_pos = g.op("Relu", g.op("Sub", proj, cross))
    r_neg = g.op("Relu", g.op("Sub", g.op("Neg", proj), cross))
    magnitude = g.op("Sqrt", g.op("Add", g.op("Mul", gx, gx), g.op("Mul", gy, gy)))
    # at most two of the 8 values are non-zero, so any summation order is exact
    total = g.op("Add", g.reduce("ReduceSum", r_pos, [1], keepdims=1),
                 g.reduce("ReduceSum", r_neg, [1], keepdims=1))
    total = g.op("Max", total, g.const(dt.type(np.finfo(dt).tiny)))
    scale = g.op("Div", magnitude, total)
    return g.op("Mul", r_pos, scale), g.op("Mul", r_neg, scale)


def _distinct_starts(origins, cell):
    """Distinct cell starts of all patches and, per patch, the position of its 4 cells."""
    starts = origins[:, None] + cell * np.arange(ds.N_CELLS)  # (n_patches, 4)
    distinct, where = np.unique(starts, return_inverse=True)
    return distinct, where.reshape(starts.shape)


def _sum_cells(g, x, shape, axis, distinct, cell):
    """Sum ``x`` (``shape``, batch first) over ``cell`` positions from each start on ``axis``.

    Starts ``cell`` apart (``step`` a multiple of the cell size, the default): one
    Slice, a Reshape that splits the axis into (cells, cell) and a ReduceSum;
    otherwise a Gather of the (start, offset) positions and a ReduceSum.
    """
    if np.all(np.diff(distinct) == cell):
        stop = int(distinct[-1]) + cell
        x = g.slice(x, [int(distinct[0])], [stop], axes=[axis])
        split = [-1, *shape[1:axis], len(distinct), cell, *shape[axis + 1:]]
        x = g.reshape(x, split)
    else:
        rows = distinct[:, None] + np.arange(cell)  # (n_distinct, cell)
        x = g.op("Gather", x, g.const(rows, np.int64), axis=axis)
    return g.reduce("ReduceSum", x, [axis + 1])


def dense_descriptors(g, weights, h, w, est, dt):
    """:func:`cvfeat.features._dense_sift.dense_sift`: ``[N, 128, P]``, normalised.

    Layout: the 128 values on axis 1 in the order (bin, cell row, cell column) --
    numpy's order is (cell row, cell column, bin); :func:`encode` permutes the
    codebook to match -- and the ``P`` patches in row-major grid order on axis 2.
    One Gather picks every (bin, cell row, cell column, patch) from the cell sums,
    so no Transpose is needed.
    """
    cell = est.patch_size // ds.N_CELLS
    rows, where_y = _distinct_starts(ds.grid_origins(h, est.patch_size, est.step), cell)
    cols, where_x = _distinct_starts(ds.grid_origins(w, est.patch_size, est.step), cell)
    half = ds.N_BINS // 2
    sums = []
    for part in weights:  # [N, 4, H, W] each
        s = _sum_cells(g, part, [None, half, h, w], 2, rows, cell)  # [N, 4, rows, W]
        sums.append(_sum_cells(g, s, [None, half, len(rows), w], 3, cols, cell))
    s = g.op("Concat", *sums, axis=1)  # [N, 8, rows, cols]
    s = g.reshape(s, [-1, ds.N_BINS, len(rows) * len(cols)])
    # flat cell index of (cell row i, cell column j, patch (py, px))
    flat = where_y.T[:, None, :, None] * len(cols) + where_x.T[None, :, None, :]  # (4,4,ny,nx)
    n_patches = len(where_y) * len(where_x)
    s = g.op("Gather", s, g.const(flat.reshape(-1), np.int64), axis=2)  # [N, 8, 16 * P]
    desc = g.reshape(s, [-1, ds.N_CELLS * ds.N_CELLS * ds.N_BINS, n_patches])
    return normalize_sift(g, desc, dt)


def normalize_sift(g, desc, dt):
    """:func:`cvfeat.features._dense_sift.normalize_sift` over axis 1 of ``[N, 128, P]``."""
    floor = g.const(dt.type(ds._NORM_FLOOR))

    def l2(d, hint=None):
        norm = g.op("Sqrt", g.reduce("ReduceSum", g.op("Mul", d, d), [1], keepdims=1))
        return g.op("Div", d, g.op("Max", norm, floor), hint=hint)

    return l2(g.op("Min", l2(desc), g.const(dt.type(ds.CLIP))), hint=DESCRIPTOR_HINT)


def graph_order(values):
    """Reorder the last axis of numpy-ordered descriptors (cell row, cell column, bin)
    into the graph's order (bin, cell row, cell column)."""
    shape = values.shape[:-1]
    v = values.reshape(*shape, ds.N_CELLS, ds.N_CELLS, ds.N_BINS)
    return np.moveaxis(v, -1, -3).reshape(*shape, -1)


def encode(g, desc, est, dt):
    """``SIFTBoW._histograms`` of ``[N, 128, P]`` descriptors: ``[N, n_words]`` of ``dt``."""
    words = graph_order(est.codebook_.astype(dt))  # (k, 128)
    cross = g.op("MatMul", g.const(words), desc)  # [N, k, P]
    sq_words = np.sum(words * words, axis=1)[:, None]  # (k, 1)
    if est.encoding == "hard":
        score = g.op("Sub", cross, g.const(dt.type(0.5) * sq_words))
        nearest = g.op("ArgMax", score, axis=1, keepdims=0, hint=ASSIGNMENT_HINT)  # [N, P]
        hist = count_rows(g, nearest, est.n_words)
        return hist if dt == np.float32 else g.cast(hist, dt)
    sq_desc = g.reduce("ReduceSum", g.op("Mul", desc, desc), [1], keepdims=1)  # [N, 1, P]
    d2 = g.op("Add", g.op("Sub", sq_desc, g.op("Mul", g.const(dt.type(2)), cross)),
              g.const(sq_words))
    logits = g.op("Mul", g.const(-dt.type(est.beta_)), g.op("Max", d2, g.const(dt.type(0))))
    return g.reduce("ReduceSum", g.op("Softmax", logits, axis=1), [2])


def normalize_rows(g, hist, how, dt):
    """``sift._normalize_rows``: 'l1', 'l2' or 'power'; zero rows stay zero."""
    if how == "power":
        hist = g.op("Mul", g.op("Sign", hist), g.op("Sqrt", g.op("Abs", hist)))
    if how == "l1":
        norm = g.reduce("ReduceSum", g.op("Abs", hist), [1], keepdims=1)
    else:
        norm = g.op("Sqrt", g.reduce("ReduceSum", g.op("Mul", hist, hist), [1], keepdims=1))
    zero, one = g.const(dt.type(0)), g.const(dt.type(1))
    return g.op("Div", hist, g.op("Where", g.op("Greater", norm, zero), norm, one))


def converter(scope, operator, container):
    """SIFTBoW(mode='dense') -> grey, gradients, cells, descriptors, codebook, histogram."""
    est = operator.raw_operator
    h, w, channels, in_dtype = _input_layout(operator)
    # float32 for uint8 and float32 images, float64 for float64 images. numpy works in
    # float64 for uint8 images too, but ORT's float64 kernels make the graph ~4x slower
    # for an effect on the features of ~1e-7 (and ~2e-5 of nearest words flipping).
    dt = np.dtype(np.float32 if in_dtype != np.float64 else np.float64)
    g = Graph(scope, operator, container)
    grey = grey_images(g, operator.inputs[0].full_name, h, w, channels, in_dtype, dt)
    desc = dense_descriptors(g, orientation_weights(g, grey, dt), h, w, est, dt)
    hist = normalize_rows(g, encode(g, desc, est, dt), est.normalize, dt)
    if dt != np.float32:
        hist = g.cast(hist, np.float32)
    g.identity(hist, operator.outputs[0].full_name)


def register():
    """Register the shape calculator and converter of SIFTBoW with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(SIFTBoW, "CvfeatSIFTBoW", shape_calculator, converter)
