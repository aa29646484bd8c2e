"""count_params / size_bytes / describe: every expected count is derived here from the
fitted attributes (shapes, node counts, text dumps), never taken from cvfeat.budget."""

import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.feature_selection import SelectKBest, f_regression
from sklearn.kernel_approximation import Nystroem
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import (
    ElasticNet,
    HuberRegressor,
    Lasso,
    LinearRegression,
    LogisticRegression,
    RANSACRegressor,
    Ridge,
    SGDRegressor,
)
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV
from sklearn.multioutput import MultiOutputRegressor
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import SVC, SVR, LinearSVR, NuSVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeRegressor

from cvfeat import budget
from cvfeat.budget import count_params, describe, register_counter, size_bytes
from cvfeat.features import HOG

RNG = np.random.default_rng(0)
N, D = 40, 5
X = RNG.random((N, D))
y = X @ RNG.random(D) + 0.1 * RNG.random(N)
Y2 = np.c_[y, X[:, 0] - y]
y3 = RNG.integers(0, 3, N)
y2 = RNG.integers(0, 2, N)


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch):
    monkeypatch.setattr(budget, "_REGISTERED", {})


# -- transformers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "est, expected",
    [
        (StandardScaler(), 2 * D),
        (StandardScaler(with_mean=False), D),
        (StandardScaler(with_std=False), D),
        (StandardScaler(with_mean=False, with_std=False), 0),
        (MinMaxScaler(), 2 * D),
        (MaxAbsScaler(), D),
        (RobustScaler(), 2 * D),
        (RobustScaler(with_centering=False), D),
        (Normalizer(), 0),
        (FunctionTransformer(np.log1p, np.expm1), 0),
        (PCA(n_components=3), 3 * D + D),
        (PCA(n_components=3, whiten=True), 3 * D + D + 3),
        (Nystroem(n_components=7, random_state=0), 7 * D + 7 * 7),
    ],
    ids=lambda v: repr(v) if isinstance(v, BaseEstimator) else "",
)
def test_transformers(est, expected):
    assert count_params(est.fit(X)) == expected


# -- linear models ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "est",
    [
        Ridge(),
        Lasso(alpha=0.01),
        ElasticNet(alpha=0.01),
        LinearRegression(),
        SGDRegressor(random_state=0),
        LinearSVR(loss="squared_epsilon_insensitive", dual=False),
        HuberRegressor(),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_linear_regressors(est, fit_intercept):
    est.set_params(fit_intercept=fit_intercept).fit(X, y)
    assert count_params(est) == D + int(fit_intercept)


def test_linear_multitarget_and_logistic():
    assert count_params(Ridge().fit(X, Y2)) == 2 * D + 2
    assert count_params(LogisticRegression().fit(X, y3)) == 3 * D + 3
    assert count_params(LogisticRegression().fit(X, y2)) == D + 1
    assert count_params(RANSACRegressor(random_state=0).fit(X, y)) == D + 1


# -- kernel SVMs and neighbours -----------------------------------------------------------


@pytest.mark.parametrize("est", [SVR(C=10), SVR(kernel="linear"), NuSVR()], ids=repr)
def test_svr(est):
    est.fit(X, y)
    n_sv, d = est.support_vectors_.shape
    assert d == D and 0 < n_sv <= N
    assert count_params(est) == n_sv * D + n_sv + 1  # the n_SV x n_features + n_SV + 1


def test_svc_multiclass():
    est = SVC().fit(X, y3)
    n_sv = est.support_vectors_.shape[0]
    k = 3  # one-vs-one: (k-1) dual coefficients per SV, one intercept per pair of classes
    assert count_params(est) == n_sv * D + (k - 1) * n_sv + k * (k - 1) // 2


def test_neighbors_store_training_set():
    assert count_params(KNeighborsRegressor().fit(X, y)) == N * D + N
    assert count_params(KNeighborsRegressor().fit(X, Y2)) == N * D + 2 * N
    assert count_params(KNeighborsClassifier().fit(X, y3)) == N * D + N


# -- trees --------------------------------------------------------------------------------


def _sk_tree(est, per_leaf):
    leaves = est.get_n_leaves()
    return 2 * (est.tree_.node_count - leaves) + per_leaf * leaves


def test_decision_trees():
    reg = DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y)
    assert reg.get_n_leaves() > 2
    assert count_params(reg) == _sk_tree(reg, 1)
    multi = DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, Y2)
    assert count_params(multi) == _sk_tree(multi, Y2.shape[1])
    clf = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y3)
    assert count_params(clf) == _sk_tree(clf, clf.tree_.value.shape[2])
    clf2 = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, np.c_[y3, y2])
    assert count_params(clf2) == _sk_tree(clf2, 3 + 2)
    extra = ExtraTreeRegressor(max_depth=4, random_state=0).fit(X, y)
    assert count_params(extra) == _sk_tree(extra, 1)


