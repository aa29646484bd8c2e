"""MicroCNNRegressor / MicroCNNClassifier: budget solver, training options, errors, citizenship.

Everything runs on tiny images (16x16), tiny budgets and a few epochs: the file
must stay fast on a shared 2-core machine.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402
from sklearn.experimental import enable_halving_search_cv  # noqa: E402,F401
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    cross_validate,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from cvfeat.budget import count_params  # noqa: E402
from cvfeat.datasets import make_counting, make_scale  # noqa: E402
from cvfeat.features import HOG, LBP  # noqa: E402
from cvfeat.models import (  # noqa: E402
    HybridCNNRegressor,
    MicroCNNClassifier,
    MicroCNNRegressor,
)
from cvfeat.models import architectures as A  # noqa: E402
from cvfeat.models import training as T  # noqa: E402
from cvfeat.preprocessing import Resize  # noqa: E402

FAST = dict(max_params=500, max_epochs=2, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def data():
    X, y = make_scale(60, size=16, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return MicroCNNRegressor(**FAST).fit(X, y)


def _arch(block, conv, head, coord, size=(16, 16), channels=1, n_features=0, hidden=0):
    return {
        "in_channels": channels, "height": size[0], "width": size[1],
        "coord_channels": coord, "block": block, "conv": conv, "head": head,
        "head_hidden": hidden,
        "n_outputs": 1, "n_features": n_features, "task": "regression",
    }


# -- the budget solver --------------------------------------------------------------------
SOLVER_CASES = list(itertools.product(
    ["plain", "residual", "dense"], ["standard", "separable"], ["gap", "dense"], [False, True],
)) + [("plain", "separable", "gap", False, 8), ("residual", "standard", "gap", True, 16)]


@pytest.mark.parametrize("case", SOLVER_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("size,channels", [((16, 16), 1), ((40, 24), 3)])
def test_solver_uses_90_to_100_percent_and_counts_match_torch(case, size, channels):
    block, conv, head, coord = case[:4]
    hidden = case[4] if len(case) > 4 else 0
    for budget in (500, 1000, 3000, 10000):
        arch = A.solve(_arch(block, conv, head, coord, size, channels, hidden=hidden), budget)
        n_params, n_macs = A.count(arch)
        assert n_params <= budget
        if n_params < 0.9 * budget:
            # allowed only when one more channel anywhere costs more than what is left
            assert head == "dense" and budget <= 1000, (budget, arch["widths"], n_params)
            for i in range(len(arch["widths"])):
                wider = list(arch["widths"])
                wider[i] += 1
                extra = A.count({**arch, "widths": tuple(wider)})[0] - n_params
                assert extra > budget - n_params
        module = A.build_module(arch)
        # analytic count == what torch holds: parameters + normalisation constants
        buffers = module.in_mean.numel() + module.in_scale.numel()
        buffers += module.out_mean.numel() + module.out_scale.numel()
        assert n_params == sum(p.numel() for p in module.parameters()) + buffers
        assert n_params == A.count_module(module)
        assert n_macs == A.module_macs(module)
        if block == "residual":
            assert list(arch["widths"]) == sorted(arch["widths"])


@pytest.mark.parametrize("block", ["plain", "residual", "dense"])
def test_solver_shallow_nets_pool_by_more_than_two(block):
    # depth 2 on 32x32 pools 8x after one layer: the solver fills the stages that exist
    for depth, budget in itertools.product((1, 2, 3), (1000, 3000, 10000)):
        arch = A.solve(_arch(block, "separable", "gap", False, (32, 32), 3), budget, depth=depth)
        assert len(arch["widths"]) == depth and np.prod(arch["pools"]) == 8
        assert 0.9 * budget <= A.count(arch)[0] <= budget, (depth, budget, arch["widths"])


def test_solver_depth_and_hybrid_features_counted():
    for depth in (2, 3, 6):
        arch = A.solve(_arch("residual", "separable", "gap", False), 3000, depth=depth)
        assert len(arch["widths"]) == depth
        assert 2700 <= A.count(arch)[0] <= 3000
    arch = A.solve(_arch("plain", "separable", "gap", False, n_features=20), 2000, fixed=300)
    module = A.build_module(arch)
    n = A.count(arch)[0]
    assert 0.9 * 2000 <= n + 300 <= 2000
    assert n == A.count_module(module)  # includes 2 * 20 feature constants
    assert module.head.in_features == arch["widths"][-1] + 20


def test_solver_explicit_width_is_checked_not_solved():
    arch = A.solve(_arch("plain", "standard", "gap", False), 10000, depth=3, width=[4, 6, 8])
    assert arch["widths"] == (4, 6, 8)
    with pytest.raises(A.BudgetError, match=r"depth=3 and width=32 give [\d,]+ parameters, "
                                             r"over the budget max_params=500"):
        A.solve(_arch("plain", "standard", "gap", False), 500, depth=3, width=32)
    with pytest.raises(A.BudgetError, match="even one channel per layer at depth=40"):
        A.solve(_arch("plain", "standard", "gap", False), 100, depth=40)
    with pytest.raises(ValueError, match="non-decreasing widths"):
        A.solve(_arch("residual", "standard", "gap", False), 10000, width=[8, 4, 8])


def test_default_depth_and_pooling_end_near_4x4():
    assert A.default_depth(64, 64, 3000) == 5
    assert A.default_depth(64, 64, 5000) == 6
    assert A.default_depth(16, 16, 1000) == 3
    for depth in (1, 2, 5, 9):
        pools = A.pool_factors(depth, 64, 64)
        assert np.prod(pools) == 16 and len(pools) == depth


@pytest.mark.parametrize("block,conv,head,coord", [
    ("plain", "separable", "gap", False), ("residual", "standard", "dense", True),
    ("dense", "separable", "gap", True)])
def test_pool_before_relu_is_the_textbook_network_exactly(block, conv, head, coord):
    # the module max-pools before each ReLU; the textbook order (ReLU, then max-pool) must
    # give the same outputs and the same gradients, bit for bit, in training mode
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from bench_epoch_variants import textbook_forward

    arch = A.solve(_arch(block, conv, head, coord, (32, 32), 3), 3000)
    torch.manual_seed(0)
    module = A.build_module(arch).train()
    x = torch.rand(16, 3, 32, 32) * 255
    grads = []
    for forward in (module.forward_nchw, lambda x: textbook_forward(module, x)):
        module.zero_grad(set_to_none=True)
        out = forward(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in module.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        assert torch.equal(a, b)


# -- fitting, prediction, determinism --------------------------------------------------------
def test_fit_attributes(fitted, data):
    X, _ = data
    m = fitted
    assert 450 <= m.n_params_ <= 500
    assert m.n_params_ == A.count_module(m.module_) == count_params(m)
    assert m.n_macs_ == A.module_macs(m.module_)
    assert m.n_nonzero_params_ <= m.n_params_
    assert "MicroCNN: plain blocks, separable convs" in m.architecture_
    assert f"{m.n_params_:,} parameters" in m.architecture_
    assert [r["epoch"] for r in m.history_] == [1, 2]
    assert set(m.history_[0]) == {"epoch", "phase", "train_loss", "val_loss", "lr", "seconds"}
    assert m.best_epoch_ in (1, 2) and m.n_epochs_ == 2
    assert m.image_shape_ == (16, 16, 1) and m.n_outputs_ == 1
    assert not m.module_.training
    pred = m.predict(X)
    assert pred.shape == (60,) and pred.dtype == np.float64


def test_same_random_state_same_predictions_and_different_seed_differs(data, fitted):
    X, y = data
    again = MicroCNNRegressor(**FAST).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    other = MicroCNNRegressor(**{**FAST, "random_state": 1}).fit(X, y)
    assert not np.array_equal(other.predict(X), fitted.predict(X))


def test_fit_does_not_touch_torch_global_state(data):
    X, y = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    MicroCNNRegressor(**FAST, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(("env", "expected"), [
    ({}, max(1, min(4, (os.cpu_count() or 1) // 2))),
    ({"OMP_NUM_THREADS": "3"}, 3),
    ({"MKL_NUM_THREADS": "2"}, 2),
    ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "4"}, 1),
    ({"OMP_NUM_THREADS": "junk"}, max(1, min(4, (os.cpu_count() or 1) // 2))),
])
def test_default_threads_follow_the_environment_at_each_fit(monkeypatch, env, expected):
    """Read at each call, not at torch's start: a LocalCluster sets OMP_NUM_THREADS=1 later."""
    from cvfeat.models._base import torch_context

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    before = torch.get_num_threads()
    with torch_context(None):
        assert torch.get_num_threads() == expected
    assert torch.get_num_threads() == before
    with torch_context(2):
        assert torch.get_num_threads() == 2


