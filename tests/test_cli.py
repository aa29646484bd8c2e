import subprocess
import sys
from pathlib import Path

import pytest

from cvfeat import __version__
from cvfeat._demo import demo_pipelines, leaderboard
from cvfeat.budget import count_params
from cvfeat.cli import main
from cvfeat.datasets import load_task


def test_info_lists_versions_and_extras(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"cvfeat {__version__}" in out
    for dist in ("scikit-learn", "opencv-python-headless", "xgboost", "onnxruntime"):
        assert dist in out
    for extra in ("cnn", "tune", "dask", "dev"):
        assert f"  {extra} " in out
    assert "MISSING" not in out


def test_demo_prints_a_leaderboard_and_exports_the_best(capsys, tmp_path):
    onnx_path = tmp_path / "best.onnx"
    assert main(["demo", "--n-samples", "80", "--cv", "2", "--size", "48",
                 "--out", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert onnx_path.exists()
    exported = next(ln for ln in out.splitlines() if ln.startswith("exported"))
    best = next(ln for ln in out.splitlines() if ln.startswith("best within"))
    assert best.split(": ", 1)[1].split(" (MAE")[0] in exported
    max_rel = float(exported.split("max rel ")[1].split(";")[0])
    assert max_rel <= 1e-4 and "latency in ONNX Runtime" in exported
    assert "CV MAE" in out and "params" in out
    lines = [ln for ln in out.splitlines() if ln[:4].strip().isdigit()]
    assert len(lines) == 6  # five budgeted pipelines and the reference
    assert "(over budget)" in out and "best within 3,000 parameters" in out


def test_demo_pipelines_fit_the_budget_and_reference_does_not():
    X, y = load_task("counting", n_samples=60, size=64, color=True, random_state=0)
    pipes = demo_pipelines(random_state=0)
    bounded = [(name, p) for name, p, b in pipes if b]
    assert len(bounded) >= 4
    for name, pipe in bounded:
        assert count_params(pipe.fit(X, y)) <= 3000, name
    rows = leaderboard(X, y, pipes, cv=2, progress=False)
    ref = next(r for r in rows if not r["bounded"])
    assert ref["params"] > 3000 and not ref["within_budget"]
    maes = [r["mae_mean"] for r in rows]
    assert maes == sorted(maes)


def test_bad_arguments_give_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--task", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_console_entry_point_runs():
    script = Path(sys.executable).parent / "cvfeat"  # installed by pip from [project.scripts]
    assert script.exists(), "the `cvfeat` console script is not installed next to python"
    proc = subprocess.run([str(script), "info"], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("cvfeat ")
