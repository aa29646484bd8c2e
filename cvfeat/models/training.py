"""The training loop of cvfeat's micro-CNNs: AdamW/SAM/ASAM, schedules, augmentation,
label smoothing, distillation, early stopping and magnitude pruning.

Everything random is drawn from one ``numpy.random.Generator`` derived from the
estimator's ``random_state`` (shuffling, augmentation parameters, mixup, target
noise) or from a torch generator seeded from it (pixel noise), so a fit is
reproducible without touching torch's global random state.

Augmentation
------------
``augment`` is None (off), a preset name or a dict ``{name: amount}``; it is
applied to training batches only (never to the validation split or to
``predict``), on the device, to the pixels before normalisation:

==============  ===================================  ==========================================
key             amount                               changes targets that depend on
==============  ===================================  ==========================================
``hflip``       probability of a left-right flip     left/right orientation: an angle ``a``
                                                     becomes ``180 - a``; horizontal position
``vflip``       probability of an up-down flip       orientation (also ``180 - a``), vertical
                                                     position, "up" (faces, scenes)
``shift``       largest shift, fraction of the side  absolute position (coordinates)
``rotate``      largest rotation, degrees            orientation (an angle moves by the
                                                     rotation), position
``scale``       largest zoom, relative (0.1 = +-10%) size, area, count in the visible field,
                                                     distance-like targets
``brightness``  largest relative gain (0.2 = +-20%)  exposure / absolute intensity; not channel
                                                     ratios (one gain for all channels)
``contrast``    largest relative contrast change     contrast, sharpness measured by intensity
                                                     differences, channel differences
``noise``       std of Gaussian pixel noise, 0-1     noise level, blur / sharpness, fine texture
                scale
==============  ===================================  ==========================================

Use only the augmentations that leave your target unchanged: flips for an age or
a count, never for an orientation; no rotation for an angle; no brightness or
contrast change for an exposure or colour-temperature-like target; no noise for a
blur level. Presets: ``'flip'`` = ``{'hflip': 0.5}``; ``'light'`` = hflip 0.5,
shift 0.05, rotate 5, scale 0.05, brightness 0.1, contrast 0.1; ``'strong'`` =
hflip 0.5, shift 0.1, rotate 15, scale 0.1, brightness 0.25, contrast 0.25,
noise 0.02. Geometric changes resample bilinearly with the border pixels
repeated outside the image.
"""

from __future__ import annotations

import math
import time
from numbers import Real

import numpy as np

from .architectures import CONSTANTS, F, FlipAverage, nn, torch

__all__ = [
    "AUGMENT_PRESETS", "TrainSpec", "check_augment", "predict_module", "time_epoch", "train_module",
]

AUGMENT_LIMITS = {
    "hflip": (0.0, 1.0),
    "vflip": (0.0, 1.0),
    "shift": (0.0, 0.5),
    "rotate": (0.0, 180.0),
    "scale": (0.0, 0.5),
    "brightness": (0.0, 1.0),
    "contrast": (0.0, 1.0),
    "noise": (0.0, 1.0),
}
AUGMENT_PRESETS = {
    "flip": {"hflip": 0.5},
    "light": {"hflip": 0.5, "shift": 0.05, "rotate": 5.0, "scale": 0.05, "brightness": 0.1,
              "contrast": 0.1},
    "strong": {"hflip": 0.5, "shift": 0.1, "rotate": 15.0, "scale": 0.1, "brightness": 0.25,
               "contrast": 0.25, "noise": 0.02},
}
ASAM_ETA = 0.01


def check_augment(augment, where):
    """The augmentation spec as a dict of non-zero amounts (``{}`` = off)."""
    if augment is None:
        return {}
    if isinstance(augment, str):
        if augment not in AUGMENT_PRESETS:
            raise ValueError(
                f"{where}: unknown augment preset {augment!r}; use None, one of "
                f"{sorted(AUGMENT_PRESETS)} or a dict with keys {sorted(AUGMENT_LIMITS)}."
            )
        return dict(AUGMENT_PRESETS[augment])
    if not isinstance(augment, dict):
        raise TypeError(
            f"{where}: augment must be None, a preset name or a dict, got "
            f"{type(augment).__name__}."
        )
    out = {}
    for key, value in augment.items():
        if key not in AUGMENT_LIMITS:
            raise ValueError(
                f"{where}: unknown augmentation {key!r} in augment; known: "
                f"{sorted(AUGMENT_LIMITS)}."
            )
        lo, hi = AUGMENT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, Real) or not lo <= value <= hi:
            raise ValueError(
                f"{where}: augment[{key!r}] must be a number in [{lo:g}, {hi:g}], got {value!r}."
            )
        if value > 0:
            out[key] = float(value)
    return out