# -- time budget -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1.0, "60s", [10]])
def test_max_time_must_be_a_positive_number(data, bad):
    X, y = data
    with pytest.raises(InvalidParameterError, match="'max_time' parameter"):
        MicroCNNRegressor(**FAST, max_time=bad).fit(X, y)


def test_max_time_fixes_a_whole_schedule_within_the_budget():
    X, y = make_scale(400, size=16, random_state=0)
    model = MicroCNNRegressor(max_params=500, batch_size=16, max_epochs=1, max_time=4.0,
                              random_state=0)
    t = time.perf_counter()
    model.fit(X, y)
    elapsed = time.perf_counter() - t
    budget = model.time_budget_
    assert elapsed < 4.0 * 1.5 + 1.0  # generous: a shared machine's noise
    assert budget["epochs"] > 1 >= model.max_epochs  # max_epochs is ignored
    assert budget["epochs"] * budget["epoch_seconds"] <= 4.0 - budget["seconds_before_training"]
    assert [r["epoch"] for r in model.history_] == list(range(1, budget["epochs"] + 1))
    assert all(r["seconds"] > 0 for r in model.history_)
    # the one-cycle schedule ran to its end: the last learning rate is its floor
    assert model.history_[-1]["lr"] == pytest.approx(model.learning_rate / 25_000, rel=0.01)


