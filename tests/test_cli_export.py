"""`cvfeat export`, `cvfeat info m.onnx` and `cvfeat predict` end to end."""

import pickle

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
from cvfeat.io import read_images, save_model


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    X, y = make_counting(n_samples=60, size=32, color=True, random_state=0)
    pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), StandardScaler(), Ridge(1.0)).fit(X, y)
    path = save_model(pipe, tmp / "model.skops")
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


def test_predict_and_info_take_skops_files(fitted, tmp_path, capsys):
    pipe, model, files = fitted
    assert main(["predict", str(model), *map(str, files), "--csv", str(tmp_path / "p.csv")]) == 0
    got = np.array([float(ln.split("\t")[1]) for ln in capsys.readouterr().out.splitlines()])
    np.testing.assert_allclose(got, pipe.predict(read_images(files)), rtol=1e-6)
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "fitted model in" in out and "HOG" in out and "input: 32x32 RGB images" in out
    d = pipe[0].transform(read_images(files[:1])).shape[1]  # HOG features
    assert f"parameters (count_params): {3 * d + 1:,d}" in out  # scaler 2d, ridge d + 1
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Payload(str(tmp_path / "pwned"))))
    for cmd in (["predict", str(evil), str(files[0])], ["info", str(evil)]):
        assert main(cmd) == 2
        assert "is a pickle" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


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
    save_model(pipe, tmp_path / "c.skops")
    assert main(["export", str(tmp_path / "c.skops"), "--out", str(tmp_path / "c.onnx")]) == 0
    assert "[N, 24, 24, 3]" in capsys.readouterr().out


class _Payload:
    """Unpickling this creates a file: what a hostile model file would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("name", ["evil.joblib", "evil.pkl", "evil.skops"])
def test_export_refuses_pickles_without_running_them(tmp_path, capsys, name):
    target = tmp_path / "pwned.txt"
    bad = tmp_path / name
    bad.write_bytes(pickle.dumps(_Payload(str(target))))
    assert main(["export", str(bad), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "is a pickle" in err and "could do anything on this machine" in err
    assert not target.exists() and not (tmp_path / "m.onnx").exists()


def test_trust_pickle_loads_a_benign_pickle(tmp_path, capsys):
    X, y = make_counting(n_samples=30, size=24, color=True, random_state=0)
    pipe = make_pipeline(ColorHistogram(bins=2), Ridge()).fit(X, y)
    joblib.dump(pipe, tmp_path / "c.joblib")
    assert main(["export", str(tmp_path / "c.joblib"), "--out", str(tmp_path / "c.onnx")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "c.joblib"), "--out", str(tmp_path / "c.onnx"),
                 "--trust-pickle"]) == 0
    assert (tmp_path / "c.onnx").exists()


def test_export_names_untrusted_types(tmp_path, capsys):
    from sklearn.preprocessing import FunctionTransformer

    X, y = make_counting(n_samples=30, size=24, color=True, random_state=0)
    pipe = make_pipeline(ColorHistogram(bins=2), FunctionTransformer(np.nan_to_num),
                         Ridge()).fit(X, y)
    save_model(pipe, tmp_path / "f.skops")
    assert main(["export", str(tmp_path / "f.skops"), "--out", str(tmp_path / "f.onnx")]) == 2
    assert "numpy.nan_to_num" in capsys.readouterr().err


@pytest.mark.skipif(__import__("shutil").which("cc") is None, reason="no C compiler")
def test_export_c(fitted, tmp_path, capsys):
    """`cvfeat export MODEL --c --out DIR --name N`: the C files, their predictions equal
    the pipeline's on images read from disk."""
    from cvfeat.export.c import CExport, run_c

    pipe, model, files = fitted
    out = tmp_path / "c"
    assert main(["export", str(model), "--c", "--out", str(out), "--name", "counter",
                 "--target-name", "count"]) == 0
    said = capsys.readouterr().out
    assert "counter.h" in said and "flash" in said and "input uint8 [32, 32, 3]" in said
    assert sorted(p.name for p in out.iterdir()) == ["counter.c", "counter.h", "counter.json"]
    import json

    report = json.loads((out / "counter.json").read_text())
    assert report["card"]["target_name"] == "count"
    assert report["card"]["command"].startswith("cvfeat export")
    exported = CExport("counter", (out / "counter.h").read_text(),
                       (out / "counter.c").read_text(), report)
    X = read_images(files, size=(32, 32), color="rgb")
    got = run_c(exported, X)[:, 0]
    np.testing.assert_allclose(got, pipe.predict(X), rtol=1e-4, atol=1e-4 * np.abs(
        pipe.predict(X)).max())
    assert main(["export", str(model), "--c", "--out", str(out), "--name", "bad-name"]) == 2
    assert "cannot prefix C identifiers" in capsys.readouterr().err
    assert main(["export", str(model), "--out", str(tmp_path / "x.onnx"), "--name", "n"]) == 2
    assert "--name names the C files" in capsys.readouterr().err
