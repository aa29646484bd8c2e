"""Hybrid regressor: classical cvfeat features concatenated into a micro-CNN's head."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from ._base import _DOC_ATTRS, _DOC_CORE
from .micro_cnn import MicroCNNRegressor

__all__ = ["HybridCNNRegressor"]


class HybridCNNRegressor(MicroCNNRegressor):
    __doc__ = (
        """A micro-CNN whose head also sees classical image features, within one budget.

    ``features`` (a cvfeat transformer such as :class:`cvfeat.features.HOG`, or a
    ``FeatureUnion`` / ``Pipeline`` of them) is fitted on the training images;
    its ``d`` features are standardised (a mean and a scale per feature, learned
    from the training split) and concatenated to the CNN's pooled output before
    the linear head. The budget counts all of it: the transformer's learned
    values (:func:`cvfeat.budget.count_params`, e.g. a SIFT codebook; 0 for HOG),
    the ``2 d`` standardisation constants and the CNN with its wider head; the
    CNN's widths are solved for what is left.

    Features and augmentation: the features are computed once, on the
    un-augmented training images, and each augmented training batch is paired
    with the features of its original images. Computing them on every augmented
    batch would run the classical pipeline (CPU, numpy/OpenCV) on every image of
    every epoch, typically costing more than the CNN's own training step, and
    would move every batch off the GPU and back. Augment only in ways that keep
    the target (and thus what the features say about it) unchanged; the CNN then
    learns to use the features of the unperturbed image, which is exactly what it
    gets at prediction time.
"""
        + _DOC_CORE.format(
            hybrid_budget=", the transformer's learned values and the feature "
            "standardisation",
            loss_doc="""    loss : {'huber', 'mse', 'ldl'}, default='huber'
        As in :class:`MicroCNNRegressor` (``'ldl'``: label distribution learning).
    huber_delta : float, default=1.0
    n_bins : 'auto' or int >= 2, default='auto'
    label_sigma : float > 0, default=0.5""",
            smoothing_doc="""    target_noise : float, default=0.0""",
            teacher_api="with ``predict``",
            teacher_shape="",
            tta_what=" (each view's CNN input is flipped; the classical features are "
            "those of the image as it is, as in training)",
        ).replace(
            "    Parameters\n    ----------\n",
            """    Parameters
    ----------
    features : cvfeat transformer, Pipeline or FeatureUnion
        Maps the images to ``(n, d)`` features; cloned and fitted in ``fit``.
""",
        )
        + _DOC_ATTRS.format(metric="MAE (``mae_*``, target units)",
                            module_out="predictions in the target's units (call it "
                            "as ``module_(x, features)`` with the raw features)")
        + """    features_ : transformer
        The fitted clone of ``features``.
    n_features_extra_ : int
        Number of classical features ``d``.
    n_outputs_ : int

    See Also
    --------
    MicroCNNRegressor : the same network without the classical features.

    Examples
    --------
    >>> from cvfeat.datasets import make_scale
    >>> from cvfeat.features import ColorHistogram
    >>> from cvfeat.models import HybridCNNRegressor
    >>> X, y = make_scale(60, size=16, color=True, random_state=0)
    >>> model = HybridCNNRegressor(ColorHistogram(bins=2), max_params=600, max_epochs=2,
    ...                            random_state=0).fit(X, y)
    >>> model.n_features_extra_, 540 <= model.n_params_ <= 600
    (8, True)
    """
    )

    def __init__(
        self,
        features=None,
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
        self.features = features
        super().__init__(
            max_params=max_params, depth=depth, width=width, block=block, conv=conv,
            head=head, head_units=head_units, coord_channels=coord_channels,
            max_epochs=max_epochs, max_time=max_time,
            batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
            schedule=schedule, validation_fraction=validation_fraction, patience=patience,
            loss=loss, huber_delta=huber_delta, n_bins=n_bins, label_sigma=label_sigma,
            optimizer=optimizer, rho=rho, augment=augment,
            target_noise=target_noise, mixup=mixup, teacher=teacher, alpha=alpha,
            prune_amount=prune_amount, prune_epochs=prune_epochs, tta=tta,
            random_state=random_state,
            device=device, n_jobs=n_jobs, verbose=verbose,
        )

    _parameter_constraints = {
        **MicroCNNRegressor._parameter_constraints,
        "features": "no_validation",
    }

    def _features(self, X, fit):
        where = type(self).__name__
        if fit:
            if self.features is None or not hasattr(self.features, "transform"):
                raise ValueError(
                    f"{where}: features must be a cvfeat transformer (or a Pipeline / "
                    f"FeatureUnion of them) with fit and transform, got {self.features!r}; "
                    "e.g. features=cvfeat.features.HOG(pixels_per_cell=(16, 16))."
                )
            self.features_ = clone(self.features).fit(X)
        F = np.asarray(self.features_.transform(X), dtype=np.float32)
        if F.ndim != 2 or F.shape[0] != len(X):
            raise ValueError(
                f"{where}: features returned shape {F.shape} for {len(X)} images; it must "
                "return one row of features per image (n, d)."
            )
        if fit:
            self.n_features_extra_ = F.shape[1]
        elif F.shape[1] != self.n_features_extra_:
            raise ValueError(
                f"{where}: features returned {F.shape[1]} features but {self.n_features_extra_} "
                "in fit."
            )
        if not np.isfinite(F).all():
            i = int(np.flatnonzero(~np.isfinite(F).all(axis=1))[0])
            raise ValueError(
                f"{where}: the features of image {i} contain NaN or infinity; check the "
                "feature step's settings for these images."
            )
        return F

    def _fixed_params(self):
        from ..budget import count_params

        return count_params(self.features_)

    def _describe_extra(self):
        return (
            f"features: {self.features_!r} -> {self.n_features_extra_} features, "
            f"{self._fixed_params():,} learned values (counted in n_params_)"
        )
