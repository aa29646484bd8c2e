"""The best-practice study (benchmarks/study.py): its statistics and its quick run."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import study  # noqa: E402
import study_report  # noqa: E402


def test_t_interval_matches_the_textbook_formula():
    m, h = study_report.t_interval([1.0, 2.0, 3.0])
    assert m == 2.0
    assert h == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) = 4.3027
    assert math.isnan(study_report.t_interval([5.0])[1])
    assert math.isnan(study_report.t_interval([])[0])


def _state(maes):
    """A results file with one data set and budget: maes[config] = per-seed MAEs."""
    rows = [dict(dataset="d", budget=1000, seed=s, config=c, mae=v)
            for c, vals in maes.items() for s, v in enumerate(vals)]
    return dict(results=rows, datasets={"d": dict(n=10, shape=[8, 8], median_guess_mae=1.0,
                                                 note="test")},
                settings=dict(seeds=[0, 1, 2]))


def test_paired_change_and_verdicts():
    res = study_report.Results(_state({"base": [1.0, 2.0, 4.0], "sam": [0.9, 1.8, 3.6],
                                       "mse": [1.1, 2.2, 4.4], "noaug": [0.5, 2.0, 6.0]}))
    # a 10 % paired drop on every seed is certain, even with very different seeds
    assert res.rel_change("d", 1000, "sam", "base") == pytest.approx([-0.1, -0.1, -0.1])
    m, h = study_report.t_interval(res.rel_change("d", 1000, "sam", "base"))
    assert m == pytest.approx(-0.1) and h == pytest.approx(0.0, abs=1e-12)
    o = res.overall("sam", "base")
    assert o["better"] == ["d 1k"] and o["worse"] == [] and o["n"] == 1
    assert res.overall("mse", "base")["worse"] == ["d 1k"]
    noisy = res.overall("noaug", "base")
    assert noisy["better"] == noisy["worse"] == []  # -50 %, 0, +50 %: no verdict in d 1k
    # one setting: no interval across settings, so no general verdict either
    assert study_report.verdict(o) == "too few settings to tell"
    many = dict(mean=-0.05, half=0.02, n=12, better=[], worse=[])
    assert study_report.verdict(many) == "lowers the error"
    assert study_report.verdict({**many, "mean": 0.05}) == "raises the error"
    assert study_report.verdict({**many, "half": 0.1}) == "no reliable difference"


def test_quick_study_runs_every_experiment_and_writes_the_report(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "study.py"), "--quick", "--out-dir", str(out),
         "--datasets", "counting,orientation", "--jobs", "2"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "study.json").read_text())
    assert not [r for r in state["results"] if "error" in r]
    got = {(r["dataset"], r["budget"], r["seed"], r["config"]) for r in state["results"]}
    want = {(d, b, s, c) for d in ("counting", "orientation") for b in study.BUDGETS
            for s in study.QUICK["seeds"] for c in study.CONFIGS}
    assert got == want
    for r in state["results"]:
        assert np.isfinite(r["mae"]) and r["mae"] >= 0
        if "n_params" in r:
            assert r["n_params"] <= r["budget"], r
    text = (out / "STUDY.md").read_text()
    assert "## Rules of thumb" in text
    for key, title, *_ in study.EXPERIMENTS:
        assert f"## {title}" in text
        assert (out / "study" / f"{key}.png").stat().st_size > 0
    assert "## Classical first" in text and (out / "study" / "classical_first.png").is_file()
    assert "python benchmarks/study.py --quick" in text
    # the report is rewritten from the saved results alone
    (out / "STUDY.md").unlink()
    proc = subprocess.run([sys.executable, str(BENCH / "study.py"), "--report-only",
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "STUDY.md").read_text() == text
