"""cvfeat.distributed on a real distributed.LocalCluster (a scheduler and two worker
processes): image_array + transform over a few thousand PNG files equal read_images +
transform; a corrupt file fails naming it; the work runs on the workers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("distributed")

from sklearn.pipeline import FeatureUnion, make_pipeline  # noqa: E402

from cvfeat.distributed import configure_workers, image_array, transform  # noqa: E402
from cvfeat.features import HOG, LBP, ColorHistogram, SIFTBoW  # noqa: E402
from cvfeat.io import ImageReadError, read_images  # noqa: E402
from cvfeat.preprocessing import Grayscale  # noqa: E402

N_FILES = 2000


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """2,000 PNG files of 20x24 pixels (BGR on disk), in two sub-folders."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        sub = root / f"part{i % 2}"
        sub.mkdir(exist_ok=True)
        img = rng.integers(0, 256, (20 + i % 3, 24, 3), dtype=np.uint8)  # sizes vary
        cv2.imwrite(str(sub / f"img{i:05d}.png"), img)
    return root


def test_image_array_equals_read_images(client, folder):
    A = image_array(folder, size=(16, 16), chunk=128)
    files = sorted(str(p) for p in folder.rglob("*.png"))
    assert A.shape == (N_FILES, 16, 16, 3) and A.dtype == np.uint8
    assert A.chunks[0] == (128,) * 15 + (80,) and A.chunks[1:] == ((16,), (16,), (3,))
    # one reading task per chunk, not per file
    assert sum(1 for k in A.__dask_graph__() if "read_block" in str(k)) == 16
    got = client.compute(A).result()
    np.testing.assert_array_equal(got, read_images(files, size=(16, 16)))
    grey = client.compute(image_array(files[:300], 16, "gray", chunk=64)).result()
    np.testing.assert_array_equal(grey, read_images(files[:300], size=16, color="gray"))


STEPS = {
    "hog": lambda: HOG(pixels_per_cell=(8, 8)),
    "union": lambda: FeatureUnion([("hog", HOG(pixels_per_cell=(8, 8))),
                                   ("hist", ColorHistogram(bins=4)), ("lbp", LBP())]),
    "pipeline": lambda: make_pipeline(Grayscale(), HOG(pixels_per_cell=(4, 4))),
    "sift_bow": lambda: SIFTBoW(mode="dense", n_words=8, random_state=0),
    "lbp": lambda: LBP(P=8, R=1.5, grid=(2, 2)),
    "hist_lab": lambda: ColorHistogram(space="lab", bins=3),
}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_transform_equals_in_memory(client, folder, name):
    files = sorted(str(p) for p in folder.rglob("*.png"))
    X = read_images(files, size=(16, 16))
    step = STEPS[name]().fit(X[:50])
    F = transform(step, image_array(files, size=(16, 16), chunk=200))
    assert F.shape == (N_FILES, step.transform(X[:1]).shape[1])
    assert F.chunks[0] == (200,) * 10
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        got = client.compute(F).result()
    np.testing.assert_array_equal(got, step.transform(X))
    workers = {t["worker"] for t in stream.data}  # the tasks ran in the worker processes
    assert workers and workers <= set(client.scheduler_info()["workers"])


def test_corrupt_file_is_named(client, folder, tmp_path):
    files = sorted(str(p) for p in folder.rglob("*.png"))[:100]
    bad = tmp_path / "broken.png"
    bad.write_bytes(open(files[0], "rb").read()[:60])  # a truncated PNG
    A = image_array(files[:57] + [str(bad)] + files[57:], size=16, chunk=25)
    with pytest.raises(ImageReadError, match=r"broken\.png.*\(file 57 of the list\)"):
        client.compute(A).result()


def test_configure_workers_sets_one_thread(client):
    info = configure_workers(client)
    assert len(info) == 2
    for threads in info.values():
        assert threads["opencv"] == 1 and threads["torch"] in (None, 1)


