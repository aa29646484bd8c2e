"""cvfeat.runtime and `cvfeat predict`: the device side (onnxruntime, numpy, OpenCV only)."""

import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cvfeat.cli import main
from cvfeat.runtime import Model, read_image


def _mean_model(path, shape):
    """A stand-in exported model: prediction = mean pixel value of each image."""
    axes = list(range(1, len(shape) + 1))
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["prediction"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "mean",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", *shape])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.helper.set_model_props(model, {"cvfeat.target_name": "brightness"})
    onnx.save(model, path)
    return path


@pytest.fixture
def rgb_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(16, 16), (40, 24), (16, 16)]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = tmp_path / f"im{i}.png"
        cv2.imwrite(str(p), img[..., ::-1])  # stored BGR: reads back as img in RGB
        paths.append((p, img))
    return paths


def test_model_reads_its_input_shape_and_card(tmp_path):
    m = Model(_mean_model(tmp_path / "m.onnx", (16, 16, 3)))
    assert m.input_shape == (16, 16, 3) and m.color == "rgb"
    assert m.metadata["target_name"] == "brightness"
    g = Model(_mean_model(tmp_path / "g.onnx", (8, 12)))
    assert g.input_shape == (8, 12) and g.color == "gray"


def test_predict_files_resizes_and_converts(tmp_path, rgb_files):
    m = Model(_mean_model(tmp_path / "m.onnx", (16, 16, 3)))
    preds = m.predict_files([p for p, _ in rgb_files])
    expected = []
    for _, img in rgb_files:
        if img.shape[:2] != (16, 16):
            img = cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA)
        expected.append(img.astype(np.float32).mean())
    np.testing.assert_allclose(preds, expected, rtol=1e-6)


def test_grey_model_reads_grey(tmp_path, rgb_files):
    m = Model(_mean_model(tmp_path / "g.onnx", (16, 16)))
    p, img = rgb_files[0]
    grey = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_allclose(m.predict_files([p]), [grey.astype(np.float32).mean()], rtol=1e-6)
    assert read_image(p, (16, 16), "gray").shape == (16, 16)


def test_wrong_shape_or_dtype_is_a_clear_error(tmp_path):
    m = Model(_mean_model(tmp_path / "m.onnx", (16, 16, 3)))
    with pytest.raises(ValueError, match=r"shape \(n, 16, 16, 3\).*got \(2, 16, 16\)"):
        m.predict(np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        m.predict(np.zeros((2, 16, 16, 3), np.float32))


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png is not a readable image"):
        read_image(bad, (8, 8), "rgb")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg", (8, 8), "rgb")
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        Model(tmp_path / "nope.onnx")


def _foreign_model(path, inputs, card=False):
    """An ONNX model not written by cvfeat: ``inputs`` = [(name, elem type, shape)]."""
    nodes = [helper.make_node("Identity", [inputs[0][0]], ["out"])]
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info("out", inputs[0][1], inputs[0][2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if card:
        onnx.helper.set_model_props(model, {"cvfeat.target_name": "y"})
    onnx.save(model, path)
    return path


def test_foreign_and_non_onnx_files_are_explained(tmp_path, capsys):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="notes.onnx is not an ONNX model that ONNX Runtime "
                                         "can load"):
        Model(text)
    zipped = tmp_path / "model.skops"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="model.skops is a skops model file, not an ONNX model; "
                                         "export it first"):
        Model(zipped)
    u8 = TensorProto.UINT8
    floats = _foreign_model(tmp_path / "f.onnx", [("x", TensorProto.FLOAT, ["N", 8, 8])], True)
    with pytest.raises(ValueError, match=r"takes tensor\(float\)"):
        Model(floats)
    two = _foreign_model(tmp_path / "two.onnx", [("a", u8, ["N", 8, 8]), ("b", u8, ["N", 8, 8])],
                         True)
    with pytest.raises(ValueError, match="has 2 inputs \\(a, b\\); a cvfeat model has one"):
        Model(two)
    no_card = _foreign_model(tmp_path / "nc.onnx", [("x", u8, ["N", 8, 8])])
    with pytest.raises(ValueError, match="has no cvfeat model card"):
        Model(no_card)
    free = _foreign_model(tmp_path / "free.onnx", [("x", u8, ["N", "H", "W"])], True)
    with pytest.raises(ValueError, match="takes images of unknown size"):
        Model(free)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    for model in (text, zipped, floats, two, no_card):
        assert main(["predict", str(model), str(img)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cvfeat predict: error: ") and "Traceback" not in err


def test_cli_predict_prints_and_writes_csv(tmp_path, rgb_files, capsys):
    model = _mean_model(tmp_path / "m.onnx", (16, 16, 3))
    out = tmp_path / "p.csv"
    files = [str(p) for p, _ in rgb_files]
    assert main(["predict", str(model), *files, "--csv", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in printed] == files
    lines = out.read_text().strip().splitlines()
    assert lines[0] == "file,brightness" and len(lines) == 4


def test_cli_predict_bad_file_exits_2(tmp_path, capsys):
    model = _mean_model(tmp_path / "m.onnx", (16, 16, 3))
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    assert main(["predict", str(model), str(bad)]) == 2
    assert "x.jpg is not a readable image" in capsys.readouterr().err


def test_predict_imports_no_scikit_learn(tmp_path, rgb_files):
    model = _mean_model(tmp_path / "m.onnx", (16, 16, 3))
    code = (
        "import sys; from cvfeat.cli import main; "
        f"rc = main(['predict', {str(model)!r}, {str(rgb_files[0][0])!r}]); "
        "heavy = [m for m in ('sklearn', 'skimage', 'torch', 'skl2onnx', 'xgboost', 'pandas') "
        "if m in sys.modules]; "
        "assert rc == 0 and not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_cli_task_names_match_datasets():
    from cvfeat.cli import TASK_NAMES
    from cvfeat.datasets import TASKS

    assert set(TASK_NAMES) == set(TASKS)