def test_max_epochs_from_the_time_budget_repeats_the_fit(data):
    X, y = data
    timed = MicroCNNRegressor(**{**FAST, "max_epochs": 1}, max_time=1.5).fit(X, y)
    epochs = timed.time_budget_["epochs"]
    again = MicroCNNRegressor(**{**FAST, "max_epochs": epochs}).fit(X, y)
    assert again.time_budget_ is None and again.n_epochs_ == epochs
    np.testing.assert_array_equal(timed.predict(X), again.predict(X))


def test_max_time_too_short_for_one_epoch_warns_and_trains_one(data):
    X, y = data
    with pytest.warns(UserWarning, match="max_time=0.0001 s leaves time for less than one epoch"):
        model = MicroCNNRegressor(**FAST, max_time=1e-4).fit(X, y)
    assert model.n_epochs_ == 1 and model.time_budget_["epochs"] == 1


def test_max_time_counts_the_prune_epochs(data):
    X, y = data
    model = MicroCNNRegressor(**FAST, max_time=3.0, prune_amount=0.5, prune_epochs=2).fit(X, y)
    phases = [r["phase"] for r in model.history_]
    assert phases.count("prune") == 2 == model.time_budget_["prune_epochs"]
    assert phases.count("train") == model.time_budget_["epochs"]


def test_max_time_on_the_classifier_and_the_hybrid(data):
    X, y = data
    clf = MicroCNNClassifier(**FAST, max_time=1.0).fit(X, (y > np.median(y)).astype(int))
    hyb = HybridCNNRegressor(LBP(), **FAST, max_time=1.0).fit(X, y)
    for model in (clf, hyb):
        assert model.time_budget_["epochs"] == model.n_epochs_ >= 1
        assert clone(model).get_params()["max_time"] == 1.0


def test_learns_an_easy_task():
    X, y = make_scale(300, size=16, random_state=0)
    m = MicroCNNRegressor(max_params=1000, max_epochs=20, batch_size=16, random_state=0)
    m.fit(X[:200], y[:200])
    mae = np.abs(m.predict(X[200:]) - y[200:]).mean()
    guess = np.abs(np.median(y[:200]) - y[200:]).mean()
    assert mae < 0.7 * guess, (mae, guess)
    assert m.history_[-1]["train_loss"] < m.history_[0]["train_loss"]


def test_float_images_predict_like_uint8(fitted, data):
    X, _ = data
    for dtype in (np.float32, np.float64):
        np.testing.assert_allclose(fitted.predict((X / 255).astype(dtype)), fitted.predict(X),
                                   rtol=1e-5, atol=1e-6)


def test_predict_is_batch_independent(fitted, data):
    X, _ = data
    full = fitted.predict(X)
    np.testing.assert_allclose(fitted.predict(X[7:8]), full[7:8], rtol=1e-5, atol=1e-7)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(fitted.predict(X[order]), full[order], rtol=1e-5, atol=1e-7)


def test_rgb_list_input_and_multioutput():
    X, y = make_scale(40, size=16, color=True, random_state=0)
    Y = np.c_[y, 2 * y + 1]
    m = MicroCNNRegressor(**FAST).fit(list(X), Y)
    assert m.predict(X).shape == (40, 2) and m.n_outputs_ == 2
    assert m.module_.out_mean.shape == (2,)


