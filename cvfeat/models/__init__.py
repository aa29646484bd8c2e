"""Micro-CNNs sized to a parameter budget, as scikit-learn estimators (extra ``cnn``).

:class:`MicroCNNRegressor`, :class:`MicroCNNClassifier` and
:class:`HybridCNNRegressor` (classical cvfeat features in the CNN's head) choose
their widths so that the whole model fits ``max_params``, and train with the
practices that matter at this scale (AdamW with a one-cycle schedule, early
stopping on a held-out split, SAM/ASAM, augmentation, label smoothing,
distillation, pruning).

Importing this package does not import PyTorch: it is imported when a model is
fitted, used or unpickled, and its absence gives an ImportError that says
``pip install 'cvfeat[cnn]'``.
"""

from ..budget import register_counter
from .hybrid import HybridCNNRegressor
from .micro_cnn import MicroCNNClassifier, MicroCNNRegressor

__all__ = ["HybridCNNRegressor", "MicroCNNClassifier", "MicroCNNRegressor"]


def _count_micro_cnn(est):
    """Every value the model needs at inference: ``n_params_`` (a hybrid's features included)."""
    return int(est.n_params_)


for _cls in (MicroCNNRegressor, MicroCNNClassifier, HybridCNNRegressor):
    register_counter(_cls, _count_micro_cnn)
del _cls
