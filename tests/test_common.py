"""Common checks for every public cvfeat estimator.

1. scikit-learn's own ``parametrize_with_checks``. Its checks feed 2-D feature
   tables ``(n_samples, n_features)``; cvfeat's steps take image batches
   ``(n, h, w[, c])`` (or file paths, for ``ImageLoader``) and refuse a 2-D table
   with a clear error, so the checks that need a 2-D table to get past
   validation are listed below as expected failures, each with its reason.
2. The same properties again, on image batches (``test_image_*``): what those
   expected failures would have checked is checked here instead.
"""

from __future__ import annotations

import copy
import importlib.util
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from cvfeat.features import HOG, LBP, ColorHistogram, SIFTBoW
from cvfeat.io import ImageLoader
from cvfeat.preprocessing import ColorConvert, Grayscale, Resize

# -- the public estimators, configured for small test images --------------------------------
FEATURES = [
    HOG(pixels_per_cell=(4, 4)),
    ColorHistogram(bins=4),
    LBP(),
    SIFTBoW(mode="dense", n_words=4, step=4, patch_size=8, random_state=0),
    SIFTBoW(mode="keypoints", n_words=4, random_state=0),
]
IMAGE_STEPS = [Resize(size=(12, 10)), Grayscale(), ColorConvert(space="hsv")]
ALL_ESTIMATORS = FEATURES + IMAGE_STEPS + [ImageLoader()]

# Colour-only steps (a grey image has no hue) get RGB images in the image checks.
NEEDS_RGB = (ColorHistogram, ColorConvert)

_TABLE = (
    "feeds a 2-D feature table (n_samples, n_features); cvfeat steps take image batches "
    "(n, h, w[, c]) and refuse a table with a clear error. Checked on images in this file."
)
_NAN = (
    "feeds NaN/inf in a 2-D table: refused as a 2-D table first; NaN/inf images are refused "
    "with their own message (tests/test_validation.py)."
)
_NOT_ARRAY = (
    "feeds an array-like that is not an ndarray (2-D): the image contract takes ndarrays or "
    "lists of ndarrays, and the data is a table anyway."
)
_EMPTY = (
    "expects sklearn's wording for a (n, 0) table; an empty batch or empty image gets "
    "cvfeat's own message (tests/test_validation.py)."
)
_POSITIVE = (
    "fits negative values in a 2-D table and expects them accepted: the image contract "
    "refuses both the table and negative floats."
)
_ONE = (
    "expects sklearn's wording for one sample / one feature of a 2-D table; a single image "
    "(1, h, w) is a valid batch and works (test_image_single_image_batch)."
)
_OBJECT = "feeds an object-dtype table; refused as a table (unsupported dtypes: test_validation)."

TABLE_CHECKS = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_estimators_dtypes", "check_pipeline_consistency", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
    "check_transformers_unfitted_stateless",
]
OTHER_CHECKS = {
    "check_estimators_nan_inf": _NAN,
    "check_transformer_data_not_an_array": _NOT_ARRAY,
    "check_estimators_empty_data_messages": _EMPTY,
    "check_positive_only_tag_during_fit": _POSITIVE,
    "check_fit2d_1sample": _ONE,
    "check_fit2d_1feature": _ONE,
    "check_dtype_object": _OBJECT,
}


def expected_failed_checks(estimator):
    failures = {name: _TABLE for name in TABLE_CHECKS}
    failures.update(OTHER_CHECKS)
    if isinstance(estimator, ImageLoader):
        # Its tags say it takes strings (file paths), not a 2-D table, so scikit-learn
        # runs only the cloning check on it; tests/test_io.py tests its behaviour.
        return {}
    return failures


