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


class _Layout:
    """An activation: ``c`` channel planes of ``(h + 2) x (w + 2)`` floats (zero border)."""

    def __init__(self, c, h, w):
        self.c, self.h, self.w = c, h, w
        self.pw = w + 2
        self.plane = (h + 2) * (w + 2)
        self.size = c * self.plane


def _conv_layer(program, unit, pool, src, mode, first):
    """C function of one unit; returns (function name, output layout, scratch floats)."""
    conv = unit.conv
    dw = unit.depthwise
    cin, h, w = src.c, src.h, src.w
    cout = conv.out_channels
    P = int(pool)
    oh, ow = h // P, w // P
    c_out = cin + cout if mode == "dense" else cout
    dst = _Layout(c_out, oh, ow)
    fn = program.ident("layer")
    bias = program.table("bias", _np(conv.bias), what="folded BatchNorm bias")
    pw, plane = src.pw, src.plane
    opw, oplane = dst.pw, dst.plane
    off = cin * oplane if mode == "dense" else 0  # new channels after the copied input
    residual = mode == "residual" and not first
    add_skip = (f"\n                if (co < {cin}) for (x = 0; x < {w}; ++x) "
                f"row[x] += in[co * {plane} + (y + 1) * {pw} + x + 1];" if residual else "")
    pool_write = f"""\
            for (px = 0; px < {ow}; ++px) {{
                float m = rows[0][px * {P}];
                for (dy = 0; dy < {P}; ++dy)
                    for (dx = 0; dx < {P}; ++dx)
                        if (rows[dy][px * {P} + dx] > m) m = rows[dy][px * {P} + dx];
                out[{off} + co * {oplane} + (py + 1) * {opw} + px + 1] = m > 0.0f ? m : 0.0f;
            }}"""
    if dw is None:
        wt = program.table("conv_w", _np(conv.weight), what="conv weights")  # (co, ci, 3, 3)
        body = f"""\
    for (co = 0; co < {cout}; ++co) {{
        for (py = 0; py < {oh}; ++py) {{
            float rows[{P}][{w}];
            for (dy = 0; dy < {P}; ++dy) {{
                const int y = py * {P} + dy;
                float *restrict row = rows[dy];
                for (x = 0; x < {w}; ++x) row[x] = {bias}[co];
                for (ci = 0; ci < {cin}; ++ci) {{
                    const float *k = {wt} + (co * {cin} + ci) * 9;
                    const float *s = in + ci * {plane} + y * {pw};
                    int ky, kx;
                    for (ky = 0; ky < 3; ++ky)
                        for (kx = 0; kx < 3; ++kx) {{
                            const float kv = k[ky * 3 + kx];
                            const float *restrict t = s + ky * {pw} + kx;
                            for (x = 0; x < {w}; ++x) row[x] += kv * t[x];
                        }}
                }}{add_skip}
            }}
{pool_write}
        }}
    }}"""
        scratch = 0
    else:
        wd = program.table("dw_w", _np(dw.weight), what="depthwise weights")  # (ci, 1, 3, 3)
        wp = program.table("pw_w", _np(conv.weight), what="pointwise weights")  # (co, ci, 1, 1)
        body = f"""\
    for (py = 0; py < {oh}; ++py) {{
        for (dy = 0; dy < {P}; ++dy) {{
            const int y = py * {P} + dy;
            for (ci = 0; ci < {cin}; ++ci) {{  /* depthwise rows of all channels */
                const float *k = {wd} + ci * 9;
                const float *s = in + ci * {plane} + y * {pw};
                float *restrict d = dwrow + ci * {w};
                int ky, kx;
                for (x = 0; x < {w}; ++x) d[x] = 0.0f;
                for (ky = 0; ky < 3; ++ky)
                    for (kx = 0; kx < 3; ++kx) {{
                        const float kv = k[ky * 3 + kx];
                        const float *restrict t = s + ky * {pw} + kx;
                        for (x = 0; x < {w}; ++x) d[x] += kv * t[x];
                    }}
            }}
            for (co = 0; co < {cout}; ++co) {{  /* pointwise */
                float *restrict row = zrows + (co * {P} + dy) * {w};
                for (x = 0; x < {w}; ++x) row[x] = {bias}[co];
                for (ci = 0; ci < {cin}; ++ci) {{
                    const float kv = {wp}[co * {cin} + ci];
                    const float *restrict d = dwrow + ci * {w};
                    for (x = 0; x < {w}; ++x) row[x] += kv * d[x];
                }}{add_skip}
            }}
        }}
        for (co = 0; co < {cout}; ++co) {{
            const float (*rows)[{w}] = (const float (*)[{w}])(zrows + co * {P} * {w});
{pool_write}
        }}
    }}"""
        scratch = cin * w + cout * P * w
    copy = ""
    if mode == "dense":  # the input, max-pooled, goes first
        copy = f"""
    for (ci = 0; ci < {cin}; ++ci)
        for (py = 0; py < {oh}; ++py)
            for (px = 0; px < {ow}; ++px) {{
                const float *s = in + ci * {plane} + (py * {P} + 1) * {pw} + px * {P} + 1;
                float m = s[0];
                for (dy = 0; dy < {P}; ++dy)
                    for (dx = 0; dx < {P}; ++dx)
                        if (s[dy * {pw} + dx] > m) m = s[dy * {pw} + dx];
                out[ci * {oplane} + (py + 1) * {opw} + px + 1] = m;
            }}"""
    sig = "const float *restrict in, float *restrict out"
    if dw is not None:
        sig += ", float *restrict scratch"
        copy = f"""
    float *restrict dwrow = scratch, *restrict zrows = scratch + {cin * w};""" + copy
    program.function(f"""
/* {'separable' if dw is not None else 'standard'} 3x3 {cin}->{cout} ({mode}) at {h}x{w}, max-pool {P}, ReLU
   -> {c_out} channels at {oh}x{ow} */
static void {fn}({sig})
{{
    int co, ci, py, px, dy, dx, x;
    for (x = 0; x < {dst.size}; ++x) out[x] = 0.0f;  /* the zero border */{copy}
{body}
    (void)ci;
    (void)px;
    (void)dx;
}}""")
    return fn, dst, scratch


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
    src = _Layout(c_img + 2 * bool(coords), h, w)
    layers, scratch, layout = [], 0, src
    biggest = src.size
    for i, (unit, pool) in enumerate(zip(module.layers, module.pools, strict=True)):
        mode = "plain" if i == 0 else arch["block"]
        fn, layout, s = _conv_layer(program, unit, pool, layout, mode, i == 0)
        layers.append((fn, unit.depthwise is not None))
        biggest = max(biggest, layout.size)
        scratch = max(scratch, s)
    mark = arena.top
    buf_a = arena.push(biggest)
    buf_b = arena.push(biggest)
    buf_s = arena.push(scratch) if scratch else None
    n_out = int(arch["n_outputs"])
    bins = int(getattr(module, "bins", 0) or 0)
    head = module.head
    linears = [head] if not hasattr(head, "__getitem__") else [head[0], head[2]]
    d_feat = int(arch.get("n_features", 0))
    c_last = layout.c
    n_flat = c_last * (layout.h * layout.w if module.flatten_head else 1)
    vec = arena.push(n_flat + d_feat + max(lin.out_features for lin in linears))
    acc = arena.push(max(n_out * max(bins, 1), 1))
    feat_expr = None
    if d_feat:
        feat_expr, d = feature_gen(program, est.features_, img, arena)
        if d != d_feat:
            raise RuntimeError(f"to_c: {where}: the hybrid's features give {d} values, the "
                               f"network expects {d_feat}.")
    mean = program.table("in_mean", _np(module.in_mean), what="input mean")
    scale = program.table("in_scale", _np(module.in_scale), what="input scale")
    dot = dot_function(program)
    lines = [f"/* {type(est).__name__}: {len(views)} view(s) */",
             f"for (i = 0; i < {n_out}; ++i) out[i] = 0.0f;"]
    if coords:
        ys = program.table("coord_rows", _np(module.coords[0, 0, :, 0]), what="coordinates")
        xs = program.table("coord_cols", _np(module.coords[0, 1, 0, :]), what="coordinates")
    for flips in views:
        fr, fc = 1 in flips, 2 in flips
        row = f"({h - 1} - y)" if fr else "y"
        col = f"({w - 1} - x)" if fc else "x"
        a, b = f"work + {buf_a}", f"work + {buf_b}"
        lines += [
            "{",
            f"    float *a = {a}, *b = {b}, *t;",
            "    int y, x, ch;",
            f"    for (i = 0; i < {src.size}; ++i) a[i] = 0.0f;",
            f"    for (ch = 0; ch < {c_img}; ++ch)",
            f"        for (y = 0; y < {h}; ++y)",
            f"            for (x = 0; x < {w}; ++x)",
            f"                a[ch * {src.plane} + (y + 1) * {src.pw} + x + 1] = "
            f"((float)({img.expr})[({row} * {w} + {col}) * {c_img} + ch] - {mean}[ch]) * {scale}[ch];",
        ]
        if coords:
            lines += [
                f"    for (y = 0; y < {h}; ++y)",
                f"        for (x = 0; x < {w}; ++x) {{",
                f"            a[{c_img} * {src.plane} + (y + 1) * {src.pw} + x + 1] = {ys}[y];",
                f"            a[{c_img + 1} * {src.plane} + (y + 1) * {src.pw} + x + 1] = {xs}[x];",
                "        }"]
        for fn, sep in layers:
            extra = f", work + {buf_s}" if sep else ""
            lines += [f"    {fn}(a, b{extra});", "    t = a; a = b; b = t;"]
        lines += _head(program, module, layout, vec, acc, feat_expr, d_feat, n_out, bins, dot,
                       linears, est)
        lines += ["    (void)b;", "}"]
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
            f"a[ch * {L.plane} + (y + 1) * {L.pw} + x + 1];"]
    else:
        lines += [
            f"        for (ch = 0; ch < {L.c}; ++ch) {{",
            "            float s = 0.0f;",
            f"            for (y = 0; y < {L.h}; ++y)",
            f"                for (x = 0; x < {L.w}; ++x) s += a[ch * {L.plane} + (y + 1) * {L.pw} + x + 1];",
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
