"""The default candidates of :func:`cvfeat.compare.compare_models`, sized to the budget.

Every family is sized from the budget ``B`` and the image size with the same counts
:func:`cvfeat.budget.count_params` uses (``d`` = number of features):

=====================================  ============================================
pipeline                               learned values
=====================================  ============================================
features + StandardScaler + RidgeCV    ``2d`` (scaler) + ``d + 1`` (linear)
  / LinearSVR
+ StandardScaler + Nystroem(n) +        ``2d + n d + n^2`` + ``n + 1``
  RidgeCV
dense SIFT-BoW(k) + scaler + RidgeCV   ``128 k`` (codebook) + ``2k + k + 1``
features + XGBoost(t trees, depth D)   at most ``t (3 * 2^D - 2) + 1`` (a full tree:
                                       2 per split, 1 per leaf; + base score)
micro-CNN, hybrid, distilled           ``max_params = B`` (the solver fills 90-100 %)
=====================================  ============================================

HOG, LBP and colour histograms learn nothing (0 values); their cell size, grid or bins
set ``d``. For each family the finest setting whose count fits ``B`` is taken (finer
HOG cells, more LBP cells, more Nystroem components, more visual words, more trees).
A family that cannot fit at all is skipped, with the reason.
"""

from __future__ import annotations

import importlib.util

import numpy as np

__all__ = ["default_candidates"]

#: RidgeCV's alphas: tuned by efficient leave-one-out inside each training fold
ALPHAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0,
          3000.0, 10000.0)
