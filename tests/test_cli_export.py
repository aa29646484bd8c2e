"""`cvfeat export`, `cvfeat info m.onnx` and `cvfeat predict` end to end."""

import cv2
import joblib
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cvfeat.cli import main
from cvfeat.datasets import make_counting
from cvfeat.features import HOG, ColorHistogram
from cvfeat.io import read_images


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    X, y = make_counting(n_samples=60, size=32, color=True, random_state=0)
    pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), StandardScaler(), Ridge(1.0)).fit(X, y)
    path = tmp / "model.joblib"
    joblib.dump(pipe, path)
    images = tmp / "images"
    images.mkdir()
    Xn, _ = make_counting(n_samples=6, size=32, color=True, random_state=1)
    files = []
    for i, img in enumerate(Xn):
        f = images / f"img{i}.png"
        cv2.imwrite(str(f), img[..., ::-1])
        files.append(f)
    return pipe, path, files


def test_export_info_predict(fitted, tmp_path, capsys):
    pipe, model, files = fitted
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "--out", str(out), "--target-name", "count"]) == 0
    assert out.exists() and "input uint8 [N, 32, 32, 3]" in capsys.readouterr().out

    assert main(["info", str(out)]) == 0
    card = capsys.readouterr().out
    assert "count_params" in card and "count" in card and "cvfeat export" in card

    assert main(["predict", str(out), *map(str, files), "--csv", str(tmp_path / "p.csv")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    got = np.array([float(line.split("\t")[1]) for line in printed])
    ref = pipe.predict(read_images(files))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert (tmp_path / "p.csv").read_text().startswith("file,count")


def test_export_int8_with_calibration(fitted, tmp_path, capsys):
    _, model, files = fitted
    out = tmp_path / "q.onnx"
    calib = files[0].parent
    assert main(["export", str(model), "--out", str(out), "--int8", "--calibration",
                 str(calib)]) == 0
    assert "(int8)" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    assert "int8" in capsys.readouterr().out


def test_export_errors_are_clear(fitted, tmp_path, capsys):
    _, model, _ = fitted
    assert main(["export", str(model), "--out", str(tmp_path / "q.onnx"), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(model), "--out", str(tmp_path / "q.onnx"), "--int8",
                 "--calibration", str(empty)]) == 2
    assert "no image files" in capsys.readouterr().err


def test_export_size_free_model_uses_fit_size(tmp_path, capsys):
    X, y = make_counting(n_samples=30, size=24, color=True, random_state=0)
    pipe = make_pipeline(ColorHistogram(bins=2), Ridge()).fit(X, y)
    joblib.dump(pipe, tmp_path / "c.joblib")
    assert main(["export", str(tmp_path / "c.joblib"), "--out", str(tmp_path / "c.onnx")]) == 0
    assert "[N, 24, 24, 3]" in capsys.readouterr().out
