"""Every joblib back-end gives the serial result.

Feature steps, file reading, a FeatureUnion, GridSearchCV and compare_models run under
``joblib.parallel_config(backend=...)`` for the thread, loky and multiprocessing
back-ends and for Dask on a real ``distributed.LocalCluster`` (a scheduler and two
worker processes): each result must equal the one computed serially. The batches span
several chunks, so several tasks really run, in other processes where the back-end has
them.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from joblib import parallel_config
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.preprocessing import StandardScaler

from cvfeat.compare import compare_models, default_candidates
from cvfeat.datasets import load_task
from cvfeat.features import HOG, LBP, ColorHistogram, SIFTBoW
from cvfeat.features._base import chunk_ranges
from cvfeat.io import FILES_PER_TASK, ImageLoader, ImageReadError, read_images

BACKENDS = ["threading", "loky", "multiprocessing", "dask"]
N_JOBS = [None, 1, 2, -1]


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of a joblib back-end whose services (a Dask client) are running."""
    if request.param == "dask":
        request.getfixturevalue("dask_client")
    return request.param


def _set_n_jobs(est, n_jobs):
    """``n_jobs`` on the estimator and on every nested step that has one."""
    return est.set_params(**{k: n_jobs for k in est.get_params() if k.endswith("n_jobs")})


# -- feature steps -------------------------------------------------------------------------


def _batch(kind):
    """140 images 64x64 (three chunks: 64 + 64 + 12), or a ragged list of 48-96 px images."""
    color = kind.endswith("rgb")
    X, _ = load_task("counting", n_samples=140, size=64, color=color, random_state=3)
    if kind.startswith("ragged"):
        sizes = np.random.default_rng(4).integers(48, 97, (len(X), 2))
        X = [cv2.resize(x, (int(w), int(h)), interpolation=cv2.INTER_AREA)
             for x, (h, w) in zip(X, sizes, strict=True)]
    return X


STEPS = {
    "HOG": (lambda grey: HOG(), False),
    "ColorHistogram": (lambda grey: ColorHistogram(space="rgb" if grey else "hsv"), True),
    "LBP": (lambda grey: LBP(grid=(2, 2)), True),
    "SIFTBoW dense": (lambda grey: SIFTBoW(mode="dense", n_words=8, max_descriptors=1000,
                                           random_state=0), True),
    "SIFTBoW keypoint": (lambda grey: SIFTBoW(mode="keypoints", n_words=16, random_state=0),
                         True),
    "FeatureUnion": (lambda grey: FeatureUnion([("hog", HOG()), ("lbp", LBP(grid=(2, 2)))]),
                     False),
}
CASES = [(step, kind) for step, (_, ragged) in STEPS.items()
         for kind in ["grey", "rgb"] + (["ragged-grey", "ragged-rgb"] if ragged else [])]
_SERIAL = {}


def _serial(step, kind):
    """The serial result, outside any joblib context (computed once per case)."""
    if (step, kind) not in _SERIAL:
        X = _batch(kind)
        est = STEPS[step][0](kind.endswith("grey"))
        _SERIAL[step, kind] = X, est, est.fit_transform(X)
    return _SERIAL[step, kind]


@pytest.mark.parametrize("n_jobs", N_JOBS)
@pytest.mark.parametrize(("step", "kind"), CASES)
def test_features_equal_the_serial_result_on_every_backend(step, kind, n_jobs, backend):
    X, est, expected = _serial(step, kind)
    assert len(chunk_ranges(X)) >= 3  # several tasks, whatever the back-end
    est = _set_n_jobs(clone(est), n_jobs)
    with parallel_config(backend=backend):
        got = est.fit_transform(X)
        got_fitted_before = est.transform(X)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_fitted_before, expected)


def test_chunks_of_a_ragged_list_hold_several_images():
    X = [np.zeros((h, 100), np.uint8) for h in [100] * 30 + [3000, 5, 5]]
    ranges = chunk_ranges(X)
    assert ranges[0] == (0, 27)  # 27 x 10,000 pixels first reach 2 ** 18
    assert ranges[1:] == [(27, 31), (31, 33)]  # the big image closes its chunk
    assert chunk_ranges([np.zeros((8, 8), np.uint8)]) == [(0, 1)]


