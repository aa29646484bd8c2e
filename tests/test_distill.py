"""Distillation with the teacher fitted inside ``fit`` (``teacher=`` an unfitted estimator).

A recording teacher proves which rows each fold's teacher was fitted on; the user's
teacher object must stay unfitted; the fitted student is counted and exported alone.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import BaseEstimator, RegressorMixin, clone  # noqa: E402
from sklearn.linear_model import Ridge, RidgeCV  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from cvfeat.budget import count_params  # noqa: E402
from cvfeat.compare import DistilledRegressor  # noqa: E402
from cvfeat.compare._core import _with_cnn_time  # noqa: E402
from cvfeat.datasets import make_scale  # noqa: E402
from cvfeat.features import LBP  # noqa: E402
from cvfeat.models import MicroCNNRegressor  # noqa: E402

FAST = dict(max_params=400, max_epochs=1, batch_size=16, random_state=0, device="cpu")
SEEN = []  # (rows seen by a RecordingTeacher's fit)


class RecordingTeacher(RegressorMixin, BaseEstimator):
    """Predicts the training mean; records the images it was fitted on in ``SEEN``."""

    def fit(self, X, y):
        SEEN.append(np.asarray(X).copy())
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


@pytest.fixture(scope="module")
def data():
    return make_scale(60, size=16, random_state=0)


def _rows(images, X):
    """Indices in X of each of ``images`` (all images of make_scale differ)."""
    index = {x.tobytes(): i for i, x in enumerate(X)}
    return sorted(index[x.tobytes()] for x in images)


def test_each_fold_teacher_saw_only_that_fold_training_rows(data):
    X, y = data
    SEEN.clear()
    teacher = RecordingTeacher()
    student = MicroCNNRegressor(**FAST, teacher=teacher, validation_fraction=0.2)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    cross_validate(student, X, y, cv=folds)
    assert len(SEEN) == 3
    for seen, (train, test) in zip(SEEN, folds, strict=True):
        rows = _rows(seen, X)
        assert set(rows) <= set(train) and not set(rows) & set(test)
        # and not the student's validation split either: 80 % of the training fold
        assert len(rows) == len(train) - int(np.ceil(0.2 * len(train)))
    assert not hasattr(teacher, "mean_")  # the user's object was never fitted


def test_teacher_fitted_inside_fit_is_a_clone(data):
    X, y = data
    teacher = make_pipeline(LBP(grid=(2, 2)), StandardScaler(), RidgeCV())
    params = teacher.get_params()
    model = MicroCNNRegressor(**FAST, teacher=teacher, validation_fraction=0.0).fit(X, y)
    assert model.teacher is teacher and model.teacher_ is not teacher
    assert teacher.get_params() == params and not hasattr(teacher[-1], "coef_")
    ref = clone(teacher).fit(X, y)
    np.testing.assert_allclose(model.teacher_.predict(X), ref.predict(X), rtol=1e-10)


def test_fitted_teacher_is_used_as_it_is(data):
    X, y = data
    fitted = make_pipeline(LBP(grid=(2, 2)), RidgeCV()).fit(X[:20], y[:20])
    model = MicroCNNRegressor(**FAST, teacher=fitted).fit(X, y)
    assert model.teacher_ is fitted
    assert MicroCNNRegressor(**FAST, teacher=np.asarray(y)).fit(X, y).teacher_ is None
    assert MicroCNNRegressor(**FAST).fit(X, y).teacher_ is None


def test_larger_cnn_teacher_counted_apart(data):
    X, y = data
    big = MicroCNNRegressor(max_params=4000, max_epochs=2, batch_size=16, random_state=1,
                            device="cpu")
    model = MicroCNNRegressor(**FAST, teacher=big, alpha=0.5).fit(X, y)
    assert 3600 <= model.teacher_.n_params_ <= 4000
    assert count_params(model) == model.n_params_ <= 400
    assert not hasattr(big, "module_")
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-6)
    np.testing.assert_allclose(again.teacher_.predict(X), model.teacher_.predict(X), rtol=1e-6)
    pytest.importorskip("skl2onnx")
    from cvfeat.export import read_model_card, to_onnx

    card = read_model_card(to_onnx(model, X[:1]))
    assert card["count_params"] == model.n_params_  # the student only


def test_clone_and_grid_search_with_an_unfitted_teacher(data):
    X, y = data
    model = MicroCNNRegressor(**FAST, teacher=RecordingTeacher())
    assert isinstance(clone(model).teacher, RecordingTeacher)
    grid = GridSearchCV(model, {"alpha": [0.3, 0.7]}, cv=2).fit(X, y)
    assert grid.best_estimator_.teacher_ is not None
    assert isinstance(grid.best_estimator_.teacher_, RecordingTeacher)


def test_teacher_that_cannot_take_images(data):
    X, y = data
    with pytest.raises(ValueError, match=r"the teacher Ridge could not be fitted on the "
                                         r"training images \(ValueError: Found array with dim 3"):
        MicroCNNRegressor(**FAST, teacher=Ridge()).fit(X, y)


def test_distilled_regressor_is_the_same_fit(data):
    X, y = data
    teacher = make_pipeline(LBP(grid=(2, 2)), StandardScaler(), RidgeCV())
    wrapped = DistilledRegressor(student=MicroCNNRegressor(**FAST), teacher=teacher).fit(X, y)
    direct = MicroCNNRegressor(**FAST, teacher=teacher).fit(X, y)
    np.testing.assert_array_equal(wrapped.predict(X), direct.predict(X))
    assert wrapped.teacher_ is wrapped.student_.teacher_


def test_equal_time_gives_a_cnn_teacher_half(data):
    model = MicroCNNRegressor(teacher=MicroCNNRegressor(max_params=30000))
    timed = _with_cnn_time(model, 10.0)
    assert timed.max_time == 10.0 and timed.teacher.max_time == 5.0
    wrapped = _with_cnn_time(DistilledRegressor(student=model, teacher=Ridge()), 8.0)
    assert wrapped.student.max_time == 8.0 and wrapped.student.teacher.max_time == 4.0
