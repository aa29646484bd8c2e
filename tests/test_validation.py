"""The image contract: every bad input gets a clear error saying what and where."""

import numpy as np
import pytest

from cvfeat._validation import check_image_shape, check_images, check_targets
from cvfeat.features import HOG


def test_valid_batches_pass_through_unchanged():
    X = np.zeros((2, 8, 8, 3), np.uint8)
    assert check_images(X) is X
    F = np.zeros((2, 8, 8), np.float32)
    assert check_images(F).dtype == np.float32


def test_single_channel_is_grey():
    X = np.zeros((2, 8, 8, 1), np.uint8)
    assert check_images(X).shape == (2, 8, 8)


def test_equal_size_list_is_stacked_ragged_list_kept():
    same = [np.zeros((8, 8), np.uint8)] * 3
    assert check_images(same).shape == (3, 8, 8)
    ragged = [np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)]
    out = check_images(ragged)
    assert isinstance(out, list) and [m.shape for m in out] == [(8, 8), (9, 8)]


@pytest.mark.parametrize(
    "X, exc, pattern",
    [
        ("img.png", TypeError, "ImageLoader"),
        (np.zeros((8, 8), np.uint8), ValueError, r"ndim=2.*np.newaxis"),
        (np.zeros((1, 2, 8, 8, 3), np.uint8), ValueError, "ndim=5"),
        (np.zeros((0, 8, 8), np.uint8), ValueError, "empty batch"),
        (np.zeros((2, 8, 8, 4), np.uint8), ValueError, r"4 channels.*alpha"),
        (np.zeros((2, 3, 8, 8), np.uint8), ValueError, r"8 channels.*transpose"),
        (np.zeros((2, 8, 8), np.int64), TypeError, r"int64.*astype\(np.uint8\)"),
        (np.zeros((2, 8, 8), np.float16), TypeError, "float16"),
        (np.full((2, 8, 8), 2.0), ValueError, r"\[0, 1\].*image 0.*255"),
        ([], ValueError, "empty list"),
        ([np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8)], ValueError,
         "image 0 is grey and image 1 is RGB"),
        ([np.zeros((8, 8), np.uint8), "b.png"], TypeError, "image 1 of the list is a str"),
        ([np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32)], TypeError, "mixed dtypes"),
        (np.zeros((2, 0, 8), np.uint8), ValueError, "empty"),
    ],
)
def test_bad_batches_raise_clear_errors(X, exc, pattern):
    with pytest.raises(exc, match=pattern):
        check_images(X, estimator="HOG")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_images_name_the_image(bad):
    X = np.zeros((3, 4, 4))
    X[2, 1, 1] = bad
    with pytest.raises(ValueError, match="image 2 contains NaN or infinite"):
        check_images(X)


def test_out_of_range_in_list_names_the_image():
    X = [np.zeros((4, 4)), np.full((5, 5), -0.5)]
    with pytest.raises(ValueError, match=r"image 1 has values in \[-0.5, -0.5\]"):
        check_images(X)


def test_estimator_named_in_message():
    with pytest.raises(ValueError, match="^HOG: expected images"):
        HOG().fit(np.zeros((8, 8), np.uint8))


def test_same_size_required_suggests_resize():
    X = [np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)]
    with pytest.raises(ValueError, match=r"image 1 is 9x8.*Resize\(size="):
        check_images(X, same_size=True)


def test_no_silent_cast_input_not_modified():
    X = np.full((2, 4, 4), 0.5, np.float32)
    before = X.copy()
    check_images(X)
    np.testing.assert_array_equal(X, before)


def test_check_image_shape_against_fit():
    est = HOG().fit(np.zeros((1, 16, 16), np.uint8))
    check_image_shape(est, np.zeros((1, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="Resize"):
        check_image_shape(est, np.zeros((1, 16, 24), np.uint8))


def test_check_targets():
    assert check_targets([1, 2.5], 2).shape == (2,)
    with pytest.raises(ValueError, match="2 images but 3 targets"):
        check_targets([1, 2, 3], 2)
    with pytest.raises(ValueError, match="target 1 is NaN"):
        check_targets([1, np.nan], 2)
    with pytest.raises(TypeError, match="numeric"):
        check_targets(["a", "b"], 2)
