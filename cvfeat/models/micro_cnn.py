"""Micro-CNN estimators that size themselves to a parameter budget.

:class:`MicroCNNRegressor` and :class:`MicroCNNClassifier` share one core
(:class:`cvfeat.models._base._MicroCNNBase`): image validation, the budget
solver (:mod:`cvfeat.models.architectures`), the training loop
(:mod:`cvfeat.models.training`), batched prediction and pickling. PyTorch is
imported only when a model is fitted, predicted or unpickled.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets

from ._base import (
    _DOC_ATTRS,
    _DOC_CORE,
    _MicroCNNBase,
    _teacher_predict,
)

__all__ = ["MicroCNNClassifier", "MicroCNNRegressor"]


class MicroCNNRegressor(RegressorMixin, _MicroCNNBase):
    __doc__ = (
        """A small CNN for image regression that sizes itself to a parameter budget.

    Images ``(n, h, w[, c])`` in, one or several continuous targets out. The
    widths are solved so that the whole model (weights and normalisation
    constants) uses 90-100 % of ``max_params``; training uses AdamW with a
    one-cycle schedule, early stopping on a held-out split of the training data,
    optional SAM/ASAM, augmentation, label smoothing, distillation and pruning.
    Targets are standardised for training and restored at prediction. Needs the
    ``cnn`` extra (PyTorch).
