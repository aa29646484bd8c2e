"""The result of :func:`cvfeat.compare.compare_models`: leaderboard, Pareto front, plot."""

from __future__ import annotations

import html

import numpy as np

from ._metrics import METRICS

__all__ = ["CompareResult", "pareto_mask"]

_LABELS = {"mae": "MAE", "rmse": "RMSE", "mse": "MSE", "medae": "MedAE", "mape": "MAPE",
           "max_error": "max error", "r2": "R2"}


def pareto_mask(params, errors):
    """Points not dominated in (fewer parameters, lower error).

    A point is dominated when another has ``params <=`` and ``error <=`` with at least
    one strictly smaller. Points with equal ``(params, error)`` are all kept.

    Parameters
    ----------
    params, errors : (n,) array-like
        NaN errors are never on the front.

    Returns
    -------
    mask : (n,) bool ndarray
    """
    p = np.asarray(params, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    ok = np.isfinite(e)
    le = (p[None, :] <= p[:, None]) & (e[None, :] <= e[:, None])
    lt = (p[None, :] < p[:, None]) | (e[None, :] < e[:, None])
    dominated = (le & lt & ok[None, :]).any(axis=1)
    return ok & ~dominated


def _fmt_int(v):
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{int(v):,d}"


def _fmt_num(v, digits=3):
    if v is None or not np.isfinite(v):
        return "n/a"
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}" if a < 100 else f"{v:,.1f}"


def _fmt_pm(mean, std):
    """'mean ± std' with the same number of decimals for both."""
    if not np.isfinite(mean):
        return "n/a"
    a = abs(mean)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{mean:.3g} ± {std:.2g}"
    digits = 3 if a < 100 else 1
    return f"{mean:,.{digits}f} ± {std:,.{digits}f}"


