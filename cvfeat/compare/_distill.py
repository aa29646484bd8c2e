"""Distillation as one estimator: a student given an unfitted teacher.

The mechanism is the micro-CNN's own ``teacher=`` parameter: given an unfitted
estimator, the student fits a clone of it on its training rows inside ``fit``.
:class:`DistilledRegressor` is a thin wrapper that keeps student and teacher as two
parameters (two names for :func:`cvfeat.compare.compare_models`' report and the
searches: ``student__learning_rate``), and exposes ``student_`` and ``teacher_``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from ..budget import count_params, register_counter

__all__ = ["DistilledRegressor"]


class DistilledRegressor(RegressorMixin, BaseEstimator):
    """A student fitted on the targets and on the predictions of a teacher fitted first.

    ``fit`` clones ``student``, gives it a clone of the unfitted ``teacher`` as its
    ``teacher`` parameter and fits it: the student fits the teacher on its own
    training rows first (for :class:`cvfeat.models.MicroCNNRegressor`, the rows
    outside its validation split), then learns with the loss ``alpha * loss(y) +
    (1 - alpha) * loss(teacher)``. The same as ``MicroCNNRegressor(teacher=...)``
    directly. Only the student is needed at inference:
    :func:`cvfeat.budget.count_params` counts the student alone, and the student
    (``student_``) is what gets exported.

    Parameters
    ----------
    student : estimator
        An unfitted regressor with a ``teacher`` parameter that fits an unfitted
        teacher itself, e.g. ``MicroCNNRegressor(max_params=3000, alpha=0.5)``.
    teacher : estimator
        An unfitted regressor on the same images (no budget: it is not deployed),
        e.g. a HOG + RBF SVR pipeline.

    Attributes
    ----------
    teacher_ : estimator
        The teacher fitted on the student's training rows (``student_.teacher_``).
    student_ : estimator
        The fitted student.

    See Also
    --------
    cvfeat.models.MicroCNNRegressor : its ``teacher`` and ``alpha`` parameters.
    cvfeat.compare.deployable : the estimator to export (``student_``).

    Examples
    --------
    >>> from sklearn.linear_model import RidgeCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from cvfeat.budget import count_params
    >>> from cvfeat.compare import DistilledRegressor
    >>> from cvfeat.datasets import make_scale
    >>> from cvfeat.features import LBP
    >>> from cvfeat.models import MicroCNNRegressor
    >>> X, y = make_scale(40, size=16, random_state=0)
    >>> model = DistilledRegressor(
    ...     student=MicroCNNRegressor(max_params=400, max_epochs=1, random_state=0),
    ...     teacher=make_pipeline(LBP(grid=(2, 2)), RidgeCV())).fit(X, y)
    >>> count_params(model) == model.student_.n_params_ <= 400
    True
    >>> model.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints = {
        "student": [HasMethods(["fit", "predict", "set_params"])],
        "teacher": [HasMethods(["fit", "predict"])],
    }

    def __init__(self, student=None, teacher=None):
        self.student = student
        self.teacher = teacher

    def fit(self, X, y):
        """Fit the student, which fits the teacher on its training rows first.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray
            Images, as both estimators take them.
        y : (n,) array-like
            Targets.

        Returns
        -------
        self
        """
        self._validate_params()
        if "teacher" not in self.student.get_params(deep=False):
            raise ValueError(
                f"DistilledRegressor: the student {type(self.student).__name__} has no "
                "'teacher' parameter, so it cannot learn from a teacher; use e.g. "
                "cvfeat.models.MicroCNNRegressor."
            )
        self.student_ = clone(self.student).set_params(teacher=clone(self.teacher)).fit(X, y)
        self.teacher_ = self.student_.teacher_
        return self

    def predict(self, X):
        """The student's predictions.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray

        Returns
        -------
        y : (n,) ndarray
        """
        check_is_fitted(self)
        return np.asarray(self.student_.predict(X))

    def __sklearn_is_fitted__(self):
        return hasattr(self, "student_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


register_counter(DistilledRegressor, lambda est: count_params(est.student_))
