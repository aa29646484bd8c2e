"""Model files: ``cvfeat.io.save_model`` / ``load_model`` on skops, pickles refused.

Every round trip must give identical predictions; a type outside cvfeat, scikit-learn,
numpy, scipy and XGBoost must be refused by name; a pickle must never be unpickled.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

pytest.importorskip("skops")

from sklearn.linear_model import RidgeCV  # noqa: E402
from sklearn.pipeline import make_pipeline, make_union  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from cvfeat.datasets import make_counting, make_scale  # noqa: E402
from cvfeat.features import HOG, LBP, ColorHistogram, SIFTBoW  # noqa: E402
from cvfeat.io import UntrustedModelError, load_model, save_model  # noqa: E402
from cvfeat.preprocessing import Grayscale, Resize  # noqa: E402


class MyScaler(StandardScaler):
    """A user's own subclass: not a known type."""


class Payload:
    """Unpickling this creates a file: what a hostile model file would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture(scope="module")
def rgb():
    return make_scale(48, size=24, color=True, random_state=0)


def _round_trip(model, X, tmp_path, method="predict"):
    path = save_model(model, tmp_path / "model.skops")
    assert path.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    again = load_model(path)
    assert type(again) is type(model)
    np.testing.assert_array_equal(getattr(again, method)(X), getattr(model, method)(X))
    return again


@pytest.mark.parametrize("kind", ["hog-ridge", "union-xgboost", "sift", "preprocessing"])
def test_classical_pipelines_round_trip(kind, rgb, tmp_path):
    X, y = rgb
    if kind == "hog-ridge":
        model = make_pipeline(HOG(pixels_per_cell=(8, 8)), StandardScaler(), RidgeCV())
    elif kind == "union-xgboost":
        from xgboost import XGBRegressor

        model = make_pipeline(make_union(HOG(pixels_per_cell=(12, 12)), LBP(grid=(2, 2)),
                                         ColorHistogram(bins=2)),
                              XGBRegressor(n_estimators=5, max_depth=2, n_jobs=1))
    elif kind == "sift":
        model = make_pipeline(SIFTBoW(n_words=4, random_state=0), RidgeCV())
    else:
        model = make_pipeline(Resize(size=(16, 16)), Grayscale(), LBP(), RidgeCV())
    _round_trip(model.fit(X, y), X, tmp_path)


def test_micro_cnns_round_trip(rgb, tmp_path):
    torch = pytest.importorskip("torch")
    from cvfeat.models import HybridCNNRegressor, MicroCNNClassifier, MicroCNNRegressor

    X, y = rgb
    fast = dict(max_params=600, max_epochs=1, batch_size=16, random_state=0, device="cpu")
    cnn = MicroCNNRegressor(**fast, loss="ldl", tta="hflip").fit(X, y)
    again = _round_trip(cnn, X, tmp_path)
    assert isinstance(again.module_, torch.nn.Module) and again.n_params_ == cnn.n_params_
    hybrid = HybridCNNRegressor(ColorHistogram(bins=2), **{**fast, "max_params": 800})
    _round_trip(hybrid.fit(X, y), X, tmp_path)
    Xc, k = make_counting(40, size=16, max_count=2, random_state=0)
    _round_trip(MicroCNNClassifier(**fast).fit(Xc, k), Xc, tmp_path, "predict_proba")
    # a student keeps its fitted CNN teacher
    student = MicroCNNRegressor(**fast, teacher=MicroCNNRegressor(**{**fast, "max_params": 2000}))
    again = _round_trip(student.fit(X, y), X, tmp_path)
    np.testing.assert_array_equal(again.teacher_.predict(X), student.teacher_.predict(X))


def test_unknown_type_is_refused_and_named(rgb, tmp_path):
    X, y = rgb
    model = make_pipeline(HOG(pixels_per_cell=(12, 12)), MyScaler(), RidgeCV()).fit(X, y)
    path = save_model(model, tmp_path / "m.skops")
    name = f"{MyScaler.__module__}.MyScaler"
    with pytest.raises(UntrustedModelError, match=rf"types that cvfeat does not trust: {name}\."
                                                  r".*load_model\(path, trusted="):
        load_model(path)
    again = load_model(path, trusted=[name])
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_functions_of_trusted_packages_need_trust(rgb, tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    X, y = rgb
    model = make_pipeline(HOG(pixels_per_cell=(12, 12)), FunctionTransformer(np.nan_to_num),
                          RidgeCV()).fit(X, y)
    path = save_model(model, tmp_path / "f.skops")
    with pytest.raises(UntrustedModelError, match="numpy.nan_to_num"):
        load_model(path)
    load_model(path, trusted=["numpy.nan_to_num"])


def test_a_pickle_is_never_loaded(tmp_path):
    target = tmp_path / "pwned.txt"
    bad = tmp_path / "model.joblib"
    bad.write_bytes(pickle.dumps(Payload(str(target))))
    with pytest.raises(ValueError, match="it looks like a pickle. Loading a pickle can run "
                                         "any code"):
        load_model(bad)
    assert not target.exists()
    with pytest.raises(ValueError, match="not a skops model file"):
        (tmp_path / "x.skops").write_bytes(b"hello")
        load_model(tmp_path / "x.skops")
    (tmp_path / "cut.skops").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="is not a valid skops model file"):
        load_model(tmp_path / "cut.skops")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.skops")


def test_save_model_wants_a_skops_name(rgb, tmp_path):
    with pytest.raises(ValueError, match=r"does not end in \.skops"):
        save_model(HOG(), tmp_path / "model.pkl")
    assert not os.listdir(tmp_path)
