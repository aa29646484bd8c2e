"""C99 export (cvfeat.export.c): generated code compiled with the system C compiler.

Every model is compiled with the strict flags (C99, -Wall -Wextra -Werror -pedantic,
-Wdouble-promotion -Wfloat-conversion -Wvla, -ffp-contract=off) at -O0 and -O2 and
run on >= 100 images (noise, constant, saturated, hard edges; grey and colour; odd
sizes), features and predictions compared with the Python path: max_rel <= 1e-4
(max |c - numpy| / max |numpy|).
"""

import json
import re
import subprocess

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    ElasticNet,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    SGDRegressor,
)
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVR, LinearSVR, NuSVR
from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

from cvfeat.export.c import STRICT_FLAGS, check_parity_c, find_compiler, run_c, to_c
from cvfeat.export.c._emit import c_double, c_float
from cvfeat.features import HOG, LBP, ColorHistogram
from cvfeat.features.hog import orientation_bin
from cvfeat.preprocessing import Grayscale, Resize

CC = find_compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc / $CC) on this machine")
REL = 1e-4
OPTS = ["-O0", "-O2"]


def images(shape, n=104, seed=0):
    """n uint8 images of ``shape``: noise, constants, saturated, hard edges, smooth."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    out = rng.integers(0, 256, (n, *shape), dtype=np.uint8)  # noise
    out[0], out[1], out[2] = 0, 255, 128  # constant
    out[3:13] = rng.choice(np.array([0, 255], np.uint8), size=(10, *shape))  # saturated
    yy, xx = np.mgrid[:h, :w]
    for i in range(13, 33):  # hard edges: stripes, checkerboards, a bright square
        k = i - 13
        pat = [(xx // (k % 5 + 1)) % 2, (yy // (k % 3 + 1)) % 2,
               ((xx // 3) + (yy // 3)) % 2, (abs(xx - w // 2) < k + 2) & (abs(yy - h // 2) < k)]
        m = pat[k % 4].astype(bool)
        img = np.where(m, 255 - 17 * (k % 3), 9 * (k % 7)).astype(np.uint8)
        out[i] = img[..., None] if len(shape) == 3 else img
    ramp = ((xx * 255) // max(w - 1, 1) + (yy * 3)) % 256  # smooth
    for i in range(33, 43):
        img = ((ramp + 23 * (i - 33)) % 256).astype(np.uint8)
        out[i] = img[..., None] if len(shape) == 3 else img
    if len(shape) == 3:  # colour: channels that disagree
        out[43:53, ..., 1] = 255 - out[43:53, ..., 0]
    return out


@pytest.fixture(scope="module")
def grey64():
    return images((64, 64))


def parity(est, X, exported=None, opt="-O2"):
    exported = exported or to_c(est, X[:1], name="m")
    report = check_parity_c(est, exported, X, opt=opt)
    assert report["n"] == len(X)
    return report


# -- literals ----------------------------------------------------------------------------

def test_float_literals_round_trip():
    rng = np.random.default_rng(1)
    values = np.concatenate([
        rng.normal(size=2000).astype(np.float32),
        (rng.normal(size=500) * 1e30).astype(np.float32),
        np.array([0.0, -0.0, 0.1, 1 / 3, np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                  np.finfo(np.float32).smallest_subnormal, 1e-45, 16777217.0], np.float32),
    ])
    for v in values:
        text = c_float(v)
        assert text.endswith("f") and re.fullmatch(r"-?\d\.\d+(e-?\d+)?f", text), text
        back = np.float32(text[:-1])
        assert back == v and np.signbit(back) == np.signbit(v), (v, text)
    for v in [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -2.5]:
        assert float(c_double(v)) == v
    with pytest.raises(ValueError, match="finite"):
        c_float(np.inf)


@needs_cc
def test_float_literals_round_trip_through_the_compiler(tmp_path):
    """The C compiler reads the literals back to the same bits."""
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.normal(size=300), rng.normal(size=300) * 1e-38,
                             [np.float32(0.1), 3.4028235e38]]).astype(np.float32)
    body = ",\n".join(c_float(v) for v in values)
    (tmp_path / "lit.c").write_text(
        "#include <stdio.h>\nstatic const float v[] = {\n" + body + "\n};\n"
        "int main(void) { return fwrite(v, sizeof v, 1, stdout) == 1 ? 0 : 1; }\n")
    subprocess.run([CC, *STRICT_FLAGS, "lit.c", "-o", "lit"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "lit")], capture_output=True, check=True).stdout
    assert np.frombuffer(out, np.float32).tobytes() == values.tobytes()


# -- HOG -----------------------------------------------------------------------------------

@needs_cc
@pytest.mark.parametrize("orientations", [1, 4, 7, 8, 9, 12, 18])
def test_hog_orientation_bin_exhaustive(tmp_path, orientations):
    """The C bin of every integer gradient pair a uint8 image can make equals numpy's
    (the zero gradient has no orientation; it adds magnitude 0 wherever it goes)."""
    X = images((16, 16))[:4]
    exported = to_c(make_pipeline(HOG(orientations=orientations)).fit(X), X[:1], name="m")
    exported.save(tmp_path)
    (tmp_path / "bins.c").write_text(
        '#include <stdio.h>\n#include "m.c"\nint main(void) {\n'
        "    static unsigned char bins[511 * 511]; int gr, gc, n = 0; float a, b;\n"
        "    for (gr = -255; gr <= 255; ++gr) for (gc = -255; gc <= 255; ++gc) {\n"
        "        m_hog_fold(gr, gc, &a, &b);\n"
        "        bins[n++] = (unsigned char)m_hog_bin(a, b);\n    }\n"
        "    return fwrite(bins, 1, sizeof bins, stdout) == sizeof bins ? 0 : 1;\n}\n")
    subprocess.run([CC, *STRICT_FLAGS, "-O2", "-Wno-unused-function", "bins.c", "-o", "bins",
                    "-lm"], cwd=tmp_path, check=True)
    got = np.frombuffer(subprocess.run([str(tmp_path / "bins")], capture_output=True,
                                       check=True).stdout, np.uint8)
    g = np.arange(-255, 256, dtype=np.float64)
    g_row, g_col = np.meshgrid(g, g, indexing="ij")
    want = orientation_bin(g_row, g_col, orientations).ravel()
    assert got.shape == want.shape
    nonzero = ((g_row != 0) | (g_col != 0)).ravel()  # the zero gradient adds 0 to any bin
    assert nonzero.sum() == 511 * 511 - 1
    np.testing.assert_array_equal(got[nonzero], want[nonzero])


HOG_PARAMS = [
    dict(),
    dict(orientations=7, pixels_per_cell=(6, 5), cells_per_block=(3, 2), block_norm="L1"),
    dict(orientations=8, pixels_per_cell=(4, 4), cells_per_block=(1, 1), block_norm="L2"),
    dict(orientations=4, pixels_per_cell=(5, 7), cells_per_block=(2, 2), block_norm="L1-sqrt"),
    dict(orientations=9, pixels_per_cell=(6, 6), transform_sqrt=True),
]
SHAPES = [(64, 64), (37, 53), (64, 64, 3), (37, 53, 3)]


def edge_ties(X, est):
    """Images holding a gradient of ``sqrt(pixel)`` that lies on a bin edge up to float64
    rounding (e.g. ``sqrt(3a) - sqrt(3b) == sqrt(3) * (sqrt(a) - sqrt(b))``: exactly 60
    degrees). numpy bins it by how its own arctan2 rounds (not the C library's); the C
    code and the ONNX graph by ``g_col / g_row <= cot t`` in float64."""
    from cvfeat.features.hog import _central_differences, orientation_edges

    h, w = X.shape[1:3]
    cr, cc, *_ = est._geometry(h, w)
    img = np.sqrt(X.astype(np.float64))
    g_row, g_col = _central_differences(img, h // cr * cr, w // cc * cc)
    if X.ndim == 4:
        best = np.hypot(g_row, g_col).argmax(axis=-1)[..., None]
        g_row = np.take_along_axis(g_row, best, -1)[..., 0]
        g_col = np.take_along_axis(g_col, best, -1)[..., 0]
    orient = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    edges = orientation_edges(est.orientations)
    near = np.abs(orient[..., None] - edges).min(axis=-1) < 1e-9
    return near.reshape(len(X), -1).any(axis=1)


@needs_cc
@pytest.mark.parametrize("params", HOG_PARAMS, ids=lambda p: "-".join(map(str, p.values())))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_hog_features_parity(params, shape):
    X = images(shape)
    est = make_pipeline(HOG(**params)).fit(X)
    exported = to_c(est, X[:1], name="m")
    ties = edge_ties(X, est[0]) if params.get("transform_sqrt") else np.zeros(len(X), bool)
    assert ties.sum() <= 3  # rare: exact ties need pixel values in ratio 3 (or 1, 1/3)
    for opt in OPTS:
        report = parity(est, X[~ties], exported, opt=opt)
        assert report["output"] == "features"
        assert report["max_rel"] <= REL, report
        got = run_c(exported, X[ties], opt=opt)  # only a tie pixel's bin differs: finite
        assert np.isfinite(got).all()
    assert exported.report["uses_double"] == (len(shape) == 3 or params.get("transform_sqrt",
                                                                              False))


# -- image steps, colour histograms, LBP, unions ------------------------------------------

RESIZES = {  # (input shape, Resize): every OpenCV path
    "area_fast_2x2": ((64, 64), Resize((32, 32))),
    "area_fast_3x2": ((48, 54, 3), Resize((16, 27))),
    "area": ((37, 53, 3), Resize((24, 20))),
    "area_grows": ((37, 53), Resize((64, 80))),
    "linear_shrinks": ((37, 53, 3), Resize((24, 20), interpolation="linear")),
    "linear_grows": ((37, 53), Resize((61, 70), interpolation="linear")),
}


@needs_cc
@pytest.mark.parametrize("case", sorted(RESIZES))
def test_resize_is_bit_exact(case, tmp_path):
    """The generated resize function (called by a harness that includes the .c) gives
    exactly cv2.resize's pixels; the pipeline's HOG features after it agree too."""
    shape, step = RESIZES[case]
    X = images(shape)
    est = make_pipeline(step, HOG(pixels_per_cell=(4, 4))).fit(X)
    exported = to_c(est, X[:1], name="m")
    exported.save(tmp_path)
    h, w = step.size
    c = 3 if len(shape) == 3 else 1
    fn = re.search(r"static void (m_resize\w*)\(", exported.source).group(1)
    (tmp_path / "px.c").write_text(
        '#include <stdio.h>\n#include "m.c"\n'
        f"static uint8_t img[M_IN_BYTES], out[{h * w * c}];\n"
        "int main(void) {\n"
        "    while (fread(img, 1, sizeof img, stdin) == sizeof img) {\n"
        f"        {fn}(img, out);\n"
        "        fwrite(out, 1, sizeof out, stdout);\n    }\n    return 0;\n}\n")
    subprocess.run([CC, *STRICT_FLAGS, "-O2", "-Wno-unused-function", "px.c", "-o", "px",
                    "-lm"], cwd=tmp_path, check=True)
    got = np.frombuffer(subprocess.run([str(tmp_path / "px")], input=X.tobytes(),
                                       capture_output=True, check=True).stdout, np.uint8)
    want = step.transform(X)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    for opt in OPTS:
        assert parity(est, X, exported, opt=opt)["max_rel"] <= REL


STEPS = {
    "gray_hog": lambda: make_pipeline(Grayscale(), HOG(pixels_per_cell=(6, 6))),
    "hsv": lambda: ColorHistogram(),
    "hsv_split_l2": lambda: ColorHistogram(bins=5, joint=False, normalize="l2"),
    "rgb_raw_counts": lambda: ColorHistogram(space="rgb", bins=4, normalize=None),
    "lab": lambda: ColorHistogram(space="lab", bins=6),
    "lbp_uniform_grid": lambda: LBP(grid=(2, 3)),
    "lbp_nri_r15": lambda: LBP(P=8, R=1.5, method="nri_uniform"),
    "lbp_ror": lambda: LBP(P=6, R=2, method="ror"),
    "lbp_default": lambda: LBP(P=8, R=1, method="default", grid=(3, 2)),
    "union_weighted": lambda: FeatureUnion(
        [("h", make_pipeline(Resize((32, 32)), HOG())), ("c", ColorHistogram(space="rgb", bins=4)),
         ("l", LBP(grid=(2, 2)))], transformer_weights={"c": 2.0, "l": 0.5}),
}
COLOUR_ONLY = {"hsv", "hsv_split_l2", "lab"}


STEP_CASES = [(name, shape) for name in sorted(STEPS)
              for shape in [(64, 64), (37, 53), (64, 64, 3), (37, 53, 3)]
              if len(shape) == 3 or name not in COLOUR_ONLY]  # hsv / lab: colour only


@needs_cc
@pytest.mark.parametrize(("name", "shape"), STEP_CASES,
                         ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in STEP_CASES])
def test_feature_steps_parity(name, shape):
    X = images(shape)
    est = make_pipeline(STEPS[name]()).fit(X)
    exported = to_c(est, X[:1], name="m")
    for opt in OPTS:
        report = parity(est, X, exported, opt=opt)
        assert report["output"] == "features" and report["max_rel"] <= REL, report


@needs_cc
@pytest.mark.parametrize("name", ["hsv", "lab", "rgb_raw_counts"])
def test_colour_bins_of_many_colours(name):
    """Colour histograms bin every pixel as numpy does: 1,024 images of 32 x 32 distinct
    colours (a third of a million colours on a grid plus random ones), compared by
    their raw counts (a single pixel in another bin shows as a count difference of 1)."""
    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    colours = np.concatenate([grid, rng.integers(0, 256, (32 * 32 * 1024 - len(grid), 3))])
    X = colours.astype(np.uint8).reshape(1024, 32, 32, 3)
    step = STEPS[name]().set_params(normalize=None)
    est = make_pipeline(step).fit(X[:4])
    got = run_c(to_c(est, X[:1], name="m"), X)
    np.testing.assert_array_equal(got, est.transform(X))


# -- linear models -------------------------------------------------------------------------

LINEAR = {
    "ridge": lambda: Ridge(alpha=1.0),
    "linear_svr": lambda: LinearSVR(C=1.0, max_iter=20000, random_state=0),
    "elastic_net": lambda: ElasticNet(alpha=1e-2, l1_ratio=0.2, max_iter=50000),
    "sgd": lambda: SGDRegressor(random_state=0),
    "linear_regression": LinearRegression,
}


@pytest.fixture(scope="module")
def target(grey64):
    rng = np.random.default_rng(3)
    return grey64.reshape(len(grey64), -1).mean(axis=1) / 10 + rng.normal(size=len(grey64))


@needs_cc
@pytest.mark.parametrize("model", sorted(LINEAR))
def test_hog_scaler_linear_parity(grey64, target, model):
    est = make_pipeline(HOG(), StandardScaler(), LINEAR[model]()).fit(grey64, target)
    exported = to_c(est, grey64[:1], name="m")
    assert exported.report["features_streamed"]
    for opt in OPTS:
        report = parity(est, grey64, exported, opt=opt)
        assert report["output"] == "prediction" and report["max_rel"] <= REL, report


@needs_cc
def test_unfolded_scaler_and_multi_target(grey64, target, monkeypatch):
    """A scaler that cannot be folded is applied per feature; k targets give k outputs."""
    from cvfeat.export.c import _models

    Y = np.stack([target, -2 * target + 1, np.arange(len(target), dtype=float)], axis=1)
    est = make_pipeline(HOG(), StandardScaler(), Ridge()).fit(grey64, Y)
    monkeypatch.setattr(_models, "FOLD_MAX_GROWTH", 0.0)
    exported = to_c(est, grey64[:1], name="m")
    assert "scaler_mean" in exported.source and exported.report["n_outputs"] == 3
    report = parity(est, grey64, exported)
    assert report["max_rel"] <= REL, report


@needs_cc
@pytest.mark.parametrize("whiten", [False, True])
def test_pca_pipelines(grey64, target, whiten):
    pca = make_pipeline(HOG(), StandardScaler(), PCA(n_components=12, whiten=whiten,
                                                     random_state=0))
    est = make_pipeline(*[s for _, s in pca.steps], Ridge()).fit(grey64, target)
    for e in (est, pca.fit(grey64)):
        exported = to_c(e, grey64[:1], name="m")
        assert not exported.report["features_streamed"]
        report = parity(e, grey64, exported)
        assert report["max_rel"] <= REL, report


# -- the generated code ---------------------------------------------------------------------

@needs_cc
def test_generated_code_rules(grey64, target, tmp_path):
    est = make_pipeline(HOG(), StandardScaler(), Ridge()).fit(grey64, target)
    exported = to_c(est, grey64[:1], name="age_model")
    includes = re.findall(r"#include\s*[<\"]([^>\"]+)", exported.source + exported.header)
    assert set(includes) == {"math.h", "stddef.h", "stdint.h", "age_model.h"}
    assert "int age_model_predict(const uint8_t *pixels, float *out);" in exported.header
    assert "int age_model_predict_r(const uint8_t *pixels, float *out, float *work);" \
        in exported.header
    for define in ("IN_HEIGHT 64", "IN_WIDTH 64", "IN_CHANNELS 1", "IN_BYTES 4096",
                   "N_OUTPUTS 1", "FLASH_BYTES", "RAM_BYTES", "WORK_FLOATS"):
        assert f"#define AGE_MODEL_{define}" in exported.header
    assert re.search(r"static const float age_model_weights\[1764\]", exported.source)
    paths = exported.save(tmp_path)
    assert [p.name for p in paths] == ["age_model.h", "age_model.c", "age_model.json"]
    subprocess.run([CC, *STRICT_FLAGS, "-O2", "-c", "age_model.c"], cwd=tmp_path, check=True)
    symbols = subprocess.run(["nm", "age_model.o"], cwd=tmp_path, capture_output=True,
                             text=True, check=True).stdout
    undefined = {line.split()[-1] for line in symbols.splitlines() if " U " in line}
    assert not undefined & {"malloc", "calloc", "realloc", "free", "printf", "fprintf",
                            "puts", "fwrite"}, undefined
    assert {"age_model_predict", "age_model_predict_r"} <= {
        line.split()[-1] for line in symbols.splitlines() if " T " in line}
    report = json.loads((tmp_path / "age_model.json").read_text())
    assert report["input"] == {"height": 64, "width": 64, "channels": 1, "dtype": "uint8"}
    assert report["sizes_measured"] and report["flash_bytes"] >= 1764 * 4
    assert report["ram_bytes"] >= report["work_bytes"] >= 4 * 576  # 8 x 8 cells x 9 bins
    assert report["card"]["steps"] == "HOG -> StandardScaler -> Ridge"
    h = int(re.search(r"AGE_MODEL_FLASH_BYTES (\d+)", exported.header).group(1))
    assert h == report["flash_bytes"]
    assert "cortex_m" in report


@needs_cc
def test_both_entry_points_and_null_arguments(grey64, target):
    """The harness runs NAME_predict on even images and NAME_predict_r on odd ones (it
    also checks that NULL gives the error code): all equal the Python path."""
    est = make_pipeline(HOG(), Ridge()).fit(grey64, target)
    exported = to_c(est, grey64[:1], name="m")
    out = run_c(exported, grey64[:6])[:, 0]
    np.testing.assert_allclose(out, est.predict(grey64[:6]), rtol=1e-5, atol=1e-5)


# -- refusals ----------------------------------------------------------------------------------

def test_unsupported_steps_are_named(grey64, target):
    est = make_pipeline(HOG(), FunctionTransformer(np.sqrt), Ridge()).fit(grey64, target)
    with pytest.raises(TypeError, match=r"steps\[1\] FunctionTransformer has no C generator"):
        to_c(est, grey64[:1])
    est = make_pipeline(HOG(), LogisticRegression()).fit(grey64, target > target.mean())
    with pytest.raises(TypeError, match=r"steps\[1\] LogisticRegression.*C export supports"):
        to_c(est, grey64[:1])
    est = make_pipeline(HOG(), PoissonRegressor()).fit(grey64, np.abs(target))
    with pytest.raises(TypeError, match="not x @ coef_.T"):
        to_c(est, grey64[:1])


def test_bad_sample_and_name(grey64, target):
    est = make_pipeline(HOG(), Ridge()).fit(grey64, target)
    with pytest.raises(TypeError, match="uint8"):
        to_c(est, grey64[:1].astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"fitted on \(64, 64, 1\)"):
        to_c(est, grey64[:1, :32])
    for bad in ("1model", "my-model", "int", ""):
        with pytest.raises(ValueError, match="cannot prefix C identifiers"):
            to_c(est, grey64[:1], name=bad)


def test_run_c_checks_images(grey64, target):
    est = make_pipeline(HOG(), Ridge()).fit(grey64, target)
    exported = to_c(est, grey64[:1], name="m")
    with pytest.raises(ValueError, match=r"uint8 images of shape \(n, 64, 64\)"):
        run_c(exported, grey64[:2, :32])


# -- SVR and trees -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def colour_data():
    X = images((32, 32, 3))
    y = X.reshape(len(X), -1).mean(axis=1) / 50 + np.random.default_rng(0).random(len(X))
    return X, y, images((32, 32, 3), seed=7)  # held-out: other noise, same patterns


def features_then(model):
    return make_pipeline(HOG(pixels_per_cell=(8, 8)), StandardScaler(), model)


@needs_cc
@pytest.mark.parametrize("model", [SVR(), SVR(kernel="linear"), NuSVR(C=3.0, gamma=0.01)],
                         ids=["rbf", "linear", "nu_rbf"])
def test_svr_parity(colour_data, model):
    X, y, X_new = colour_data
    est = features_then(model).fit(X, y)
    exported = to_c(est, X[:1], name="m")
    assert exported.report["features_streamed"] == (model.kernel == "linear")
    for opt in OPTS:
        report = parity(est, X_new, exported, opt=opt)
        assert report["max_rel"] <= REL, report


def test_svr_other_kernels_are_refused(colour_data):
    X, y, _ = colour_data
    est = features_then(SVR(kernel="poly")).fit(X, y)
    with pytest.raises(TypeError, match=r"steps\[2\] SVR\(kernel='poly'\).*'rbf' and 'linear'"):
        to_c(est, X[:1])


def xgb():
    from xgboost import XGBRegressor

    return XGBRegressor(n_estimators=40, max_depth=4, random_state=0)


TREES = {
    "tree": lambda: DecisionTreeRegressor(max_depth=8, random_state=0),
    "extra_tree": lambda: ExtraTreeRegressor(random_state=0),
    "forest": lambda: RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0),
    "extra_trees": lambda: ExtraTreesRegressor(n_estimators=10, random_state=0),
    "boosting": lambda: GradientBoostingRegressor(n_estimators=40, random_state=0),
    "boosting_huber": lambda: GradientBoostingRegressor(loss="huber", n_estimators=20,
                                                        random_state=0),
    "xgboost": xgb,
}


@needs_cc
@pytest.mark.parametrize("name", sorted(TREES))
def test_tree_parity_differences_are_threshold_ties(colour_data, name):
    """Trees in C are exact given the C features (float32 comparisons with thresholds
    stored as the float32 that makes them equal to the model's own); a prediction may
    differ only where a feature of the C path and of the numpy path lie on the two
    sides of (or on) a split threshold: a threshold tie, listed here."""
    X, y, X_new = colour_data
    est = features_then(TREES[name]()).fit(X, y)
    exported = to_c(est, X[:1], name="m")
    features = make_pipeline(*[s for _, s in est.steps[:-1]])
    F_c = run_c(to_c(features, X[:1], name="f"), X_new)
    F_np = features.transform(X_new)
    np.testing.assert_allclose(F_c, F_np, rtol=0, atol=REL * np.abs(F_np).max())
    model = est[-1]
    for opt in OPTS:
        got = run_c(exported, X_new, opt=opt)[:, 0]
        np.testing.assert_allclose(got, model.predict(F_c), rtol=2e-6, atol=2e-6)
        off = np.abs(got - est.predict(X_new)) > REL * np.abs(est.predict(X_new)).max()
        splits = _splits(model)
        for i in np.flatnonzero(off):
            a, b = F_c[i], F_np[i].astype(np.float32)  # the models compare in float32
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            assert any(lo[f] <= t <= hi[f] for f, t in splits), f"image {i}: no tie"
    assert off.mean() <= 0.1  # the patterned images repeat the training images' features


def _splits(model):
    """(feature, threshold as float32) of every split of a tree model."""
    if hasattr(model, "get_booster"):
        import json

        trees = json.loads(model.get_booster().save_raw("json"))["learner"][
            "gradient_booster"]["model"]["trees"]
        return {(f, np.float32(t)) for tr in trees for f, t, left in zip(
            tr["split_indices"], tr["split_conditions"], tr["left_children"], strict=True)
            if left >= 0}
    trees = getattr(model, "estimators_", [model])
    trees = np.ravel(trees)
    return {(f, np.float32(t)) for tr in trees for f, t in zip(
        tr.tree_.feature, tr.tree_.threshold, strict=True) if f >= 0}


def test_tree_with_a_link_function_is_refused(colour_data):
    from xgboost import XGBRegressor

    X, y, _ = colour_data
    est = features_then(XGBRegressor(n_estimators=5, objective="count:poisson")).fit(X, y)
    with pytest.raises(TypeError, match="do not reproduce its predict"):
        to_c(est, X[:1])