@parametrize_with_checks(ALL_ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# -- the same properties on image batches -----------------------------------------------------
def _images(est, n=12, size=(20, 24), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, *size, 3) if isinstance(est, NEEDS_RGB) else (n, *size)
    X = rng.integers(0, 256, shape, dtype=np.uint8)
    # a little structure so keypoint detectors find something
    X[:, 5:12, 6:14] = 255
    X[:, 8:10, 8:11] = 0
    if dtype == np.uint8:
        return X
    return (X / 255).astype(dtype)


def _out(est, X):
    return est.fit(X).transform(X)


def _ids(estimators):
    return [repr(e) for e in estimators]


STEPS = FEATURES + IMAGE_STEPS


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_fit_returns_self_and_keeps_params(est):
    est = clone(est)
    params = copy.deepcopy(est.get_params())
    X = _images(est)
    X_before = X.copy()
    assert est.fit(X) is est
    after = est.get_params()
    assert params.keys() == after.keys()
    for k in params:
        assert repr(params[k]) == repr(after[k]), k
    np.testing.assert_array_equal(X, X_before)  # input untouched


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_fit_idempotent_and_deterministic(est):
    X = _images(est)
    a = _out(clone(est), X)
    b = _out(clone(est), X)
    fitted = clone(est).fit(X)
    fitted.fit(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, fitted.transform(X))


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_pickle_round_trip(est):
    X = _images(est)
    est = clone(est).fit(X)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.transform(X), again.transform(X))


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_readonly_input(est):
    X = _images(est)
    X.setflags(write=False)
    clone(est).fit(X).transform(X)


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_subset_and_order_invariance(est):
    X = _images(est)
    est = clone(est).fit(X)
    full = est.transform(X)
    np.testing.assert_allclose(est.transform(X[:5]), full[:5], rtol=1e-12, atol=0)
    order = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(est.transform(X[order]), full[order], rtol=1e-12, atol=0)


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_single_image_batch(est):
    X = _images(est)
    est = clone(est).fit(X)
    np.testing.assert_allclose(est.transform(X[:1]), est.transform(X)[:1], rtol=1e-12, atol=0)


def _requires_fit(est):
    from sklearn.utils import get_tags

    return get_tags(est).requires_fit


STATEFUL = [e for e in STEPS if _requires_fit(e)]
STATELESS = [e for e in STEPS if not _requires_fit(e)]


@pytest.mark.parametrize("est", STATEFUL, ids=_ids(STATEFUL))
def test_image_unfitted_transform_raises(est):
    with pytest.raises(NotFittedError):
        clone(est).transform(_images(est))


@pytest.mark.parametrize("est", STATELESS, ids=_ids(STATELESS))
def test_image_stateless_transform_without_fit(est):
    X = _images(est)
    np.testing.assert_array_equal(clone(est).transform(X), clone(est).fit(X).transform(X))


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_image_float_dtype_preserved(est, dtype):
    X = _images(est, dtype=dtype)
    assert _out(clone(est), X).dtype == dtype


@pytest.mark.parametrize("est", FEATURES, ids=_ids(FEATURES))
def test_image_feature_names_and_pandas_output(est):
    X = _images(est)
    est = clone(est).fit(X)
    names = est.get_feature_names_out()
    F = est.transform(X)
    assert F.ndim == 2 and F.shape == (len(X), est.n_features_out_) == (len(X), len(names))
    assert len(set(names)) == len(names)
    df = clone(est).set_output(transform="pandas").fit(X).transform(X)
    assert list(df.columns) == list(names)
    np.testing.assert_array_equal(df.to_numpy(), F)


@pytest.mark.parametrize("est", FEATURES, ids=_ids(FEATURES))
def test_image_n_jobs_same_result(est):
    from cvfeat.features import _base

    X = _images(est, n=30)
    old = _base.CHUNK_PIXELS
    try:
        _base.CHUNK_PIXELS = 20 * 24 * 4  # several chunks so threads really share the work
        one = _out(clone(est).set_params(n_jobs=1), X)
        two = _out(clone(est).set_params(n_jobs=2), X)
    finally:
        _base.CHUNK_PIXELS = old
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("est", STEPS, ids=_ids(STEPS))
def test_image_2d_table_refused_clearly(est):
    with pytest.raises(ValueError, match=r"ndim=2.*image step first"):
        clone(est).fit(np.zeros((10, 5)))


def test_every_public_estimator_is_covered():
    import cvfeat.features
    import cvfeat.preprocessing

    covered = {type(e).__name__ for e in ALL_ESTIMATORS}
    public = set(cvfeat.features.__all__) | set(cvfeat.preprocessing.__all__) | {"ImageLoader"}
    assert public <= covered, public - covered


