"""Metrics of :func:`cvfeat.compare.compare_models`: name -> (function, greater is better)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    max_error,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    median_absolute_error,
    r2_score,
)

__all__ = ["METRICS", "check_scoring"]


def _rmse(y, pred):
    return float(np.sqrt(mean_squared_error(y, pred)))


#: name -> (metric(y_true, y_pred), greater_is_better)
METRICS = {
    "mae": (mean_absolute_error, False),
    "rmse": (_rmse, False),
    "mse": (mean_squared_error, False),
    "medae": (median_absolute_error, False),
    "mape": (mean_absolute_percentage_error, False),
    "max_error": (max_error, False),
    "r2": (r2_score, True),
}


def check_scoring(scoring):
    """Tuple of known metric names; the first one ranks the candidates."""
    names = (scoring,) if isinstance(scoring, str) else tuple(scoring)
    if not names:
        raise ValueError("compare_models: scoring is empty; pass e.g. ('mae', 'rmse', 'r2').")
    for name in names:
        if name not in METRICS:
            raise ValueError(
                f"compare_models: unknown metric {name!r} in scoring; known: "
                f"{', '.join(METRICS)}."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"compare_models: scoring lists a metric twice: {names}.")
    return names
