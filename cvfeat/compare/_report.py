"""``cvfeat compare DATA_DIR``: compare on a folder, write the report and the best model.

Writes into ``out``:

* ``report.md`` -- the data, the command, versions, the machine, the settings, the
  leaderboard, what was dropped, the Pareto front, the best model and its export
  (bytes, parity on held-out images, latency, int8);
* ``leaderboard.csv`` -- ``result.table``;
* ``pareto.png`` -- ``result.plot``;
* ``best.onnx`` -- the best exportable candidate within the budget, refitted on the
  comparison images, with its model card (:func:`cvfeat.export.to_onnx`);
* ``best.skops`` -- the same fitted model (the deployable estimator) as a skops file
  (:func:`cvfeat.io.save_model`), to load in Python or to export again.

A share of the images (``holdout``, 10 % by default, by group when groups are given) is
kept out of the comparison: the parity of the exported graph is checked on them, and
they give the chosen model an error measured on images that played no part in
choosing it.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["compare_report", "run_compare", "machine_lines", "version_lines"]

PACKAGES = ("cvfeat", "numpy", "scikit-learn", "scikit-image", "opencv-python-headless",
            "xgboost", "torch", "onnx", "onnxruntime", "skl2onnx", "optuna",
            "optuna-integration", "pandas")


def version_lines():
    """``package version`` for the packages a comparison depends on."""
    out = [f"python {platform.python_version()}"]
    for dist in PACKAGES:
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return out


def machine_lines():
    """The machine: OS, CPU model, cores usable by this process, memory."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    lines = [f"{platform.system()} {platform.release()} ({platform.machine()})",
             f"CPU: {cpu}; {os.cpu_count()} logical cores, {usable} usable by this process"]
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        lines.append(f"memory: {mem / 2**30:.1f} GiB")
    except (ValueError, OSError, AttributeError):
        pass
    return lines


def _read_groups(data_dir, column, paths):
    import pandas as pd

    from ..datasets.folder import FILE_COLUMN, LABELS

    df = pd.read_csv(Path(data_dir) / LABELS)
    if column not in df.columns:
        raise ValueError(
            f"--groups {column!r}: no such column in {Path(data_dir) / LABELS}; columns: "
            f"{', '.join(map(str, df.columns))}."
        )
    full = [str(p if Path(p).is_absolute() else Path(data_dir) / p) for p in df[FILE_COLUMN]]
    lookup = dict(zip(full, df[column], strict=True))
    return np.asarray([lookup[str(p)] for p in paths])


def _holdout_split(n, fraction, groups, random_state):
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit

    n_hold = max(1, int(round(fraction * n)))
    if groups is not None:
        split = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=random_state)
        keep, hold = next(split.split(np.zeros(n), groups=groups))
    else:
        split = ShuffleSplit(n_splits=1, test_size=n_hold, random_state=random_state)
        keep, hold = next(split.split(np.zeros(n)))
    return np.sort(keep), np.sort(hold)