class TrainSpec:
    """What the loop needs from the estimator's parameters (plain attributes)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


# ----------------------------------------------------------------------------------------
# augmentation on the device
# ----------------------------------------------------------------------------------------
def draw_augment(spec, rng, n, h, w):
    """Per-image augmentation parameters for ``n`` images (numpy), drawn in a fixed order.

    Drawn for a whole epoch at once and sent to the device in one transfer, so the
    training steps never wait for the host.
    """
    out = {}
    if "hflip" in spec:
        out["hflip"] = rng.random(n) < spec["hflip"]
    if "vflip" in spec:
        out["vflip"] = rng.random(n) < spec["vflip"]
    if "shift" in spec or "rotate" in spec or "scale" in spec:
        angle = np.deg2rad(rng.uniform(-1, 1, n) * spec.get("rotate", 0.0))
        s = spec.get("scale", 0.0)
        zoom = np.exp(rng.uniform(np.log(1 - s), np.log(1 + s), n)) if s else np.ones(n)
        shift = rng.uniform(-1, 1, (2, n)) * spec.get("shift", 0.0) * 2  # normalised coords
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        # output -> input sampling in normalised coordinates, the rotation in pixel space
        out["theta"] = np.stack([
            np.stack([cos, -sin * h / w, shift[0]], axis=1),
            np.stack([sin * w / h, cos, shift[1]], axis=1),
        ], axis=1).astype(np.float32)
    if "brightness" in spec:
        out["brightness"] = (1 + rng.uniform(-1, 1, n) * spec["brightness"]).astype(np.float32)
    if "contrast" in spec:
        out["contrast"] = (1 + rng.uniform(-1, 1, n) * spec["contrast"]).astype(np.float32)
    return out


def augment_batch(x, spec, params, gen):
    """Augmented copy of float pixels ``x`` (n, c, h, w) on the 0-255 scale.

    ``params``: this batch's slice of :func:`draw_augment`'s arrays, as tensors on
    ``x``'s device; ``gen``: torch generator for the pixel noise.
    """
    n = x.shape[0]
    if "hflip" in params:
        x = torch.where(params["hflip"].view(n, 1, 1, 1), x.flip(3), x)
    if "vflip" in params:
        x = torch.where(params["vflip"].view(n, 1, 1, 1), x.flip(2), x)
    if "theta" in params:
        grid = F.affine_grid(params["theta"], list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if "brightness" in params:
        x = x * params["brightness"].view(n, 1, 1, 1)
    if "contrast" in params:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * params["contrast"].view(n, 1, 1, 1) + mean
    if "noise" in spec:
        x = x + (255.0 * spec["noise"]) * torch.randn(x.shape, generator=gen, device=x.device)
    return x.clamp(0.0, 255.0)


# ----------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------
def ldl_loss(z, target, centers, sigma):
    """Label distribution learning loss: KL divergence + L1 of the expectation.

    Parameters
    ----------
    z : (n, k * B) tensor
        Logits, ``B`` per target (target-major).
    target : (n, k) tensor
        Standardised targets (any real values: outside the bins too).
    centers : (k, B) tensor
        Evenly spaced bin centres per target.
    sigma : float
        Standard deviation of the Gaussian label distribution, in bin widths.

    Returns
    -------
    loss : scalar tensor
        ``KL(q || softmax(z))`` with ``q`` the Gaussian around each target
        evaluated at the centres and normalised over the bins, summed over the
        bins, plus ``|sum(softmax(z) * centres) - target|``; both averaged over
        images and targets.
    """
    n, k = target.shape
    logp = F.log_softmax(z.view(n, k, -1), dim=2)
    width = (centers[:, 1] - centers[:, 0]).view(1, k, 1)
    d = (centers.unsqueeze(0) - target.unsqueeze(2)) / (sigma * width)
    logq = F.log_softmax(-0.5 * d * d, dim=2)
    kl = (logq.exp() * (logq - logp)).sum(dim=2).mean()
    expect = (logp.exp() * centers.unsqueeze(0)).sum(dim=2)
    return kl + (expect - target).abs().mean()


def _criterion(spec, module):
    """``loss(raw outputs, targets)``: the raw outputs are ``module.raw_nchw``'s."""
    if spec.task == "classification":
        def soft_ce(logits, target):
            return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        return soft_ce
    if spec.loss == "ldl":
        sigma = spec.label_sigma
        return lambda z, target: ldl_loss(z, target, module.bin_centers, sigma)
    if spec.loss == "mse":
        return F.mse_loss
    delta = spec.huber_delta
    return lambda out, target: F.huber_loss(out, target, delta=delta)


