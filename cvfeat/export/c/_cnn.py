"""C code of the micro-CNNs (MicroCNNRegressor / MicroCNNClassifier / HybridCNNRegressor).

The fitted network is read from its BatchNorm-folded copy
(:func:`cvfeat.models.architectures.fold_batchnorm`), layer by layer, in float32:

* input: ``(pixel - in_mean) * in_scale`` per channel, read through the view's flips
  (test-time flips cost no copy), plus the two coordinate channels when the
  architecture has them (torch's own ``linspace`` values, stored);
* activations in two alternating buffers, channel planes with a zero border of one
  pixel (the 3x3 convolutions' padding) so that every tap is a whole-row
  multiply-add the compiler can vectorise; each buffer is sized by the largest layer
  input or output;
* each layer (standard 3x3, or depthwise 3x3 + pointwise 1x1; bias = the folded
  BatchNorm) computes ``pool`` rows at a time and writes only the max-pooled, ReLU'd
  result (pooling fused with the convolution); a residual unit adds its input (zero
  channels beyond it) before the pooling, a dense unit writes its pooled input and
  its new channels side by side;
* the head: global average or flatten, the hybrid's standardised features (computed
  by part 1's feature code from the same pixels), an optional hidden layer, the output
  layer; a label-distribution head's softmax and expectation over the bin centres;
  then the target scaling (regression) or the softmax (classification); test-time
  flips average the views.
"""

from __future__ import annotations

import numpy as np

from ._emit import c_float
from ._models import dot_function

__all__ = ["is_cnn", "micro_cnn"]


def is_cnn(model):
    """Whether ``model`` is a cvfeat micro-CNN estimator (without importing torch when
    it is not one)."""
    mod = type(model).__module__
    if not mod.startswith("cvfeat.models"):
        return False
    from ...models._base import _MicroCNNBase

    return isinstance(model, _MicroCNNBase)


def _np(t):
    return t.detach().cpu().numpy().astype(np.float64)


class _Act:
    """An activation: ``h x w`` pixels of ``c`` channels, HWC (a row is ``w * c``
    contiguous floats)."""

    def __init__(self, c, h, w):
        self.c, self.h, self.w = c, h, w
        self.row = w * c
        self.size = h * w * c


