"""Label distribution learning (``loss='ldl'``) and test-time flips (``tta``) of the micro-CNNs.

The LDL loss is checked against values worked out by hand; ``predict`` against the
expectation of the softmax computed here in numpy from the module's raw outputs;
test-time flips against the mean of the plain model's predictions on flipped images
(computed by flipping the numpy arrays). Tiny images and budgets, 2-3 epochs.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from cvfeat.budget import count_params  # noqa: E402
from cvfeat.datasets import make_counting, make_scale  # noqa: E402
from cvfeat.features import ColorHistogram  # noqa: E402
from cvfeat.models import HybridCNNRegressor, MicroCNNClassifier, MicroCNNRegressor  # noqa: E402
from cvfeat.models import architectures as A  # noqa: E402
from cvfeat.models import training as T  # noqa: E402

FAST = dict(max_params=800, max_epochs=2, batch_size=16, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def data():
    X, y = make_scale(80, size=16, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def rgb():
    X, y = make_scale(60, size=16, color=True, random_state=1)
    return X, y


@pytest.fixture(scope="module")
def ldl(data):
    X, y = data
    return MicroCNNRegressor(**FAST, loss="ldl", n_bins=6, validation_fraction=0.0).fit(X, y)


# -- the loss ---------------------------------------------------------------------------------
def test_ldl_loss_by_hand():
    # 2 bins at 0 and 1 (width 1), sigma 1 bin, target 0: q = softmax(0, -1/2);
    # uniform logits: p = (1/2, 1/2), expectation 1/2
    q0 = 1 / (1 + math.exp(-0.5))
    q1 = 1 - q0
    kl = q0 * math.log(q0 / 0.5) + q1 * math.log(q1 / 0.5)
    z = torch.zeros(1, 2)
    centers = torch.tensor([[0.0, 1.0]])
    loss = T.ldl_loss(z, torch.tensor([[0.0]]), centers, 1.0)
    assert float(loss) == pytest.approx(kl + 0.5, rel=1e-6)


def test_ldl_loss_zero_kl_at_the_target_distribution():
    # logits = log q: the KL term vanishes and only |E_q - y| is left (y between centres)
    centers = torch.tensor([[-1.0, 0.0, 1.0, 2.0]])  # width 1
    y, sigma = 0.3, 0.5
    logq = np.array([-((c - y) / sigma) ** 2 / 2 for c in (-1.0, 0.0, 1.0, 2.0)])
    q = np.exp(logq - logq.max())
    q /= q.sum()
    z = torch.tensor(np.log(q)[None], dtype=torch.float32)
    loss = T.ldl_loss(z, torch.tensor([[y]]), centers, sigma)
    expect = float((q * np.array([-1.0, 0.0, 1.0, 2.0])).sum())
    assert float(loss) == pytest.approx(abs(expect - y), abs=1e-6)
    # any other logits give a larger KL term
    other = T.ldl_loss(z + torch.tensor([[0.5, 0, 0, 0]]), torch.tensor([[y]]), centers, sigma)
    assert float(other) > float(loss)


def test_ldl_loss_is_finite_far_outside_the_bins():
    centers = torch.tensor([[0.0, 1.0, 2.0]])
    loss = T.ldl_loss(torch.zeros(2, 3), torch.tensor([[50.0], [-80.0]]), centers, 0.1)
    assert torch.isfinite(loss)


# -- the head and the budget ------------------------------------------------------------------
@pytest.mark.parametrize("budget,size,bins,hidden", [(1000, 32, 12, 8), (3000, 32, 12, 16),
                                                      (5000, 64, 20, 16), (800, 16, 2, 0)])
def test_solver_counts_the_ldl_head(budget, size, bins, hidden):
    arch = {"in_channels": 3, "height": size, "width": size, "coord_channels": False,
            "block": "plain", "conv": "separable", "head": "gap", "head_hidden": hidden,
            "n_outputs": 1, "n_features": 0, "task": "regression", "bins": bins}
    arch = A.solve(arch, budget)
    n, macs = A.count(arch)
    assert 0.9 * budget <= n <= budget
    module = A.build_module(arch)
    assert module.head(torch.zeros(1, module.head[0].in_features if hidden else
                                   module.head.in_features)).shape == (1, bins)
    # parameters + input/target constants + one centre per bin
    assert n == sum(p.numel() for p in module.parameters()) + 2 * 3 + 2 + bins
    assert n == A.count_module(module)
    assert macs == A.module_macs(module)
    plain = A.count(A.solve({**arch, "bins": 0}, budget))[0]
    assert 0.9 * budget <= plain <= budget


def test_fitted_ldl_model_counts_and_describes_its_head(ldl):
    assert 0.9 * 800 <= ldl.n_params_ <= 800
    assert ldl.n_params_ == A.count_module(ldl.module_) == count_params(ldl)
    assert ldl.n_macs_ == A.module_macs(ldl.module_)
    assert ldl.module_.bin_centers.shape == (1, 6)
    assert "softmax over 6 bins, expectation" in ldl.architecture_
    assert "bin centres 6" in ldl.architecture_


def test_bins_span_the_training_targets(ldl, data):
    _, y = data
    m = ldl.module_
    centers = (m.bin_centers * m.out_scale[:, None] + m.out_mean[:, None]).numpy()[0]
    assert centers[0] == pytest.approx(y.min(), rel=1e-5)
    assert centers[-1] == pytest.approx(y.max(), rel=1e-5)
    assert np.allclose(np.diff(centers), (y.max() - y.min()) / 5, rtol=1e-4)


def test_predict_is_the_expectation_of_the_softmax(ldl, data):
    X, y = data
    m = ldl.module_
    with torch.no_grad():
        z = m.raw_nchw(m.to_nchw(torch.as_tensor(X[:10]).unsqueeze(-1))).numpy()
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    centers = m.bin_centers.numpy()[0]
    expected = (p * centers).sum(axis=1) * float(m.out_scale[0]) + float(m.out_mean[0])
    np.testing.assert_allclose(ldl.predict(X[:10]), expected, rtol=1e-5)
    assert (ldl.predict(X) >= y.min() - 1e-6).all() and (ldl.predict(X) <= y.max() + 1e-6).all()


def test_ldl_several_targets_and_auto_bins(data):
    X, y = data
    Y = np.column_stack([y, 100 - 3 * y])
    m = MicroCNNRegressor(**FAST, loss="ldl").fit(X, Y)
    assert m.module_.bin_centers.shape == (2, 12)
    assert m.predict(X[:4]).shape == (4, 2)
    assert m.n_params_ == A.count_module(m.module_) <= 800


def test_constant_target_gets_unit_spaced_bins(data):
    X, _ = data
    m = MicroCNNRegressor(**FAST, loss="ldl", n_bins=3).fit(X, np.full(len(X), 7.0))
    assert np.allclose(m.module_.bin_centers.numpy(), [[-1.0, 0.0, 1.0]])
    # trained 2 epochs towards the middle bin: close to 7, a fraction of a bin away
    assert np.abs(m.predict(X) - 7.0).max() < 0.1


def test_ldl_learns_the_disk_radius():
    # the target: 32x32 disk radius, 3,000 parameters, 15 epochs, held-out R2 >= 0.9
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_micro_cnn import make_disks  # the benchmark's task (--task disk)

    X, y = make_disks(800)
    m = MicroCNNRegressor(3000, loss="ldl", max_epochs=15, random_state=0,
                          device="cpu").fit(X[:600], y[:600])
    assert m.score(X[600:], y[600:]) >= 0.9


def test_ldl_hybrid(rgb):
    X, y = rgb
    m = HybridCNNRegressor(ColorHistogram(bins=2), **{**FAST, "max_params": 900},
                           loss="ldl", n_bins=5).fit(X, y)
    assert m.n_params_ == A.count_module(m.module_) <= 900
    assert m.module_.bin_centers.shape == (1, 5)
    assert np.isfinite(m.predict(X)).all()


@pytest.mark.parametrize("params,match", [
    ({"n_bins": 1}, "'n_bins' parameter of MicroCNNRegressor"),
    ({"n_bins": "many"}, "'n_bins' parameter"),
    ({"label_sigma": 0.0}, "'label_sigma' parameter"),
    ({"label_sigma": -1}, "'label_sigma' parameter"),
    ({"loss": "kl"}, "'loss' parameter"),
    ({"tta": "vflip"}, "'tta' parameter"),
])
def test_bad_parameters_are_named(data, params, match):
    X, y = data
    with pytest.raises(InvalidParameterError, match=match):
        MicroCNNRegressor(**FAST, loss="ldl").set_params(**params).fit(X, y)


def test_ldl_on_a_classifier_is_refused():
    with pytest.raises(TypeError, match="'loss'"):
        MicroCNNClassifier(loss="ldl")
    with pytest.raises(ValueError, match="Invalid parameter 'loss' for estimator "
                                         "MicroCNNClassifier"):
        MicroCNNClassifier().set_params(loss="ldl")


# -- test-time flips --------------------------------------------------------------------------
def test_hflip_is_the_mean_over_the_mirror(data):
    X, y = data
    plain = MicroCNNRegressor(**FAST, loss="ldl", n_bins=4).fit(X, y)
    tta = MicroCNNRegressor(**FAST, loss="ldl", n_bins=4, tta="hflip").fit(X, y)
    expected = (plain.predict(X) + plain.predict(X[:, :, ::-1])) / 2
    np.testing.assert_allclose(tta.predict(X), expected, rtol=1e-6)
    assert not np.allclose(plain.predict(X), expected)  # the flip changes something
    assert tta.n_macs_ == 2 * plain.n_macs_
    assert tta.n_params_ == plain.n_params_
    assert "tta='hflip': 2 views per prediction" in tta.architecture_


def test_tta_is_read_at_predict_time(rgb):
    X, y = rgb
    m = MicroCNNRegressor(**FAST).fit(X, y)
    base, macs = m.predict(X), m.n_macs_
    views = [X, X[:, :, ::-1], X[:, ::-1], X[:, ::-1, ::-1]]
    m.set_params(tta="flips")
    np.testing.assert_allclose(m.predict(X), np.mean([m.set_params(tta=None).predict(v)
                                                      for v in views], axis=0), rtol=1e-6)
    m.set_params(tta="flips")
    assert m.n_macs_ == 4 * macs
    m.set_params(tta=None)
    np.testing.assert_array_equal(m.predict(X), base)
    m.tta = "mirror"
    with pytest.raises(ValueError, match="tta='mirror' is not one of None, 'hflip'"):
        m.predict(X)


def test_classifier_flips_average_probabilities():
    X, count = make_counting(60, size=16, max_count=2, random_state=0)
    plain = MicroCNNClassifier(**FAST).fit(X, count)
    tta = MicroCNNClassifier(**FAST, tta="flips").fit(X, count)
    views = [X, X[:, :, ::-1], X[:, ::-1], X[:, ::-1, ::-1]]
    proba = np.mean([plain.predict_proba(v) for v in views], axis=0)
    np.testing.assert_allclose(tta.predict_proba(X), proba, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(tta.predict(X), tta.classes_[proba.argmax(axis=1)])


def test_hybrid_flips_the_cnn_input_only(rgb):
    X, y = rgb
    kw = dict(**{**FAST, "max_params": 900}, loss="ldl", n_bins=4)
    plain = HybridCNNRegressor(ColorHistogram(bins=2), **kw).fit(X, y)
    tta = HybridCNNRegressor(ColorHistogram(bins=2), **kw, tta="hflip").fit(X, y)
    feats = torch.as_tensor(plain.features_.transform(X), dtype=torch.float32)
    with torch.no_grad():
        one = plain.module_(torch.as_tensor(X), feats)
        two = plain.module_(torch.as_tensor(np.ascontiguousarray(X[:, :, ::-1])), feats)
    expected = ((one + two) / 2).numpy()[:, 0]
    np.testing.assert_allclose(tta.predict(X), expected, rtol=1e-5)


# -- searches and comparisons -----------------------------------------------------------------
def test_grid_search_over_loss_and_tta(data):
    X, y = data
    grid = GridSearchCV(MicroCNNRegressor(**FAST),
                        {"loss": ["huber", "ldl"], "tta": [None, "hflip"]}, cv=2).fit(X, y)
    assert grid.best_params_["loss"] in ("huber", "ldl")
    assert len(grid.cv_results_["params"]) == 4


def test_search_spaces_offer_ldl():
    from cvfeat.compare._search import search_space

    pytest.importorskip("optuna")
    space, _ = search_space(MicroCNNRegressor(), "grid", 3000)
    assert {p["loss"][0] for p in space} == {"huber", "ldl"}
    assert all("tta" not in p for p in space)
    dist, _ = search_space(MicroCNNRegressor(), "optuna", 3000)
    assert set(dist["loss"].choices) == {"huber", "ldl"}


def test_compare_models_with_ldl_and_flip_candidates(data):
    from cvfeat.compare import compare_models

    X, y = data
    cands = [("CNN huber", MicroCNNRegressor(**FAST)),
             ("CNN ldl + flips", MicroCNNRegressor(**FAST, loss="ldl", tta="hflip"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare_models(X, y, budget=800, candidates=cands, cv=2, progress=False,
                             latency=None)
    table = res.table.set_index("name")
    assert table["within_budget"].all() and np.isfinite(table["mae_mean"]).all()
    ldl = MicroCNNRegressor(**FAST, loss="ldl").fit(X, y)
    assert table.loc["CNN ldl + flips", "macs"] == 2 * ldl.n_macs_
    assert table.loc["CNN ldl + flips", "params"] == ldl.n_params_