def _md_table(rows, heads):
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _export_best(result, X_fit, X_hold, y_hold, *, out, target, command, say):
    """Export the best exportable within-budget candidate; returns a dict for the report."""
    import onnxruntime as ort

    from ..budget import count_params
    from ..export import check_parity, compare_quantized, read_model_card, to_onnx
    from ..io import save_model
    from ._measure import as_uint8, deployable
    from ._metrics import METRICS

    info = {"skipped": []}
    for name in result.table.loc[result.table["within_budget"], "name"]:
        if name == result.best_name_:
            model = result.best_
        else:
            say(f"refitting {name!r} on {len(X_fit)} images to export it")
            model = result.refit(name)
            if count_params(model) > result.budget:
                info["skipped"].append((name, "its refit exceeds the budget"))
                continue
        try:
            onx = to_onnx(deployable(model), as_uint8(X_fit[:1]), target_name=target,
                          command=command)
        except Exception as exc:  # noqa: BLE001 - e.g. a step without converter
            info["skipped"].append((name, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
            continue
        path = Path(out) / "best.onnx"
        data = onx.SerializeToString()
        path.write_bytes(data)
        info["skops"] = save_model(deployable(model), Path(out) / "best.skops")
        info.update(name=name, model=model, path=path, bytes=len(data),
                    params=count_params(model))
        if X_hold.dtype == np.uint8:
            info["parity"] = check_parity(model, onx, X_hold)
        else:
            info["parity"] = None  # the graph takes uint8; float images are not comparable
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: as_uint8(X_hold[:1])}
        sess.run(None, feed)
        best = float("inf")
        for _ in range(100):
            t0 = time.perf_counter()
            sess.run(None, feed)
            best = min(best, time.perf_counter() - t0)
        info["latency_us"] = best * 1e6
        pred = model.predict(X_hold)
        info["holdout"] = {m: float(METRICS[m][0](y_hold, pred)) for m in result.scoring}
        info["card"] = read_model_card(onx)
        try:
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                q = compare_quantized(deployable(model), as_uint8(X_fit[:64]), as_uint8(X_hold),
                                      y_hold if X_hold.dtype == np.uint8 else None)
            info["int8"] = q
            info["int8_notes"] = sorted({str(w.message).splitlines()[0] for w in caught})
        except Exception as exc:  # noqa: BLE001 - int8 is a bonus line in the report
            info["int8"] = None
            info["int8_notes"] = [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"]
        return info
    return info


def run_compare(data_dir, *, target, size=64, color="rgb", budget=3000, cv=5, out="report",
                n_samples=None, cnn_epochs=None, cnn_time=None, search=None,
                search_options=None, groups=None, holdout=0.1, scoring=("mae", "rmse", "r2"),
                random_state=0, n_jobs=None, fast=False, include_over_budget=False, command=None,
                candidates="default", progress=True, say=print):
    """Compare the default candidates on a folder and write the report (see module doc).

    Returns
    -------
    summary : dict
        ``result`` (:class:`CompareResult`), ``export`` (dict, see
        :func:`_export_best`), ``files`` (paths written), ``seconds``.
    """
    from ..datasets import load_image_folder

    t0 = time.perf_counter()
    if not 0 < holdout < 0.5:
        raise ValueError(f"--holdout must be in (0, 0.5); got {holdout}.")
    say(f"reading {data_dir} (target {target!r}, {size}x{size} {color})")
    X, y, paths = load_image_folder(data_dir, target, size=size, color=color,
                                    n_samples=n_samples, random_state=random_state,
                                    return_paths=True)
    if np.asarray(y).ndim != 1:
        raise ValueError("cvfeat compare takes one target column; got several.")
    g = _read_groups(data_dir, groups, paths) if groups else None
    data = [f"folder: `{data_dir}` (`images/` + `labels.csv`), target column `{target}`",
            f"{len(X)} images read at {size}x{size}, {color}"]
    return compare_report(
        X, y, target=target, data_lines=data, title=f"{Path(data_dir).name} ({target})",
        groups=g, groups_name=groups, budget=budget, cv=cv, out=out, cnn_epochs=cnn_epochs,
        cnn_time=cnn_time, search=search, search_options=search_options, holdout=holdout,
        scoring=scoring, random_state=random_state, n_jobs=n_jobs, fast=fast,
        include_over_budget=include_over_budget, command=command, candidates=candidates,
        progress=progress, say=say, t0=t0)


def compare_report(X, y, *, target, data_lines, title, out="report", groups=None,
                   groups_name=None, budget=3000, cv=5, cnn_epochs=None, cnn_time=None,
                   search=None, search_options=None, holdout=0.1, scoring=("mae", "rmse", "r2"),
                   random_state=0, n_jobs=None, fast=False, include_over_budget=False,
                   command=None, candidates="default", progress=True, say=print, t0=None):
    """Hold out images, compare, write ``out`` (report, leaderboard, plot, best model).

    The part of :func:`run_compare` after reading the images; ``cvfeat demo`` calls it
    on a built-in task. ``data_lines`` describe where the images came from.
    """
    from ._core import compare_models

    t0 = time.perf_counter() if t0 is None else t0
    out = Path(out)
    if not 0 < holdout < 0.5:
        raise ValueError(f"holdout must be in (0, 0.5); got {holdout}.")
    g = None if groups is None else np.asarray(groups)
    keep, hold = _holdout_split(len(X), holdout, g, random_state)
    X_fit, y_fit, X_hold, y_hold = X[keep], y[keep], X[hold], y[hold]
    g_fit = None if g is None else g[keep]
    say(f"{len(X)} images: {len(X_fit)} compared with {cv}-fold CV, {len(X_hold)} held out "
        "for the export check")
    result = compare_models(
        X_fit, y_fit, budget=budget, candidates=candidates, cv=cv, groups=g_fit,
        scoring=scoring, search=search, search_options=search_options, n_jobs=n_jobs,
        random_state=random_state, include_over_budget=include_over_budget,
        cnn_epochs=cnn_epochs, cnn_time=cnn_time, fast=fast, progress=progress)
    # the folder is made only once there is something to write: a bad input leaves nothing
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    files["leaderboard"] = out / "leaderboard.csv"
    result.table.to_csv(files["leaderboard"], index=False)
    files["pareto"] = out / "pareto.png"
    result.plot(files["pareto"], title=f"{title}, budget {budget:,d} parameters")
    say("exporting the best model")
    export = _export_best(result, X_fit, X_hold, y_hold, out=out, target=target,
                          command=command, say=say)
    if "path" in export:
        files["onnx"] = export["path"]
        files["skops"] = export["skops"]
    seconds = time.perf_counter() - t0
    files["report"] = out / "report.md"
    files["report"].write_text(_report_text(
        result, export, title=title, data_lines=data_lines, n_total=len(X),
        n_hold=len(X_hold), y=y, groups=groups_name, command=command, cnn_epochs=cnn_epochs,
        cnn_time=cnn_time, fast=fast, search_options=search_options, seconds=seconds),
        encoding="utf-8")
    return {"result": result, "export": export, "files": files, "seconds": seconds}


def _report_text(result, export, *, title, data_lines, n_total, n_hold, y, groups, command,
                 cnn_epochs, fast, search_options, seconds, cnn_time=None):
    from ._candidates import DEFAULT_CNN_EPOCHS, FAST_CNN_EPOCHS
    from ._result import _LABELS

    m = result.primary
    lab = _LABELS[m]
    L = [f"# cvfeat compare: {title}", ""]
    L += ["## Data", ""] + [f"- {line}" for line in data_lines]
    L += [f"- {result.n_samples} of the {n_total} images compared by cross-validation, "
          f"{n_hold} held out (not used to compare, choose or fit) for the export check",
          f"- target: min {np.min(y):.4g}, median {np.median(y):.4g}, max {np.max(y):.4g}, "
          f"std {np.std(y):.4g}; always guessing the median gives MAE {np.mean(np.abs(y - np.median(y))):.4g}",
          f"- groups: {'column `' + groups + '` (grouped folds)' if groups else 'none'}", ""]
    L += ["## Command", "", "```", command or "(called from Python)", "```", ""]
    L += ["## Environment", "", "- " + "\n- ".join(version_lines()), ""]
    L += ["## Machine", "", "- " + "\n- ".join(machine_lines()), ""]
    epochs = cnn_epochs or (FAST_CNN_EPOCHS if fast else DEFAULT_CNN_EPOCHS)
    search = result.search or "none (fixed settings; RidgeCV tunes its alpha by leave-one-out)"
    L += ["## Settings", "",
          f"- budget: {result.budget:,d} learned parameters for the whole model",
          f"- cross-validation: {result.cv_name}, {result.n_splits} folds, shuffled",
          f"- metrics: {', '.join(_LABELS[s] for s in result.scoring)} (ranked by {lab})",
          f"- search: {search}" + (f" with {search_options}" if search_options else ""),
          (f"- micro-CNN training: {cnn_time:g} s per fold for every CNN (its `max_time`); "
           "the epochs each got are in the leaderboard" if cnn_time else
           f"- micro-CNN epochs: {epochs}" + (" (fast candidates)" if fast else "")),
          f"- total time: {seconds:.1f} s", ""]
    L += ["## Leaderboard", "", result.to_markdown(), "",
          "![error vs parameters](pareto.png)", ""]
    if len(result.dropped):
        L += ["## Dropped candidates", "",
              _md_table([(r.name, "" if r.params is None or r.params != r.params
                          else f"{int(r.params):,d}", r.reason)
                         for r in result.dropped.itertuples()], ["candidate", "params",
                                                                  "reason"]), ""]
    notes = [(r.name, r.notes) for r in result.details.itertuples() if r.notes]
    if notes:
        L += ["## Notes while fitting", "", _md_table(notes, ["candidate", "notes"]), ""]
    front = result.pareto()
    L += ["## Pareto front", "",
          f"Candidates that no other beats on both parameters and {lab}, fewest parameters "
          "first:", "",
          _md_table([(r.name, f"{r.params:,d}", f"{getattr(r, m + '_mean'):.4g}")
                     for r in front.itertuples()], ["candidate", "params", f"CV {lab}"]), ""]
    L += ["## Best model", ""]
    if result.best_name_ is None:
        L += ["No candidate fits the budget.", ""]
    else:
        row = result.table.set_index("name").loc[result.best_name_]
        L += [f"**{result.best_name_}**: CV {lab} {row[m + '_mean']:.4g} ± "
              f"{row[m + '_std']:.4g}; refitted on all {result.n_samples} compared images: "
              f"{result.best_params_:,d} parameters (budget {result.budget:,d}).", "",
              "```", repr(result.best_), "```", ""]
    L += ["## Export", ""]
    if "path" not in export:
        L += ["No candidate within the budget could be exported:", "",
              _md_table(export["skipped"], ["candidate", "why"]), ""]
    else:
        if export["name"] != result.best_name_:
            L += [f"The best model, {result.best_name_}, could not be exported; exported the "
                  f"best exportable candidate, **{export['name']}**, instead.", "",
                  _md_table(export["skipped"], ["not exported", "why"]), ""]
        p = export["parity"]
        parity = ("not checked: the images are float and the graph takes uint8" if p is None
                  else f"max abs {p['max_abs']:.3g}, max rel {p['max_rel']:.3g}, "
                  f"{p['n_over_rtol']} of {p['n']} images over rtol {p['rtol']:g}")
        hold = ", ".join(f"{_LABELS[k]} {v:.4g}" for k, v in export["holdout"].items())
        L += [f"- file: `best.onnx`, {export['bytes']:,d} bytes; {export['name']}, "
              f"{export['params']:,d} parameters; the fitted model in `best.skops` "
              "(`cvfeat.io.load_model`)",
              f"- parity with the Python model on the {n_hold} held-out images: {parity}",
              f"- single-image latency in ONNX Runtime (1 thread, best of 100): "
              f"{export['latency_us']:.0f} µs",
              f"- error on the {n_hold} held-out images: {hold}"]
        q = export.get("int8")
        if q is not None:
            change = f"max prediction change {q['max_abs_change']:.3g}"
            L.append(f"- int8 (static QDQ, calibrated on 64 compared images): "
                     f"{q['bytes_int8']:,d} bytes ({q['size_ratio']:.2f}x), {change}; "
                     "not written")
        for note in export.get("int8_notes", []):
            L.append(f"- int8 note: {note}")
        L += ["", "Model card (`cvfeat info best.onnx`):", "", "```"]
        L += [f"{k}: {v}" for k, v in export["card"].items()]
        L += ["```", ""]
    return "\n".join(L)


def print_summary(summary, say=print):
    """The lines ``cvfeat compare`` prints at the end."""
    result, export = summary["result"], summary["export"]
    say(result.to_markdown())
    if result.best_name_ is not None:
        say(f"best within {result.budget:,d} parameters: {result.best_name_} "
            f"({result.best_params_:,d} parameters)")
    if "path" in export:
        p = export["parity"]
        if p is not None:
            say(f"parity of {export['path']} on {p['n']} held-out images: max abs "
                f"{p['max_abs']:.3g}, max rel {p['max_rel']:.3g}")
        say(f"exported {export['name']!r} to {export['path']} ({export['bytes']:,d} bytes, "
            f"{export['latency_us']:.0f} µs per image in ONNX Runtime)")
    else:
        say("no candidate within the budget could be exported (see report.md)")
    say(f"wrote {', '.join(str(p) for p in summary['files'].values())} "
        f"in {summary['seconds']:.1f} s")
    sys.stdout.flush()