def test_validation_fraction_zero_trains_all_epochs(data):
    X, y = data
    m = MicroCNNRegressor(**{**FAST, "max_epochs": 3}, validation_fraction=0).fit(X, y)
    assert len(m.history_) == 3 and m.history_[0]["val_loss"] is None
    assert m.best_epoch_ is None


def test_early_stopping_stops(data):
    X, y = data
    # a learning rate far too high: the validation loss stops improving early
    m = MicroCNNRegressor(**{**FAST, "max_epochs": 30}, patience=2, learning_rate=0.5,
                          schedule="constant").fit(X, y)
    assert len(m.history_) < 30
    assert len(m.history_) == m.best_epoch_ + 2
    losses = [r["val_loss"] for r in m.history_]
    assert losses[m.best_epoch_ - 1] == min(losses)


@pytest.mark.parametrize("options", [
    dict(optimizer="sam"),
    dict(optimizer="asam", rho=0.3),
    dict(loss="mse"),
    dict(loss="huber", huber_delta=0.1, schedule="cosine"),
    dict(augment="strong"),
    dict(augment={"vflip": 0.5, "rotate": 30, "scale": 0.2, "noise": 0.05}),
    dict(mixup=0.4),
    dict(target_noise=0.1),
    dict(block="dense", conv="standard", head="dense", coord_channels=True),
    dict(block="plain", depth=2, width=[4, 8], head_units=0),
    dict(block="residual", head_units=4),
])
def test_options_train(data, options):
    X, y = data
    m = MicroCNNRegressor(**FAST, **options).fit(X, y)
    assert np.isfinite(m.predict(X)).all()
    assert all(np.isfinite(r["train_loss"]) for r in m.history_)


def test_sam_changes_the_result_and_keeps_bn_statistics_single_pass(data, fitted):
    X, y = data
    sam = MicroCNNRegressor(**FAST, optimizer="sam").fit(X, y)
    assert not np.array_equal(sam.predict(X), fitted.predict(X))
    # each step updates BatchNorm's running statistics once (the second pass is frozen):
    # num_batches_tracked counts the steps of the training epochs
    n_train = 60 - 6
    steps = 2 * (n_train // 16)
    assert int(sam.module_.layers[0].bn.num_batches_tracked) <= steps


def test_augment_only_on_training_batches():
    spec = T.check_augment({"hflip": 1.0}, "test")
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    params = {k: torch.as_tensor(v) for k, v in T.draw_augment(spec, np.random.default_rng(0),
                                                                2, 2, 3).items()}
    out = T.augment_batch(x, spec, params, torch.Generator())
    np.testing.assert_array_equal(out.numpy(), x.flip(3).numpy())
    # a 90-degree rotation of a square image moves pixels exactly (nearest grid points)
    spec = T.check_augment({"rotate": 90.0}, "test")
    params = T.draw_augment(spec, np.random.default_rng(0), 1, 4, 4)
    assert params["theta"].shape == (1, 2, 3)
    with pytest.raises(ValueError, match=r"augment\['rotate'\] must be a number in \[0, 180\]"):
        T.check_augment({"rotate": 400}, "test")
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        T.check_augment({"blur": 1.0}, "test")
    with pytest.raises(ValueError, match="unknown augment preset 'heavy'"):
        T.check_augment("heavy", "test")


class SpyTeacher:
    """A fitted 'estimator' that records what it is asked to predict."""

    def __init__(self, value):
        self.value = value
        self.seen = []

    def fit(self, X, y):  # pragma: no cover - never called
        return self

    def predict(self, X):
        self.seen.append(np.array(X))
        return np.full(len(X), self.value)

    def __sklearn_is_fitted__(self):
        return True


def test_teacher_estimator_sees_the_augmented_uint8_view(data):
    X, y = data
    spy = SpyTeacher(float(np.mean(y)))
    MicroCNNRegressor(**FAST, augment={"hflip": 1.0}, teacher=spy, alpha=0.3).fit(X, y)
    assert len(spy.seen) == 2 * (54 // 16)  # one call per training batch
    batch = spy.seen[0]
    assert batch.dtype == np.uint8 and batch.shape == (16, 16, 16)
    # every image is flipped: each seen image is the mirror of a training image
    flipped = {X[i, :, ::-1].tobytes() for i in range(len(X))}
    assert all(img.tobytes() in flipped for img in batch)


def test_teacher_estimator_without_augmentation_predicts_once(data):
    X, y = data
    spy = SpyTeacher(0.1)
    MicroCNNRegressor(**FAST, teacher=spy).fit(X, y)
    assert len(spy.seen) == 1 and spy.seen[0].shape == X.shape


def test_teacher_pulls_the_student(data):
    X, y = data
    # alpha=0: the student learns the teacher's constant, not y
    kw = {**FAST, "max_epochs": 15, "validation_fraction": 0}
    target = y.mean() + 2 * y.std()
    m = MicroCNNRegressor(**kw, teacher=np.full(len(y), target), alpha=0.0).fit(X, y)
    pred = m.predict(X)
    assert abs(pred.mean() - target) < 0.5 * abs(target - y.mean())
    assert pred.std() < 0.5 * y.std()
    real = make_pipeline(HOG(pixels_per_cell=(8, 8)), Ridge()).fit(X, y)
    m = MicroCNNRegressor(**FAST, teacher=real, augment="flip").fit(X, y)
    assert np.isfinite(m.predict(X)).all()


def test_pruning_reduces_nonzero_parameters(data):
    X, y = data
    m = MicroCNNRegressor(**FAST, prune_amount=0.5, prune_epochs=2).fit(X, y)
    p = m.pruning_
    assert p["n_nonzero_after"] == m.n_nonzero_params_ < p["n_nonzero_before"]
    weights = sum(mod.weight.numel() for mod in m.module_.modules()
                  if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)))
    # at least half of the conv/linear weights are zero (floor per layer)
    assert m.n_params_ - m.n_nonzero_params_ >= weights // 2 - len(m.module_.layers) - 2
    assert [r["phase"] for r in m.history_].count("prune") == 2
    assert {"loss_before", "loss_pruned", "loss_after", "mae_before", "mae_after"} <= set(p)
    assert p["on"] == "validation"
    assert count_params(m) == m.n_params_  # dense storage