def test_float32_images_on_process_backends(backend):
    """float32 batches large enough to be memory-mapped (read-only) by loky."""
    X = _batch("rgb").astype(np.float32) / np.float32(255)
    expected = HOG().fit_transform(X)
    with parallel_config(backend=backend):
        got = HOG(n_jobs=2).fit_transform(X)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


# -- reading files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """70 PNG files of different sizes (3 tasks of at most FILES_PER_TASK files)."""
    folder = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(5)
    paths = []
    for i in range(70):
        h, w = rng.integers(20, 60, 2)
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)
        paths.append(str(folder / f"{i:03d}.png"))
        assert cv2.imwrite(paths[-1], img)
    assert len(paths) > 2 * FILES_PER_TASK
    return paths


@pytest.mark.parametrize("n_jobs", N_JOBS)
@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_read_images_equals_serial_on_every_backend(image_files, color, n_jobs, backend):
    ragged = read_images(image_files, color=color)
    sized = ImageLoader(size=24, color=color).transform(image_files)
    assert isinstance(ragged, list) and sized.shape[:3] == (70, 24, 24)
    with parallel_config(backend=backend):
        got_ragged = read_images(image_files, color=color, n_jobs=n_jobs)
        got_sized = ImageLoader(size=24, color=color, n_jobs=n_jobs).transform(image_files)
    assert len(got_ragged) == len(ragged)
    for a, b in zip(got_ragged, ragged, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got_sized, sized)


def test_read_error_from_a_worker_names_the_file(image_files, tmp_path, backend):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    paths = image_files[:50] + [str(bad)] + image_files[50:]
    with parallel_config(backend=backend), pytest.raises(ImageReadError) as info:
        read_images(paths, n_jobs=2)
    assert "broken.png" in str(info.value) and "file 50 of the list" in str(info.value)
    assert info.value.path == str(bad)


# -- searches and comparisons on a cluster ----------------------------------------------------


@pytest.fixture(scope="module")
def task():
    return load_task("counting", n_samples=96, size=32, color=False, random_state=1)


def test_grid_search_on_dask_scores_as_serial(task, dask_client):
    X, y = task

    def search():
        pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), StandardScaler(), Ridge())
        return GridSearchCV(pipe, {"ridge__alpha": [0.1, 10.0, 1000.0]}, cv=3,
                            scoring="neg_mean_absolute_error")

    serial = search().fit(X, y)
    with parallel_config(backend="dask"):
        on_dask = search().set_params(n_jobs=-1).fit(X, y)
    keys = ["mean_test_score"] + [f"split{k}_test_score" for k in range(3)]
    for key in keys:
        # one fit per candidate and fold, the same arithmetic in another process
        np.testing.assert_allclose(on_dask.cv_results_[key], serial.cv_results_[key],
                                   rtol=1e-12, err_msg=key)
    assert np.all(serial.cv_results_["mean_test_score"] > -np.abs(y - y.mean()).mean())


def test_compare_models_on_dask_gives_the_serial_leaderboard(task, dask_client):
    """The fast default candidates (classical pipelines and one-epoch micro-CNNs)."""
    X, y = task
    # One torch thread per fit on both sides: a convolution summed by another number of
    # threads differs in the last bits (a Dask worker runs with OMP_NUM_THREADS=1).
    cands = [(name, _set_n_jobs(est, 1))
             for name, est in default_candidates(1000, X.shape[1:], fast=True, cnn_epochs=1)]
    kw = dict(budget=1000, candidates=cands, cv=KFold(2, shuffle=True, random_state=0),
              progress=False, latency=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = compare_models(X, y, **kw)
        with parallel_config(backend="dask"):
            on_dask = compare_models(X, y, n_jobs=-1, **kw)
    assert set(serial.details["kind"]) == {"classical", "cnn"} and len(serial.table) >= 10
    cols = ["name", "params", "mae_mean", "mae_std", "r2_mean"]
    pd.testing.assert_frame_equal(on_dask.table[cols], serial.table[cols], rtol=1e-12)
    assert on_dask.best_name_ == serial.best_name_