def _tick_label(value, _pos=None):
    """Log-axis tick text: 1, 2 and 5 times a power of ten, with thousands separators."""
    if value <= 0:
        return ""
    lead = value / 10 ** np.floor(np.log10(value) + 1e-9)
    if not any(abs(lead - k) < 1e-6 for k in (1, 2, 5)):
        return ""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _label_points(ax, x, y, front):
    """Rank numbers next to the points, nudged up so that no two labels overlap."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the limits, so data -> pixel transforms are final
    pts = ax.transData.transform(np.column_stack([x, y]))
    scale = 72.0 / fig.dpi  # pixels -> points
    w_px, h_px = 18 / scale, 11 / scale
    placed = []
    for i in np.argsort(pts[:, 1], kind="stable"):
        px, py = pts[i, 0] + 6 / scale, pts[i, 1] + 4 / scale
        while any(abs(px - qx) < w_px and abs(py - qy) < h_px for qx, qy in placed):
            py += h_px
        placed.append((px, py))
        dx, dy = (px - pts[i, 0]) * scale, (py - pts[i, 1]) * scale
        moved = dy > 12
        ax.annotate(str(i + 1), (x[i], y[i]), textcoords="offset points", xytext=(dx, dy),
                    fontsize=9, fontweight="bold" if front[i] else "normal",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"} if moved
                    else None)


class CompareResult:
    """Leaderboard of :func:`compare_models`; see there for how each column is measured.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate, best first (by the first metric of ``scoring``):
        ``name, params, bytes_fp32, bytes_int8, macs, <metric>_mean, <metric>_std``
        (per metric), ``fit_s, epochs, latency_us, within_budget`` (``epochs``: NaN
        for models not trained in epochs).
    details : pandas.DataFrame
        Per candidate (same order): ``kind`` ('classical' or 'cnn'),
        ``latency_runtime`` ('onnx' or 'python'), ``params_per_fold``,
        ``search_params`` (best configuration per fold, with ``search``),
        ``n_excluded`` (grid configurations refused up front by the budget),
        ``notes`` (export failures, MACs caveats, warnings raised while fitting).
    dropped : pandas.DataFrame
        Candidates not in ``table``: ``name``, ``params``, ``reason`` (over the budget,
        failed to fit, could not be sized).
    best_ : estimator or None
        The best candidate within the budget, refitted on all the data (with
        ``search``: the best configuration of a search run on all the data).
    best_name_ : str or None
    best_params_ : int or None
        ``count_params`` of ``best_`` (checked against the budget).
    budget, scoring, primary, cv_name, n_splits, n_samples, image_shape, search,
    total_s
        The settings and the total time in seconds.
    """

    def __init__(self, *, table, details, dropped, budget, scoring, cv_name, n_splits,
                 n_samples, image_shape, search, estimators, data, total_s=None):
        self.table = table
        self.details = details
        self.dropped = dropped
        self.budget = budget
        self.scoring = scoring
        self.primary = scoring[0]
        self.cv_name = cv_name
        self.n_splits = n_splits
        self.n_samples = n_samples
        self.image_shape = image_shape
        self.search = search
        self.total_s = total_s
        self.best_ = None
        self.best_name_ = None
        self.best_params_ = None
        self._estimators = estimators  # name -> callable that builds a fresh model
        self._data = data  # (X, y, groups) for refit

    # -- the front ---------------------------------------------------------------------
    def _errors(self):
        col = self.table[f"{self.primary}_mean"].to_numpy(dtype=np.float64)
        return -col if METRICS[self.primary][1] else col

    def pareto_mask(self):
        """Boolean mask of ``table`` rows on the (params, error) Pareto front."""
        return pareto_mask(self.table["params"].to_numpy(), self._errors())

    def pareto(self):
        """The candidates on the front of fewer parameters vs lower error.

        Returns
        -------
        front : pandas.DataFrame
            Rows of ``table`` that no other candidate beats on both parameters and
            the first metric (ties kept), sorted by parameters.
        """
        front = self.table[self.pareto_mask()]
        return front.sort_values(["params", f"{self.primary}_mean"], kind="stable")

    # -- refit -------------------------------------------------------------------------
    def refit(self, name):
        """Fit candidate ``name`` (with its search, if any) on all the data.

        Parameters
        ----------
        name : str
            A name of ``table`` (or ``dropped``).

        Returns
        -------
        model : fitted estimator
            With ``search``: the search's best estimator.
        """
        from ._measure import unwrap_search

        if name not in self._estimators:
            raise KeyError(f"no candidate named {name!r}; known: {list(self._estimators)}.")
        X, y, groups = self._data
        factory = self._estimators[name]
        model = factory(0)
        if getattr(factory, "searching", False) and groups is not None:
            model.fit(X, y, groups=groups)
        else:
            model.fit(X, y)
        return unwrap_search(model)

    # -- text --------------------------------------------------------------------------
    def _display_rows(self):
        front = self.pareto_mask()
        runtime = list(self.details["latency_runtime"]) if len(self.details) else []
        rows = []
        for i, r in enumerate(self.table.itertuples(index=False)):
            r = r._asdict()
            cells = {
                "rank": str(i + 1),
                "name": r["name"] + (" *" if front[i] else ""),
                "params": _fmt_int(r["params"]),
                "bytes fp32": _fmt_int(r["bytes_fp32"]),
                "bytes int8": _fmt_int(r["bytes_int8"]),
                "MACs": _fmt_int(r["macs"]) if np.isfinite(r["macs"]) else "n/a",
            }
            for m in self.scoring:
                cells[_LABELS[m]] = _fmt_pm(r[f"{m}_mean"], r[f"{m}_std"])
            cells["fit s"] = f"{r['fit_s']:.2f}"
            cells["epochs"] = f"{r['epochs']:.3g}" if np.isfinite(r["epochs"]) else ""
            lat = r["latency_us"]
            tag = f" ({runtime[i]})" if i < len(runtime) else ""
            cells["latency µs"] = ("n/a" if not np.isfinite(lat) else f"{lat:,.0f}{tag}")
            cells["in budget"] = "yes" if r["within_budget"] else "NO"
            rows.append(cells)
        return rows

    def _legend(self):
        m = _LABELS[self.primary]
        return (f"{self.cv_name} ({self.n_splits} folds) on {self.n_samples} images; metric "
                f"mean ± std over the folds, ranked by {m}; * = on the Pareto front "
                f"(params vs {m}); params = most over the fold models; bytes int8 = params "
                "at 1 byte; MACs = multiply-accumulates with learned values per image; fit s "
                "= mean per fold; epochs = a micro-CNN's training epochs, mean per fold; "
                "latency = best single-image predict (onnx = ONNX Runtime, "
                f"1 thread; python = predict); budget {self.budget:,d} parameters.")

    def to_markdown(self):
        """The leaderboard as a GitHub-flavoured Markdown table, with a legend line.

        Returns
        -------
        text : str
        """
        rows = self._display_rows()
        if not rows:
            return "(no candidate)\n"
        heads = list(rows[0])
        right = {h for h in heads if h not in ("name",)}
        lines = ["| " + " | ".join(heads) + " |",
                 "|" + "|".join("---:" if h in right else "---" for h in heads) + "|"]
        for r in rows:
            lines.append("| " + " | ".join(r[h].replace("|", "\\|") for h in heads) + " |")
        return "\n".join(lines) + "\n\n" + self._legend() + "\n"

    def to_html(self):
        """The leaderboard as an HTML ``<table>`` (escaped), with a legend paragraph.

        Returns
        -------
        text : str
        """
        rows = self._display_rows()
        heads = list(rows[0]) if rows else ["name"]
        out = ['<table class="cvfeat-leaderboard">', "  <thead><tr>"
               + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead>",
               "  <tbody>"]
        for r in rows:
            out.append("    <tr>" + "".join(f"<td>{html.escape(r[h])}</td>" for h in heads)
                       + "</tr>")
        out += ["  </tbody>", "</table>", f"<p>{html.escape(self._legend())}</p>"]
        return "\n".join(out) + "\n"

    def __repr__(self):
        best = "none within budget" if self.best_name_ is None else repr(self.best_name_)
        return (f"<CompareResult: {len(self.table)} candidates, {len(self.dropped)} dropped, "
                f"budget {self.budget:,d}, best {best}>")

    # -- plot --------------------------------------------------------------------------
    def plot(self, path=None, *, title=None):
        """Error vs parameters (log axis), the budget line and the Pareto front.

        Uses matplotlib's object-oriented API with the Agg canvas (no GUI, pyplot's
        state untouched). Each point is numbered by its rank; the names are listed
        beside the axes.

        Parameters
        ----------
        path : str or Path, optional
            Write a PNG there.
        title : str, optional

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter

        t = self.table
        m = self.primary
        label = _LABELS[m]
        fig = Figure(figsize=(11, 6), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.07, 0.1, 0.56, 0.8))
        if not len(t):
            ax.text(0.5, 0.5, "no candidate in the table (see result.dropped)",
                    ha="center", va="center", transform=ax.transAxes)
            if path is not None:
                fig.savefig(path, format="png")
            return fig
        x = np.maximum(t["params"].to_numpy(dtype=np.float64), 1)
        y = t[f"{m}_mean"].to_numpy(dtype=np.float64)
        s = t[f"{m}_std"].to_numpy(dtype=np.float64)
        kinds = list(self.details["kind"]) if len(self.details) else ["classical"] * len(t)
        inside = t["within_budget"].to_numpy(dtype=bool)
        front = self.pareto_mask()
        colors = {"classical": "tab:blue", "cnn": "tab:orange"}
        for kind, color in colors.items():
            sel = np.array([k == kind for k in kinds], dtype=bool)
            for ok, face in ((True, color), (False, "white")):
                pick = sel & (inside == ok)
                if pick.any():
                    ax.errorbar(x[pick], y[pick], yerr=s[pick], fmt="o", ms=7, color=color,
                                mfc=face, ecolor=color, elinewidth=1, capsize=2, alpha=0.9,
                                label=f"{kind}{'' if ok else ' (over budget)'}")
        if front.any():
            order = np.argsort(x[front], kind="stable")
            fx, fy = x[front][order], y[front][order]
            ax.step(fx, fy, where="post", color="tab:red", lw=1.5, alpha=0.8)
            ax.plot(fx, fy, "o", ms=13, mfc="none", mec="tab:red", mew=2,
                    label="Pareto front")
        ax.axvline(self.budget, color="black", ls="--", lw=1.2,
                   label=f"budget {self.budget:,d}")
        ax.set_xscale("log")
        lo, hi = min(x.min(), self.budget), max(x.max(), self.budget)
        ax.set_xlim(lo / 1.6, hi * 1.6)
        tick = FuncFormatter(_tick_label)
        ax.xaxis.set_major_formatter(tick)
        ax.xaxis.set_minor_formatter(tick)
        _label_points(ax, x, y, front)
        ax.set_xlabel("learned parameters (log scale)", fontsize=11)
        better = "higher" if METRICS[m][1] else "lower"
        ax.set_ylabel(f"CV {label}, mean ± std over {self.n_splits} folds ({better} is better)",
                      fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9, loc="best")
        ax.set_title(title or f"{len(t)} candidates, budget {self.budget:,d} parameters",
                     fontsize=12)
        names = [f"{i + 1:>2}. {n}{' *' if front[i] else ''}"
                 for i, n in enumerate(t["name"])]
        fig.text(0.66, 0.9, "rank. candidate  (* = Pareto front)\n\n" + "\n".join(names),
                 va="top", ha="left", fontsize=9, family="monospace")
        if path is not None:
            fig.savefig(path, format="png")
        return fig