def test_fold_batchnorm_and_onnx_export_keep_predictions(fitted, data):
    X, _ = data
    x = torch.as_tensor(X[:5])
    folded = A.fold_batchnorm(fitted.module_)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in folded.modules())
    np.testing.assert_allclose(folded(x).detach().numpy(), fitted.module_(x).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(folded, (x,), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}}, opset_version=18)
    out = ort.InferenceSession(buf.getvalue()).run(None, {"x": X[:5]})[0]
    np.testing.assert_allclose(out[:, 0], fitted.predict(X[:5]), rtol=1e-4, atol=1e-6)


# -- errors -------------------------------------------------------------------------------
def test_fixed_architecture_over_budget_raises(data):
    X, y = data
    with pytest.raises(ValueError, match=r"MicroCNNRegressor: depth=3 and width=16 give "
                                         r"[\d,]+ parameters, over the budget max_params=500"):
        MicroCNNRegressor(**{**FAST, "depth": 3, "width": 16}).fit(X, y)


def test_bad_images_and_targets(fitted, data):
    X, y = data
    with pytest.raises(ValueError, match=r"Resize\(size=\(h, w\)\)"):
        MicroCNNRegressor(**FAST).fit([X[0], X[1][:8]], y[:2])
    with pytest.raises(ValueError, match="target 3 is NaN or infinite"):
        MicroCNNRegressor(**FAST).fit(X, np.where(np.arange(60) == 3, np.nan, y))
    with pytest.raises(ValueError, match=r"fitted on 16x16 images but got 20x20.*Resize"):
        fitted.predict(np.zeros((2, 20, 20), np.uint8))
    with pytest.raises(ValueError, match="fitted on grey images but got RGB"):
        fitted.predict(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="requires y to be passed"):
        MicroCNNRegressor(**FAST).fit(X, None)
    with pytest.raises(ValueError, match="ndim=2"):
        MicroCNNRegressor(**FAST).fit(np.zeros((10, 5)), np.zeros(10))
    with pytest.raises(ValueError, match="teacher is an array of 3 predictions but fit got 60"):
        MicroCNNRegressor(**FAST, teacher=np.zeros(3)).fit(X, y)
    with pytest.raises(ValueError, match=r"leaves 1 of 2 images"):
        MicroCNNRegressor(**FAST).fit(X[:2], y[:2])
    with pytest.raises(ValueError, match="The 'block' parameter"):
        MicroCNNRegressor(block="wide").fit(X, y)