def test_bad_arguments(folder, tmp_path):
    with pytest.raises(ValueError, match="size is required"):
        image_array(folder, size=None)
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_array(tmp_path, size=8)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        image_array(tmp_path / "nowhere", size=8)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        image_array(folder, size=8, chunk=0)
    with pytest.raises(TypeError, match="must be a dask array"):
        transform(HOG(), np.zeros((2, 16, 16), np.uint8))


@pytest.mark.parametrize("on_cluster", [False, True], ids=["in_process", "cluster"])
def test_extract_features_to_zarr_and_resume(client, folder, tmp_path, on_cluster):
    import zarr

    from cvfeat.distributed import extract_features

    files = sorted(str(p) for p in folder.rglob("*.png"))[:700]
    want = HOG(pixels_per_cell=(8, 8)).fit(read_images(files[:1], size=16)).transform(
        read_images(files, size=16))
    out = tmp_path / "f.zarr"
    kw = dict(size=16, chunk=100, client=client if on_cluster else None, progress=False)
    Z = extract_features(files, HOG(pixels_per_cell=(8, 8)), out, **kw)  # fitted on chunk 0
    np.testing.assert_array_equal(Z[:], want)
    assert Z.attrs["cvfeat_done"] == list(range(0, 700, 100))
    # an interrupted run: chunks 200 and 500 not recorded; a marker in a recorded chunk
    arr = zarr.open_array(out, mode="r+")
    arr[200:300] = 0
    arr[500:600] = 0
    arr[0, 0] = -1.0
    arr.attrs["cvfeat_done"] = [0, 100, 300, 400, 600]
    Z = extract_features(files, HOG(pixels_per_cell=(8, 8)), out, **kw)
    assert Z[0, 0] == -1.0  # a recorded chunk is not recomputed
    np.testing.assert_array_equal(Z[1:], want[1:])  # the missing ones are
    assert Z.attrs["cvfeat_done"] == list(range(0, 700, 100))
    with pytest.raises(ValueError, match="written from other inputs"):
        extract_features(files, HOG(pixels_per_cell=(4, 4)), out, **kw)


def test_cli_features(client, folder, tmp_path, capsys):
    import zarr

    from cvfeat.cli import main
    from cvfeat.io import save_model

    sub = folder / "part0"
    files = sorted(str(p) for p in sub.glob("*.png"))
    X = read_images(files, size=16)
    out = tmp_path / "a.zarr"
    assert main(["features", str(sub), "--out", str(out), "--size", "16", "--hist", "--lbp",
                 "--chunk", "300"]) == 0
    assert f"wrote {out}: 1,000 images x " in capsys.readouterr().out
    union = FeatureUnion([("hist", ColorHistogram()), ("lbp", LBP())]).fit(X[:1])
    np.testing.assert_array_equal(zarr.open_array(out, mode="r")[:], union.transform(X))
    # a fitted model file, on a local cluster of one worker process
    steps = make_pipeline(Grayscale(), HOG(pixels_per_cell=(8, 8))).fit(X[:1])
    save_model(steps, tmp_path / "steps.skops")
    out = tmp_path / "b.zarr"
    assert main(["features", str(sub), "--out", str(out), "--size", "16", "--steps",
                 str(tmp_path / "steps.skops"), "--scheduler", "local:1"]) == 0
    np.testing.assert_array_equal(zarr.open_array(out, mode="r")[:], steps.transform(X))
    # an existing scheduler by its address (the module's cluster)
    out = tmp_path / "c.zarr"
    assert main(["features", str(sub), "--out", str(out), "--size", "16", "--color", "gray",
                 "--scheduler", client.scheduler.address]) == 0
    grey = read_images(files, size=16, color="gray")
    np.testing.assert_array_equal(zarr.open_array(out, mode="r")[:],
                                  HOG().fit(grey[:1]).transform(grey))
    assert main(["features", str(sub), "--out", str(out), "--scheduler", "local:0"]) == 2
    assert "positive N" in capsys.readouterr().err
    assert main(["features", str(sub), "--out", str(out), "--hog", "--steps", "x.skops"]) == 2
    assert "--steps replaces" in capsys.readouterr().err