@pytest.mark.parametrize(
    "est, target, per_leaf",
    [
        (RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0), y, 1),
        (ExtraTreesRegressor(n_estimators=3, max_depth=3, random_state=0), y, 1),
        (RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0), y3, 3),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseEstimator) else "",
)
def test_forests(est, target, per_leaf):
    est.fit(X, target)
    assert count_params(est) == sum(_sk_tree(t, per_leaf) for t in est.estimators_)


def test_gradient_boosting():
    reg = GradientBoostingRegressor(n_estimators=4, max_depth=2, random_state=0).fit(X, y)
    trees = sum(_sk_tree(t, 1) for t in reg.estimators_[:, 0])
    assert count_params(reg) == trees + 1  # + the initial constant
    zero = GradientBoostingRegressor(n_estimators=3, init="zero", random_state=0).fit(X, y)
    assert count_params(zero) == sum(_sk_tree(t, 1) for t in zero.estimators_[:, 0])
    clf = GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y3)
    assert clf.estimators_.shape == (2, 3)
    trees = sum(_sk_tree(t, 1) for t in clf.estimators_.ravel())
    assert count_params(clf) == trees + 3  # + the 3 class priors


@pytest.mark.parametrize(
    "est, target, per_iteration",
    [
        (HistGradientBoostingRegressor(max_iter=4, max_leaf_nodes=5), y, 1),
        (HistGradientBoostingClassifier(max_iter=2, max_leaf_nodes=4), y3, 3),
    ],
    ids=["reg", "clf"],
)
def test_hist_gradient_boosting(est, target, per_iteration):
    est.fit(X, target)
    assert est.n_trees_per_iteration_ == per_iteration
    expected = per_iteration  # baseline
    for iteration in est._predictors:
        for tree in iteration:
            leaves = tree.get_n_leaf_nodes()
            expected += 2 * (len(tree.nodes) - leaves) + leaves
    assert expected > per_iteration
    assert count_params(est) == expected


# -- XGBoost: counted from the text dump here, from the JSON model in cvfeat.budget -------

def _dump_count(dumps):
    n = 0
    for text in dumps:
        for line in text.splitlines():
            if "leaf=" in line:
                value = line.split("leaf=")[1]
                n += value.count(",") + 1 if value.startswith("[") else 1
            elif re.search(r"\[f\d+<", line):
                n += 2
    return n


@pytest.mark.parametrize(
    "params, target",
    [
        (dict(), y),
        (dict(booster="dart"), y),
        (dict(multi_strategy="multi_output_tree"), Y2),
        (dict(), Y2),
    ],
    ids=["gbtree", "dart", "multi_output_tree", "one_tree_per_target"],
)
def test_xgb_regressor(params, target):
    xgb = pytest.importorskip("xgboost")
    est = xgb.XGBRegressor(n_estimators=3, max_depth=2, n_jobs=1, **params).fit(X, target)
    dumps = est.get_booster().get_dump()
    expected = _dump_count(dumps) + np.size(est.intercept_)
    if params.get("booster") == "dart":
        expected += len(dumps)  # one weight per tree
    assert count_params(est) == expected