"""
        + _DOC_CORE.format(
            hybrid_budget="",
            loss_doc="""    loss : {'huber', 'mse', 'ldl'}, default='huber'
        Training loss on the standardised targets. ``'ldl'``: label distribution
        learning (DLDL, Gao et al. 2017), the regression form of label smoothing:
        the output layer gives ``n_bins`` logits per target, trained towards a
        Gaussian around the true value (KL divergence) plus the absolute error of
        their expectation; ``predict`` returns the expectation of the softmax over
        the bin centres, which span the training targets (so predictions stay
        within the training range). The wider output layer counts against
        ``max_params`` (the widths are solved with it). On a UTKFace pilot it beat
        the Huber head in every paired run.
    huber_delta : float, default=1.0
        Huber threshold in standard deviations of the target: small values
        (0.05-0.2) make the loss close to the absolute error, for an MAE metric.
    n_bins : 'auto' or int >= 2, default='auto'
        Bins of ``loss='ldl'`` per target, evenly spaced from the smallest to the
        largest training target. ``'auto'``: 12 (as good as 23 in the pilot, at
        half the head's weights). Ignored by the other losses.
    label_sigma : float > 0, default=0.5
        Standard deviation of ``loss='ldl'``'s Gaussian label distribution, in bin
        widths (0.5: half a bin, the pilot's choice; the width is the training
        range divided by ``n_bins - 1``). Ignored by the other losses.""",
            smoothing_doc="""    target_noise : float, default=0.0
        Regression label smoothing: Gaussian noise of this standard deviation
        (in standard deviations of the target) added to the training targets of
        every batch (0 = off).""",
            teacher_api="with ``predict``",
            teacher_shape="",
            tta_what="",
        )
        + _DOC_ATTRS.format(metric="MAE (``mae_*``, target units)",
                            module_out="predictions in the target's units")
        + """    n_outputs_ : int
        Number of targets.

    See Also
    --------
    MicroCNNClassifier : the same network for class labels.
    cvfeat.models.HybridCNNRegressor : classical features concatenated before the head.
    cvfeat.budget.count_params : counts ``n_params_`` (and whole pipelines).

    Examples
    --------
    >>> from cvfeat.datasets import make_scale
    >>> from cvfeat.models import MicroCNNRegressor
    >>> X, y = make_scale(60, size=16, random_state=0)
    >>> model = MicroCNNRegressor(max_params=500, max_epochs=2, random_state=0).fit(X, y)
    >>> 450 <= model.n_params_ <= 500
    True
    >>> model.predict(X[:3]).shape
    (3,)
    """
    )

    def __init__(
        self,
        max_params=3000,
        *,
        depth="auto",
        width="auto",
        block="plain",
        conv="separable",
        head="gap",
        head_units="auto",
        coord_channels=False,
        max_epochs=60,
        max_time=None,
        batch_size=64,
        learning_rate=0.01,
        weight_decay=1e-4,
        schedule="onecycle",
        validation_fraction=0.1,
        patience=None,
        loss="huber",
        huber_delta=1.0,
        n_bins="auto",
        label_sigma=0.5,
        optimizer="adamw",
        rho="auto",
        augment=None,
        target_noise=0.0,
        mixup=0.0,
        teacher=None,
        alpha=0.5,
        prune_amount=0.0,
        prune_epochs=5,
        tta=None,
        random_state=None,
        device="auto",
        n_jobs=None,
        verbose=0,
    ):
        self.max_params = max_params
        self.depth = depth
        self.width = width
        self.block = block
        self.conv = conv
        self.head = head
        self.head_units = head_units
        self.coord_channels = coord_channels
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.loss = loss
        self.huber_delta = huber_delta
        self.n_bins = n_bins
        self.label_sigma = label_sigma
        self.optimizer = optimizer
        self.rho = rho
        self.augment = augment
        self.target_noise = target_noise
        self.mixup = mixup
        self.teacher = teacher
        self.alpha = alpha
        self.prune_amount = prune_amount
        self.prune_epochs = prune_epochs
        self.tta = tta
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose

    _parameter_constraints = {
        **_MicroCNNBase._parameter_constraints,
        "loss": [StrOptions({"mse", "huber", "ldl"})],
        "huber_delta": [Interval(Real, 0, None, closed="neither")],
        "n_bins": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "label_sigma": [Interval(Real, 0, None, closed="neither")],
        "target_noise": [Interval(Real, 0, None, closed="left")],
    }
    _metric_name = "mae"

    def _bins(self):
        if self.loss != "ldl":
            return 0
        return 12 if self.n_bins == "auto" else int(self.n_bins)

    def _prepare_targets(self, y, n):
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        y2 = y.reshape(n, -1)
        self.n_outputs_ = y2.shape[1]
        return y2, y2.shape[1]

    def _standardize(self, targets, tr):
        mean = targets[tr].mean(axis=0)
        std = targets[tr].std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return ((targets - mean) / std).astype(np.float32), (mean, std)

    def _teacher(self, X, targets, tr, augment, scaler, where):
        teacher = self.teacher
        if teacher is None:
            return None, None
        mean, std = scaler
        k = targets.shape[1]

        def standardise(pred, what):
            pred = np.asarray(pred, dtype=np.float64)
            if pred.ndim == 1:
                pred = pred[:, None]
            if pred.ndim != 2 or pred.shape[1] != k:
                raise ValueError(
                    f"{where}: the teacher's {what} have shape {np.shape(pred)}; expected "
                    f"{k} value(s) per image, like y."
                )
            if not np.isfinite(pred).all():
                raise ValueError(f"{where}: the teacher's {what} contain NaN or infinity.")
            return ((pred - mean) / std).astype(np.float32)

        if not hasattr(teacher, "predict"):
            t = np.asarray(teacher)
            if t.shape[:1] != (len(X),):
                raise ValueError(
                    f"{where}: teacher is an array of {t.shape[0] if t.ndim else 0} predictions "
                    f"but fit got {len(X)} images; pass one teacher prediction per training "
                    "image (or a fitted estimator)."
                )
            if not np.issubdtype(t.dtype, np.number):
                raise TypeError(f"{where}: teacher predictions must be numeric, got {t.dtype}.")
            return standardise(t, "predictions"), None
        teacher = self.teacher_
        if not augment and self.mixup == 0:
            return standardise(_teacher_predict(teacher, X), "predictions"), None

        dtype, grey = X.dtype, X.ndim == 3

        def make(device):
            import torch

            def fn(xb):
                imgs = xb.permute(0, 2, 3, 1).cpu().numpy()
                imgs = imgs[..., 0] if grey else imgs
                imgs = imgs.astype(np.uint8) if dtype == np.uint8 else (imgs / 255).astype(dtype)
                t = standardise(_teacher_predict(teacher, imgs), "predictions")
                return torch.as_tensor(t, device=device)

            return fn

        return None, make

    def _metric(self, module, data, training):
        out = training.outputs(module, data, 256)
        return float(((out - data.y).abs() * module.out_scale).mean())

    def predict(self, X):
        """Predict the targets of new images.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of equal-size (h, w[, c]) ndarrays
            The size and colour mode seen in ``fit``.

        Returns
        -------
        y : (n,) or (n, k) float64 ndarray
        """
        out = self._forward(X)
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MicroCNNClassifier(ClassifierMixin, _MicroCNNBase):
    __doc__ = (
        """A small CNN for image classification that sizes itself to a parameter budget.

    The same network and training practices as :class:`MicroCNNRegressor`, with a
    cross-entropy loss on ``n_classes`` logits. Needs the ``cnn`` extra (PyTorch).
"""
        + _DOC_CORE.format(
            hybrid_budget="",
            loss_doc="",
            smoothing_doc="""    label_smoothing : float in [0, 1), default=0.0
        Label smoothing of the cross-entropy targets (0 = off).""",
            teacher_api="with ``predict_proba`` and the same ``classes_``",
            teacher_shape=", ``(n, n_classes)`` probabilities",
            tta_what=" (class probabilities; ``predict`` takes their argmax)",
        )
        + _DOC_ATTRS.format(metric="accuracy (``accuracy_*``)",
                            module_out="class probabilities ``(n, n_classes)``")
        + """    classes_ : ndarray of shape (n_classes,)

    See Also
    --------
    MicroCNNRegressor : the same network for continuous targets.

    Examples
    --------
    >>> from cvfeat.datasets import make_counting
    >>> from cvfeat.models import MicroCNNClassifier
    >>> X, count = make_counting(60, size=16, max_count=2, random_state=0)
    >>> clf = MicroCNNClassifier(max_params=500, max_epochs=2, random_state=0).fit(X, count)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """
    )

    def __init__(
        self,
        max_params=3000,
        *,
        depth="auto",
        width="auto",
        block="plain",
        conv="separable",
        head="gap",
        head_units="auto",
        coord_channels=False,
        max_epochs=60,
        max_time=None,
        batch_size=64,
        learning_rate=0.01,
        weight_decay=1e-4,
        schedule="onecycle",
        validation_fraction=0.1,
        patience=None,
        optimizer="adamw",
        rho="auto",
        augment=None,
        label_smoothing=0.0,
        mixup=0.0,
        teacher=None,
        alpha=0.5,
        prune_amount=0.0,
        prune_epochs=5,
        tta=None,
        random_state=None,
        device="auto",
        n_jobs=None,
        verbose=0,
    ):
        self.max_params = max_params
        self.depth = depth
        self.width = width
        self.block = block
        self.conv = conv
        self.head = head
        self.head_units = head_units
        self.coord_channels = coord_channels
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.optimizer = optimizer
        self.rho = rho
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        self.teacher = teacher
        self.alpha = alpha
        self.prune_amount = prune_amount
        self.prune_epochs = prune_epochs
        self.tta = tta
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose

    _parameter_constraints = {
        **_MicroCNNBase._parameter_constraints,
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
    }
    _task = "classification"
    _metric_name = "accuracy"

    def _prepare_targets(self, y, n):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            import warnings

            from sklearn.exceptions import DataConversionWarning

            warnings.warn(
                f"{type(self).__name__}: a column-vector y (n, 1) was passed where 1-D labels "
                "(n,) were expected; it is used as y.ravel().",
                DataConversionWarning, stacklevel=3,
            )
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"{type(self).__name__}: y must be 1-D class labels (n,), got shape {y.shape}."
            )
        if len(y) != n:
            raise ValueError(
                f"{type(self).__name__}: got {n} images but {len(y)} labels; pass one label "
                "per image."
            )
        check_classification_targets(y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__}: y has a single class ({self.classes_[0]!r}); a "
                "classifier needs at least two."
            )
        return enc.transform(y).astype(np.int64), len(self.classes_)

    def _stratify(self, targets, n_val):
        counts = np.bincount(targets)
        if counts.min() >= 2 and n_val >= len(counts) and len(targets) - n_val >= len(counts):
            return targets
        return None

    def _teacher(self, X, targets, tr, augment, scaler, where):
        teacher = self.teacher
        if teacher is None:
            return None, None
        k = len(self.classes_)

        def probs(p, what):
            p = np.asarray(p, dtype=np.float64)
            if p.ndim != 2 or p.shape[1] != k:
                raise ValueError(
                    f"{where}: the teacher's {what} have shape {p.shape}; expected "
                    f"(n, {k}) class probabilities in the order of classes_."
                )
            if not np.isfinite(p).all():
                raise ValueError(f"{where}: the teacher's {what} contain NaN or infinity.")
            return p.astype(np.float32)

        if not hasattr(teacher, "predict_proba"):
            t = np.asarray(teacher)
            if t.shape[:1] != (len(X),):
                raise ValueError(
                    f"{where}: teacher is an array for {t.shape[0] if t.ndim else 0} images but "
                    f"fit got {len(X)}; pass (n, n_classes) probabilities or a fitted estimator."
                )
            return probs(t, "probabilities"), None
        teacher = self.teacher_
        t_classes = getattr(teacher, "classes_", None)
        if t_classes is None or not np.array_equal(np.asarray(t_classes), self.classes_):
            raise ValueError(
                f"{where}: the teacher's classes_ {t_classes!r} differ from y's classes "
                f"{self.classes_!r}; fit the teacher on the same labels."
            )
        if not augment and self.mixup == 0:
            return probs(teacher.predict_proba(X), "probabilities"), None
        dtype, grey = X.dtype, X.ndim == 3

        def make(device):
            import torch

            def fn(xb):
                imgs = xb.permute(0, 2, 3, 1).cpu().numpy()
                imgs = imgs[..., 0] if grey else imgs
                imgs = imgs.astype(np.uint8) if dtype == np.uint8 else (imgs / 255).astype(dtype)
                return torch.as_tensor(probs(teacher.predict_proba(imgs), "probabilities"),
                                       device=device)

            return fn

        return None, make

    def _metric(self, module, data, training):
        out = training.outputs(module, data, 256)
        return float((out.argmax(dim=1) == data.y).float().mean())

    def predict_proba(self, X):
        """Class probabilities of new images.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of equal-size (h, w[, c]) ndarrays

        Returns
        -------
        proba : (n, n_classes) float64 ndarray
            Columns in the order of ``classes_``.
        """
        return self._forward(X)

    def predict(self, X):
        """Predict class labels of new images.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of equal-size (h, w[, c]) ndarrays

        Returns
        -------
        labels : (n,) ndarray
        """
        if len(self._views()) > 1:  # the class of the averaged probabilities
            return self.classes_[np.argmax(self._forward(X), axis=1)]
        logits = self._forward(X, standardized=True)
        return self.classes_[np.argmax(logits, axis=1)]
