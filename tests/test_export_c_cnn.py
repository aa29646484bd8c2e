"""C99 export of micro-CNNs and hybrids (cvfeat.export.c._cnn), compiled with cc.

Every architecture variant the size solver produces (plain, residual, dense blocks;
standard or separable convolutions; GAP or dense head, hidden layer; coordinate
channels), a label-distribution head, test-time flips, a classifier and a hybrid,
on grey and colour images of even and odd sizes, compiled with the strict flags at
-O0 and -O2 and run on >= 100 images: max_rel <= 1e-4 against ``predict``.
"""

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn.pipeline import make_pipeline  # noqa: E402
from test_export_c import images  # noqa: E402

from cvfeat.export.c import check_parity_c, find_compiler, to_c  # noqa: E402
from cvfeat.features import HOG  # noqa: E402
from cvfeat.models import HybridCNNRegressor, MicroCNNClassifier, MicroCNNRegressor  # noqa: E402
from cvfeat.preprocessing import Resize  # noqa: E402

pytestmark = pytest.mark.skipif(find_compiler() is None,
                                reason="no C compiler (cc / $CC) on this machine")
REL = 1e-4
VARIANTS = {
    "separable_plain_gap": dict(),
    "standard_residual_gap_no_hidden": dict(conv="standard", block="residual", head_units=0),
    "separable_residual_hidden8": dict(block="residual", head_units=8),
    "dense_blocks_dense_head": dict(block="dense", head="dense"),
    "standard_plain_dense_head_coords": dict(conv="standard", head="dense", coord_channels=True),
    "ldl_flips": dict(loss="ldl", tta="flips"),
    "ldl_hflip_residual_coords": dict(loss="ldl", n_bins=6, tta="hflip", block="residual",
                                      coord_channels=True),
}
SHAPES = {"grey32": (32, 32), "rgb37x53": (37, 53, 3)}


def target(X):
    flat = X.reshape(len(X), -1).astype(float)
    return flat.mean(axis=1) / 20 + flat[:, : flat.shape[1] // 2].std(axis=1) / 30


def check(est, X, opts=("-O0", "-O2")):
    exported = to_c(est, X[:1], name="m")
    for opt in opts:
        report = check_parity_c(est, exported, X, opt=opt)
        assert report["n"] >= 100 and report["max_rel"] <= REL, report
    return exported


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_micro_cnn_variants(variant, shape):
    X = images(SHAPES[shape])
    est = MicroCNNRegressor(max_params=2000, max_epochs=2, batch_size=16, random_state=0,
                            **VARIANTS[variant]).fit(X, target(X))
    assert np.std(est.predict(X)) > 0  # a network that answers one constant proves nothing
    exported = check(est, X)
    assert exported.report["macs"] == est.n_macs_
    assert exported.report["task"] == "regression"
    # the activations and the scratch rows live in the work buffer, within the RAM measured
    r = exported.report
    assert r["activation_bytes"] <= r["work_bytes"] <= r["ram_bytes"]


def test_classifier_probabilities(tmp_path):
    X = images((32, 32, 3))
    y = np.array(["low", "mid", "high"])[(target(X) * 3 // (target(X).max() + 1e-9)).astype(int)]
    est = MicroCNNClassifier(max_params=1500, max_epochs=2, batch_size=16, random_state=0,
                             tta="hflip").fit(X, y)
    exported = to_c(est, X[:1], name="m")
    report = check_parity_c(est, exported, X)
    assert report["output"] == "probabilities" and report["max_rel"] <= REL, report
    assert report["label_agreement"] == 1.0
    assert exported.report["classes"] == est.classes_.tolist()


@pytest.mark.parametrize("tta", [None, "hflip"])
def test_hybrid_reuses_the_feature_code(tta):
    X = images((32, 32, 3))
    est = HybridCNNRegressor(features=make_pipeline(HOG(pixels_per_cell=(16, 16))),
                             max_params=2500, max_epochs=2, batch_size=16, random_state=0,
                             tta=tta).fit(X, target(X))
    exported = check(est, X)
    assert "_hog" in exported.source


def test_micro_cnn_after_image_steps():
    X = images((64, 48, 3))
    cnn = MicroCNNRegressor(max_params=1500, max_epochs=2, batch_size=16, random_state=0)
    est = make_pipeline(Resize((32, 24)), cnn).fit(X, target(X))
    check(est, X, opts=("-O2",))

