"""Micro-CNN architectures sized to a parameter budget: plan, count, solve, build.

An architecture is a plain ``dict`` (picklable, readable) with the keys

``in_channels``, ``height``, ``width``
    The images: 1 (grey) or 3 (RGB) channels, one fixed size.
``coord_channels``
    Two constant channels (row and column position in [-1, 1]) appended to
    the normalised input (CoordConv, Liu et al. 2018); constants, not learned.
``block``
    ``'plain'``: ``conv -> BN -> ReLU``. ``'residual'``: ``ReLU(BN(conv(x)) +
    x)`` with a parameter-free shortcut (identity, or zero-padded channels
    when the layer widens; ResNet "option A"), so widths never decrease.
    ``'dense'``: ``concat(x, ReLU(BN(conv(x))))`` (DenseNet without
    transition layers): ``widths[l]`` is then the growth of layer ``l``.
``conv``
    ``'standard'``: 3x3 convolution. ``'separable'``: 3x3 depthwise then 1x1
    pointwise (no activation between, as in Xception). The first layer (the
    stem) is always a standard 3x3 convolution: a depthwise convolution of one
    to three input channels would learn almost nothing.
``head``
    ``'gap'``: global average pooling then a linear layer. ``'dense'``:
    flatten the final (about 4x4) feature map then a linear layer.
``head_hidden``
    Units of a hidden layer (linear + ReLU) before the output layer; 0: none.
``widths``
    Output channels of each conv layer (the growth for dense layers 1..).
``pools``
    Per layer, the max-pooling factor applied after it (1 = none, 2, 4, ...).
``n_outputs``, ``n_features``, ``task``
    Outputs (targets, or classes), extra features concatenated before the head
    (hybrid models), ``'regression'`` or ``'classification'``.
``bins``
    0 (or absent): the head's output layer gives the ``n_outputs`` values. ``B >=
    2``: label distribution learning (regressors): the output layer gives ``B``
    logits per target, and the prediction is the expectation of their softmax over
    ``B`` fixed bin centres (constants learned from the training targets).

Counting convention (``count``): every trainable parameter of the torch module
(conv weights, BatchNorm scale and shift, head weights and biases) plus the
constants learned from the training data and needed at inference: the input
normalisation (a mean and a scale per image channel), the target
standardisation (a mean and a scale per output, regressors) and the feature
standardisation (a mean and a scale per extra feature, hybrids), and the bin
centres of a label-distribution head (``B`` per target). BatchNorm's
running statistics are not counted: :func:`fold_batchnorm` folds them, with
the scale and shift, into the preceding convolution (weights + one bias per
channel), which needs fewer values than counted here, so the count is an upper
bound of what the exported model stores. MACs count the multiply-accumulates of
convolutions and linear layers for one image, plus the ``B`` products per
target of a label-distribution head's expectation (BatchNorm folds away;
pooling, additions, ReLU and softmax are not counted).

The torch part (:func:`build_module`) is made of ``Conv2d``, ``BatchNorm2d``
(foldable), ``ReLU``, ``MaxPool2d``, ``mean``, ``cat``, ``pad`` and ``Linear``
and takes ``(n, h, w[, c])`` pixels on the 0-255 scale (uint8 or float), so
``torch.onnx.export`` of the module gives a graph with uint8 pixels in.
:class:`FlipAverage` wraps it for test-time flips (``tta``): the mean of its
outputs over flipped copies of the pixels.
"""

from __future__ import annotations

import math

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "cvfeat's micro-CNNs need PyTorch, which is not installed: pip install 'cvfeat[cnn]' "
        "(or install torch for your platform from https://pytorch.org first)."
    ) from exc

__all__ = [
    "GROWTH",
    "MIN_FINAL_SIZE",
    "FlipAverage",
    "build_module",
    "count",
    "count_module",
    "default_depth",
    "describe",
    "fold_batchnorm",
    "module_macs",
    "plan",
    "pool_factors",
    "solve",
]

KERNEL = 3
GROWTH = 1.5  # width multiplier per pooling stage in the automatic width schedule
POOL_PLACEMENT = "early"  # 'early': poolings spread from the first layer; 'late': at the end
MIN_FINAL_SIZE = 4  # pool until the feature map is about 4x4 (at least 4 pixels a side)
BN_EPS = 1e-5
#: buffers counted as parameters: constants learned from the training data
CONSTANTS = ("in_mean", "in_scale", "out_mean", "out_scale", "feat_mean", "feat_scale",
             "bin_centers")


