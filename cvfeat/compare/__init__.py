"""Which model wins under a parameter budget: cross-validated leaderboard and Pareto front.

:func:`compare_models` fits every candidate (by default classical pipelines and
micro-CNNs sized to the budget, :func:`default_candidates`) on the same folds, counts
each fitted model with :func:`cvfeat.budget.count_params`, optionally tunes each one
inside every training fold over a budget-aware space (``search='grid' | 'halving' |
'optuna'``), and returns a :class:`CompareResult`: the leaderboard ``table``, the
Pareto front of parameters vs error, a plot, Markdown/HTML and ``best_``, the best
candidate within the budget refitted on all the data. ``cvfeat compare DATA_DIR``
(:mod:`cvfeat.compare._report`) runs it on a folder and writes a report with the
exported ONNX model.
"""

from ._candidates import default_candidates
from ._core import compare_models
from ._distill import DistilledRegressor
from ._measure import deployable, learned_macs
from ._metrics import METRICS
from ._result import CompareResult, pareto_mask

__all__ = [
    "METRICS",
    "CompareResult",
    "DistilledRegressor",
    "compare_models",
    "default_candidates",
    "deployable",
    "learned_macs",
    "pareto_mask",
]
