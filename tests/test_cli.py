import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cvfeat import __version__
from cvfeat._demo import REFERENCE
from cvfeat.cli import main


def test_info_lists_versions_and_extras(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"cvfeat {__version__}" in out
    for dist in ("scikit-learn", "opencv-python-headless", "xgboost", "onnxruntime"):
        assert dist in out
    for extra in ("cnn", "tune", "dask", "dev"):
        assert f"  {extra} " in out
    assert "MISSING" not in out


def test_demo_compares_on_a_built_in_task_and_writes_the_report(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--n-samples", "80", "--cv", "2", "--size", "32",
                 "--cnn-minutes", "0.01", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("report.md", "leaderboard.csv", "pareto.png", "best.onnx", "best.skops"):
        assert (out_dir / name).stat().st_size > 0, name
    table = pd.read_csv(out_dir / "leaderboard.csv")
    ref = table[table["name"] == REFERENCE].iloc[0]
    assert ref["params"] > 3000 and not ref["within_budget"]  # shown, never chosen
    bounded = table[table["within_budget"]]
    assert (bounded["params"] <= 3000).all()
    classical = [n for n in bounded["name"] if "CNN" not in n]
    assert len(classical) >= 4
    assert {"mae_mean", "mae_std", "r2_mean", "fit_s"} <= set(table.columns)
    best = out.split("best within 3,000 parameters: ")[1].split(" (")[0]
    assert best in set(bounded["name"])
    max_rel = float(out.split("parity of ")[1].split("max rel ")[1].split()[0])
    assert max_rel <= 1e-4
    report = (out_dir / "report.md").read_text()
    assert "built-in task `counting`" in report and "cvfeat demo --task counting" in report
    # every micro-CNN trained for the demo's time budget, and says how many epochs it got
    assert "--cnn-minutes 0.01" in report and "micro-CNN training: 0.6 s per fold" in report
    cnn = table[table["name"].str.contains("CNN")]
    # plain, separable, residual, hybrid: no distilled CNN (its teacher cannot learn in
    # the demo's seconds)
    assert len(cnn) == 4 and (cnn["epochs"] >= 1).all()
    assert not cnn["name"].str.contains("distilled").any()


def test_bad_arguments_give_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--task", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_console_entry_point_runs():
    script = Path(sys.executable).parent / "cvfeat"  # installed by pip from [project.scripts]
    assert script.exists(), "the `cvfeat` console script is not installed next to python"
    proc = subprocess.run([str(script), "info"], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("cvfeat ")