def _pad4(n):
    return -(-n // 4) * 4


def _conv_layer(program, unit, pool, src, mode, first, stem=None):
    """C function of one unit, streamed by pooled output rows; returns (name, output
    activation, scratch floats, in-place offset delta).

    Output row ``py`` is computed from input rows ``py * P - 1 .. py * P + P`` into a
    scratch row and then copied to its place; the output may start ``delta`` floats
    before the input, where ``delta`` keeps every write behind the input rows still
    to be read."""
    conv, dw = unit.conv, unit.depthwise
    cin, h, w = src.c, src.h, src.w
    cout = conv.out_channels
    cp = _pad4(cout)  # the accumulators: a multiple of 4 (zero weights), vectorisable
    P = int(pool)
    oh, ow = h // P, w // P
    c_out = cin + cout if mode == "dense" else cout
    dst = _Act(c_out, oh, ow)
    off = cin if mode == "dense" else 0
    bias = np.zeros(cp)
    bias[:cout] = _np(conv.bias)
    bt = program.table("bias", bias, what="folded BatchNorm bias")
    residual = mode == "residual" and not first
    fn = program.ident("layer")
    row_in = w * cin
    if dw is None:
        W = np.zeros((3, 3, cin, cp))
        W[..., :cout] = _np(conv.weight).transpose(2, 3, 1, 0)  # (co, ci, ky, kx) -> taps
        wt = program.table("conv_w", W, what="conv weights")
        if stem is not None:  # the first layer reads the uint8 pixels: no float input copy
            pixel = _stem_pixel(w, cin, cp, bt, wt)
    if dw is None and stem is None:
        pixel = f"""\
                for (co = 0; co < {cp}; ++co) acc[co] = {bt}[co];
                for (ky = ky0; ky < ky1; ++ky) {{
                    const float *restrict v = in + (y + ky - 1) * {row_in};
                    for (kx = kx0; kx < kx1; ++kx) {{
                        const float *restrict k = {wt} + (ky * 3 + kx) * {cin * cp};
                        for (ci = 0; ci < {cin}; ++ci, k += {cp}) {{
                            const float vi = v[(x + kx - 1) * {cin} + ci];
                            for (co = 0; co < {cp}; ++co) acc[co] += vi * k[co];
                        }}
                    }}
                }}"""
    if dw is None:
        scratch = 0
    else:
        wd = program.table("dw_w", _np(dw.weight)[:, 0].transpose(1, 2, 0),
                           what="depthwise weights")  # (ci, 1, ky, kx) -> (ky, kx, ci)
        Wp = np.zeros((cin, cp))
        Wp[:, :cout] = _np(conv.weight)[:, :, 0, 0].T
        wp = program.table("pw_w", Wp, what="pointwise weights")
        pixel = f"""\
                float d[{cin}];
                for (ci = 0; ci < {cin}; ++ci) d[ci] = 0.0f;
                for (ky = ky0; ky < ky1; ++ky) {{
                    const float *restrict v = in + (y + ky - 1) * {row_in};
                    for (kx = kx0; kx < kx1; ++kx) {{
                        const float *restrict k = {wd} + (ky * 3 + kx) * {cin};
{_depthwise_taps(cin)}
                    }}
                }}
                for (co = 0; co < {cp}; ++co) acc[co] = {bt}[co];
                for (ci = 0; ci < {cin}; ++ci) {{
                    const float di = d[ci];
                    const float *restrict k = {wp} + ci * {cp};
                    for (co = 0; co < {cp}; ++co) acc[co] += di * k[co];
                }}"""
        scratch = 0
    skip = ("\n                " + f"for (co = 0; co < {cin}; ++co) acc[co] += "
            f"in[y * {row_in} + x * {cin} + co];" if residual else "")
    dense_copy = ""
    if mode == "dense":  # the input, max-pooled, first in each output pixel
        dense_copy = f"""
            int px, dx;
            for (px = 0; px < {ow}; ++px)
                for (ci = 0; ci < {cin}; ++ci) {{
                    float m = in[py * {P} * {row_in} + px * {P} * {cin} + ci];
                    for (dy = 0; dy < {P}; ++dy)
                        for (dx = 0; dx < {P}; ++dx) {{
                            const float t = in[(py * {P} + dy) * {row_in} + (px * {P} + dx) * {cin} + ci];
                            if (t > m) m = t;
                        }}
                    orow[px * {c_out} + ci] = m;
                }}"""
    scratch += dst.row
    if stem is not None:
        rows = _stem_rows(stem, h, w, cin)
        bounds = ""
        ring = f"\n    float *restrict ring = orow + {dst.row};"
        scratch += 3 * (w + 2) * cin
    else:
        rows = f"\n            const int ky0 = y == 0, ky1 = y == {h - 1} ? 2 : 3;  /* in the image */"
        bounds = f"\n                const int kx0 = x == 0, kx1 = x == {w - 1} ? 2 : 3;"
        ring = ""
    program.function(f"""
/* {'separable' if dw is not None else 'standard'} 3x3 {cin}->{cout} ({mode}) at {h}x{w}, max-pool {P}, ReLU
   -> {c_out} channels at {oh}x{ow}; HWC, streamed by output rows */
static void {fn}({'const uint8_t *img, int fr, int fc' if stem else 'const float *in'}, float *out,
    float *restrict orow)
{{{ring}
    int py, dy, x, ci, co, ky, kx;
    for (py = 0; py < {oh}; ++py) {{{dense_copy}
        for (dy = 0; dy < {P}; ++dy) {{
            const int y = py * {P} + dy;{rows}
            for (x = 0; x < {ow * P}; ++x) {{{bounds}
                float acc[{cp}];
                float *o = orow + (x / {P}) * {c_out} + {off};
{pixel}{skip}
                /* max-pool (the ReLU after it: max and ReLU commute) */
                if (dy == 0 && x % {P} == 0)
                    for (co = 0; co < {cout}; ++co) o[co] = acc[co];
                else
                    for (co = 0; co < {cout}; ++co) o[co] = acc[co] > o[co] ? acc[co] : o[co];
            }}
        }}
        for (x = 0; x < {dst.row}; ++x) {{
            const float t = orow[x];
            out[py * {dst.row} + x] = {'x % ' + str(c_out) + ' < ' + str(off) + ' || ' if off else ''}t > 0.0f ? t : 0.0f;
        }}
    }}
}}""")
    # in place: output row py is written after the rows below (py + 1) * P - 1 are dead
    delta = max([0] + [(py + 1) * dst.row - ((py + 1) * P - 1) * row_in for py in range(oh - 1)])
    return fn, dst, scratch, delta


def _depthwise_taps(cin):
    """C: ``d[ci] += v[...] * k[ci]`` for every channel, four channels per statement group
    (so that the compiler's straight-line vectoriser packs them at -O2), then the rest."""
    term = "d[ci + {j}] += u[ci + {j}] * k[ci + {j}];"
    four = " ".join(term.format(j=j) for j in range(4))
    return f"""\
                        const float *restrict u = v + (x + kx - 1) * {cin};
                        for (ci = 0; ci + 4 <= {cin}; ci += 4) {{ {four} }}
                        for (; ci < {cin}; ++ci) d[ci] += u[ci] * k[ci];"""


def _stem_rows(stem, h, w, cin):
    """C: the three input rows around conv row ``y`` into ``ring``, normalised in float32
    (``(p - in_mean) * in_scale``, as the module), read through the view's flips, with
    the coordinate channels (not flipped, as the module's) and a zero border (the
    convolution's padding)."""
    c_img, mean, scale, ys, xs = stem
    rw = (w + 2) * cin
    coords = "" if ys is None else f"""
                        v[{c_img}] = {ys}[yy];
                        v[{c_img + 1}] = {xs}[xx];"""
    return f"""
            {{
                int r, xx, ci;
                for (r = 0; r < 3; ++r) {{
                    const int yy = y + r - 1;
                    float *restrict g = ring + r * {rw};
                    const uint8_t *prow;
                    if (yy < 0 || yy >= {h}) {{
                        for (xx = 0; xx < {rw}; ++xx) g[xx] = 0.0f;
                        continue;
                    }}
                    prow = img + (fr ? {h - 1} - yy : yy) * {w * c_img};
                    for (ci = 0; ci < {cin}; ++ci) g[ci] = g[{(w + 1) * cin} + ci] = 0.0f;
                    for (xx = 0; xx < {w}; ++xx) {{
                        const uint8_t *q = prow + (fc ? {w - 1} - xx : xx) * {c_img};
                        float *v = g + (xx + 1) * {cin};
                        for (ci = 0; ci < {c_img}; ++ci)
                            v[ci] = ((float)q[ci] - {mean}[ci]) * {scale}[ci];{coords}
                    }}
                }}
            }}"""


def _stem_pixel(w, cin, cp, bt, wt):
    """The first layer's taps, from the zero-bordered rows of :func:`_stem_rows`."""
    return f"""\
                for (co = 0; co < {cp}; ++co) acc[co] = {bt}[co];
                for (ky = 0; ky < 3; ++ky) {{
                    const float *restrict v = ring + ky * {(w + 2) * cin} + x * {cin};
                    for (kx = 0; kx < 3; ++kx) {{
                        const float *restrict k = {wt} + (ky * 3 + kx) * {cin * cp};
                        for (ci = 0; ci < {cin}; ++ci, k += {cp}) {{
                            const float vi = v[kx * {cin} + ci];
                            for (co = 0; co < {cp}; ++co) acc[co] += vi * k[co];
                        }}
                    }}
                }}"""


def micro_cnn(program, est, img, arena, where, feature_gen):
    """Emit the network of a fitted micro-CNN estimator reading ``img``; returns
    ``(n_outputs, task, classes)``. ``feature_gen(program, features_, img, arena)``
    emits a hybrid's feature part and returns ``(C expression of the features, d)``."""
    from ...models._base import TTA_VIEWS
    from ...models.architectures import fold_batchnorm

    est._views()  # validates tta
    module = fold_batchnorm(est.module_).cpu()
    arch = module.arch
    h, w, c_img = int(arch["height"]), int(arch["width"]), int(arch["in_channels"])
    if (img.h, img.w, img.c) != (h, w, c_img):
        raise ValueError(
            f"to_c: {where} {type(est).__name__} was fitted on {h}x{w}x{c_img} images but "
            f"receives {img.h}x{img.w}x{img.c} here; export with X_sample of the fitted size.")
    views = TTA_VIEWS[est.tta]
    coords = arch["coord_channels"]
    src = _Act(c_img + 2 * bool(coords), h, w)
    mean = program.table("in_mean", _np(module.in_mean), what="input mean")
    scale = program.table("in_scale", _np(module.in_scale), what="input scale")
    ys = xs = None
    if coords:
        ys = program.table("coord_rows", _np(module.coords[0, 0, :, 0]), what="coordinates")
        xs = program.table("coord_cols", _np(module.coords[0, 1, 0, :]), what="coordinates")
    layers, acts, deltas, scratch = [], [src], [], 0
    for i, (unit, pool) in enumerate(zip(module.layers, module.pools, strict=True)):
        mode = "plain" if i == 0 else arch["block"]
        stem = (c_img, mean, scale, ys, xs) if i == 0 else None
        fn, act, sc, delta = _conv_layer(program, unit, pool, acts[-1], mode, i == 0, stem)
        layers.append(fn)
        acts.append(act)
        deltas.append(delta)
        scratch = max(scratch, sc)
    # positions, from the last activation (at 0) back: the input of layer l sits delta_l
    # after its output
    pos = [0] * len(acts)
    for li in range(len(layers) - 1, 0, -1):
        pos[li] = pos[li + 1] + deltas[li]
    # (the first layer reads the pixels themselves: no float input)
    size = max(p + a.size for p, a in zip(pos[1:], acts[1:], strict=True))
    d_feat = int(arch.get("n_features", 0))
    feat_expr = None
    mark = arena.top
    if d_feat:
        feat_expr, d = feature_gen(program, est.features_, img, arena)
        if d != d_feat:
            raise RuntimeError(f"to_c: {where}: the hybrid's features give {d} values, the "
                               f"network expects {d_feat}.")
    buf = arena.push(size)
    buf_s = arena.push(scratch)
    n_out = int(arch["n_outputs"])
    bins = int(getattr(module, "bins", 0) or 0)
    head = module.head
    linears = [head] if not hasattr(head, "__getitem__") else [head[0], head[2]]
    last = acts[-1]
    n_flat = last.c * (last.h * last.w if module.flatten_head else 1)
    vec = arena.push(n_flat + d_feat + max(lin.out_features for lin in linears))
    acc = arena.push(max(n_out * max(bins, 1), 1))
    program.activation_bytes = 4 * (size + scratch)
    dot = dot_function(program)
    lines = [f"/* {type(est).__name__}: {len(views)} view(s); activations in {size} floats */",
             f"for (i = 0; i < {n_out}; ++i) out[i] = 0.0f;"]
    for flips in views:
        fr, fc = int(1 in flips), int(2 in flips)
        lines += [
            "{",
            "    const float *a;",
            "    int y, x, ch;",
            f"    {layers[0]}({img.expr}, {fr}, {fc}, work + {buf + pos[1]}, work + {buf_s});",
        ]
        for li, fn in enumerate(layers[1:], start=1):
            lines.append(f"    {fn}(work + {buf + pos[li]}, work + {buf + pos[li + 1]}, "
                         f"work + {buf_s});")
        lines.append(f"    a = work + {buf + pos[-1]};")
        lines += _head(program, module, last, vec, acc, feat_expr, d_feat, n_out, bins, dot,
                       linears, est)
        lines += ["}"]
    lines.append(f"for (i = 0; i < {n_out}; ++i) out[i] /= {c_float(len(views))};")
    program.emit(*lines)
    arena.pop(mark)
    task = "regression" if module.regression else "classification"
    classes = None if module.regression else np.asarray(est.classes_).tolist()
    return n_out, task, classes


def _head(program, module, layout, vec, acc, feat_expr, d_feat, n_out, bins, dot, linears,
          est):
    L = layout
    n_flat = L.c * (L.h * L.w if module.flatten_head else 1)
    lines = ["    {", f"        float *v = work + {vec}, *z = work + {acc};"]
    if module.flatten_head:
        lines += [
            f"        for (ch = 0; ch < {L.c}; ++ch)",
            f"            for (y = 0; y < {L.h}; ++y)",
            f"                for (x = 0; x < {L.w}; ++x)",
            f"                    v[(ch * {L.h} + y) * {L.w} + x] = "
            f"a[(y * {L.w} + x) * {L.c} + ch];"]
    else:
        lines += [
            f"        for (ch = 0; ch < {L.c}; ++ch) {{",
            "            float s = 0.0f;",
            f"            for (y = 0; y < {L.h}; ++y)",
            f"                for (x = 0; x < {L.w}; ++x) s += a[(y * {L.w} + x) * {L.c} + ch];",
            f"            v[ch] = s / {c_float(L.h * L.w)};",
            "        }"]
    if d_feat:
        fm = program.table("feat_mean", _np(module.feat_mean), what="feature mean")
        fs = program.table("feat_scale", _np(module.feat_scale), what="feature scale")
        lines.append(f"        for (i = 0; i < {d_feat}; ++i) v[{n_flat} + i] = "
                     f"({feat_expr}[i] - {fm}[i]) * {fs}[i];")
    n_in = n_flat + d_feat
    for j, lin in enumerate(linears):
        W = program.table("head_w", _np(lin.weight), what="head weights")
        B = program.table("head_b", _np(lin.bias), what="head bias")
        k = lin.out_features
        dst = "z" if j == len(linears) - 1 else f"(v + {n_in})"
        relu = j < len(linears) - 1
        lines.append(f"        for (i = 0; i < {k}; ++i) {{ const float s = {dot}(v, {W} + i * "
                     f"{n_in}, {n_in}) + {B}[i]; {dst}[i] = "
                     + ("s > 0.0f ? s : 0.0f; }" if relu else "s; }"))
        if relu:  # the hidden units become the next input
            lines.append(f"        for (i = 0; i < {k}; ++i) v[i] = v[{n_in} + i];")
            n_in = k
    if bins:
        cen = program.table("bin_centers", _np(module.bin_centers), what="bin centres")
        lines += [
            f"        for (i = 0; i < {n_out}; ++i) {{",
            f"            const float *q = z + i * {bins};",
            "            float m = q[0], s = 0.0f, e = 0.0f;",
            f"            for (y = 1; y < {bins}; ++y) if (q[y] > m) m = q[y];",
            f"            for (y = 0; y < {bins}; ++y) {{ const float p = expf(q[y] - m); "
            f"s += p; e += p * {cen}[i * {bins} + y]; }}",
            "            v[i] = e / s;",
            "        }",
            f"        for (i = 0; i < {n_out}; ++i) z[i] = v[i];"]
    if module.regression:
        om = program.table("out_mean", _np(module.out_mean), what="target mean")
        osc = program.table("out_scale", _np(module.out_scale), what="target scale")
        lines.append(f"        for (i = 0; i < {n_out}; ++i) out[i] += z[i] * {osc}[i] + {om}[i];")
    else:
        lines += [
            "        {",
            "            float m = z[0], s = 0.0f;",
            f"            for (i = 1; i < {n_out}; ++i) if (z[i] > m) m = z[i];",
            f"            for (i = 0; i < {n_out}; ++i) {{ z[i] = expf(z[i] - m); s += z[i]; }}",
            f"            for (i = 0; i < {n_out}; ++i) out[i] += z[i] / s;",
            "        }"]
    lines.append("    }")
    return lines
