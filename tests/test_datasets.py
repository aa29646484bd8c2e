"""Tests for cvfeat.datasets: synthetic tasks and the images/ + labels.csv loader."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import spearmanr

from cvfeat.datasets import (
    TASKS,
    load_image_folder,
    load_task,
    make_blur,
    make_color_temperature,
    make_counting,
    make_orientation,
    make_scale,
)
from cvfeat.io import ImageReadError, read_images

COLOR_TASKS = ["counting", "orientation", "scale", "blur"]  # those with a color flag
RANGES = {
    "counting": (0, 10),  # max_count defaults to 10, fewer for small images
    "orientation": (0, 180),
    "scale": (0, 0.35),
    "blur": (0, 3),
    "color_temperature": (2500, 10000),
}


# -- synthetic tasks: contract --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TASKS))
def test_shapes_dtypes_ranges(name):
    X, y = load_task(name, n_samples=12, size=(20, 28), random_state=0)
    assert X.dtype == np.uint8 and y.dtype == np.float64 and y.shape == (12,)
    expected = (12, 20, 28, 3) if name == "color_temperature" else (12, 20, 28)
    assert X.shape == expected
    lo, hi = RANGES[name]
    assert lo <= y.min() and y.max() <= hi
    assert np.unique(y).size > 3  # the target varies
    assert X.std() > 10  # the images are not blank


@pytest.mark.parametrize("name", sorted(TASKS))
def test_determinism_and_seed(name):
    X1, y1 = load_task(name, n_samples=6, size=24, random_state=3)
    X2, y2 = load_task(name, n_samples=6, size=24, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = load_task(name, n_samples=6, size=24, random_state=4)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("name", COLOR_TASKS)
def test_color_variants(name):
    X, y = load_task(name, n_samples=5, size=24, color=True, random_state=0)
    assert X.shape == (5, 24, 24, 3) and X.dtype == np.uint8
    # really coloured: the channels differ
    assert np.abs(X[..., 0].astype(int) - X[..., 2]).mean() > 5


def test_load_task_equals_direct_call_and_unknown_name():
    X1, y1 = load_task("scale", n_samples=4, size=16, random_state=1)
    X2, y2 = make_scale(4, size=16, random_state=1)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError, match=r"unknown synthetic task 'colour'.*'counting'"):
        load_task("colour")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: make_blur(5, size=8), r"size"),
        (lambda: make_blur(5, size=(32, 15)), r"size must be .* >= 16"),
        (lambda: make_orientation(0), r"n_samples"),
        (lambda: make_scale(5, noise=-1), r"noise"),
        (lambda: make_counting(5, size=16, max_count=40), r"do not fit in a 16x16 image"),
        (lambda: make_blur(5, max_sigma=0), r"max_sigma"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_1000_images_are_fast():
    import time

    for make in TASKS.values():
        t = time.process_time()
        make(1000, size=64, random_state=0)
        assert time.process_time() - t < 2.0, make.__name__


# -- synthetic tasks: the target is in the pixels -------------------------------------------
@pytest.mark.parametrize("color", [False, True])
def test_counting_matches_connected_components(color):
    X, y = make_counting(40, size=48, noise=0.0, color=color, random_state=0)
    found = []
    for img in X:
        # discs are >= 0.3 (grey) / >= 0.4 (colour: value channel) above the background,
        # whose gradient spans <= 0.1: a threshold halfway above the median background
        g = img.max(axis=2) if color else img
        fg = (g > np.median(g) + 40).astype(np.uint8)
        found.append(cv2.connectedComponents(fg, connectivity=8)[0] - 1)
    np.testing.assert_array_equal(found, y)
    assert y.min() == 0 and y.max() >= 8


def test_counting_noisy_images_still_track_the_count():
    X, y = make_counting(60, size=48, random_state=1)
    found = []
    for img in X:
        g = cv2.GaussianBlur(img, (0, 0), 1.0)
        fg = (g > np.median(g) + 40).astype(np.uint8)
        found.append(cv2.connectedComponents(fg, connectivity=8)[0] - 1)
    assert np.mean(np.asarray(found) == y) > 0.8


def _stripe_angle(img):
    """Stripe orientation (degrees, y up) from the structure tensor of Sobel gradients."""
    f = img.astype(np.float64)
    gx = cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3)
    gy = -cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3)  # rows grow downwards; y grows upwards
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    gradient = 0.5 * np.degrees(np.arctan2(2 * jxy, jxx - jyy))
    return (gradient + 90.0) % 180.0  # stripes run perpendicular to the gradient


def _angle_error(a, b):
    return np.abs((a - b + 90.0) % 180.0 - 90.0)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_orientation_matches_structure_tensor(noise):
    X, y = make_orientation(40, size=48, noise=noise, random_state=0)
    err = _angle_error(np.array([_stripe_angle(img) for img in X]), y)
    # wavy stripes and the distractor grating move the estimate by a few degrees
    assert np.median(err) < 4 and err.max() < 15


def test_orientation_convention():
    """0 degrees = horizontal stripes (intensity varies down the rows), 90 = vertical."""
    X, y = make_orientation(200, size=32, noise=0.0, random_state=0)
    f = X.astype(np.float64)
    dy = np.abs(np.diff(f, axis=1)).mean(axis=(1, 2))
    dx = np.abs(np.diff(f, axis=2)).mean(axis=(1, 2))
    # within 10 degrees a clean grating has |dy| / |dx| >= 1 / tan(10) = 5.7; wavy stripes
    # and the distractor grating lower that, the opposite convention would give < 1
    horizontal = _angle_error(y, 0.0) < 10
    vertical = _angle_error(y, 90.0) < 10
    assert horizontal.sum() > 5 and vertical.sum() > 5
    assert (dy[horizontal] > 1.5 * dx[horizontal]).all()
    assert (dx[vertical] > 1.5 * dy[vertical]).all()
    # 45 = rising to the right: along the stripes, (row - 1, col + 1) resembles (row, col)
    diag = _angle_error(y, 45.0) < 10
    along = np.abs(f[:, 1:, :-1] - f[:, :-1, 1:]).mean(axis=(1, 2))
    across = np.abs(f[:, :-1, :-1] - f[:, 1:, 1:]).mean(axis=(1, 2))
    assert diag.sum() > 3 and (along[diag] < 0.7 * across[diag]).all()


@pytest.mark.parametrize("size", [48, (24, 40)])
def test_scale_matches_otsu_foreground(size):
    X, y = make_scale(60, size=size, noise=0.0, random_state=0)
    frac, outline = [], []
    for img in X:
        _, fg = cv2.threshold(img, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if fg.mean() > 0.5:  # the object is the minority (<= 35 %), either polarity
            fg = 1 - fg
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        frac.append(fg.mean())
        outline.append(sum(cv2.arcLength(c, True) for c in contours) / fg.size)
    # The blurred edge moves Otsu's boundary by under one pixel: |error| <= outline / (h w).
    # Otsu, a global threshold, may split the background's gradient instead of finding a
    # tiny (2 %) low-contrast object: allow that for a few images only.
    within = np.abs(np.asarray(frac) - y) <= np.asarray(outline)
    assert within.mean() >= 0.9
    assert spearmanr(frac, y)[0] > 0.95
    assert y.min() < 0.06 and y.max() > 0.2


def _sharpness(img):
    f = img.astype(np.float64)
    return cv2.Laplacian(f, cv2.CV_64F).var() / (f.var() + 1e-9)


def test_blur_sigma_lowers_sharpness():
    X, y = make_blur(60, size=48, noise=0.0, random_state=0)
    assert spearmanr(y, [_sharpness(img) for img in X])[0] < -0.9


def test_blur_exact_for_one_image():
    # sigma known: re-blurring the sharpest image of the batch ourselves gives a
    # sharpness close to the generated image whose sigma matches
    X, y = make_blur(30, size=48, noise=0.0, max_sigma=2.5, random_state=2)
    assert ((0 <= y) & (y < 2.5)).all()
    sharp = y < 0.3
    assert sharp.any() and (~sharp).any()
    assert np.median([_sharpness(x) for x in X[sharp]]) > 3 * np.median(
        [_sharpness(x) for x in X[y > 1.5]]
    )


def test_color_temperature_shifts_red_to_blue():
    X, y = make_color_temperature(150, size=24, random_state=0)
    f = X.astype(np.float64) + 1.0
    blue_vs_red = np.log(f[..., 2].mean(axis=(1, 2)) / f[..., 0].mean(axis=(1, 2)))
    assert spearmanr(y, blue_vs_red)[0] > 0.7
    warm = y < 4000
    # 2500-4000 K light has red / blue >= 2.3 (blue channel <= 0.43 of red)
    assert (blue_vs_red[warm] < -0.3).mean() > 0.9


# -- load_image_folder ----------------------------------------------------------------------
def _folder(tmp_path, rows=None, header="file,age,score", n=4):
    d = tmp_path / "data"
    (d / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        ext = ".png" if i % 2 == 0 else ".jpg"
        name = f"images/img{i}{ext}"
        assert cv2.imwrite(str(d / name), rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
        files.append(name)
    if rows is None:
        rows = [f"{f},{20 + i},{0.5 * i}" for i, f in enumerate(files)]
    (d / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return d, files


def test_load_folder(tmp_path):
    d, files = _folder(tmp_path)
    X, y = load_image_folder(d, "age")
    np.testing.assert_array_equal(X, read_images([d / f for f in files]))
    assert X.shape == (4, 12, 10, 3) and X.dtype == np.uint8
    assert y.dtype == np.float64 and y.tolist() == [20.0, 21.0, 22.0, 23.0]


def test_load_folder_options(tmp_path):
    d, files = _folder(tmp_path)
    X, y, paths = load_image_folder(str(d), ["age", "score"], size=(6, 5), color="gray",
                                    return_paths=True)
    assert X.shape == (4, 6, 5) and y.shape == (4, 2)
    np.testing.assert_array_equal(y[:, 1], [0.0, 0.5, 1.0, 1.5])
    assert [Path(p) for p in paths] == [d / f for f in files]
    np.testing.assert_array_equal(X, read_images(paths, size=(6, 5), color="gray"))


def test_load_folder_subset_is_seeded(tmp_path):
    d, _ = _folder(tmp_path, n=6)
    _, y1, p1 = load_image_folder(d, "age", n_samples=3, random_state=0, return_paths=True)
    _, y2, p2 = load_image_folder(d, "age", n_samples=3, random_state=0, return_paths=True)
    assert y1.tolist() == y2.tolist() and len(set(p1)) == 3 and list(p1) == list(p2)
    assert list(y1) == sorted(y1)  # file order kept
    with pytest.raises(ValueError, match=r"n_samples=7 but .* only 6 rows"):
        load_image_folder(d, "age", n_samples=7)


def test_load_folder_ragged_sizes_give_list(tmp_path):
    d, files = _folder(tmp_path, n=2)
    cv2.imwrite(str(d / files[1]), np.zeros((7, 9, 3), np.uint8))
    X, _ = load_image_folder(d, "age")
    assert isinstance(X, list) and [x.shape for x in X] == [(12, 10, 3), (7, 9, 3)]


def test_folder_errors_missing_things(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere is not a folder"):
        load_image_folder(tmp_path / "nowhere", "age")
    with pytest.raises(FileNotFoundError, match=r"no labels\.csv in .*'file' column"):
        load_image_folder(tmp_path, "age")


def test_folder_error_no_file_column(tmp_path):
    d, _ = _folder(tmp_path, header="path,age,score")
    with pytest.raises(ValueError, match=r"no 'file' column \(columns: \['path', 'age', 'score'\]"):
        load_image_folder(d, "age")


def test_folder_error_unknown_target_lists_columns(tmp_path):
    d, _ = _folder(tmp_path)
    with pytest.raises(ValueError, match=r"unknown target column\(s\) \['height'\].*\['age', 'score'\]"):
        load_image_folder(d, "height")
    with pytest.raises(ValueError, match=r"unknown target.*\['file'\]"):
        load_image_folder(d, ["age", "file"])


def test_folder_error_non_numeric_and_missing_targets(tmp_path):
    rows = ["images/img0.png,20,1", "images/img1.jpg,twenty,1", "images/img2.png,,1",
            "images/img3.jpg,23,inf"]
    d, _ = _folder(tmp_path, rows=rows)
    with pytest.raises(ValueError, match=r"'age' is missing in 1 row.*line 4 \(images/img2\.png\)"):
        load_image_folder(d, "age")
    with pytest.raises(ValueError, match=r"'score' is not numeric in 1 row.*line 5 \(images/img3\.jpg\)"):
        load_image_folder(d, "score")
    rows[2] = "images/img2.png,22,1"
    d2, _ = _folder(tmp_path / "b", rows=rows)
    with pytest.raises(ValueError, match=r"'age' is not numeric.*line 3 \(images/img1\.jpg\).*'twenty'"):
        load_image_folder(d2, "age")


def test_folder_error_missing_images_are_named(tmp_path):
    d, files = _folder(tmp_path)
    (d / files[1]).unlink()
    (d / files[3]).unlink()
    with pytest.raises(FileNotFoundError, match=r"2 image file\(s\).*img1\.jpg.*img3\.jpg"):
        load_image_folder(d, "age")


def test_folder_error_empty_file_entry_and_bad_image(tmp_path):
    d, files = _folder(tmp_path, rows=["images/img0.png,1,1", ",2,2"])
    with pytest.raises(ValueError, match=r"empty 'file' entries .* line\(s\) 3"):
        load_image_folder(d, "age")
    d2, files = _folder(tmp_path / "b")
    (d2 / files[2]).write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=r"img2\.png: not a readable image"):
        load_image_folder(d2, "age")


# -- the real data beside the project (skipped when absent) ---------------------------------
REAL = Path(os.environ.get("CVFEAT_REAL_DATA", Path(__file__).resolve().parents[1] / ".."
                           / "shared" / "data"))


@pytest.mark.skipif(not (REAL / "utkface" / "labels.csv").is_file(),
                    reason=f"real data not found at {REAL} (set CVFEAT_REAL_DATA)")
def test_real_utkface_rows():
    X, y, paths = load_image_folder(REAL / "utkface", "age", size=(32, 32), n_samples=20,
                                    random_state=0, return_paths=True)
    assert X.shape == (20, 32, 32, 3) and X.dtype == np.uint8
    assert ((1 <= y) & (y <= 116)).all() and y.dtype == np.float64
    # the age is also in the UTKFace file name: "<age>_<gender>_<race>_<date>.jpg..."
    assert [float(Path(p).name.split("_")[0]) for p in paths] == y.tolist()
    full = read_images(paths[:2])
    assert full.shape == (2, 200, 200, 3)


def test_counting_default_max_count_fits_small_images():
    _, y = make_counting(200, size=24, random_state=0)
    assert y.max() == 4  # 10 discs of radius 2-3 px with 2 px gaps do not fit in 24x24
    _, y = make_counting(200, size=24, max_count=2, random_state=0)
    assert set(np.unique(y)) == {0.0, 1.0, 2.0}