def _targets(spec, y):
    """Training-time target tensor: (n, k) float, or one-hot (n, C) for classifiers."""
    if spec.task == "classification":
        return F.one_hot(y, spec.n_outputs).to(torch.float32)
    return y


# ----------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------
class _Data:
    """Tensors of one split on the device: pixels x (n, h, w, c), targets y, features f,
    teacher targets t (or None)."""

    def __init__(self, x, y, f=None, t=None):
        self.x, self.y, self.f, self.t = x, y, f, t

    def __len__(self):
        return self.x.shape[0]

    def head(self, m):
        """The first ``m`` rows."""
        return _Data(*(None if a is None else a[:m] for a in (self.x, self.y, self.f, self.t)))


def _bn_layers(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _param_groups(module, weight_decay):
    decay, no_decay = [], []
    for _name, p in module.named_parameters():
        (decay if p.dim() > 1 else no_decay).append(p)  # no decay on BatchNorm and biases
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(schedule, step, total_steps):
    """Learning-rate multiplier at ``step`` (0-based) of ``total_steps``.

    ``'onecycle'``: linear warm-up from 1/25 to 1 over the first quarter, then
    cosine annealing to 1/25,000 (Smith & Topin's one-cycle, as
    ``torch.optim.lr_scheduler.OneCycleLR`` but defined for any number of steps).
    ``'cosine'``: cosine annealing from 1 to 0. ``'constant'``: 1.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    warm = max(1, int(round(0.25 * total_steps)))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    p = min(1.0, (step - warm) / max(1, total_steps - warm))
    final = 1 / 25_000
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))


def _scheduler(opt, schedule, total_steps):
    if schedule == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(schedule, step, total_steps)
    )


def outputs(module, data, batch_size):
    """Standardised outputs (or logits) of a split, eval mode, no grad."""
    was_training = module.training
    module.eval()
    outs = []
    with torch.no_grad():
        for a in range(0, len(data), batch_size):
            sl = slice(a, min(a + batch_size, len(data)))
            outs.append(module.forward_nchw(module.to_nchw(data.x[sl]),
                                            None if data.f is None else data.f[sl]))
    module.train(was_training)
    return torch.cat(outs)


def evaluate(module, data, spec, batch_size):
    """Mean loss on true targets (no smoothing, no augmentation), eval mode."""
    crit = _criterion(spec, module)
    was_training = module.training
    module.eval()
    total, n = 0.0, len(data)
    with torch.no_grad():
        for a in range(0, n, batch_size):
            sl = slice(a, min(a + batch_size, n))
            out = module.raw_nchw(module.to_nchw(data.x[sl]),
                                  None if data.f is None else data.f[sl])
            total += float(crit(out, _targets(spec, data.y[sl]))) * (sl.stop - sl.start)
    module.train(was_training)
    return total / n


def time_epoch(module, train, val, spec, teacher_fn=None, steps=20):
    """Seconds one epoch of :func:`train_module` takes, estimated without training ``module``.

    On a copy of ``module``: one untimed step (allocations, kernel selection), then
    ``steps`` timed training steps (or the whole epoch when it is shorter), scaled to
    the epoch's batch count, plus one timed validation pass. The steps draw their
    random numbers from a generator of their own: the fit's stream is untouched.
    """
    import copy

    probe = copy.deepcopy(module)
    bs = min(spec.batch_size, len(train))
    n_batches = max(1, len(train) // bs)
    k = min(steps, n_batches)
    rng = np.random.default_rng(0)
    train_module(probe, train.head(bs), None, spec, rng, teacher_fn=teacher_fn, epochs=1)
    t = time.perf_counter()
    train_module(probe, train.head(k * bs), None, spec, rng, teacher_fn=teacher_fn, epochs=1)
    seconds = (time.perf_counter() - t) / k * n_batches
    if val is not None:
        t = time.perf_counter()
        evaluate(probe, val, spec, max(256, bs))
        seconds += time.perf_counter() - t
    return seconds


def train_module(module, train, val, spec, rng, *, teacher_fn=None, masks=None,
                 epochs=None, learning_rate=None, schedule=None, phase="train", log=None):
    """Train ``module`` in place; return the history (list of per-epoch dicts).

    Parameters
    ----------
    module : MicroCNNModule
    train, val : _Data
        ``val`` may be None: no early stopping, the last weights are kept.
    spec : TrainSpec
    rng : numpy.random.Generator
    teacher_fn : callable or None
        ``teacher_fn(x_uint8_like) -> standardised teacher targets`` called on each
        augmented training batch (an estimator teacher); None when the teacher
        targets are in ``train.t`` (an array teacher, or an estimator teacher whose
        predictions were computed once because nothing is augmented).
    masks : dict or None
        ``{parameter: 0/1 tensor}`` re-applied after every step (pruning fine-tuning).
    """
    epochs = spec.max_epochs if epochs is None else epochs
    lr = spec.learning_rate if learning_rate is None else learning_rate
    schedule = spec.schedule if schedule is None else schedule
    device = train.x.device
    n = len(train)
    bs = min(spec.batch_size, n)
    n_batches = max(1, n // bs)  # the remainder is dropped (a new shuffle every epoch)
    crit = _criterion(spec, module)
    aug = spec.augment
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(2**63 - 1)))
    # the fused kernel updates every parameter tensor in one call (CPU and CUDA)
    opt = torch.optim.AdamW(_param_groups(module, spec.weight_decay), lr=lr,
                            fused=device.type in ("cpu", "cuda"))
    sched = _scheduler(opt, schedule, epochs * n_batches)
    sam = spec.optimizer in ("sam", "asam")
    params = [p for p in module.parameters() if p.requires_grad]
    bns = _bn_layers(module)
    alpha = spec.alpha
    history = []
    best, best_state, since_best = math.inf, None, 0

    def forward_loss(xb, fb, yb, tb):
        out = module.raw_nchw(xb, fb)
        loss = crit(out, yb)
        if tb is not None:
            loss = alpha * loss + (1 - alpha) * crit(out, tb)
        return loss

    module.train()
    h, w = train.x.shape[1], train.x.shape[2]
    for epoch in range(epochs):
        t0 = time.perf_counter()
        # every random draw of the epoch at once, one transfer to the device
        m = n_batches * bs
        order = torch.as_tensor(rng.permutation(n)[:m], device=device)
        aug_params = {k: torch.as_tensor(v, device=device)
                      for k, v in draw_augment(aug, rng, m, h, w).items()}
        if spec.mixup > 0:
            lams = torch.as_tensor(rng.beta(spec.mixup, spec.mixup, n_batches),
                                   dtype=torch.float32, device=device)
            mix = torch.as_tensor(np.argsort(rng.random((n_batches, bs)), axis=1),
                                  device=device)
        running = torch.zeros((), device=device)
        for b in range(n_batches):
            sl = slice(b * bs, (b + 1) * bs)
            idx = order[sl]
            xb = module.to_nchw(train.x[idx])
            yb = _targets(spec, train.y[idx])
            fb = None if train.f is None else train.f[idx]
            tb = None if train.t is None else train.t[idx]
            if aug:
                xb = augment_batch(xb, aug, {k: v[sl] for k, v in aug_params.items()}, gen)
            if spec.mixup > 0:
                lam, perm = lams[b], mix[b]
                xb = lam * xb + (1 - lam) * xb[perm]
                yb = lam * yb + (1 - lam) * yb[perm]
                if fb is not None:
                    fb = lam * fb + (1 - lam) * fb[perm]
                if tb is not None:
                    tb = lam * tb + (1 - lam) * tb[perm]
            if teacher_fn is not None:
                # the teacher sees exactly the student's view: quantise to the input grid
                xb = xb.round().clamp(0, 255)
                tb = teacher_fn(xb)
            if spec.task == "classification" and spec.label_smoothing > 0:
                yb = yb * (1 - spec.label_smoothing) + spec.label_smoothing / spec.n_outputs
            elif spec.task == "regression" and spec.target_noise > 0:
                yb = yb + spec.target_noise * torch.randn(yb.shape, generator=gen, device=device)
            loss = forward_loss(xb, fb, yb, tb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sam:
                _sam_second_step(module, params, bns, spec, forward_loss, (xb, fb, yb, tb))
            opt.step()
            if masks is not None:
                with torch.no_grad():
                    for p, mask in masks.items():
                        p.mul_(mask)
            if sched is not None:
                sched.step()
            running += loss.detach()
        train_loss = float(running) / n_batches
        val_loss = evaluate(module, val, spec, max(256, bs)) if val is not None else None
        seconds = time.perf_counter() - t0
        record = {
            "epoch": len(history) + 1, "phase": phase, "train_loss": train_loss,
            "val_loss": val_loss, "lr": opt.param_groups[0]["lr"], "seconds": seconds,
        }
        history.append(record)
        if log is not None:
            log(record)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower "
                "learning_rate or use loss='huber'."
            )
        if val is None:
            continue
        if val_loss < best - 1e-7:
            best, since_best = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            since_best += 1
            if spec.patience is not None and since_best >= spec.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


def _sam_second_step(module, params, bns, spec, forward_loss, batch):
    """SAM / ASAM: move to the (adaptive) worst-case neighbour, take its gradient, move back.

    ``p.grad`` holds the gradient at ``w`` on entry and the gradient at
    ``w + e(w)`` on exit, ready for the base optimizer's step (Foret et al. 2021;
    ASAM: Kwon et al. 2021, ``e = rho T^2 g / ||T g||`` with ``T = |w| + eta``).
    BatchNorm running statistics are frozen during the second pass.
    """
    adaptive = spec.optimizer == "asam"
    rho = spec.rho
    with torch.no_grad():
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if adaptive:
            scaled = [(p.abs() + ASAM_ETA) * g for p, g in zip(params, grads, strict=True)]
        else:
            scaled = grads
        norm = torch.sqrt(sum((s * s).sum() for s in scaled)) + 1e-12
        eps = []
        for p, s in zip(params, scaled, strict=True):
            e = (rho / norm) * s
            if adaptive:
                e = e * (p.abs() + ASAM_ETA)
            p.add_(e)
            eps.append(e)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    for p in params:
        p.grad = None
    loss = forward_loss(*batch)
    loss.backward()
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.sub_(e)


# ----------------------------------------------------------------------------------------
# pruning
# ----------------------------------------------------------------------------------------
def magnitude_masks(module, amount):
    """Per layer, 0 for the ``amount`` fraction of smallest-magnitude conv/linear weights."""
    masks = {}
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            k = int(math.floor(amount * w.numel()))
            mask = torch.ones_like(w)
            if k > 0:
                idx = torch.argsort(w.abs().flatten(), stable=True)[:k]
                mask.view(-1)[idx] = 0.0
            masks[m.weight] = mask
    with torch.no_grad():
        for p, mask in masks.items():
            p.mul_(mask)
    return masks


def count_nonzero(module):
    """Non-zero trainable values plus the normalisation constants."""
    n = sum(int(torch.count_nonzero(p)) for p in module.parameters())
    for name in CONSTANTS:
        buf = getattr(module, name, None)
        if buf is not None:
            n += buf.numel()
    return n


# ----------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------
def predict_module(module, x, features, device, batch_size, standardized=False, views=((),)):
    """Outputs for numpy pixels ``x`` (n, h, w[, c]) on the 0-255 scale, in batches.

    ``standardized=False``: ``module(x)`` (target units / probabilities), averaged
    over the test-time ``views`` (see :data:`cvfeat.models._base.TTA_VIEWS`);
    True: ``forward_nchw`` (standardised outputs / logits, one view only).
    """
    module.eval()
    if len(views) > 1:
        if standardized:
            raise ValueError("test-time views average predictions, not standardised outputs")
        module = FlipAverage(module, views)
    outs = []
    with torch.inference_mode():
        for a in range(0, len(x), batch_size):
            chunk = x[a:a + batch_size]
            if not (chunk.flags.writeable and chunk.flags.c_contiguous):
                # torch wraps neither read-only memory nor negative strides (a flipped
                # view such as X[:, :, ::-1]): copy the batch
                chunk = np.array(chunk, order="C")
            xb = torch.as_tensor(chunk).to(device)
            fb = None
            if features is not None:
                fb = torch.as_tensor(features[a:a + batch_size], dtype=torch.float32).to(device)
            if standardized:
                out = module.forward_nchw(module.to_nchw(xb), fb)
            else:
                out = module(xb, fb)
            outs.append(out.float().cpu().numpy())
    return np.concatenate(outs).astype(np.float64)