# ----------------------------------------------------------------------------------------
# Planning and counting (pure Python)
# ----------------------------------------------------------------------------------------
def n_pools(height, width):
    """Number of 2x2 poolings that keep the smaller side at least ``MIN_FINAL_SIZE``."""
    side = min(height, width)
    return max(0, int(math.floor(math.log2(side / MIN_FINAL_SIZE)))) if side >= 1 else 0


def default_depth(height, width, max_params):
    """Depth used by ``depth='auto'``: one layer per resolution, one more from 5k params.

    ``n_pools + 1`` layers (a stem at full resolution and one layer after each
    pooling; 5 for 64x64 images), at least 2, plus one layer when the budget
    reaches 5,000 values and another at 20,000: at a fixed budget the
    published small nets gain from depth up to about 15 layers, but below a
    few thousand values every extra layer costs width that the net needs more.
    """
    depth = max(2, n_pools(height, width) + 1)
    depth += int(max_params >= 5000) + int(max_params >= 20000)
    return depth


def pool_factors(depth, height, width, placement=None):
    """Pooling factor after each of ``depth`` layers (poolings until about 4x4).

    ``placement='early'`` (default :data:`POOL_PLACEMENT`): the ``n_pools``
    poolings go after layers ``floor(k * depth / n_pools)``; ``'late'``: after
    the layers just before the last one, so the first layers all run at full
    resolution (more MACs for the same parameters). A shallow net gets several
    poolings after the same layer (one ``MaxPool2d`` of 4, 8...) so that every
    net ends on the same small map.
    """
    placement = POOL_PLACEMENT if placement is None else placement
    n = n_pools(height, width)
    factors = [1] * depth
    for k in range(n):
        pos = (k * depth) // n if placement == "early" else max(0, depth - 1 - n + k)
        factors[pos] *= 2
    return tuple(factors)


def stages(pools):
    """Stage (number of poolings before it) of each layer."""
    out, s = [], 0
    for f in pools:
        out.append(s)
        s += int(round(math.log2(f))) if f > 1 else 0
    return out


def plan(arch):
    """Rows ``(name, description, out_shape, params, macs)`` of the architecture, in order."""
    c_img = arch["in_channels"]
    h, w = arch["height"], arch["width"]
    c = c_img + (2 if arch["coord_channels"] else 0)
    widths, pools = arch["widths"], arch["pools"]
    block, conv = arch["block"], arch["conv"]
    k2 = KERNEL * KERNEL
    rows = []
    for i, (wi, pool) in enumerate(zip(widths, pools, strict=True)):
        grow = block == "dense" and i > 0
        cout = wi
        if i == 0 or conv == "standard":
            params = k2 * c * cout
            kind = f"conv{KERNEL}x{KERNEL} {c}->{cout}"
        else:
            params = k2 * c + c * cout
            kind = f"sep{KERNEL}x{KERNEL} {c}->{cout}"
        macs = params * h * w
        params += 2 * cout  # BatchNorm scale and shift
        if block == "residual" and i > 0:
            kind += " +BN, +skip" + ("" if cout == c else f" (pad {c}->{cout})") + ", ReLU"
            c_next = cout
        elif grow:
            kind += " +BN+ReLU, concat"
            c_next = c + cout
        else:
            kind += " +BN+ReLU"
            c_next = cout
        c = c_next
        rows.append((f"layer {i}", kind, (c, h, w), params, macs))
        if pool > 1:
            h, w = h // pool, w // pool
            rows.append(("pool", f"maxpool {pool}x{pool}", (c, h, w), 0, 0))
    n_out, d = arch["n_outputs"], arch.get("n_features", 0)
    bins = arch.get("bins", 0)
    n_lin = n_out * bins if bins else n_out  # the output layer's width
    n_in = c * (h * w if arch["head"] == "dense" else 1)
    pooled = "flatten" if arch["head"] == "dense" else "GAP"
    extra = f" + {d} features" if d else ""
    hidden = arch.get("head_hidden", 0)
    if hidden:
        rows.append(
            ("hidden", f"{pooled} {n_in}{extra} -> linear {n_in + d}->{hidden}, ReLU",
             (hidden,), (n_in + d) * hidden + hidden, (n_in + d) * hidden)
        )
        rows.append(("head", f"linear {hidden}->{n_lin}", (n_lin,),
                     hidden * n_lin + n_lin, hidden * n_lin))
    else:
        rows.append(
            ("head", f"{pooled} {n_in}{extra} -> linear {n_in + d}->{n_lin}", (n_lin,),
             (n_in + d) * n_lin + n_lin, (n_in + d) * n_lin)
        )
    if bins:
        rows.append(("ldl", f"softmax over {bins} bins, expectation", (n_out,), 0, n_lin))
    consts = [f"input mean+scale {2 * c_img}"]
    n_const = 2 * c_img
    if arch["task"] == "regression":
        consts.append(f"target mean+scale {2 * n_out}")
        n_const += 2 * n_out
    if d:
        consts.append(f"feature mean+scale {2 * d}")
        n_const += 2 * d
    if bins:
        consts.append(f"bin centres {n_lin}")
        n_const += n_lin
    rows.append(("norm", ", ".join(consts), (), n_const, 0))
    return rows


