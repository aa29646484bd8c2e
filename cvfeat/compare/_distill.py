"""Distillation as one estimator: fit a teacher on the training images, then the student.

:class:`DistilledRegressor` lets cross-validation (and :func:`cvfeat.compare.compare_models`)
treat "a micro-CNN distilled from a classical pipeline" as one candidate: in every
training fold the teacher is fitted on that fold only, so its knowledge never comes from
the test images.
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

    ``fit`` clones ``teacher`` and fits it on ``(X, y)``, then clones ``student``,
    passes it the fitted teacher as its ``teacher`` parameter (for
    :class:`cvfeat.models.MicroCNNRegressor` the loss becomes
    ``alpha * loss(y) + (1 - alpha) * loss(teacher)``) and fits it. Only the student
    is needed at inference: :func:`cvfeat.budget.count_params` counts the student
    alone, and the student (``student_``) is what gets exported.

    Parameters
    ----------
    student : estimator
        An unfitted regressor with a ``teacher`` parameter, e.g.
        ``MicroCNNRegressor(max_params=3000, alpha=0.5)``.
    teacher : estimator
        An unfitted regressor on the same images (no budget: it is not deployed),
        e.g. a HOG + RBF SVR pipeline.

    Attributes
    ----------
    teacher_ : estimator
        The teacher fitted on the training images.
    student_ : estimator
        The fitted student (its ``teacher`` parameter is ``teacher_``).

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
        """Fit the teacher on ``(X, y)``, then the student with the fitted teacher.

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
        self.teacher_ = clone(self.teacher).fit(X, y)
        self.student_ = clone(self.student).set_params(teacher=self.teacher_).fit(X, y)
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