#: HOG cell sizes tried, finest first
HOG_CELLS = (4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
LBP_BINS = 10  # uniform codes of P = 8 points: P + 2 bins per cell
DEFAULT_CNN_EPOCHS = 20
FAST_CNN_EPOCHS = 2
TEACHER_SCALE = 15  # the distillation teacher's budget, in student budgets


def hog_dim(h, w, ppc, cpb=2, orientations=9):
    """Length of cvfeat's (= scikit-image's) HOG vector; 0 if the image is too small."""
    cy, cx = h // ppc, w // ppc
    if cy < cpb or cx < cpb:
        return 0
    return (cy - cpb + 1) * (cx - cpb + 1) * cpb * cpb * orientations


def finest_hog(h, w, max_dim, min_cell=4):
    """``(ppc, cpb, d)`` of the finest HOG whose length is at most ``max_dim``, or None."""
    min_cell = max(min_cell, min(h, w) // 16)
    for ppc in HOG_CELLS:
        if ppc < min_cell:
            continue
        for cpb in (2, 1):
            d = hog_dim(h, w, ppc, cpb)
            if 0 < d <= max_dim:
                return ppc, cpb, d
            if d:
                break  # 2x2 blocks exist but are too long: try coarser cells, not 1x1
    return None


def linear_count(d):
    """StandardScaler + linear model on ``d`` features."""
    return 2 * d + d + 1


def nystroem_count(d, n):
    """StandardScaler + Nystroem(n) + linear model on ``d`` features."""
    return 2 * d + n * d + n * n + n + 1


def xgb_count(n_estimators, depth):
    """Upper bound of XGBoost's count: every tree full (2 per split, 1 per leaf), + base."""
    return n_estimators * (3 * 2**depth - 2) + 1


def _max_n(count, budget, lo=1, hi=4096):
    """Largest n in [lo, hi] with count(n) <= budget (count increasing); 0 if none fits,
    None if ``count`` cannot tell (returns None)."""
    first = count(lo)
    if first is None:
        return None
    if first > budget:
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _shape(image_shape):
    shape = tuple(int(v) for v in image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 1:
        raise ValueError(
            f"default_candidates: image_shape must be (h, w) or (h, w, c) with c 1 (grey) or "
            f"3 (RGB); got {image_shape!r}."
        )
    return shape


def default_candidates(budget, image_shape, random_state=0, fast=False, *, cnn_epochs=None,
                       return_skipped=False):
    """Classical pipelines and micro-CNNs sized to fit ``budget``, as ``(name, estimator)``.

    Parameters
    ----------
    budget : int
        Parameter budget of the whole model (:func:`cvfeat.budget.count_params`).
    image_shape : (h, w) or (h, w, c) tuple
        Size of the images (c = 1 grey, 3 RGB; colour histograms only for RGB).
    random_state : int, default=0
        Seed of every candidate that draws random numbers.
    fast : bool, default=False
        Quick versions for a first look and tests: micro-CNNs train for 2 epochs
        (unless ``cnn_epochs``), XGBoost has at most 20 trees, the SIFT codebook
        is smaller. Same families, same budget.
    cnn_epochs : int, optional
        ``max_epochs`` of the micro-CNNs (default 20, or 2 with ``fast``). The
        models keep the best epoch on a 10 % validation split of the training fold.
    return_skipped : bool, default=False
        Also return ``[(family, reason), ...]`` for families that cannot fit.

    Returns
    -------
    candidates : list of (str, estimator)
        Unfitted. Classical: HOG + RidgeCV, HOG + LinearSVR, HSV histogram (RGB) or
        LBP (grey) + Nystroem + RidgeCV, dense SIFT-BoW + RidgeCV, LBP + RidgeCV, a
        FeatureUnion (HOG, LBP, histogram) + RidgeCV and + XGBoost; micro-CNNs: plain
        (standard convolutions), separable, residual; a hybrid (LBP and histogram
        features in the CNN's head) and a micro-CNN distilled from a micro-CNN
        ``TEACHER_SCALE`` (15) times its budget, trained twice as many epochs and
        fitted inside the student's fit on its training rows (with ``compare_models(
        cnn_time=...)`` the teacher gets half of the student's time).
    skipped : list of (str, str)
        Only with ``return_skipped``.

    Notes
    -----
    RidgeCV picks its ``alpha`` among 15 values from 1e-3 to 1e4 (1-3-10 steps) by efficient
    leave-one-out on the training fold (nested, so it needs no ``search``). LinearSVR
    uses the squared epsilon-insensitive loss solved in the primal with
    ``intercept_scaling=1000``: the intercept is regularised like a weight, and the
    large scaling keeps that from biasing targets far from 0 (kelvin, years). Its
    ``C=1e-3`` is fixed (strong regularisation, about RidgeCV's choice on a few hundred
    images of HOG features); ``search`` tunes it.

    Examples
    --------
    >>> from cvfeat.budget import count_params
    >>> from cvfeat.compare import default_candidates
    >>> cands = default_candidates(3000, (64, 64, 3))
    >>> [name for name, _ in cands][:2]
    ['HOG 10px + RidgeCV', 'HOG 10px + LinearSVR']
    """
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVR

    from ..features import HOG, LBP, ColorHistogram, SIFTBoW

    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"default_candidates: budget must be a positive int; got {budget!r}.")
    budget = int(budget)
    h, w, c = _shape(image_shape)
    rgb = c == 3
    rs = int(random_state)
    epochs = cnn_epochs if cnn_epochs is not None else (
        FAST_CNN_EPOCHS if fast else DEFAULT_CNN_EPOCHS)
    cands, skipped = [], []
    side = min(h, w)

    def ridge():
        return RidgeCV(alphas=ALPHAS)

    def hog(ppc, cpb):
        return HOG(orientations=9, pixels_per_cell=(ppc, ppc), cells_per_block=(cpb, cpb))

    # -- HOG alone: finest cells whose scaler + linear head fit
    best = finest_hog(h, w, (budget - 1) // 3)
    if best is None:
        skipped.append(("HOG", f"even the coarsest HOG needs more than {budget:,} parameters "
                               f"with a linear head at {h}x{w}"))
    else:
        ppc, cpb, d = best
        cands.append((f"HOG {ppc}px + RidgeCV", make_pipeline(hog(ppc, cpb), StandardScaler(),
                                                              ridge())))
        cands.append((f"HOG {ppc}px + LinearSVR", make_pipeline(
            hog(ppc, cpb), StandardScaler(),
            LinearSVR(C=1e-3, loss="squared_epsilon_insensitive", dual=False,
                      intercept_scaling=1000.0, max_iter=5000, random_state=rs))))

    # -- kernel head on a short feature vector: HSV histogram (RGB) or LBP 2x2 (grey)
    def nystroem_head(d):
        n = _max_n(lambda k: nystroem_count(d, k), budget, hi=512)
        return n

    if rgb:
        # the richest histogram (>= 4 bins a channel) that leaves >= 24 components; then
        # 4 bins with >= 8 components; then the most bins with >= 4 components
        sizes = {bins: nystroem_head(bins**3) for bins in (8, 6, 4, 3, 2)}
        choice = next(((b, sizes[b]) for b in (8, 6, 4) if sizes[b] >= 24), None)
        if choice is None and sizes[4] >= 8:
            choice = (4, sizes[4])
        choice = choice or next(((b, sizes[b]) for b in (4, 3, 2) if sizes[b] >= 4), None)
        if choice is None:
            skipped.append(("HSV histogram + Nystroem", f"fewer than 4 components fit "
                                                        f"{budget:,} parameters"))
        else:
            bins, n = choice
            cands.append((f"HSV hist {bins}^3 + Nystroem({n}) + RidgeCV", make_pipeline(
                ColorHistogram(bins=bins, space="hsv"), StandardScaler(),
                Nystroem(n_components=n, random_state=rs), ridge())))
    else:
        n = nystroem_head(4 * LBP_BINS)
        if n < 4:
            skipped.append(("LBP + Nystroem", f"fewer than 4 components fit {budget:,} "
                                              "parameters"))
        else:
            cands.append((f"LBP 2x2 + Nystroem({n}) + RidgeCV", make_pipeline(
                LBP(P=8, R=1, grid=(2, 2)), StandardScaler(),
                Nystroem(n_components=n, random_state=rs), ridge())))

    # -- dense SIFT bag of words: as many words as fit
    patch = 16 if side >= 16 else 8
    k = min(128, (budget - 1) // 131)
    if side < 8:
        skipped.append(("SIFT-BoW", f"images of {h}x{w} are smaller than an 8-pixel patch"))
    elif k < 4:
        skipped.append(("SIFT-BoW", f"fewer than 4 visual words fit {budget:,} parameters"))
    else:
        cands.append((f"SIFT-BoW({k}) + RidgeCV", make_pipeline(
            SIFTBoW(mode="dense", n_words=k, step=patch // 2, patch_size=patch,
                    max_descriptors=5000 if fast else 100_000, random_state=rs),
            StandardScaler(), ridge())))

    # -- LBP alone: the most cells (at least 12 pixels a side) that fit
    g = max(1, min(side // 12, 8))
    while g > 1 and linear_count(g * g * LBP_BINS) > budget:
        g -= 1
    if linear_count(g * g * LBP_BINS) > budget:
        skipped.append(("LBP", f"one LBP histogram and a linear head need "
                               f"{linear_count(LBP_BINS)} > {budget:,} parameters"))
    else:
        cands.append((f"LBP {g}x{g} + RidgeCV", make_pipeline(
            LBP(P=8, R=1, grid=(g, g)), StandardScaler(), ridge())))

    # -- FeatureUnion of the three (two for grey images)
    def union(hog_step):
        parts = [("lbp", LBP(P=8, R=1, grid=(2, 2)))]
        if hog_step is not None:
            parts.insert(0, ("hog", hog_step))
        if rgb:
            parts.append(("hist", ColorHistogram(bins=4, space="hsv")))
        return FeatureUnion(parts)

    d_rest = 4 * LBP_BINS + (64 if rgb else 0)
    label_rest = "LBP+hist" if rgb else "LBP"
    best = finest_hog(h, w, (budget - 1) // 3 - d_rest)
    if best is None:
        skipped.append((f"HOG+{label_rest} + RidgeCV", f"does not fit {budget:,} parameters"))
    else:
        ppc, cpb, d = best
        cands.append((f"HOG {ppc}px+{label_rest} + RidgeCV", make_pipeline(
            union(hog(ppc, cpb)), StandardScaler(), ridge())))

    # -- FeatureUnion into small XGBoost (features cost nothing, no scaler for trees)
    depth = 3 if budget < 5000 else 4
    trees = min(20 if fast else 400, (budget - 1) // (3 * 2**depth - 2))
    while trees < 10 and depth > 1:
        depth -= 1
        trees = min(20 if fast else 400, (budget - 1) // (3 * 2**depth - 2))
    if trees < 5:
        skipped.append(("XGBoost", f"fewer than 5 trees fit {budget:,} parameters"))
    else:
        ppc = max(4, side // 4)
        cpb = 2 if hog_dim(h, w, ppc, 2) else 1
        hog_step = hog(ppc, cpb) if hog_dim(h, w, ppc, cpb) else None
        from xgboost import XGBRegressor

        lr = float(np.clip(5.0 / trees, 0.05, 0.3))
        name = f"HOG {ppc}px+{label_rest}" if hog_step is not None else label_rest
        cands.append((f"{name} + XGBoost({trees}x{depth})", make_pipeline(
            union(hog_step), XGBRegressor(
                n_estimators=trees, max_depth=depth, learning_rate=round(lr, 3),
                subsample=0.8, random_state=rs, n_jobs=1))))

    # -- micro-CNNs, hybrid, distilled
    if importlib.util.find_spec("torch") is None:
        skipped.append(("micro-CNNs", "PyTorch is not installed: pip install 'cvfeat[cnn]'"))
        return (cands, skipped) if return_skipped else cands
    from ..models import HybridCNNRegressor, MicroCNNRegressor

    cnn = dict(max_params=budget, max_epochs=int(epochs), augment=None, random_state=rs)
    cands.append(("CNN plain (standard conv)",
                  MicroCNNRegressor(block="plain", conv="standard", **cnn)))
    cands.append(("CNN separable", MicroCNNRegressor(block="plain", conv="separable", **cnn)))
    cands.append(("CNN residual", MicroCNNRegressor(block="residual", conv="separable", **cnn)))

    hybrid_parts = [("lbp", LBP(P=8, R=1, grid=(2, 2)))]
    if rgb:
        hybrid_parts.append(("hist", ColorHistogram(bins=3, space="hsv")))
    d_hybrid = 4 * LBP_BINS + (27 if rgb else 0)
    if 3 * d_hybrid > budget // 2:
        skipped.append(("hybrid CNN", f"its {d_hybrid} features would take more than half of "
                                      f"{budget:,} parameters"))
    else:
        cands.append((f"hybrid CNN + {label_rest}", HybridCNNRegressor(
            features=FeatureUnion(hybrid_parts), conv="separable", **cnn)))

    # distillation from a larger network, fitted inside the student's fit on its
    # training rows: TEACHER_SCALE x the budget, trained twice as many epochs
    teacher = MicroCNNRegressor(max_params=TEACHER_SCALE * budget, max_epochs=2 * int(epochs),
                                block="plain", conv="separable", augment=None,
                                random_state=rs + 1)
    cands.append(("CNN distilled from a larger CNN", MicroCNNRegressor(
        block="plain", conv="separable", alpha=0.5, teacher=teacher, **cnn)))
    return (cands, skipped) if return_skipped else cands