def count(arch):
    """``(n_params, n_macs)`` of an architecture dict (see the module docstring)."""
    rows = plan(arch)
    return sum(r[3] for r in rows), sum(r[4] for r in rows)


def describe(arch, extra=None):
    """Readable multi-line summary of an architecture (``architecture_``)."""
    n_params, n_macs = count(arch)
    coord = " (+2 coord channels)" if arch["coord_channels"] else ""
    head = (
        f"{type_name(arch)}: {arch['block']} blocks, {arch['conv']} convs, {arch['head']} head, "
        f"depth {len(arch['widths'])}, widths {list(arch['widths'])}\n"
        f"input {arch['height']}x{arch['width']}x{arch['in_channels']}{coord}; "
        f"{n_params:,} parameters, {n_macs:,} MACs per image\n"
    )
    lines = [f"  {'':8} {'':44} {'output':>12} {'params':>7} {'MACs':>10}"]
    for name, kind, shape, p, m in plan(arch):
        shp = "x".join(str(s) for s in shape)
        lines.append(f"  {name:8} {kind:44} {shp:>12} {p:7,} {m:10,}")
    text = head + "\n".join(lines)
    if extra:
        text += "\n" + extra
    return text


def type_name(arch):
    return "HybridCNN" if arch.get("n_features", 0) else "MicroCNN"


# ----------------------------------------------------------------------------------------
# The budget solver
# ----------------------------------------------------------------------------------------
class BudgetError(ValueError):
    """The requested architecture does not fit ``max_params``."""


def _schedule(base, stage_of):
    return tuple(max(1, int(round(base * GROWTH**s))) for s in stage_of)