def _features_and_target(n=1003, d=20):
    rng = np.random.default_rng(3)
    F = rng.normal(size=(n, d)) * rng.uniform(0.05, 3, d) + rng.uniform(-50, 100, d)
    F[:, 3] = 7.0  # a constant feature: StandardScaler keeps its scale at 1
    y = F[:, :5] @ rng.normal(size=5) + rng.normal(size=n)
    return F, y


@pytest.mark.parametrize("chunks", [1003, 250, 97, 400])  # uneven last chunks
def test_fit_ridge_equals_in_memory(client, chunks):
    import dask.array as da
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cvfeat.distributed import fit_ridge, validation_mask

    F, y = _features_and_target()
    alphas = (0.01, 1.0, 30.0, 1000.0)
    pipe = fit_ridge(da.from_array(F, chunks=(chunks, 20)), y, alphas=alphas)
    # the alpha is the in-memory choice on the same split
    val = validation_mask(len(y), 0.2, 0)
    mse = {}
    for a in alphas:
        ref = make_pipeline(StandardScaler(), Ridge(alpha=a)).fit(F[~val], y[~val])
        mse[a] = np.mean((ref.predict(F[val]) - y[val]) ** 2)
        np.testing.assert_allclose(pipe.validation_mse_[a], mse[a], rtol=1e-9)
    best = min(alphas, key=lambda a: mse[a])
    assert pipe[-1].alpha == best
    ref = make_pipeline(StandardScaler(), Ridge(alpha=best)).fit(F, y)
    X_new = F[::7] + 0.1
    got, want = pipe.predict(X_new), ref.predict(X_new)
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
    np.testing.assert_allclose(pipe[0].mean_, ref[0].mean_, rtol=1e-12)
    np.testing.assert_allclose(pipe[0].scale_, ref[0].scale_, rtol=1e-9)


def test_fit_ridge_from_zarr_exports(tmp_path):
    import dask.array as da
    import zarr

    from cvfeat.distributed import fit_ridge
    from cvfeat.export import check_parity, to_onnx

    F, y = _features_and_target(300, 8)
    z = zarr.open_array(tmp_path / "f.zarr", mode="w", shape=F.shape, chunks=(64, 8),
                        dtype=F.dtype)
    z[:] = F
    pipe = fit_ridge(da.from_zarr(str(tmp_path / "f.zarr")), y)
    from sklearn.pipeline import make_pipeline as mp

    X = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    hog_pipe = mp(HOG(pixels_per_cell=(4, 4), cells_per_block=(1, 1), orientations=2).fit(X),
                  *[s for _, s in pipe.steps])
    assert hog_pipe[0].transform(X).shape[1] == 8
    report = check_parity(hog_pipe, to_onnx(hog_pipe, X[:1]), X)
    assert report["max_rel"] <= 1e-4
    from cvfeat.io import load_model, save_model

    back = load_model(save_model(hog_pipe, tmp_path / "m.skops"))
    np.testing.assert_array_equal(back.predict(X), hog_pipe.predict(X))
    from cvfeat.export.c import check_parity_c, find_compiler, to_c

    if find_compiler() is not None:  # CI has cc; the C export's own tests need it too
        assert check_parity_c(hog_pipe, to_c(hog_pipe, X[:1], name="m"), X)["max_rel"] <= 1e-4


def test_fit_ridge_refuses_bad_input():
    import dask.array as da

    from cvfeat.distributed import fit_ridge

    F, y = _features_and_target(200, 5)
    bad = F.copy()
    bad[150, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_ridge(da.from_array(bad, chunks=(64, 5)), y)
    with pytest.raises(ValueError, match="200 rows but y has 199"):
        fit_ridge(da.from_array(F, chunks=(64, 5)), y[:-1])
    with pytest.raises(ValueError, match="alphas must be positive"):
        fit_ridge(F, y, alphas=(0.0,))
