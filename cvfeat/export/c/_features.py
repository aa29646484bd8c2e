"""C code of the image steps and feature steps (pixels -> features).

Every generator takes the :class:`~cvfeat.export.c._emit.Program`, the fitted step,
the input image (an :class:`Image`: a C expression of a ``const uint8_t *`` and its
``h x w x c``), a :class:`Sink` that says what to do with each feature value, and the
work-memory :class:`Arena`; it emits its code and returns the number of features.

Sinks: :class:`StoreSink` writes feature ``i`` to ``dst[base + i]``;
:class:`LinearSink` adds ``w_k[base + i] * v`` to ``out[k]`` for every output ``k``
(a linear model reads the features as they are made, so they are never stored:
RAM is the step's scratch only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ... import _color
from ...features.color import ColorHistogram
from ...features.hog import HOG, orientation_bin
from ...features.lbp import LBP, circle_offsets, grid_edges, n_codes
from ...preprocessing import Grayscale, Resize
from ..hog import edge_cotangents
from ..preprocessing import resize_plan
from ._emit import c_float

__all__ = ["FEATURE_STEPS", "IMAGE_STEPS", "Arena", "Image", "LinearSink", "StoreSink"]


@dataclass(frozen=True)
class Image:
    """A uint8 image in C: ``expr`` is a ``const uint8_t *``, row-major ``h x w x c``."""

    expr: str
    h: int
    w: int
    c: int

    @property
    def nbytes(self):
        return self.h * self.w * self.c


class Arena:
    """Offsets into the one work buffer (floats), used like a stack."""

    def __init__(self, program):
        self.program = program
        self.top = 0

    def push(self, n_floats):
        off = self.top
        self.top += int(n_floats)
        self.program.need_work(self.top)
        return off

    def pop(self, mark):
        self.top = mark


@dataclass(frozen=True)
class StoreSink:
    """Feature ``i`` goes to ``dst[base + i]`` (``dst`` is the work buffer's feature
    vector), times ``factor`` (a FeatureUnion's transformer weight)."""

    base: int = 0
    factor: float = 1.0

    def shifted(self, n, factor=1.0):
        return replace(self, base=self.base + n, factor=self.factor * factor)

    def line(self, index, value):
        v = value if self.factor == 1.0 else f"{c_float(self.factor)} * ({value})"
        return f"dst[{self.base} + {index}] = {v};"


@dataclass(frozen=True)
class LinearSink:
    """Feature ``i`` adds ``W[k, base + i] * v`` to ``dst[k]`` (``dst`` is ``out``).

    ``weights`` is the ident of the ``(k, d)`` row-major table; a StandardScaler that
    is not folded into it gives ``mean``/``scale`` tables: ``v`` is then first
    ``(v - mean[j]) / scale[j]``.
    """

    weights: str
    d: int
    k: int
    base: int = 0
    mean: str | None = None
    scale: str | None = None
    factor: float = 1.0

    def shifted(self, n, factor=1.0):
        return replace(self, base=self.base + n, factor=self.factor * factor)

    def line(self, index, value):
        j = f"{self.base} + {index}"
        v = value if self.factor == 1.0 else f"{c_float(self.factor)} * ({value})"
        if self.mean is not None:
            v = f"(({v}) - {self.mean}[{j}]) / {self.scale}[{j}]"
        if self.k == 1:
            return f"dst[0] += {self.weights}[{j}] * ({v});"
        return (f"{{ const float v_ = {v}; int k_; for (k_ = 0; k_ < {self.k}; ++k_) "
                f"dst[k_] += {self.weights}[k_ * {self.d} + {j}] * v_; }}")


def _check_shape(step, img, where):
    shape = tuple(int(v) for v in step.image_shape_)
    if shape != (img.h, img.w, img.c):
        raise ValueError(
            f"to_c: {where} {type(step).__name__} was fitted on images of shape {shape} (h, w, "
            f"c) but receives {(img.h, img.w, img.c)} here; export with X_sample of the "
            "fitted size (or put a Resize first).")


# -- HOG ------------------------------------------------------------------------------

_NORM = {
    "L1": """\
        s = 0.0f;
        for (n = 0; n < {B}; ++n) s += blk[n];
        s += {EPS}f;
        for (n = 0; n < {B}; ++n) blk[n] = blk[n] / s;""",
    "L1-sqrt": """\
        s = 0.0f;
        for (n = 0; n < {B}; ++n) s += blk[n];
        s += {EPS}f;
        for (n = 0; n < {B}; ++n) blk[n] = sqrtf(blk[n] / s);""",
    "L2": """\
        s = 0.0f;
        for (n = 0; n < {B}; ++n) s += blk[n] * blk[n];
        s = sqrtf(s + {EPS2});
        for (n = 0; n < {B}; ++n) blk[n] = blk[n] / s;""",
}
_NORM["L2-Hys"] = _NORM["L2"] + """
        s = 0.0f;
        for (n = 0; n < {B}; ++n) {{
            if (blk[n] > 0.2f) blk[n] = 0.2f;
            s += blk[n] * blk[n];
        }}
        s = sqrtf(s + {EPS2});
        for (n = 0; n < {B}; ++n) blk[n] = blk[n] / s;"""


def _hog_hist_int(program, h, w, c, cr, cc, ncr, ncc, nb):
    """C of the cell histograms of a uint8 image (integer gradients), in runs of at most
    64 pixels of a row: (1) gradients without branches (the border's zero differences
    by index arithmetic), colour: the channel of largest magnitude (the first on ties,
    as numpy's argmax of float64 ``hypot``); each gradient folded into the half plane
    ``g_row > 0`` (or ``g_row == 0 < g_col``), the same angle mod 180 degrees; (2) the
    bins: ``t_k <= angle`` exactly when ``g_col * Q_k <= g_row * P_k``
    (:func:`integer_edges`; the products are exact in float32, a loop the compiler
    vectorises); (3) ``sqrtf`` of the exact sum of squares added to the cell."""
    rows, cols = ncr * cr, ncc * cc
    m = max(k for k in range(1, ncc + 1) if ncc % k == 0 and k * cc <= max(64, cc))
    run = m * cc  # pixels per run: whole cells, divides the row
    fold, bins = program.ident("hog_fold"), program.ident("hog_bin")
    tests = " + ".join(f"(b * {c_float(q)} <= a * {c_float(p_)})"
                       for p_, q in integer_edges(nb)) or "(int)(0.0f * (a + b))"
    program.function(f"""
/* a gradient turned into the half plane g_row > 0 (or g_row == 0 < g_col): the same
   orientation mod 180 degrees */
static void {fold}(int gr, int gc, float *a, float *b)
{{
    const int flip = (gr < 0) | ((gr == 0) & (gc < 0));
    *a = (float)((gr ^ -flip) + flip);
    *b = (float)((gc ^ -flip) + flip);
}}

/* orientation bin of a folded integer gradient (a, b): the count of edges t_k at or
   below its angle, t_k <= angle exactly when b * Q_k <= a * P_k, P_k / Q_k a rational
   cot t_k checked at export against numpy's bins for all 511 x 511 integer pairs */
static int {bins}(float a, float b)
{{
    return {tests};
}}""")
    if c == 1:
        pixel = f"""\
                const int in_c = (x > 0) & (x < {w - 1});
                const int gr = (int)down[x] - (int)up[x];
                const int gc = (int)q[x + in_c] - (int)q[x - in_c];"""
    else:
        pixel = f"""\
                const int in_c = (x > 0) & (x < {w - 1}), xc = 3 * x, dc = 3 * in_c;
                int gr = (int)down[xc] - (int)up[xc], gc = (int)q[xc + dc] - (int)q[xc - dc];
                int best = gr * gr + gc * gc, ch;
                for (ch = 1; ch < 3; ++ch) {{
                    const int a_ = (int)down[xc + ch] - (int)up[xc + ch];
                    const int b_ = (int)q[xc + ch + dc] - (int)q[xc + ch - dc];
                    const int m2_ = a_ * a_ + b_ * b_;
                    /* equal sums of squares: numpy compares libm's hypot, which is not
                       always the same for two pairs of one sum */
                    if (m2_ > best || (m2_ == best && m2_ > 0
                            && hypot((double)a_, (double)b_) > hypot((double)gr, (double)gc))) {{
                        best = m2_;
                        gr = a_;
                        gc = b_;
                    }}
                }}"""
    return f"""\
    for (r = 0; r < {rows}; ++r) {{
        const uint8_t *q = img + (size_t)r * {w * c};
        const int in_r = r >= 1 && r <= {h - 2};
        const uint8_t *up = in_r ? q - {w * c} : q, *down = in_r ? q + {w * c} : q;
        float *cell_row = hist + (r / {cr}) * {ncc * nb};
        int x0, i;
        for (x0 = 0; x0 < {cols}; x0 += {run}) {{
            float fa[{run}], fb[{run}], m2[{run}];
            int bin[{run}];
            for (i = 0; i < {run}; ++i) {{
                const int x = x0 + i;
{pixel}
                {fold}(gr, gc, fa + i, fb + i);
                m2[i] = (float)(gr * gr + gc * gc);
            }}
            for (i = 0; i < {run}; ++i) bin[i] = {bins}(fa[i], fb[i]);
            for (i = 0; i < {run}; ++i)
                cell_row[((x0 + i) / {cc}) * {nb} + bin[i]] += sqrtf(m2[i]);
        }}
    }}"""


def _hog_gradient_sqrt(program, h, w, c):
    """C statements: float64 ``gr``, ``gc`` of ``sqrt(pixel)``, as numpy (float64)."""
    sq = program.table("sqrt_u8", np.sqrt(np.arange(256, dtype=np.float64)), "double",
                       what="HOG square-root table")
    inside = f"const int in_r = r >= 1 && r <= {h - 2}, in_c = x >= 1 && x <= {w - 2};"
    if c == 1:
        return f"""\
            const uint8_t *q = img + (size_t)r * {w} + x;
            {inside}
            gr = in_r ? {sq}[q[{w}]] - {sq}[q[-{w}]] : 0.0;
            gc = in_c ? {sq}[q[1]] - {sq}[q[-1]] : 0.0;"""
    return f"""\
            const uint8_t *q = img + ((size_t)r * {w} + x) * 3;
            double best = -1.0;
            int ch;
            {inside}
            for (ch = 0; ch < 3; ++ch, ++q) {{
                const double a = in_r ? {sq}[q[{3 * w}]] - {sq}[q[-{3 * w}]] : 0.0;
                const double b = in_c ? {sq}[q[3]] - {sq}[q[-3]] : 0.0;
                const double m = hypot(a, b);
                if (m > best) {{
                    best = m;
                    gr = a;
                    gc = b;
                }}
            }}"""


def _convergents(x, limit):
    """Continued-fraction convergents p/q of ``x`` with ``max(|p|, q) <= limit``."""
    p0, q0, p1, q1 = 0, 1, 1, 0
    for _ in range(64):
        a = int(np.floor(x))
        p0, q0, p1, q1 = p1, q1, a * p1 + p0, a * q1 + q0
        if max(abs(p1), q1) > limit:
            return
        yield p1, q1
        if x == a:
            return
        x = 1.0 / (x - a)


@lru_cache(maxsize=16)
def integer_edges(orientations):
    """Per bin edge below 180 degrees, integers ``(P, Q)`` such that for every integer
    gradient pair of a uint8 image, turned into the half plane ``a = g_row > 0`` (or
    ``g_row == 0 < g_col``) with ``b = g_col``: ``b * Q <= a * P`` (exact in float32:
    ``|P|, Q <= 2**24 / 255``) exactly when numpy's
    orientation is at or above the edge (:func:`cvfeat.features.hog.orientation_bin`:
    ``[bin > k]``). Found among the convergents of ``cot t_k`` and checked on all 511 x 511 pairs; exact edges (45, 90, 135 degrees) give 1/1, 0/1,
    -1/1."""
    g = np.arange(-255, 256, dtype=np.int64)
    gr, gc = np.meshgrid(g, g, indexing="ij")
    ref = orientation_bin(gr.astype(np.float64), gc.astype(np.float64), orientations)
    flip = (gr < 0) | ((gr == 0) & (gc < 0))
    a, b = np.where(flip, -gr, gr), np.where(flip, -gc, gc)
    keep = (gr != 0) | (gc != 0)  # a zero gradient adds nothing
    out = []
    for k, cot in enumerate(edge_cotangents(orientations)):
        want = (ref > k)[keep]
        for p, q in _convergents(float(cot), 2**24 // 255):  # products exact in float32
            if np.array_equal((b * q <= a * p)[keep], want):
                out.append((p, q))
                break
        else:  # pragma: no cover - no such case for 1..126 orientations (tested)
            raise RuntimeError(f"no integer test for HOG edge {k} of {orientations} "
                               "orientations; please report this.")
    return tuple(out)


def hog(program, step, img, sink, arena, where):
    """HOG: cell histograms in the work buffer, then each block normalised and sunk.

    uint8 pixels without ``transform_sqrt``: integer central differences; the
    orientation bin by integer sign tests against the edges (:func:`integer_edges`,
    equal to :func:`cvfeat.features.hog.orientation_bin` for all 511 x 511 integer
    pairs: no tables, no division, no branch; see :func:`_hog_hist_int`); magnitude
    ``sqrtf`` of the exact integer sum of squares. With
    ``transform_sqrt``: float64 differences of ``sqrt(pixel)`` (a 256-entry table),
    the bin by the same test in float64 (numpy's own ``arctan2`` is not the C
    library's: comparing an angle would differ where the two round apart), magnitude
    ``hypot`` in float64. Cell sums, block norms and the output in float32.
    """
    _check_shape(step, img, where)
    h, w, c = img.h, img.w, img.c
    cr, cc, br, bc, ncr, ncc, nbr, nbc = step._geometry(h, w)
    nb = int(step.orientations)
    block = br * bc * nb
    fn = program.ident("hog")
    if step.transform_sqrt:
        cot = edge_cotangents(nb)
        cot_t = program.table("hog_cot", cot if len(cot) else [0.0], "double",
                              what="HOG cotangents")
        grad = _hog_gradient_sqrt(program, h, w, c)
        decl = "double gr = 0.0, gc = 0.0;"
        binning = f"""\
            if (gr == 0.0 && gc == 0.0) continue;
            {{
                int bin = 0;
                if (gr != 0.0) {{
                    const double ratio = gc / gr;
                    while (bin < {len(cot)} && ratio <= {cot_t}[bin]) ++bin;
                }}
                cell_row[(x / {cc}) * {nb} + bin] += (float)hypot(gr, gc);
            }}"""
        program.uses_double = True
        hist_code = f"""\
    for (r = 0; r < {ncr * cr}; ++r) {{{{
        float *cell_row = hist + (r / {cr}) * {ncc * nb};
        for (x = 0; x < {ncc * cc}; ++x) {{{{
            {decl}
{grad}
{binning}
        }}}}
    }}}}"""
    else:
        if c == 3:
            program.uses_double = True
        hist_code = _hog_hist_int(program, h, w, c, cr, cc, ncr, ncc, nb)
    norm = _NORM[step.block_norm].format(B=block, EPS="1e-05", EPS2=c_float(1e-10))
    hist_floats = ncr * ncc * nb
    program.function(f"""
/* HOG of a {h}x{w}x{c} image: {nb} orientations, cells {cr}x{cc}, blocks {br}x{bc},
   {step.block_norm}; {nbr * nbc * block} features */
static void {fn}(const uint8_t *img, float *hist, float *dst)
{{
    int r, x, n;
    (void)x;
    for (n = 0; n < {hist_floats}; ++n) hist[n] = 0.0f;
{hist_code}
    {{
        int bi, bj, i, j, o;
        for (bi = 0; bi < {nbr}; ++bi) {{
            for (bj = 0; bj < {nbc}; ++bj) {{
                float blk[{block}];
                float s;
                n = 0;
                for (i = 0; i < {br}; ++i) {{
                    for (j = 0; j < {bc}; ++j) {{
                        const float *cell = hist + ((bi + i) * {ncc} + bj + j) * {nb};
                        for (o = 0; o < {nb}; ++o) blk[n++] = cell[o] / {c_float(cr * cc)};
                    }}
                }}
{norm}
                for (n = 0; n < {block}; ++n) {{
                    {sink.line(f"(bi * {nbc} + bj) * {block} + n", "blk[n]")}
                }}
            }}
        }}
    }}
}}""")
    mark = arena.top
    off = arena.push(hist_floats)
    program.emit(f"{fn}({img.expr}, work + {off}, {_dst(sink)});")
    arena.pop(mark)
    return nbr * nbc * block


def _dst(sink):
    return "out" if isinstance(sink, LinearSink) else "feat"




def _out_image(program, arena, h, w, c):
    """A uint8 image buffer in the work memory (kept until the feature part ends)."""
    off = arena.push(-(-h * w * c // 4))
    return Image(f"(const uint8_t *)(work + {off})", h, w, c), f"(uint8_t *)(work + {off})"


# -- Resize ------------------------------------------------------------------------------


def resize(program, step, img, arena, where):
    """``cv2.resize`` of uint8 images, bit-exact (the ONNX converter's arithmetic):
    integer block means for integer 'area' factors, OpenCV's float32 area taps
    (columns, then rows, recomputed per output row instead of buffered), OpenCV's
    fixed-point bilinear taps (coefficients * 2048) for 'linear' and for 'area' when
    a side grows."""
    step._check_params()
    dh, dw = (int(v) for v in step.size)
    c = img.c
    kind, axes = resize_plan((img.h, img.w), (dh, dw), step.interpolation, np.uint8)
    if kind == "copy":
        return img
    out, dst = _out_image(program, arena, dh, dw, c)
    fn = program.ident("resize")
    src_at = f"src[((size_t)(ROW) * {img.w} + (COL)) * {c} + ch]"

    def at(row, col):
        return src_at.replace("ROW", row).replace("COL", col)

    if kind == "area_fast":
        fy, fx = axes
        if (fy, fx) == (2, 2):
            value = "(uint8_t)((s + 2u) >> 2)"
        else:
            value = f"(uint8_t)nearbyintf((float)s * {c_float(np.float32(1.0 / (fy * fx)))})"
        inner = f"""\
                uint32_t s = 0u;
                int i, j;
                for (i = 0; i < {fy}; ++i)
                    for (j = 0; j < {fx}; ++j) s += {at(f"y * {fy} + i", f"x * {fx} + j")};
                dst[((size_t)y * {dw} + x) * {c} + ch] = {value};"""
    elif kind == "area":
        (iy, ay), (ix, ax) = axes
        ty, tx = len(iy), len(ix)
        iyt = program.table("resize_rows", iy, "int32_t", what="Resize row taps")
        ayt = program.table("resize_row_w", ay, "float", what="Resize row weights")
        ixt = program.table("resize_cols", ix, "int32_t", what="Resize column taps")
        axt = program.table("resize_col_w", ax, "float", what="Resize column weights")
        inner = f"""\
                float acc = 0.0f;
                int t, u;
                for (t = 0; t < {ty}; ++t) {{
                    const int row = {iyt}[t * {dh} + y];
                    float v = 0.0f;
                    for (u = 0; u < {tx}; ++u)
                        v = v + (float){at("row", f"{ixt}[u * {dw} + x]")} * {axt}[u * {dw} + x];
                    acc = acc + v * {ayt}[t * {dh} + y];
                }}
                acc = nearbyintf(acc);
                dst[((size_t)y * {dw} + x) * {c} + ch] =
                    (uint8_t)(acc < 0.0f ? 0.0f : acc > 255.0f ? 255.0f : acc);"""
    else:  # linear: OpenCV's fixed point
        (iy, ay), (ix, ax) = axes
        a_fix = np.round(ax * np.float32(2048)).astype(np.int32)
        b_fix = np.round(ay * np.float32(2048)).astype(np.int32)
        iyt = program.table("resize_rows", iy, "int32_t", what="Resize row taps")
        ixt = program.table("resize_cols", ix, "int32_t", what="Resize column taps")
        at_ = program.table("resize_col_w", a_fix, "int32_t", what="Resize column weights")
        bt_ = program.table("resize_row_w", b_fix, "int32_t", what="Resize row weights")

        def row_sum(t):
            row = f"{iyt}[{t} * {dh} + y]"
            return (f"((int32_t){at(row, f'{ixt}[x]')} * {at_}[x] + (int32_t)"
                    f"{at(row, f'{ixt}[{dw} + x]')} * {at_}[{dw} + x]) >> 4")
        inner = f"""\
                const int32_t s0 = {row_sum(0)};
                const int32_t s1 = {row_sum(1)};
                const int32_t v = ((s0 * {bt_}[y]) >> 16) + ((s1 * {bt_}[{dh} + y]) >> 16);
                dst[((size_t)y * {dw} + x) * {c} + ch] = (uint8_t)((v + 2) >> 2);"""
    program.function(f"""
/* cv2.resize {img.h}x{img.w} -> {dh}x{dw} ({step.interpolation}: {kind}), x{c} channels */
static void {fn}(const uint8_t *src, uint8_t *dst)
{{
    int y, x, ch;
    for (y = 0; y < {dh}; ++y) {{
        for (x = 0; x < {dw}; ++x) {{
            for (ch = 0; ch < {c}; ++ch) {{
{inner}
            }}
        }}
    }}
}}""")
    program.emit(f"{fn}({img.expr}, {dst});")
    return out


# -- Grayscale ---------------------------------------------------------------------------


def _gray_function(program):
    fn = program.ident("rgb_to_gray")
    wr, wg, wb = _color._GRAY_FIXED
    program.function(f"""
/* OpenCV's COLOR_RGB2GRAY in fixed point: (9798 R + 19235 G + 3735 B + 2^14) >> 15 */
static void {fn}(const uint8_t *src, uint8_t *dst, size_t n)
{{
    size_t i;
    for (i = 0; i < n; ++i, src += 3)
        dst[i] = (uint8_t)(({wr}u * src[0] + {wg}u * src[1] + {wb}u * src[2] + 16384u) >> 15);
}}""")
    return fn


def to_gray(program, img, arena):
    if img.c == 1:
        return img
    out, dst = _out_image(program, arena, img.h, img.w, 1)
    program.emit(f"{_gray_function(program)}({img.expr}, {dst}, {img.h * img.w});")
    return out


def grayscale(program, step, img, arena, where):
    """Grayscale: OpenCV's fixed-point weights; grey images pass through."""
    return to_gray(program, img, arena)


# -- ColorHistogram ----------------------------------------------------------------------


def _bin(value, lo, hi, bins):
    """C of cvfeat.features.color.bin_index in float32: floor((v - lo) * bins / (hi - lo))
    limited to [0, bins - 1]."""
    return (f"clamp_bin((({value}) - {c_float(lo)}) * {c_float(bins)} / "
            f"{c_float(np.float32(hi - lo))}, {bins - 1})")


def _colour_pixel(space):
    """C statements: float32 channel values v0, v1, v2 of pixel ``q`` in ``space``
    (cvfeat._color's operation order, so every value is numpy's)."""
    eps = c_float(np.finfo(np.float32).eps)
    rgb = """\
        const float r = u8_unit[q[0]], g = u8_unit[q[1]], b = u8_unit[q[2]];"""
    if space == "rgb":
        return rgb + "\n        const float v0 = r, v1 = g, v2 = b;"
    if space == "hsv":
        return rgb + f"""
        const float mx = (r > g ? r : g) > b ? (r > g ? r : g) : b;
        const float mn = (r < g ? r : g) < b ? (r < g ? r : g) : b;
        const float d = mx - mn;
        const float k = 60.0f / (d + {eps});
        float v0 = mx == r ? (g - b) * k : mx == g ? (b - r) * k + 120.0f
                                                   : (r - g) * k + 240.0f;
        const float v1 = d / (fabsf(mx) + {eps}), v2 = mx;
        if (v0 < 0.0f) v0 = v0 + 360.0f;"""
    m = _color._RGB_TO_XYZ_WHITE.astype(np.float32)
    xyz = "\n".join(
        f"        const float t{i} = lr * {c_float(m[i, 0])} + lg * {c_float(m[i, 1])} "
        f"+ lb * {c_float(m[i, 2])};" for i in range(3))
    thr = c_float(0.008856)
    return rgb + f"""
        const float lr = srgb_linear(r), lg = srgb_linear(g), lb = srgb_linear(b);
{xyz}
        const float f0 = lab_f(t0), f1 = lab_f(t1), f2 = lab_f(t2);
        const float v0 = t1 > {thr} ? 116.0f * f1 - 16.0f : {c_float(903.3)} * t1;
        const float v1 = 500.0f * (f0 - f1), v2 = 200.0f * (f1 - f2);"""


_LAB_HELPERS = f"""
/* sRGB gamma expansion and the CIE f(t), as cvfeat._color (pow and cbrt in double,
   rounded once to float) */
static float srgb_linear(float x)
{{
    return x <= {c_float(0.04045)} ? x / {c_float(12.92)}
                            : (float)pow((double)((x + {c_float(0.055)}) / {c_float(1.055)}), 2.4);
}}

static float lab_f(float t)
{{
    return t > {c_float(0.008856)} ? (float)cbrt((double)t)
                                   : {c_float(7.787)} * t + {c_float(16.0 / 116.0)};
}}"""

_CLAMP = """
/* floor(v) limited to [0, top] (v is a bin coordinate: |v| far below 2**31) */
static int clamp_bin(float v, int top)
{
    int i = (int)v;
    i -= (float)i > v;
    return i < 0 ? 0 : i > top ? top : i;
}"""


def _helper(program, key, text):
    if key not in program._used:
        program._used.add(key)
        program.function(text)


def color_histogram(program, step, img, sink, arena, where):
    """ColorHistogram of uint8 pixels: the conversion of cvfeat._color in float32
    (Lab's pow and cbrt in double, rounded once, as numpy), bins by the float32
    formula of ``bin_index``, counts in float (exact below 2**24 pixels), then the
    l1 / l2 normalisation."""
    step._validate_params()
    if img.c != int(step.image_shape_[2]):
        raise ValueError(f"to_c: {where} ColorHistogram was fitted on {step.image_shape_[2]}-"
                         f"channel images but receives {img.c} channels here.")
    if img.h * img.w >= 2**24:
        raise ValueError(f"to_c: {where} ColorHistogram: {img.h}x{img.w} images have too many "
                         "pixels to count exactly in float32 (2**24); Resize them first.")
    b = int(step.bins)
    _helper(program, "#clamp_bin", _CLAMP)
    if "u8_unit" not in program._used:  # p / 255 in float32, as numpy: a table, no division
        program._used.add("u8_unit")
        program.tables.append(
            "static const float u8_unit[256] = {\n    "
            + ", ".join(c_float(np.float32(v) / np.float32(255)) for v in range(256)) + "\n};\n")
        program.const_bytes += 4 * 256
    if img.c == 1:
        k = b
        pixel = "        const float v = u8_unit[q[0]];"
        index = _bin("v", 0.0, 1.0, b)
        counts_add = f"counts[{index}] += 1.0f;"
    else:
        if step.space == "lab":
            _helper(program, "#lab", _LAB_HELPERS)
            program.uses_double = True
        ranges = _color.CHANNEL_RANGES[step.space]
        pixel = _colour_pixel(step.space)
        idx = [_bin(f"v{i}", lo, hi, b) for i, (lo, hi) in enumerate(ranges)]
        if step.joint:
            k = b**3
            counts_add = f"counts[({idx[0]} * {b} + {idx[1]}) * {b} + {idx[2]}] += 1.0f;"
        else:
            k = 3 * b
            counts_add = " ".join(f"counts[{i * b} + {ix}] += 1.0f;" for i, ix in enumerate(idx))
    if step.normalize == "l1":
        total = f"for (n = 0; n < {k}; ++n) s += counts[n];"
    elif step.normalize == "l2":
        total = f"for (n = 0; n < {k}; ++n) s += counts[n] * counts[n];\n    s = sqrtf(s);"
    else:
        total = "(void)s;"
    value = "counts[n]" if step.normalize is None else "counts[n] / s"
    fn = program.ident("color_hist")
    program.function(f"""
/* ColorHistogram of a {img.h}x{img.w}x{img.c} image: {step.space}, {b} bins, joint={step.joint},
   normalize={step.normalize}; {k} features */
static void {fn}(const uint8_t *img, float *counts, float *dst)
{{
    size_t i;
    int n;
    float s = 0.0f;
    for (n = 0; n < {k}; ++n) counts[n] = 0.0f;
    for (i = 0; i < {img.h * img.w}; ++i) {{
        const uint8_t *q = img + i * {img.c};
{pixel}
        {counts_add}
    }}
    {total}
    for (n = 0; n < {k}; ++n) {{
        {sink.line("n", value)}
    }}
}}""")
    mark = arena.top
    off = arena.push(k)
    program.emit(f"{fn}({img.expr}, work + {off}, {_dst(sink)});")
    arena.pop(mark)
    return k


# -- LBP -----------------------------------------------------------------------------------

def _lbp_sample(fn, p, rp, cp, rpt, cpt, w):
    """C of sample ``p``'s bit. An offset on the pixel grid (both offsets integers: the
    interpolation weights are exactly 1 and 0) reads one pixel; any other the bilinear
    interpolation of numpy's code, in its operation order."""
    if float(rp).is_integer() and float(cp).is_integer():
        dr, dc = int(rp), int(cp)
        return f"""\
                    bits[{p}] = (unsigned char)((inside ? (double)img[(r + {dr}) * {w} + c + {dc}]
                                 : {fn}_at(img, r + {dr}, c + {dc})) - centre >= 0.0);"""
    return f"""\
                    {{
                        int c0, c1;
                        double dc, top, bottom;
                        const double dr = drow[{p}];
                        {fn}_split((double)c + {cpt}[{p}], &c0, &c1, &dc);
                        if (inside) {{  /* every sample in the image: no bounds checks */
                            const uint8_t *a = img + row0[{p}] * {w}, *b = img + row1[{p}] * {w};
                            top = (1.0 - dc) * (double)a[c0] + dc * (double)a[c1];
                            bottom = (1.0 - dc) * (double)b[c0] + dc * (double)b[c1];
                        }} else {{
                            top = (1.0 - dc) * {fn}_at(img, row0[{p}], c0)
                                  + dc * {fn}_at(img, row0[{p}], c1);
                            bottom = (1.0 - dc) * {fn}_at(img, row1[{p}], c0)
                                     + dc * {fn}_at(img, row1[{p}], c1);
                        }}
                        bits[{p}] = (unsigned char)((1.0 - dr) * top + dr * bottom - centre >= 0.0);
                    }}"""


_LBP_CODE = {
    "default": """\
            for (p = 0; p < {P}; ++p) code |= (uint32_t)bits[p] << p;""",
    "ror": """\
            {{
                uint32_t v;
                for (p = 0; p < {P}; ++p) code |= (uint32_t)bits[p] << p;
                v = code;
                for (p = 1; p < {P}; ++p) {{
                    v = (v >> 1) | ((v & 1u) << {P1});
                    if (v < code) code = v;
                }}
            }}""",
    "uniform": """\
            code = changes <= 2 ? (uint32_t)ones : {P}u + 1u;""",
    "nri_uniform": """\
            if (changes > 2) code = {NONUNI}u;
            else if (ones == 0) code = 0u;
            else if (ones == {P}) code = {ALL}u;
            else {{
                int first_one = 0, first_zero = 0, rot;
                while (first_one < {P} && !bits[first_one]) ++first_one;
                while (first_zero < {P} && bits[first_zero]) ++first_zero;
                rot = first_one == 0 ? ones - first_zero : {P} - first_one;
                code = (uint32_t)(1 + (ones - 1) * {P} + rot);
            }}""",
}


def lbp(program, step, img, sink, arena, where):
    """LBP: colour to grey (OpenCV's fixed point), each sample by scikit-image's
    bilinear interpolation in double (zeros outside the image) so that every tie
    ``sample == centre`` is decided as there, the codes, per-cell histograms divided
    by the cell's pixel count."""
    step._validate_params()
    if img.c != int(step.image_shape_[2]):
        raise ValueError(f"to_c: {where} LBP was fitted on {step.image_shape_[2]}-channel "
                         f"images but receives {img.c} channels here.")
    P, method = int(step.P), step.method
    k = n_codes(P, method)
    if k > 65536:
        raise ValueError(f"to_c: {where} LBP(P={P}, method={method!r}) has {k} bins per cell: "
                         "too many for a microcontroller. Use method='uniform' or a smaller P.")
    gr, gc = step._check_grid()
    mark = arena.top
    grey = to_gray(program, img, arena)
    h, w = grey.h, grey.w
    rp, cp = circle_offsets(P, step.R)
    rpt = program.table("lbp_rows", rp, "double", what="LBP row offsets")
    cpt = program.table("lbp_cols", cp, "double", what="LBP column offsets")
    ret = program.table("lbp_row_edges", grid_edges(h, gr), "int32_t", what="LBP grid")
    cet = program.table("lbp_col_edges", grid_edges(w, gc), "int32_t", what="LBP grid")
    program.uses_double = True
    code = _LBP_CODE[method].format(P=P, P1=P - 1, NONUNI=P * (P - 1) + 2,
                                    ALL=P * (P - 1) + 1)
    K = int(np.ceil(float(np.float32(step.R))))  # samples lie within K pixels
    fn = program.ident("lbp")
    samples = "\n".join(_lbp_sample(fn, p, rp[p], cp[p], rpt, cpt, w) for p in range(P))
    program.function(f"""
/* LBP of a {h}x{w} grey image: P={P}, R={step.R}, {method}, grid {gr}x{gc}; {gr * gc * k}
   features */
static double {fn}_at(const uint8_t *img, int r, int c)
{{
    return r >= 0 && r < {h} && c >= 0 && c < {w} ? (double)img[r * {w} + c] : 0.0;
}}

/* floor and ceil of a small double (no libm call); *frac = x - floor(x), as numpy */
static void {fn}_split(double x, int *lo, int *hi, double *frac)
{{
    int i = (int)x;
    i -= (double)i > x;
    *lo = i;
    *hi = i + ((double)i < x);
    *frac = x - (double)i;
}}

static void {fn}(const uint8_t *img, float *counts, float *dst)
{{
    int i, j, r, c, p, n;
    for (i = 0; i < {gr}; ++i) {{
        for (j = 0; j < {gc}; ++j) {{
            const int cell = i * {gc} + j;
            const float area = (float)(({ret}[i + 1] - {ret}[i]) * ({cet}[j + 1] - {cet}[j]));
            for (n = 0; n < {k}; ++n) counts[n] = 0.0f;
            for (r = {ret}[i]; r < {ret}[i + 1]; ++r) {{
                int row0[{P}], row1[{P}];
                double drow[{P}];
                const int rows_in = r >= {K} && r < {h - K};
                for (p = 0; p < {P}; ++p) {fn}_split((double)r + {rpt}[p], row0 + p, row1 + p, drow + p);
                for (c = {cet}[j]; c < {cet}[j + 1]; ++c) {{
                    const double centre = (double)img[r * {w} + c];
                    const int inside = rows_in && c >= {K} && c < {w - K};
                    unsigned char bits[{P}];
                    int ones = 0, changes = 0;
                    uint32_t code = 0u;
{samples}
                    for (p = 0; p < {P}; ++p) {{
                        ones += bits[p];
                        if (p > 0) changes += bits[p] != bits[p - 1];
                    }}
{code}
                    counts[code] += 1.0f;
                    (void)ones;
                    (void)changes;
                }}
            }}
            for (n = 0; n < {k}; ++n) {{
                {sink.line(f"cell * {k} + n", "counts[n] / area")}
            }}
        }}
    }}
}}""")
    off = arena.push(k)
    program.emit(f"{fn}({grey.expr}, work + {off}, {_dst(sink)});")
    arena.pop(mark)
    return gr * gc * k


#: image -> image steps with a C generator, by class
IMAGE_STEPS = {Resize: resize, Grayscale: grayscale}

#: feature steps with a C generator, by class
FEATURE_STEPS = {HOG: hog, ColorHistogram: color_histogram, LBP: lbp}
