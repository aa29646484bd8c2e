"""Statistics, tables, plots and rules of thumb of the study (``benchmarks/study.py``).

Everything here is computed from the saved results file; nothing is typed in by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from study import CONFIGS, EXPERIMENTS, FITTED

CONFIDENCE = 0.95


def t_interval(values):
    """``(mean, half_width)`` of a 95 % Student-t interval (half-width NaN for n < 2)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan
    return float(v.mean()), float(t_factor(len(v)) * v.std(ddof=1) / math.sqrt(len(v)))


def t_factor(n):
    """The 95 % two-sided Student-t factor for ``n`` values (NaN for n < 2)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) if n >= 2 else math.nan


class Results:
    """Index of the rows: ``mae[(dataset, budget, config)] = {seed: mae}``."""

    def __init__(self, state):
        self.state = state
        self.rows = [r for r in state["results"] if "error" not in r]
        self.errors = [r for r in state["results"] if "error" in r]
        self.datasets = [d for d in state.get("datasets", {})]
        self.budgets = sorted({r["budget"] for r in self.rows})
        self.by = {}
        for r in self.rows:
            self.by.setdefault((r["dataset"], r["budget"], r["config"]), {})[r["seed"]] = r

    def settings(self):
        return [(d, b) for d in self.datasets for b in self.budgets
                if (d, b, "base") in self.by]

    def maes(self, d, b, c):
        return {s: r["mae"] for s, r in self.by.get((d, b, c), {}).items() if "mae" in r}

    def mean_ci(self, d, b, c):
        return t_interval(list(self.maes(d, b, c).values()))

    def rel_change(self, d, b, c, ref):
        """Per-seed paired ``mae_c / mae_ref - 1`` (seeds present in both)."""
        a, r = self.maes(d, b, c), self.maes(d, b, ref)
        return [a[s] / r[s] - 1.0 for s in sorted(set(a) & set(r)) if r[s] > 0]

    def mean_field(self, d, b, c, field):
        vals = [r[field] for r in self.by.get((d, b, c), {}).values() if field in r]
        return float(np.mean(vals)) if vals else math.nan

    def overall(self, c, ref):
        """Across settings: mean of the per-setting mean change, its interval over settings,
        and the settings where the per-setting interval is below / above 0."""
        means, better, worse = [], [], []
        for d, b in self.settings():
            ch = self.rel_change(d, b, c, ref)
            if not ch:
                continue
            m, h = t_interval(ch)
            means.append(m)
            if np.isfinite(h) and m + h < 0:
                better.append(f"{d} {b // 1000}k")
            elif np.isfinite(h) and m - h > 0:
                worse.append(f"{d} {b // 1000}k")
        m, h = t_interval(means)
        return dict(mean=m, half=h, n=len(means), better=better, worse=worse)


def pct(m, h=None):
    if not np.isfinite(m):
        return "–"
    s = f"{100 * m:+.1f} %"
    if h is not None and np.isfinite(h):
        s += f" [{100 * (m - h):+.1f}, {100 * (m + h):+.1f}]"
    return s


def mae_cell(m, h):
    if not np.isfinite(m):
        return "–"
    return f"{m:.3g} ± {h:.2g}" if np.isfinite(h) else f"{m:.3g}"


def verdict(o):
    if not np.isfinite(o["half"]):
        return "too few settings to tell"
    if o["mean"] + o["half"] < 0:
        return "lowers the error"
    if o["mean"] - o["half"] > 0:
        return "raises the error"
    return "no reliable difference"


def md_table(heads, rows):
    out = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------
def _panels(plt, res):
    """One panel per data set that has results, with the budget axis (log, 1k 3k 10k)."""
    ds = [d for d in res.datasets if any((d, b, "base") in res.by for b in res.budgets)]
    fig, axes = plt.subplots(1, len(ds), figsize=(3.2 * len(ds) + 0.8, 3.2), squeeze=False)
    for ax, d in zip(axes[0], ds, strict=True):
        ax.set_xscale("log")
        ax.set_xticks(res.budgets, [f"{b // 1000}k" for b in res.budgets])
        ax.minorticks_off()
        ax.set_title(d)
        ax.set_xlabel("budget (parameters)")
    return fig, list(zip(axes[0], ds, strict=True))


def plot_experiment(res, key, title, ref, variants, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = _panels(plt, res)
    for ax, d in panels:
        for k, c in enumerate(variants):
            xs, ms, hs = [], [], []
            for b in res.budgets:
                ch = res.rel_change(d, b, c, ref)
                if ch:
                    m, h = t_interval(ch)
                    xs.append(b * (1 + 0.06 * (k - (len(variants) - 1) / 2)))
                    ms.append(100 * m)
                    hs.append(100 * h if np.isfinite(h) else 0.0)
            ax.errorbar(xs, ms, yerr=hs, marker="o", capsize=3, label=CONFIGS[c][2])
        ax.axhline(0, color="grey", lw=1)
    panels[0][0].set_ylabel(f"MAE change vs {ref} (%)")
    panels[-1][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{title}: paired change, mean and 95 % CI over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_classical(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = _panels(plt, res)
    for ax, d in panels:
        for c, style, label in (("classical", "s-", "best classical (CV-chosen)"),
                                ("base", "o-", "baseline CNN"), ("hybrid", "^-", "hybrid CNN")):
            pts = [(b, *res.mean_ci(d, b, c)) for b in res.budgets]
            pts = [(b, m, h if np.isfinite(h) else 0) for b, m, h in pts if np.isfinite(m)]
            if pts:
                b, m, h = zip(*pts, strict=True)
                ax.errorbar(b, m, yerr=h, fmt=style, capsize=3, label=label)
        best = [(b, best_cnn(res, d, b)) for b in res.budgets]
        best = [(b, v[1]) for b, v in best if v is not None]
        if best:
            ax.plot(*zip(*best, strict=True), "k:", label="best CNN variant")
        guess = res.state["datasets"].get(d, {}).get("median_guess_mae")
        if guess:
            ax.axhline(guess, color="grey", lw=1, ls="--", label="median guess")
    panels[0][0].set_ylabel("test MAE (target units)")
    panels[-1][0].legend(fontsize=7)
    fig.suptitle("Classical first? Test MAE, mean and 95 % CI over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def best_cnn(res, d, b):
    """The CNN configuration with the lowest mean test MAE in a setting (chosen on the
    test split: an optimistic reference for the CNN side)."""
    means = [(c, res.mean_ci(d, b, c)[0]) for c in FITTED if c != "classical"]
    means = [(c, m) for c, m in means if np.isfinite(m)]
    return min(means, key=lambda cm: cm[1]) if means else None


# ----------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------
def write_report(state, docs, results_path):
    docs = Path(docs)
    figs = docs / "study"
    figs.mkdir(parents=True, exist_ok=True)
    res = Results(state)
    s = state.get("settings", {})
    n_seeds = len(s.get("seeds", [])) or 1
    cmd = state.get("command", "python benchmarks/study.py")
    L = ["# The best-practice study", "",
         "What pays off for image regression under a hard parameter budget? Each experiment "
         "changes one thing in the baseline micro-CNN and measures the test MAE of both on "
         "the same 80/20 split and seed, at budgets of "
         + ", ".join(f"{b:,d}" for b in res.budgets) + " parameters. Written by "
         "`benchmarks/study.py` from `" + _rel(results_path) + "`; every number below comes "
         "from that run.", "",
         "```", cmd, "```", "",
         f"Settings: {s.get('n')} images per data set (fewer where the data set is smaller) "
         f"resized to {s.get('size')}x{s.get('size')}, {s.get('epochs')} epochs (the model "
         f"keeps its best epoch on a 10 % validation split of the training images), seeds "
         f"{', '.join(map(str, s.get('seeds', [])))} (each seed: its own split and "
         f"initialisation, shared by all configurations). Classical pipelines are chosen by "
         f"{s.get('classical_cv')}-fold CV on the training images. Python "
         f"{state.get('python')}, torch {state.get('torch')}, {state.get('cpu_count')} cores, "
         f"{state.get('jobs')} parallel fits; {state.get('seconds', 0) / 60:.0f} minutes "
         f"in all.", "",
         "How to read the tables: *MAE* is the mean test MAE over the seeds ± the half-width "
         "of its 95 % t-interval; *change* is the paired relative change of the MAE against "
         "the reference (same split, same seed), mean and 95 % t-interval over the seeds "
         f"(negative = lower error). With {n_seeds} seeds the t-factor is "
         f"{t_factor(n_seeds):.1f}, so only large or very consistent effects clear zero in "
         "one setting; the summary pools the settings.", ""]
    L += ["## Data", ""]
    root = str(Path(__file__).resolve().parents[2] / "shared" / "data")
    rows = [(d, info["n"], "x".join(map(str, info["shape"])), f"{info['median_guess_mae']:.3g}",
             info["note"].replace(root, "../shared/data"))
            for d, info in state.get("datasets", {}).items()]
    L += [md_table(["data set", "images", "shape", "median-guess MAE", "source"], rows), ""]
    for d, why in state.get("skipped", {}).items():
        L += [f"- {d}: not run ({why})"]
    L += [""]

    # -- summary and rules of thumb
    summary = []
    for key, title, ref, variants, _ in EXPERIMENTS:
        for c in variants:
            o = res.overall(c, ref)
            summary.append((key, title, c, ref, o))
    L += ["## Rules of thumb", "",
          "Mean change of the test MAE across all settings (data set x budget), with its "
          "95 % interval over settings; *better in* / *worse in* list the settings where the "
          "paired interval over seeds excludes zero.", ""]
    L += [md_table(["experiment", "change", "vs", "mean change across settings", "verdict",
                    "better in", "worse in"],
                   [(title, CONFIGS[c][2], ref, pct(o["mean"], o["half"]), verdict(o),
                     ", ".join(o["better"]) or "–", ", ".join(o["worse"]) or "–")
                    for key, title, c, ref, o in summary]), ""]
    L += rules(res, summary)
    L += [""]

    # -- one section per experiment
    for key, title, ref, variants, about in EXPERIMENTS:
        L += [f"## {title}", "", about, ""]
        heads = ["data set", "budget", f"{ref} MAE"]
        for c in variants:
            heads += [f"{c} MAE", f"{c} change"]
        if key in ("depth", "conv", "head", "blocks", "coord"):
            heads += ["architectures (seed 0)"]
        rows = []
        for d, b in res.settings():
            row = [d, f"{b:,d}", mae_cell(*res.mean_ci(d, b, ref))]
            for c in variants:
                row += [mae_cell(*res.mean_ci(d, b, c)), pct(*t_interval(
                    res.rel_change(d, b, c, ref)))]
            if key in ("depth", "conv", "head", "blocks", "coord"):
                row.append("; ".join(_arch(res, d, b, c) for c in [ref, *variants]))
            rows.append(row)
        L += [md_table(heads, rows), ""]
        L += extra_lines(res, key)
        png = figs / f"{key}.png"
        plot_experiment(res, key, title, ref, variants, png)
        L += [f"![{title}](study/{png.name})", "", "```", cmd, "```", ""]

    # -- classical first
    L += ["## Classical first: the best classical pipeline within the budget vs the best CNN",
          "",
          "The classical pipeline is chosen among `cvfeat.compare.default_candidates` (HOG, "
          "colour histogram, dense SIFT-BoW, LBP, alone and in a FeatureUnion, into RidgeCV, "
          "LinearSVR, Nystroem + RidgeCV or a small XGBoost) by cross-validation on the "
          "training images only, then scored on the test split. The *best CNN* is the "
          "configuration with the lowest mean test MAE in that setting: chosen on the test "
          "split, so it flatters the CNN side.", ""]
    rows = []
    for d, b in res.settings():
        cl = res.mean_ci(d, b, "classical")
        bc = best_cnn(res, d, b)
        picked = sorted({r.get("pipeline", "?") for r in res.by.get((d, b, "classical"),
                                                                    {}).values()})
        gap = (f"{100 * (cl[0] / bc[1] - 1):+.0f} %" if bc and np.isfinite(cl[0]) else "–")
        rows.append((d, f"{b:,d}", mae_cell(*cl), "; ".join(picked),
                     mae_cell(*res.mean_ci(d, b, "base")),
                     f"{bc[1]:.3g} ({bc[0]})" if bc else "–", gap,
                     pct(*t_interval(res.rel_change(d, b, "classical", "base")))))
    L += [md_table(["data set", "budget", "classical MAE", "classical pipeline(s) chosen",
                    "baseline CNN MAE", "best CNN MAE (config)", "classical vs best CNN",
                    "classical vs baseline CNN (paired)"], rows), ""]
    png = figs / "classical_first.png"
    plot_classical(res, png)
    L += ["![classical first](study/classical_first.png)", "", "```", cmd, "```", ""]

    if res.errors:
        L += ["## Fits that failed", "",
              md_table(["data set", "budget", "seed", "config", "error"],
                       [(r["dataset"], r["budget"], r["seed"], r["config"], r["error"])
                        for r in res.errors]), ""]
    path = docs / "STUDY.md"
    path.write_text("\n".join(L), encoding="utf-8")
    return path


def _rel(path):
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


def _arch(res, d, b, c):
    r = res.by.get((d, b, c), {}).get(0)
    if not r or "architecture" not in r:
        return "–"
    a = r["architecture"].split(":", 1)[-1]
    depth = a.split("depth ")[-1].split(",")[0] if "depth " in a else "?"
    widths = a.split("widths ")[-1] if "widths " in a else "?"
    return f"{c}: d{depth} {widths}"


def extra_lines(res, key):
    """Context under some tables, from the results."""
    out = []
    if key == "distill":
        for d, b in res.settings():
            tm = res.mean_field(d, b, "distilled", "teacher_mae")
            tp = res.mean_field(d, b, "distilled", "teacher_params")
            if np.isfinite(tm):
                out.append(f"- {d} {b:,d}: teacher MAE {tm:.3g} with {tp:,.0f} values")
    if key == "int8":
        for d, b in res.settings():
            f32 = res.mean_field(d, b, "int8", "fp32_onnx_mae")
            base = res.mean_ci(d, b, "base")[0]
            kb = [res.mean_field(d, b, c, "bytes") for c in ("int8", "int8_all")]
            kb32 = res.mean_field(d, b, "int8", "bytes_fp32")
            notes = {r.get("note") for c in ("int8", "int8_all")
                     for r in res.by.get((d, b, c), {}).values() if r.get("note")}
            out.append(f"- {d} {b:,d}: fp32 ONNX MAE {f32:.4g} (PyTorch {base:.4g}); bytes "
                       f"fp32 {kb32:,.0f}, int8 {kb[0]:,.0f}, int8 all {kb[1]:,.0f}"
                       + (f"; {'; '.join(sorted(notes))}" if notes else ""))
    if key == "prune":
        for d, b in res.settings():
            nz = res.mean_field(d, b, "pruned50", "n_nonzero")
            n = res.mean_field(d, b, "pruned50", "n_params")
            if np.isfinite(nz):
                out.append(f"- {d} {b:,d}: {nz:,.0f} of {n:,.0f} values nonzero after pruning")
    if key == "sam":
        for d, b in res.settings():
            ts = res.mean_field(d, b, "sam", "fit_seconds")
            tb = res.mean_field(d, b, "base", "fit_seconds")
            if np.isfinite(ts) and np.isfinite(tb):
                out.append(f"- {d} {b:,d}: fit {tb:.0f} s (AdamW) vs {ts:.0f} s (SAM)")
    return out + ([""] if out else [])


def rules(res, summary):
    """One line per experiment: the verdict of each variant with its evidence."""
    out = []
    by_key = {}
    for key, title, c, ref, o in summary:
        by_key.setdefault((key, title, ref), []).append((c, o))
    for (_key, title, ref), items in by_key.items():
        parts = []
        for c, o in items:
            ev = f"{pct(o['mean'], o['half'])} over {o['n']} settings"
            if o["better"] or o["worse"]:
                ev += (f"; for: {', '.join(o['better']) or 'none'}; against: "
                       f"{', '.join(o['worse']) or 'none'}")
            parts.append(f"{CONFIGS[c][2]}: {verdict(o)} ({ev})")
        out.append(f"- **{title}** (against {ref}): " + "; ".join(parts) + ".")
    return out