def test_xgb_classifier_and_gblinear():
    xgb = pytest.importorskip("xgboost")
    clf = xgb.XGBClassifier(n_estimators=2, max_depth=2, n_jobs=1).fit(X, y3)
    dumps = clf.get_booster().get_dump()
    assert len(dumps) == 2 * 3
    assert count_params(clf) == _dump_count(dumps) + 3
    lin = xgb.XGBRegressor(n_estimators=3, booster="gblinear", n_jobs=1).fit(X, y)
    assert count_params(lin) == D + 1


def test_xgb_early_stopping_counts_trees_used_by_predict():
    xgb = pytest.importorskip("xgboost")
    est = xgb.XGBRegressor(n_estimators=30, max_depth=2, early_stopping_rounds=2, n_jobs=1)
    est.fit(X[:30], y[:30], eval_set=[(X[30:], Y2[30:, 1])], verbose=False)
    dumps = est.get_booster().get_dump()
    assert est.best_iteration + 1 < len(dumps)
    expected = _dump_count(dumps[: est.best_iteration + 1]) + 1
    assert count_params(est) == expected


# -- meta-estimators ----------------------------------------------------------------------


def test_nested_pipeline_and_union():
    pipe = make_pipeline(
        make_union(PCA(n_components=2), make_pipeline(StandardScaler(), "passthrough")),
        Pipeline([("skip", None), ("ridge", Ridge())]),
    ).fit(X, y)
    pca, scaler = 2 * D + D, 2 * D
    ridge = (2 + D) + 1
    assert count_params(pipe) == pca + scaler + ridge

    union = make_union(MinMaxScaler(), "drop", "passthrough").fit(X)
    assert count_params(union) == 2 * D


def test_transformed_target_regressor():
    ttr = TransformedTargetRegressor(regressor=Ridge(), transformer=StandardScaler()).fit(X, y)
    assert count_params(ttr) == D + 1 + 2  # + target mean and scale
    logged = TransformedTargetRegressor(
        regressor=make_pipeline(MinMaxScaler(), Ridge()), func=np.log1p, inverse_func=np.expm1
    ).fit(X, y)
    assert count_params(logged) == 2 * D + D + 1


@pytest.mark.parametrize(
    "search",
    [
        lambda p: GridSearchCV(p, {"ridge__alpha": [0.1, 1.0]}, cv=2),
        lambda p: RandomizedSearchCV(p, {"pca__n_components": [2, 3]}, n_iter=2, cv=2,
                                     random_state=0),
        lambda p: HalvingGridSearchCV(p, {"pca__n_components": [2, 3]}, cv=2, min_resources=20,
                                      random_state=0),
    ],
    ids=["grid", "randomized", "halving"],
)
def test_searches_count_best_estimator(search):
    est = search(make_pipeline(PCA(n_components=2), Ridge())).fit(X, y)
    k = est.best_estimator_.named_steps["pca"].n_components
    assert count_params(est) == k * D + D + k + 1


def test_multioutput():
    est = MultiOutputRegressor(SVR()).fit(X, Y2)
    expected = sum(e.support_vectors_.shape[0] * (D + 1) + 1 for e in est.estimators_)
    assert count_params(est) == expected
    assert count_params(DummyRegressor().fit(X, Y2)) == 2


# -- images through real cvfeat steps -------------------------------------------------------