def test_cuda_requested_without_cuda(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    X, y = data
    with pytest.raises(ValueError, match="CUDA is not available"):
        MicroCNNRegressor(**FAST, device="cuda").fit(X, y)
    with pytest.raises(ValueError, match="is not a torch device"):
        MicroCNNRegressor(**FAST, device="gpu0").fit(X, y)


def test_import_is_lazy_and_missing_torch_says_what_to_install():
    code = (
        "import sys\n"
        "import cvfeat.models\n"
        "assert 'torch' not in sys.modules, 'cvfeat.models imported torch'\n"
        "sys.modules['torch'] = None\n"  # as if torch were not installed
        "import numpy as np\n"
        "from cvfeat.models import MicroCNNRegressor\n"
        "try:\n"
        "    MicroCNNRegressor().fit(np.zeros((4, 16, 16), np.uint8), np.arange(4.0))\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pip install 'cvfeat[cnn]'" in out.stdout


# -- classifier -----------------------------------------------------------------------------
def test_classifier_labels_and_probabilities():
    X, count = make_counting(60, size=16, max_count=2, random_state=0)
    labels = np.array(["none", "one", "two"])[count.astype(int)]
    clf = MicroCNNClassifier(**FAST, label_smoothing=0.1, augment="flip").fit(X, labels)
    assert list(clf.classes_) == ["none", "one", "two"]
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    assert 0 <= clf.score(X, labels) <= 1
    assert clf.n_params_ == count_params(clf)
    assert "linear 12->3" in clf.architecture_ or "->3" in clf.architecture_
    # teacher as probabilities, and an estimator teacher with predict_proba
    soft = np.full((60, 3), 1 / 3)
    MicroCNNClassifier(**FAST, teacher=soft).fit(X, labels)
    MicroCNNClassifier(**FAST, teacher=clf, mixup=0.2).fit(X, labels)
    with pytest.raises(ValueError, match="single class"):
        MicroCNNClassifier(**FAST).fit(X, np.zeros(60))
    with pytest.raises(ValueError, match="Unknown label type"):
        MicroCNNClassifier(**FAST).fit(X, np.linspace(0, 1, 60))


# -- scikit-learn citizenship --------------------------------------------------------------
def test_clone_and_params():
    m = MicroCNNRegressor(max_params=800, block="plain", augment={"hflip": 0.5})
    c = clone(m)
    assert c.get_params() == m.get_params()
    c.set_params(max_params=1200, optimizer="sam")
    assert c.max_params == 1200 and m.max_params == 800


def test_pickle_and_joblib_round_trip(fitted, data, tmp_path):
    X, _ = data
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    assert again.n_params_ == fitted.n_params_ and again.history_ == fitted.history_
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "pred.npy", fitted.predict(X))
    code = (
        "import joblib, numpy as np, sys\n"
        f"m = joblib.load({str(path)!r})\n"
        f"X = np.load({str(tmp_path / 'X.npy')!r})\n"
        f"np.testing.assert_array_equal(m.predict(X), np.load({str(tmp_path / 'pred.npy')!r}))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_searches_and_cross_validate():
    X, y = make_scale(48, size=16, random_state=0)
    est = MicroCNNRegressor(max_params=300, max_epochs=1, batch_size=16, random_state=0,
                            validation_fraction=0)
    grid = GridSearchCV(est, {"block": ["plain", "residual"]}, cv=2).fit(X, y)
    assert grid.best_params_["block"] in ("plain", "residual")
    assert count_params(grid) == grid.best_estimator_.n_params_
    rand = RandomizedSearchCV(est, {"max_params": [250, 300], "optimizer": ["adamw", "sam"]},
                              n_iter=2, cv=2, random_state=0).fit(X, y)
    assert rand.predict(X).shape == (48,)
    halving = HalvingGridSearchCV(est, {"conv": ["standard", "separable"]}, cv=2, factor=2,
                                  min_resources=20, random_state=0).fit(X, y)
    assert halving.best_estimator_.n_params_ <= 300
    cv = cross_validate(est, X, y, cv=2, scoring="neg_mean_absolute_error")
    assert cv["test_score"].shape == (2,)


def test_in_a_pipeline_with_resize():
    X, y = make_scale(40, size=20, random_state=0)
    pipe = make_pipeline(Resize(size=(16, 16)), MicroCNNRegressor(**FAST)).fit(X, y)
    assert count_params(pipe) == pipe[-1].n_params_
    assert pipe.predict(X).shape == (40,)


def test_verbose_prints_epochs(data, capsys):
    X, y = data
    MicroCNNRegressor(**FAST, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "[MicroCNNRegressor] train epoch 1: train" in out and "epoch 2" in out