def solve(arch, max_params, *, depth="auto", width="auto", fixed=0, where="MicroCNN"):
    """Choose depth and widths so that the model uses 90-100 % of ``max_params``.

    Parameters
    ----------
    arch : dict
        The architecture without ``widths`` and ``pools`` (they are filled in).
    max_params : int
        Budget for the whole model: ``count(arch) + fixed <= max_params``.
    depth : 'auto' or int
        ``'auto'``: :func:`default_depth` (or the length of a ``width`` list).
    width : 'auto', int or sequence of int
        ``'auto'``: solved. An int: the first layer's width, later stages
        ``GROWTH`` times wider per pooling (not solved: checked). A sequence:
        the width of every layer (not solved: checked).
    fixed : int
        Values counted outside the CNN (a hybrid's feature transformer).

    Returns
    -------
    arch : dict
        With ``widths`` and ``pools``.

    Raises
    ------
    BudgetError
        A fixed depth and width that exceed the budget (with the count), or a
        budget too small for even one channel per layer at that depth.

    Notes
    -----
    ``width='auto'``: widths follow ``base * GROWTH**stage`` (stage = number of
    poolings before the layer, so the width grows by 1.5x at each halving of
    the resolution). The largest ``base`` that fits is found by bisection
    (the count grows with every width), then single channels are added one
    stage at a time (the stage furthest behind the schedule first, widths
    never decreasing for residual blocks), then to single layers, while the
    budget allows. The result uses 90 % or more of the budget unless one more
    channel in any layer costs more than what is left: e.g. a ``'dense'``
    (flatten) head on a large final map at a budget of a few hundred.
    """
    arch = dict(arch)
    arch.setdefault("head_hidden", 0)
    h, w = arch["height"], arch["width"]
    budget = max_params - fixed
    if not isinstance(width, str):
        if isinstance(width, (list, tuple)):
            widths = tuple(int(v) for v in width)
            if depth != "auto" and depth != len(widths):
                raise ValueError(
                    f"{where}: width lists {len(widths)} layer widths but depth={depth}; give "
                    "one width per layer, or depth='auto'."
                )
            depth = len(widths)
        else:
            depth = default_depth(h, w, max_params) if depth == "auto" else int(depth)
            pools = pool_factors(depth, h, w)
            widths = _schedule(float(width), stages(pools))
        arch["pools"] = pool_factors(depth, h, w)
        arch["widths"] = widths
        if arch["block"] == "residual":
            _check_residual(widths, arch, where)
        n = count(arch)[0] + fixed
        if n > max_params:
            raise BudgetError(
                f"{where}: depth={depth} and width={width!r} give {n:,} parameters"
                + (f" ({fixed:,} of them in the features)" if fixed else "")
                + f", over the budget max_params={max_params:,}. Use width='auto' (the budget "
                "solver picks the widths), a smaller depth or width, or raise max_params."
            )
        return arch

    depth = default_depth(h, w, max_params) if depth == "auto" else int(depth)
    pools = pool_factors(depth, h, w)
    stage_of = stages(pools)
    arch["pools"] = pools

    def n_of(widths):
        arch["widths"] = widths
        return count(arch)[0]

    smallest = n_of((1,) * depth)
    if smallest > budget:
        d = arch.get("n_features", 0)
        cost = smallest - count({**arch, "n_features": 0})[0]
        feats = (
            f" ({d} classical features cost {cost:,} of them in standardisation constants "
            f"and head weights, plus {fixed:,} learned in the feature step)" if d else ""
        )
        raise BudgetError(
            f"{where}: even one channel per layer at depth={depth} needs {smallest + fixed:,} "
            f"parameters{feats}, over max_params={max_params:,}; lower the depth"
            + (", use fewer features" if d else "")
            + " or raise max_params."
        )
    lo, hi = 0.0, 1.0
    while n_of(_schedule(hi, stage_of)) <= budget:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if n_of(_schedule(mid, stage_of)) <= budget:
            lo = mid
        else:
            hi = mid
    widths = list(_schedule(lo, stage_of)) if lo > 0 else [1] * depth
    # fill what is left, one channel per stage at a time
    # (a shallow net pools by 4 or 8 after one layer, so not every stage number has layers)
    present = sorted(set(stage_of))
    while True:
        order = sorted(
            present,
            key=lambda s: min(widths[i] for i in range(depth) if stage_of[i] == s) / GROWTH**s,
        )
        for s in order:
            trial = [wi + 1 if stage_of[i] == s else wi for i, wi in enumerate(widths)]
            if not _monotone_ok(arch, trial):
                continue
            if n_of(tuple(trial)) <= budget:
                widths = trial
                break
        else:
            break
    # then single layers (the last stage's layers may differ by one channel)
    grown = True
    while grown:
        grown = False
        for i in reversed(range(depth)):
            trial = list(widths)
            trial[i] += 1
            if not _monotone_ok(arch, trial) or n_of(tuple(trial)) > budget:
                continue
            widths, grown = trial, True
    arch["widths"] = tuple(widths)
    return arch


def _monotone_ok(arch, widths):
    return arch["block"] != "residual" or all(
        widths[i] <= widths[i + 1] for i in range(len(widths) - 1)
    )


def _check_residual(widths, arch, where):
    # every layer after the stem has a shortcut from the layer before: none may narrow
    for i in range(len(widths) - 1):
        if widths[i + 1] < widths[i]:
            raise ValueError(
                f"{where}: residual blocks need non-decreasing widths (the shortcut pads "
                f"channels, it cannot drop them); got {list(widths)}."
            )


