"""Classical image feature transformers (scikit-learn estimators).

Each takes a batch of images ``(n, h, w[, c])`` (uint8 0-255 or float in [0, 1],
RGB, channels last) and returns an ``(n, n_features)`` matrix.
"""

from .color import ColorHistogram
from .hog import HOG
from .lbp import LBP
from .sift import SIFTBoW

__all__ = ["ColorHistogram", "HOG", "LBP", "SIFTBoW"]