def _images(n=8, shape=(32, 32)):
    return np.random.default_rng(1).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_image_pipeline_with_hog():
    imgs = _images()
    target = imgs.reshape(len(imgs), -1).mean(axis=1)
    pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), StandardScaler(), SVR()).fit(imgs, target)
    n_feat = HOG(pixels_per_cell=(8, 8)).fit_transform(imgs).shape[1]
    n_sv = pipe[-1].support_vectors_.shape[0]
    assert count_params(pipe) == 2 * n_feat + n_sv * (n_feat + 1) + 1

    table = describe(pipe)
    assert list(table["step"]) == ["hog", "standardscaler", "svr", "total"]
    assert list(table["params"]) == [0, 2 * n_feat, n_sv * (n_feat + 1) + 1, count_params(pipe)]


def test_image_union_and_preprocessing():
    pre = pytest.importorskip("cvfeat.preprocessing")
    imgs = _images(shape=(40, 36))
    target = imgs.reshape(len(imgs), -1).std(axis=1)
    pipe = make_pipeline(
        pre.Resize(size=(32, 32)),
        make_union(HOG(orientations=4), HOG(pixels_per_cell=(16, 16))),
        PCA(n_components=3),
        Ridge(),
    ).fit(imgs, target)
    d = pipe[:2].transform(imgs).shape[1]
    assert count_params(pipe) == 3 * d + d + 3 + 1
    table = describe(pipe)
    assert list(table["step"]) == [
        "resize", "featureunion/hog-1", "featureunion/hog-2", "pca", "ridge", "total",
    ]
    assert list(table["class"][:3]) == ["Resize", "HOG", "HOG"]


@pytest.mark.parametrize("encoding", ["hard", "soft"])
def test_sift_bow_counts_codebook(encoding):
    from cvfeat.features import SIFTBoW

    est = SIFTBoW(n_words=5, encoding=encoding, random_state=0).fit(_images(n=4))
    k, d = est.codebook_.shape
    assert (k, d) == (5, 128)
    assert count_params(est) == k * d + (encoding == "soft")  # + beta_ for soft encoding


def test_stateless_image_steps_count_zero():
    from cvfeat.features import LBP, ColorHistogram
    from cvfeat.preprocessing import ColorConvert, Grayscale

    rgb = np.random.default_rng(2).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    target = rgb.reshape(6, -1).mean(axis=1)
    union = make_union(
        ColorHistogram(bins=2),
        make_pipeline(Grayscale(), LBP()),
        make_pipeline(ColorConvert("gray"), HOG(orientations=3)),
    )
    pipe = make_pipeline(union, Ridge()).fit(rgb, target)
    d = union.transform(rgb).shape[1]
    assert count_params(pipe) == d + 1
    assert list(describe(pipe)["params"])[:-2] == [0] * 5


# -- errors ---------------------------------------------------------------------------------


def test_unknown_step_is_named_with_its_location():
    pipe = make_pipeline(StandardScaler(), FunctionTransformer(lambda v: v * 2), Ridge())
    pipe.fit(X, y)
    with pytest.raises(TypeError, match=r"steps\[1\] FunctionTransformer .*cannot count"):
        count_params(pipe)
    nested = make_pipeline(make_union(StandardScaler(), SelectKBest(f_regression, k=2)), Ridge())
    nested.fit(X, y)
    with pytest.raises(
        TypeError, match=r"steps\[0\]\.transformer_list\[1\] SelectKBest .*supported: .*Pipeline"
    ):
        count_params(nested)
    with pytest.raises(TypeError, match=r"^KernelRidge: cvfeat cannot count .*register_counter"):
        count_params(KernelRidge().fit(X, y))
    # coef_ and intercept_ are not enough: PLS also needs its x mean and scale.
    with pytest.raises(TypeError, match="PLSRegression: cvfeat cannot count"):
        count_params(PLSRegression(n_components=2).fit(X, y))
    ttr = TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1,
                                     check_inverse=False)
    ttr.set_params(func=lambda v: v + 1, inverse_func=lambda v: v - 1).fit(X, y)
    with pytest.raises(TypeError, match=r"transformer_ FunctionTransformer .*arbitrary code"):
        describe(ttr)