# ----------------------------------------------------------------------------------------
# The torch module
# ----------------------------------------------------------------------------------------
class ConvUnit(nn.Module):
    """``conv`` (standard or depthwise + pointwise, no bias) -> BatchNorm -> [skip] -> ReLU."""

    def __init__(self, cin, cout, separable, mode):
        super().__init__()
        self.mode = mode  # 'plain', 'residual' or 'dense'
        self.pad_channels = cout - cin if mode == "residual" else 0
        if separable:
            self.depthwise = nn.Conv2d(cin, cin, KERNEL, padding=KERNEL // 2, groups=cin,
                                       bias=False)
            self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        else:
            self.depthwise = None
            self.conv = nn.Conv2d(cin, cout, KERNEL, padding=KERNEL // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x, pool=1):
        """The unit, then a ``pool x pool`` max-pooling when ``pool > 1``.

        The pooling runs before the ReLU: ``max_pool(relu(z)) == relu(max_pool(z))``
        exactly (ReLU is monotone), values and gradients alike, and the ReLU and its
        backward then touch ``1 / pool**2`` of the values (an epoch 7 % faster on one
        CPU thread, ``benchmarks/bench_epoch_variants.py``).
        """
        z = x if self.depthwise is None else self.depthwise(x)
        z = self.bn(self.conv(z))
        if self.mode == "residual":
            z = z + (F.pad(x, (0, 0, 0, 0, 0, self.pad_channels)) if self.pad_channels else x)
        if pool > 1:
            z = F.max_pool2d(z, pool)
            if self.mode == "dense":
                x = F.max_pool2d(x, pool)
        z = F.relu(z, inplace=True)  # z is this unit's own new tensor; no backward needs it
        if self.mode == "dense":
            return torch.cat([x, z], dim=1)
        return z


class MicroCNNModule(nn.Module):
    """The micro-CNN, input normalisation and output decoding in one exportable module.

    ``forward(x[, features])`` takes pixels ``(n, h, w)`` or ``(n, h, w, c)`` on
    the 0-255 scale (uint8 or float) and returns predictions in the units of
    the targets (regression) or class probabilities (classification).
    ``forward_nchw`` is the training path: float ``(n, c, h, w)`` pixels (0-255)
    to standardised predictions or logits.
    """

    def __init__(self, arch):
        super().__init__()
        self.arch = dict(arch)
        c_img = arch["in_channels"]
        h, w = arch["height"], arch["width"]
        n_out, d = arch["n_outputs"], arch.get("n_features", 0)
        self.register_buffer("in_mean", torch.zeros(c_img))
        self.register_buffer("in_scale", torch.ones(c_img))
        self.regression = arch["task"] == "regression"
        if self.regression:
            self.register_buffer("out_mean", torch.zeros(n_out))
            self.register_buffer("out_scale", torch.ones(n_out))
        self.n_features = d
        if d:
            self.register_buffer("feat_mean", torch.zeros(d))
            self.register_buffer("feat_scale", torch.ones(d))
        if arch["coord_channels"]:
            yy = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(1, 1, h, w)
            xx = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(1, 1, h, w)
            self.register_buffer("coords", torch.cat([yy, xx], dim=1).contiguous(),
                                 persistent=False)
        else:
            self.coords = None
        c = c_img + (2 if arch["coord_channels"] else 0)
        layers, pools = [], []
        for i, (wi, pool) in enumerate(zip(arch["widths"], arch["pools"], strict=True)):
            if i == 0:
                unit = ConvUnit(c, wi, False, "plain")
                c = wi
            else:
                mode = arch["block"]
                unit = ConvUnit(c, wi, arch["conv"] == "separable", mode)
                c = c + wi if mode == "dense" else wi
            layers.append(unit)
            pools.append(int(pool))
        self.layers = nn.ModuleList(layers)
        self.pools = pools
        self.flatten_head = arch["head"] == "dense"
        for f in pools:
            h, w = h // f, w // f
        n_in = c * (h * w if self.flatten_head else 1) + d
        self.bins = arch.get("bins", 0)
        if self.bins:
            self.register_buffer("bin_centers", torch.zeros(n_out, self.bins))
        n_lin = n_out * self.bins if self.bins else n_out
        hidden = arch.get("head_hidden", 0)
        if hidden:
            self.head = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_lin))
        else:
            self.head = nn.Linear(n_in, n_lin)

    # -- the pieces ------------------------------------------------------------------
    def to_nchw(self, x):
        """``(n, h, w[, c])`` pixels (any dtype) -> float ``(n, c, h, w)`` on the same scale."""
        x = x.to(torch.float32)
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        return x.permute(0, 3, 1, 2)

    def forward_nchw(self, x, features=None):
        """Float ``(n, c, h, w)`` pixels (0-255) -> standardised outputs (or logits)."""
        z = self.raw_nchw(x, features)
        return self.expectation(z) if self.bins else z

    def expectation(self, z):
        """Label-distribution logits ``(n, k * B)`` -> expected standardised targets ``(n, k)``."""
        p = torch.softmax(z.view(z.shape[0], -1, self.bins), dim=2)
        return (p * self.bin_centers).sum(dim=2)

    def raw_nchw(self, x, features=None):
        """The output layer's values: :meth:`forward_nchw` before a label-distribution
        head's expectation (the same values without one). Training losses take these."""
        x = (x - self.in_mean.view(1, -1, 1, 1)) * self.in_scale.view(1, -1, 1, 1)
        if self.coords is not None:
            x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
        for unit, pool in zip(self.layers, self.pools, strict=True):
            x = unit(x, pool)
        x = torch.flatten(x, 1) if self.flatten_head else x.mean(dim=(2, 3))
        if self.n_features:
            f = (features.to(torch.float32) - self.feat_mean) * self.feat_scale
            x = torch.cat([x, f], dim=1)
        return self.head(x)

    def decode(self, z):
        """Standardised outputs -> target units (regression) or probabilities."""
        if self.regression:
            return z * self.out_scale + self.out_mean
        return torch.softmax(z, dim=1)

    def forward(self, x, features=None):
        return self.decode(self.forward_nchw(self.to_nchw(x), features))