# -- the micro-CNN estimators (need the ``cnn`` extra) ---------------------------------------
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _models():
    if not HAS_TORCH:
        return []
    from cvfeat.models import HybridCNNRegressor, MicroCNNClassifier, MicroCNNRegressor

    fast = dict(max_params=400, max_epochs=1, batch_size=8, random_state=0)
    return [
        MicroCNNRegressor(**fast),
        MicroCNNClassifier(**fast),
        HybridCNNRegressor(ColorHistogram(bins=2, space="rgb"), **{**fast, "max_params": 500}),
        # a time budget too short for one epoch: always one epoch, so fits are repeatable
        MicroCNNRegressor(**fast, max_time=1e-4),
        # a label-distribution head, predictions averaged over the mirror image
        MicroCNNRegressor(**fast, loss="ldl", n_bins=4, tta="hflip"),
    ]


MODELS = _models()

# What scikit-learn's predictor checks feed is a 2-D table too: the models refuse it like
# every image step (fit validates y, then the images; see test_model_* below for the same
# properties on images).
MODEL_TABLE_CHECKS = [
    "check_regressors_train", "check_regressors_train(readonly_memmap=True)",
    "check_regressors_train(readonly_memmap=True,X_dtype=float32)",
    "check_regressor_multioutput", "check_regressors_int", "check_regressors_no_decision_function",
    "check_classifiers_train", "check_classifiers_train(readonly_memmap=True)",
    "check_classifiers_train(readonly_memmap=True,X_dtype=float32)",
    "check_classifiers_classes", "check_supervised_y_2d", "check_estimators_pickle",
    "check_estimators_pickle(readonly_memmap=True)", "check_estimators_overwrite_params",
]
_MODEL_NOT_ARRAY = (
    "feeds a 2-D table as a non-ndarray array-like; images are ndarrays or lists of ndarrays."
)


def expected_failed_model_checks(estimator):
    failures = {name: _TABLE for name in TABLE_CHECKS + MODEL_TABLE_CHECKS}
    failures.update(OTHER_CHECKS)
    failures["check_regressor_data_not_an_array"] = _MODEL_NOT_ARRAY
    failures["check_classifier_data_not_an_array"] = _MODEL_NOT_ARRAY
    return failures


@pytest.mark.skipif(not HAS_TORCH, reason="the micro-CNNs need the cnn extra (torch)")
@parametrize_with_checks(MODELS, expected_failed_checks=expected_failed_model_checks)
def test_sklearn_compatible_model(estimator, check):
    check(estimator)


def _model_data(est, n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    X[:, 4:10, 4:10] = 255
    if type(est).__name__ == "MicroCNNClassifier":
        y = np.array(["a", "b", "c"])[np.arange(n) % 3]
    else:
        y = X.reshape(n, -1).mean(axis=1) / 255
    return X, y


@pytest.mark.parametrize("est", MODELS, ids=_ids(MODELS))
def test_model_fit_returns_self_params_kept_input_untouched(est):
    est = clone(est)
    params = copy.deepcopy(est.get_params())
    X, y = _model_data(est)
    X_before, y_before = X.copy(), y.copy()
    assert est.fit(X, y) is est
    assert {k: repr(v) for k, v in params.items()} == {
        k: repr(v) for k, v in est.get_params().items()
    }
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("est", MODELS, ids=_ids(MODELS))
def test_model_idempotent_pickle_readonly_subsets(est):
    X, y = _model_data(est)
    a = clone(est).fit(X, y)
    fitted_twice = clone(est).fit(X, y).fit(X, y)
    full = a.predict(X)
    np.testing.assert_array_equal(full, fitted_twice.predict(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).predict(X), full)
    ro = X.copy()
    ro.setflags(write=False)
    clone(est).fit(ro, y).predict(ro)
    order = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_array_equal(a.predict(X[order]), full[order])
    np.testing.assert_array_equal(a.predict(X[:1]), full[:1])
    assert a.predict((X / 255).astype(np.float32)).shape == full.shape


@pytest.mark.parametrize("est", MODELS, ids=_ids(MODELS))
def test_model_unfitted_and_table_refused(est):
    X, _ = _model_data(est)
    with pytest.raises(NotFittedError):
        clone(est).predict(X)
    with pytest.raises(ValueError, match=r"ndim=2.*image step first"):
        clone(est).fit(np.zeros((10, 5)), np.arange(10) % 2)


def test_every_model_is_covered():
    if not HAS_TORCH:
        pytest.skip("the micro-CNNs need the cnn extra (torch)")
    import cvfeat.models

    assert set(cvfeat.models.__all__) <= {type(e).__name__ for e in MODELS}
