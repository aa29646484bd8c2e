"""Tests for cvfeat.io: read_images and ImageLoader."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

import cvfeat.io as cio
from cvfeat.io import DEFAULT_MAX_PIXELS, ImageLoader, ImageReadError, read_images

RNG = np.random.default_rng(0)


def _bgr(h=20, w=24, seed=0):
    """A smooth random BGR image (compresses to a JPEG with several scans of data)."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def _write(path, img, params=()):
    assert cv2.imwrite(str(path), img, list(params))
    return path


def _reference(path, color="rgb"):
    """What the file holds according to OpenCV's own imread."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    code = cv2.COLOR_BGR2GRAY if color == "gray" else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(bgr, code)


@pytest.fixture
def forbid_decode(monkeypatch):
    """Make any pixel decoding by OpenCV fail the test: checks must happen before it."""

    def boom(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cio.cv2, "imdecode", boom)


# -- reading --------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_pure_red_reads_back_as_rgb(tmp_path, ext):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    X = read_images([_write(tmp_path / f"red{ext}", bgr)])
    assert X.shape == (1, 5, 7, 3) and X.dtype == np.uint8
    assert (X[0] == [255, 0, 0]).all()


def test_red_jpeg_is_red(tmp_path):
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255
    img = read_images([_write(tmp_path / "red.jpg", bgr)])[0]
    assert img[..., 0].min() > 230 and img[..., 1:].max() < 25


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm"])
@pytest.mark.parametrize("color", ["rgb", "gray"])
def test_matches_opencv_imread(tmp_path, ext, color):
    paths = [_write(tmp_path / f"{i}{ext}", _bgr(seed=i)) for i in range(3)]
    X = read_images(paths, color=color)
    shape = (3, 20, 24, 3) if color == "rgb" else (3, 20, 24)
    assert isinstance(X, np.ndarray) and X.shape == shape and X.dtype == np.uint8
    for img, p in zip(X, paths, strict=True):
        np.testing.assert_array_equal(img, _reference(p, color))


def test_progressive_jpeg_and_bytes_after_eoi_are_fine(tmp_path):
    prog = _write(tmp_path / "p.jpg", _bgr(64, 64), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    tail = tmp_path / "tail.jpg"
    tail.write_bytes(prog.read_bytes() + b"\x00\x00trailing bytes")
    X = read_images([prog, tail])
    np.testing.assert_array_equal(X[0], _reference(prog))
    np.testing.assert_array_equal(X[1], X[0])


def test_grey_source_file(tmp_path):
    grey = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    p = _write(tmp_path / "g.png", grey)
    rgb = read_images([p])[0]
    assert rgb.shape == (9, 11, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)
    np.testing.assert_array_equal(read_images([p], color="gray")[0], grey)


def test_alpha_is_dropped_not_composited(tmp_path):
    bgra = np.dstack([_bgr(), np.full((20, 24), 7, np.uint8)])
    p = _write(tmp_path / "a.png", bgra)
    np.testing.assert_array_equal(read_images([p])[0], cv2.cvtColor(bgra[..., :3], cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize(
    "img",
    [np.full((6, 5), 1000, np.uint16), np.full((6, 5, 3), 1000, np.uint16)],
    ids=["grey16", "rgb16"],
)
def test_16_bit_is_refused(tmp_path, img):
    p = _write(tmp_path / "deep.png", img)
    with pytest.raises(ImageReadError, match=r"deep\.png.*uint16.*8-bit"):
        read_images([p])


def test_gray_uses_opencv_luma_weights(tmp_path):
    rgb = np.array([[[200, 0, 0], [0, 200, 0], [0, 0, 200], [10, 20, 30]]], np.uint8)
    p = _write(tmp_path / "w.png", rgb[..., ::-1])
    expected = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    np.testing.assert_allclose(read_images([p], color="gray")[0], expected, atol=1)


# -- size -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "interpolation, flag",
    [("area", cv2.INTER_AREA), ("nearest", cv2.INTER_NEAREST), ("linear", cv2.INTER_LINEAR)],
)
def test_resize_matches_cv2(tmp_path, interpolation, flag):
    p = _write(tmp_path / "a.png", _bgr(20, 24))
    X = read_images([p], size=(8, 12), interpolation=interpolation)
    assert X.shape == (1, 8, 12, 3)
    np.testing.assert_array_equal(X[0], cv2.resize(_reference(p), (12, 8), interpolation=flag))


def test_resize_gray_and_int_size(tmp_path):
    paths = [_write(tmp_path / "a.png", _bgr(20, 24)), _write(tmp_path / "b.jpg", _bgr(9, 30))]
    X = read_images(paths, size=10, color="gray")
    assert isinstance(X, np.ndarray) and X.shape == (2, 10, 10)
    ref = cv2.resize(_reference(paths[1], "gray"), (10, 10), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(X[1], ref)


def test_ragged_sizes_give_a_list(tmp_path):
    paths = [_write(tmp_path / "a.png", _bgr(20, 24)), _write(tmp_path / "b.png", _bgr(9, 30))]
    X = read_images(paths)
    assert isinstance(X, list) and [x.shape for x in X] == [(20, 24, 3), (9, 30, 3)]
    X = read_images(paths, color="gray")
    assert [x.shape for x in X] == [(20, 24), (9, 30)]


@pytest.mark.parametrize(
    "wrap", [list, tuple, lambda p: np.asarray([str(x) for x in p]), pd.Series,
             lambda p: [str(x) for x in p], lambda p: np.asarray(p, dtype=object)[:, None]],
    ids=["list-path", "tuple", "ndarray-str", "series", "list-str", "column"],
)
def test_path_containers(tmp_path, wrap):
    paths = [_write(tmp_path / f"{i}.png", _bgr(seed=i)) for i in range(2)]
    X = read_images(wrap(paths))
    np.testing.assert_array_equal(X, read_images(paths))


def test_n_jobs_threads_same_result(tmp_path):
    paths = [_write(tmp_path / f"{i}.jpg", _bgr(seed=i)) for i in range(6)]
    np.testing.assert_array_equal(read_images(paths, n_jobs=2), read_images(paths, n_jobs=1))


# -- bad files ------------------------------------------------------------------------------
def test_missing_file_is_named(tmp_path):
    ok = _write(tmp_path / "ok.png", _bgr())
    with pytest.raises(FileNotFoundError, match=r"nope\.png: no such image file"):
        read_images([ok, tmp_path / "nope.png"])


def test_text_file_named_png(tmp_path, forbid_decode):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a readable image file") as info:
        read_images([p])
    assert info.value.path == str(p)
    assert isinstance(info.value, ValueError) and isinstance(info.value, OSError)


def test_empty_file_and_directory(tmp_path, forbid_decode):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: the file is empty"):
        read_images([tmp_path / "empty.jpg"])
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match=r"dir\.png: is a directory"):
        read_images([tmp_path / "dir.png"])


@pytest.mark.parametrize(
    "ext, params",
    [(".jpg", ()), (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), (".png", ()), (".bmp", ()),
     (".webp", ()), (".ppm", ())],
    ids=["jpg", "jpg-progressive", "png", "bmp", "webp", "ppm"],
)
@pytest.mark.parametrize("keep", [0.5, 0.95, -2], ids=["half", "95%", "minus-2-bytes"])
def test_truncated_file_detected_before_opencv(tmp_path, monkeypatch, ext, params, keep):
    full = _write(tmp_path / f"full{ext}", _bgr(48, 64), params).read_bytes()
    cut = full[: int(len(full) * keep)] if keep > 0 else full[:keep]
    p = tmp_path / f"cut{ext}"
    p.write_bytes(cut)
    # Older OpenCV versions decode a cut JPEG into a half-grey image with only a
    # warning: the check must not rely on the decoder, so the decoder always "succeeds".
    monkeypatch.setattr(cio.cv2, "imdecode", lambda *a: np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"cut\.\w+: .*(truncated|not a readable)"):
        read_images([p])


def test_jpeg_cut_inside_exif_thumbnail_region(tmp_path, monkeypatch):
    # A JPEG whose APP1 segment holds a complete small JPEG (with its own FFD9), cut
    # in the main scan: an "ends with / contains FFD9" test would be fooled.
    thumb = cv2.imencode(".jpg", _bgr(8, 8))[1].tobytes()
    main = cv2.imencode(".jpg", _bgr(48, 64))[1].tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb) + 2) + thumb
    full = main[:2] + app1 + main[2:]
    p = tmp_path / "exif.jpg"
    p.write_bytes(full)
    np.testing.assert_array_equal(read_images([p])[0], _reference(p))
    p.write_bytes(full[: len(full) - 100])
    monkeypatch.setattr(cio.cv2, "imdecode", lambda *a: np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"exif\.jpg: the JPEG file is truncated"):
        read_images([p])


def test_all_failures_are_counted(tmp_path):
    ok = _write(tmp_path / "ok.png", _bgr())
    (tmp_path / "bad.png").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"a\.png.*file 1 of the list.*2 more.*b\.png"):
        read_images([ok, tmp_path / "a.png", tmp_path / "b.png", tmp_path / "bad.png"])


# -- decompression bombs --------------------------------------------------------------------
def _chunk(ctype, data):
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _png_bomb(width, height):
    """A small PNG announcing ``width x height`` RGB pixels (the data holds one zero row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1 + 3 * width), 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def test_small_max_pixels_refused_before_decoding(tmp_path, monkeypatch):
    p = _write(tmp_path / "a.png", _bgr(20, 24))
    assert read_images([p], max_pixels=480).shape == (1, 20, 24, 3)
    monkeypatch.setattr(cio.cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    with pytest.raises(cio.ImageTooLargeError, match=r"a\.png: .*24x20 = 480 pixels.*max_pixels=479"):
        read_images([p], max_pixels=479)


@pytest.mark.parametrize("side", [8000, 100_000], ids=["64-megapixels", "10-gigapixels"])
def test_bomb_header_refused_with_default_limit(tmp_path, forbid_decode, side):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_bomb(side, side))
    assert side * side > DEFAULT_MAX_PIXELS
    with pytest.raises(cio.ImageTooLargeError, match=rf"bomb\.png: .*{side * side} pixels"):
        read_images([p])