def build_module(arch):
    """A freshly initialised :class:`MicroCNNModule` for an architecture dict."""
    return MicroCNNModule(arch)


def count_module(module):
    """Trainable parameters plus the normalisation constants (the convention of :func:`count`)."""
    n = sum(p.numel() for p in module.parameters())
    for name in CONSTANTS:
        buf = getattr(module, name, None)
        if buf is not None:
            n += buf.numel()
    return n


def module_macs(module):
    """MACs for one image, measured with forward hooks on the convolutions and linear layers."""
    arch = module.arch
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += k * out.shape[1] * out.shape[2] * out.shape[3]

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    shape = (1, arch["height"], arch["width"], arch["in_channels"])
    feats = torch.zeros(1, arch.get("n_features", 0)) if arch.get("n_features", 0) else None
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(shape, dtype=torch.uint8, device=module.in_mean.device)
                   , None if feats is None else feats.to(module.in_mean.device))
    finally:
        for hk in hooks:
            hk.remove()
        module.train(was_training)
    if getattr(module, "bins", 0):
        total[0] += module.bin_centers.numel()  # the expectation's products
    return total[0]


class FlipAverage(nn.Module):
    """Test-time flips: the mean of ``module``'s outputs over flipped copies of the pixels.

    ``views``: a value of :data:`cvfeat.models._base.TTA_VIEWS`, the pixel axes of
    ``(n, h, w[, c])`` images flipped in each view (``()`` = the image as it is). Hybrid
    features are passed unchanged to every view (they are computed from the image as it
    is).
    """

    def __init__(self, module, views):
        super().__init__()
        self.module = module
        self.views = tuple(tuple(v) for v in views)

    def forward(self, x, features=None):
        out = None
        for dims in self.views:
            o = self.module(x.flip(dims) if dims else x, features)
            out = o if out is None else out + o
        return out / len(self.views)


def fold_batchnorm(module):
    """Copy of a module in eval mode with every BatchNorm folded into its convolution.

    The pointwise (or standard) convolution gets ``weight * gamma / sqrt(var + eps)``
    and a bias ``beta - mean * gamma / sqrt(var + eps)``; the BatchNorm becomes an
    identity. Predictions are unchanged (up to float rounding); the exported graph
    then has Conv, Relu, Add, Pad, Concat, MaxPool, ReduceMean and Gemm only.
    """
    import copy

    folded = copy.deepcopy(module).eval()
    for unit in folded.layers:
        bn, conv = unit.bn, unit.conv
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                        padding=conv.padding, groups=conv.groups, bias=True).to(
                            conv.weight.device)
        with torch.no_grad():
            new.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            new.bias.copy_(bn.bias - bn.running_mean * scale)
        unit.conv = new
        unit.bn = nn.Identity()
    return folded
