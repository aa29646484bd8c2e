"""Ways to run the same micro-CNN epoch faster on one CPU thread, against plain eager NCHW.

The network is the one ``MicroCNNRegressor(max_params=3000)`` builds for 32x32 grey
images (the ``bench_micro_cnn.py --cost`` set-up: 10,000 images, batch 64, AdamW,
Huber). ``eager`` runs it in the textbook order (:func:`textbook_forward`: conv, BN,
ReLU, max-pool), float32, NCHW. Each variant trains the same module from the same
seed for one epoch;
variants alternate within each round, in an order rotated by one each round (so that no
variant always follows the same one), and the medians over rounds are compared
with the eager NCHW float32 loop measured in the same run:

- ``pool-before-relu``: ``max_pool(relu(z)) == relu(max_pool(z))``, so ReLU and its
  backward run on a quarter of the values (the same function, exactly): the order of
  ``MicroCNNModule.forward_nchw``;
- ``channels-last``: module and batches in ``torch.channels_last``, and both together;
- ``bf16-autocast``: ``torch.autocast('cpu', torch.bfloat16)`` (changes the numbers);
- ``compiled``: ``torch.compile(dynamic=False)`` of the loss, steady state (the
  compile time is reported apart).

Results go to ``--out`` after every round. Example::

    .venv/bin/python benchmarks/bench_epoch_variants.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("eager", "pool-before-relu", "channels-last", "pool-before-relu+channels-last",
            "bf16-autocast", "compiled")


def textbook_forward(m, x):
    """``m.forward_nchw`` written in the textbook order, as a plain PyTorch user would:
    ``conv -> BN -> [+ skip] -> ReLU -> [concat] -> max-pool`` per layer."""
    import torch
    import torch.nn.functional as F

    x = (x - m.in_mean.view(1, -1, 1, 1)) * m.in_scale.view(1, -1, 1, 1)
    if m.coords is not None:
        x = torch.cat([x, m.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
    for unit, pool in zip(m.layers, m.pools, strict=True):
        z = x if unit.depthwise is None else unit.depthwise(x)
        z = unit.bn(unit.conv(z))
        if unit.mode == "residual":
            z = z + (F.pad(x, (0, 0, 0, 0, 0, unit.pad_channels)) if unit.pad_channels else x)
        z = F.relu(z)
        x = torch.cat([x, z], 1) if unit.mode == "dense" else z
        if pool > 1:
            x = F.max_pool2d(x, pool)
    x = torch.flatten(x, 1) if m.flatten_head else x.mean(dim=(2, 3))
    return m.head(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/bench_epoch_variants.json")
    args = p.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from cvfeat.datasets import make_scale
    from cvfeat.models import MicroCNNRegressor
    from cvfeat.models import architectures as A

    torch.set_num_threads(1)
    X, y = make_scale(args.n, size=args.size, random_state=0)
    arch = MicroCNNRegressor(max_params=3000, max_epochs=1, validation_fraction=0.0,
                             patience=None, augment=None, random_state=0,
                             n_jobs=1).fit(X[:256], y[:256]).module_.arch
    x = torch.as_tensor(X[..., None])
    t = torch.as_tensor(((y - y.mean()) / y.std()).astype(np.float32))[:, None]
    compiled = {}

    def epoch(variant):
        torch.manual_seed(0)
        m = A.build_module(arch)
        if variant.endswith("channels-last"):
            m = m.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(m.parameters(), lr=0.01)

        def loss_of(xb, tb):
            xb = m.to_nchw(xb)
            if variant.endswith("channels-last"):
                xb = xb.contiguous(memory_format=torch.channels_last)
            if variant.startswith("pool-before-relu"):  # the module's own order
                return F.huber_loss(m.forward_nchw(xb), tb)
            if variant == "bf16-autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = textbook_forward(m, xb)
                return F.huber_loss(out.float(), tb)
            return F.huber_loss(textbook_forward(m, xb), tb)

        fn = loss_of
        if variant == "compiled":
            fn = torch.compile(loss_of, dynamic=False)
            t0 = time.perf_counter()
            fn(x[:64], t[:64]).backward()
            compiled.setdefault("compile_seconds", time.perf_counter() - t0)
        order = torch.as_tensor(np.random.default_rng(0).permutation(len(X)))
        t0 = time.perf_counter()
        for b in range(len(X) // 64):
            idx = order[b * 64:(b + 1) * 64]
            loss = fn(x[idx], t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    times = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
            times[v].append(epoch(v))
        med = {v: float(np.median(s)) for v, s in times.items()}
        result = {"images": args.n, "size": args.size, "arch": arch, "rounds": r + 1,
                  "seconds_per_epoch": med, **compiled,
                  "ratio_vs_eager": {v: med[v] / med["eager"] for v in VARIANTS},
                  "torch": torch.__version__}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
        print(f"round {r + 1}: " + ", ".join(f"{v} {med[v]:.2f} s ({med[v] / med['eager']:.2f}x)"
                                            for v in VARIANTS), flush=True)
    print(f"compile: {compiled.get('compile_seconds', float('nan')):.1f} s")


if __name__ == "__main__":
    main()