def test_bomb_beyond_pillow_limit_with_no_cvfeat_limit(tmp_path, forbid_decode):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_bomb(100_000, 100_000))
    with pytest.raises(cio.ImageTooLargeError, match=r"bomb\.png: Pillow refuses.*MAX_IMAGE_PIXELS"):
        read_images([p], max_pixels=None)


# -- arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "paths, error, match",
    [
        ("a.png", TypeError, r"single path.*\[path\]"),
        (Path("a.png"), TypeError, r"single path"),
        ([], ValueError, r"empty list of paths"),
        ([1, 2], TypeError, r"item 0 .* int"),
        (np.zeros((2, 4, 4), np.uint8), ValueError, r"1-D list of file paths.*no loader"),
        (5, TypeError, r"list of file paths, got int"),
    ],
)
def test_bad_paths_argument(paths, error, match):
    with pytest.raises(error, match=match):
        read_images(paths)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": (0, 5)}, r"size must be"),
        ({"size": (4, 5, 3)}, r"size must be"),
        ({"size": 0}, r"size"),
        ({"color": "bgr"}, r"color"),
        ({"interpolation": "bicubic"}, r"interpolation"),
        ({"max_pixels": 0}, r"max_pixels"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    p = _write(tmp_path / "a.png", _bgr())
    with pytest.raises(ValueError, match=match):
        read_images([p], **kwargs)
    with pytest.raises(ValueError, match=match):
        ImageLoader(**kwargs).transform([p])


# -- ImageLoader ----------------------------------------------------------------------------
def _flatten(X):
    return X.reshape(len(X), -1).astype(np.float64)


def test_loader_is_stateless_and_equals_read_images(tmp_path):
    paths = [_write(tmp_path / f"{i}.jpg", _bgr(seed=i)) for i in range(4)]
    loader = ImageLoader(size=(10, 12), color="gray")
    X = loader.transform(paths)  # no fit needed
    np.testing.assert_array_equal(X, read_images(paths, size=(10, 12), color="gray"))
    assert loader.fit(paths) is loader
    assert [k for k in vars(loader) if k.endswith("_")] == []
    np.testing.assert_array_equal(loader.fit_transform(paths), X)
    tags = loader.__sklearn_tags__()
    assert tags.requires_fit is False and tags.input_tags.three_d_array is False
    assert tags.input_tags.string is True


def test_loader_first_step_of_pipeline(tmp_path):
    paths = [_write(tmp_path / f"{i}.png", _bgr(8, 8, seed=i)) for i in range(6)]
    y = np.arange(6.0)
    pipe = make_pipeline(ImageLoader(size=(4, 4), color="gray"), FunctionTransformer(_flatten),
                         Ridge(alpha=1e-3))
    pipe.fit(paths, y)
    X = read_images(paths, size=(4, 4), color="gray")
    ref = Ridge(alpha=1e-3).fit(_flatten(X), y)
    np.testing.assert_allclose(pipe.predict(paths), ref.predict(_flatten(X)))
    pipe.set_output(transform="pandas")  # a no-op for the loader, not an error
    assert pipe.steps[0][1].transform(paths).shape == (6, 4, 4)


def test_loader_clone_pickle_params(tmp_path):
    loader = ImageLoader(size=(6, 7), color="gray", interpolation="nearest", max_pixels=10**6,
                         n_jobs=2)
    assert clone(loader).get_params() == loader.get_params()
    p = _write(tmp_path / "a.png", _bgr())
    again = pickle.loads(pickle.dumps(loader))
    np.testing.assert_array_equal(again.transform([p]), loader.transform([p]))


def test_loader_error_names_step_and_file(tmp_path):
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(ImageReadError, match=r"^ImageLoader: .*bad\.png: not a readable image"):
        ImageLoader().transform([tmp_path / "bad.png"])
    with pytest.raises(FileNotFoundError, match=r"^ImageLoader: .*gone\.png"):
        ImageLoader().transform([tmp_path / "gone.png"])


def test_loader_invalid_param_in_fit():
    with pytest.raises(InvalidParameterError, match="color"):
        ImageLoader(color="hsv").fit(["a.png"])


def test_loader_gray_equals_grayscale_step(tmp_path):
    from cvfeat.preprocessing import Grayscale

    paths = [_write(tmp_path / f"{i}.jpg", _bgr(seed=i)) for i in range(3)]
    np.testing.assert_array_equal(
        ImageLoader(color="gray").transform(paths),
        Grayscale().fit_transform(ImageLoader().transform(paths)),
    )