def test_unfitted_estimators_raise():
    with pytest.raises(NotFittedError, match="SVR is not fitted yet: fit it"):
        count_params(SVR())
    with pytest.raises(NotFittedError, match="Pipeline is not fitted yet"):
        count_params(make_pipeline(StandardScaler(), Ridge()))
    # A pipeline assembled around an already fitted final step: each step is checked.
    assembled = make_pipeline(HOG(), Ridge().fit(X, y))
    with pytest.raises(NotFittedError, match=r"steps\[0\] HOG \(step 'hog'\) is not fitted"):
        count_params(assembled)
    search = GridSearchCV(Ridge(), {"alpha": [1.0, 2.0]}, cv=2, refit=False).fit(X, y)
    with pytest.raises(NotFittedError, match="no best_estimator_.*refit=True"):
        count_params(search)


# -- register_counter -----------------------------------------------------------------------


class _Offset(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.offset_ = np.mean(X, axis=0)
        return self

    def transform(self, X):
        return X - self.offset_


def test_register_counter():
    pipe = make_pipeline(_Offset(), Ridge()).fit(X, y)
    with pytest.raises(TypeError, match=r"steps\[0\] _Offset"):
        count_params(pipe)
    register_counter(_Offset, lambda est: est.offset_.size)
    assert count_params(pipe) == D + D + 1

    class _Sub(_Offset):  # subclasses use the parent's counter
        pass

    assert count_params(_Sub().fit(X)) == D
    register_counter(StandardScaler, lambda est: 1)  # registered counters take precedence
    assert count_params(StandardScaler().fit(X)) == 1

    register_counter(_Offset, lambda est: 1.5)
    with pytest.raises(TypeError, match="returned 1.5; a counter must return a non-negative int"):
        count_params(pipe)
    with pytest.raises(TypeError, match="cls must be a class"):
        register_counter(_Offset(), len)
    with pytest.raises(TypeError, match="func must be callable"):
        register_counter(_Offset, 3)
    with pytest.raises(NotFittedError, match="_Offset is not fitted yet"):
        count_params(_Offset())


# -- size_bytes and describe ----------------------------------------------------------------


def test_size_bytes():
    ridge = Ridge().fit(X, y)
    assert size_bytes(ridge) == 4 * (D + 1)
    assert size_bytes(ridge, "int8") == D + 1
    assert size_bytes(ridge, np.float16) == 2 * (D + 1)
    with pytest.raises(ValueError, match="numeric .* got <U5"):
        size_bytes(ridge, "U5")
    with pytest.raises(TypeError, match="'nope' is not a numpy dtype"):
        size_bytes(ridge, "nope")


def test_describe_table():
    pipe = make_pipeline(
        make_union(StandardScaler(), make_pipeline(MinMaxScaler(), PCA(n_components=2))),
        "passthrough",
        SVR(),
    ).fit(X, y)
    table = describe(pipe)
    assert list(table.columns) == ["step", "class", "params", "bytes_fp32"]
    n_sv = pipe[-1].support_vectors_.shape[0]
    d_svr = D + 2
    assert table.to_dict("list") == {
        "step": [
            "featureunion/standardscaler",
            "featureunion/pipeline/minmaxscaler",
            "featureunion/pipeline/pca",
            "passthrough",
            "svr",
            "total",
        ],
        "class": ["StandardScaler", "MinMaxScaler", "PCA", "passthrough", "SVR", ""],
        "params": [2 * D, 2 * D, 2 * D + D, 0, n_sv * (d_svr + 1) + 1, table["params"].iloc[-1]],
        "bytes_fp32": [4 * p for p in table["params"]],
    }
    assert table["params"].iloc[-1] == table["params"].iloc[:-1].sum() == count_params(pipe)
    text = str(table)
    assert "featureunion/pipeline/pca" in text and "total" in text

    single = describe(Ridge().fit(X, y))
    assert list(single["step"]) == ["ridge", "total"]
    assert list(single["params"]) == [D + 1, D + 1]
