"""HybridCNNRegressor: classical features in the head, one budget for both parts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_union  # noqa: E402

from cvfeat.budget import count_params  # noqa: E402
from cvfeat.datasets import make_scale  # noqa: E402
from cvfeat.features import HOG, LBP, ColorHistogram, SIFTBoW  # noqa: E402
from cvfeat.models import HybridCNNRegressor, MicroCNNRegressor  # noqa: E402
from cvfeat.models import architectures as A  # noqa: E402

FAST = dict(max_params=800, max_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_scale(60, size=16, color=True, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return HybridCNNRegressor(ColorHistogram(bins=2), validation_fraction=0, **FAST).fit(X, y)


def test_budget_counts_features_scaler_and_cnn(fitted, data):
    X, _ = data
    m = fitted
    d = m.n_features_extra_
    assert d == 8
    assert 0.9 * 800 <= m.n_params_ <= 800
    # CNN weights + 2d feature constants (+ input/target constants); ColorHistogram learns 0
    assert m.n_params_ == A.count_module(m.module_)
    assert m.module_.feat_mean.shape == (d,) and m.module_.feat_scale.shape == (d,)
    # head_units='auto' below 2,000 parameters: 8 hidden units after the concatenation
    assert m.module_.head[0].in_features == m.module_.arch["widths"][-1] + d
    assert m.module_.head[0].out_features == 8
    assert count_params(m) == m.n_params_
    assert "+ 8 features" in m.architecture_ and "feature mean+scale 16" in m.architecture_


def test_features_are_standardised_with_training_statistics(fitted, data):
    X, _ = data
    F = ColorHistogram(bins=2).fit_transform(X).astype(np.float32)
    std = F.std(axis=0)
    np.testing.assert_allclose(fitted.module_.feat_mean.numpy(), F.mean(axis=0), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(fitted.module_.feat_scale.numpy(),
                               np.where(std > 1e-12, 1 / np.where(std > 0, std, 1), 1.0),
                               rtol=1e-4)


def test_predictions_depend_on_the_features(fitted, data):
    X, _ = data
    x = torch.as_tensor(X[:4])
    F = torch.as_tensor(fitted.features_.transform(X[:4]), dtype=torch.float32)
    with torch.no_grad():
        base = fitted.module_(x, F)
        moved = fitted.module_(x, F + 0.5)
    np.testing.assert_allclose(base.numpy()[:, 0], fitted.predict(X[:4]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(base.numpy(), moved.numpy())


def test_learned_feature_values_are_counted(data):
    X, y = data
    sift = SIFTBoW(mode="dense", n_words=4, step=4, patch_size=8, random_state=0)
    m = HybridCNNRegressor(sift, **{**FAST, "max_params": 1500}).fit(X, y)
    codebook = count_params(m.features_)
    assert codebook == 4 * 128
    assert m.n_params_ == A.count_module(m.module_) + codebook
    assert 0.9 * 1500 <= m.n_params_ <= 1500
    assert count_params(m) == m.n_params_


def test_feature_union_and_options(data):
    X, y = data
    union = make_union(ColorHistogram(bins=2), LBP(grid=(1, 1)))
    m = HybridCNNRegressor(union, augment="light", optimizer="sam", teacher=y, alpha=0.7,
                           **FAST).fit(X, y)
    assert m.n_features_extra_ == 8 + 10
    assert np.isfinite(m.predict(X)).all()


def test_deterministic_and_pickle(fitted, data):
    X, y = data
    again = clone(fitted).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))


def test_errors(fitted, data):
    X, y = data
    with pytest.raises(ValueError, match="features must be a cvfeat transformer"):
        HybridCNNRegressor(**FAST).fit(X, y)
    # HOG on 16x16 with 4x4 cells: 324 features -> 648 constants + 324 head weights > 800
    with pytest.raises(ValueError, match=r"324 classical features cost 972 of them.*over "
                                         r"max_params=800; lower the depth, use fewer features"):
        HybridCNNRegressor(HOG(pixels_per_cell=(4, 4)), **FAST).fit(X, y)
    with pytest.raises(ValueError, match="fitted on 16x16 images but got 20x20"):
        fitted.predict(np.zeros((2, 20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="fitted on RGB images but got grey"):
        fitted.predict(np.zeros((2, 16, 16), np.uint8))


def test_grid_search_over_features(data):
    X, y = data
    est = HybridCNNRegressor(ColorHistogram(bins=2), max_params=600, max_epochs=1,
                             batch_size=16, random_state=0, validation_fraction=0)
    grid = GridSearchCV(est, {"features": [ColorHistogram(bins=2), LBP()]}, cv=2).fit(X, y)
    assert count_params(grid) == grid.best_estimator_.n_params_
    assert isinstance(grid.best_estimator_, MicroCNNRegressor)
