"""Colour conversions shared by the preprocessing steps and the feature transformers.

One definition of each conversion, written as plain vectorised numpy so that it
maps one-to-one onto standard ONNX operators (Cast, Mul, Add, Div, Max, Min,
Equal, Where, Pow, Less, ...). Used by :class:`cvfeat.preprocessing.Grayscale`,
:class:`cvfeat.preprocessing.ColorConvert`, :class:`cvfeat.features.ColorHistogram`
and :class:`cvfeat.features.LBP`.

Conventions (OpenCV's float conventions, ``cv2.COLOR_RGB2*`` on float32 RGB in [0, 1])
--------------------------------------------------------------------------------------
=====  ==========================================  =========================================
space  channels and ranges                         formula
=====  ==========================================  =========================================
rgb    R, G, B in [0, 1]                           uint8 ``p`` is mapped to ``p / 255``
hsv    H in [0, 360] degrees, S, V in [0, 1]       ``cv2.COLOR_RGB2HSV`` (float)
lab    L in [0, 100], a, b in [-128, 127]          ``cv2.COLOR_RGB2Lab`` (float): sRGB, D65
gray   one channel, same dtype as the input        ``cv2.COLOR_RGB2GRAY``
=====  ==========================================  =========================================

H can reach exactly 360 only through float rounding of a tiny negative hue (as in
OpenCV); it is the same angle as 0. For sRGB input, a actually spans about
[-86.2, 98.2] and b about [-107.9, 94.5]; [-128, 127] is OpenCV's nominal range.

Working precision: uint8 images are converted with ``p / 255`` in float32 (so a
uint8 image and the same image given as ``float32 x / 255`` convert identically),
float32 images in float32 and float64 images in float64.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHANNEL_RANGES",
    "CHANNEL_LETTERS",
    "to_float",
    "rgb_to_gray",
    "rgb_to_hsv",
    "rgb_to_lab",
    "convert",
]

#: ``(low, high)`` of each channel of each space, used for uniform histogram bins.
CHANNEL_RANGES = {
    "rgb": ((0.0, 1.0), (0.0, 1.0), (0.0, 1.0)),
    "hsv": ((0.0, 360.0), (0.0, 1.0), (0.0, 1.0)),
    "lab": ((0.0, 100.0), (-128.0, 127.0), (-128.0, 127.0)),
}

#: Channel letters of each space, used in feature names.
CHANNEL_LETTERS = {"rgb": "rgb", "hsv": "hsv", "lab": "lab"}

# OpenCV's RGB -> grey weights. uint8: fixed point with a 15-bit shift (what
# cv2.cvtColor(COLOR_RGB2GRAY) computes in OpenCV >= 4, verified bit-exact over all
# 2**24 colours); float: 0.299, 0.587, 0.114 in the input dtype.
_GRAY_FIXED = (9798, 19235, 3735)  # round(w * 2**15); they sum to 2**15
_GRAY_SHIFT = 15
_GRAY_FLOAT = (0.299, 0.587, 0.114)

# OpenCV's sRGB -> XYZ matrix (D65) and its white point, rows scaled by 1/white.
_SRGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_D65_WHITE = np.array([0.950456, 1.0, 1.088754])
_RGB_TO_XYZ_WHITE = _SRGB_TO_XYZ / _D65_WHITE[:, None]


def to_float(X):
    """Float view of an image array: uint8 ``p`` -> float32 ``p / 255``; floats unchanged."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) / np.float32(255)
    return X


def rgb_to_gray(X):
    """RGB ``(..., 3)`` -> grey ``(...)`` with OpenCV's weights, keeping the dtype.

    uint8: ``(9798 R + 19235 G + 3735 B + 2**14) >> 15`` in integer arithmetic,
    bit-exact with ``cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)``. Float:
    ``0.299 R + 0.587 G + 0.114 B`` computed in the input dtype (stays in [0, 1]).
    """
    if X.dtype == np.uint8:
        x = X.astype(np.int32)
        wr, wg, wb = _GRAY_FIXED
        acc = x[..., 0] * wr + x[..., 1] * wg + x[..., 2] * wb + (1 << (_GRAY_SHIFT - 1))
        return (acc >> _GRAY_SHIFT).astype(np.uint8)
    dt = X.dtype.type
    wr, wg, wb = (dt(w) for w in _GRAY_FLOAT)
    return X[..., 0] * wr + X[..., 1] * wg + X[..., 2] * wb


def rgb_to_hsv(X):
    """RGB ``(..., 3)`` -> HSV ``(..., 3)`` float: H in [0, 360], S and V in [0, 1].

    OpenCV's float formula (``cv2.COLOR_RGB2HSV``), including its ``FLT_EPSILON``
    guards, so grey pixels get H = S = 0::

        V = max(R, G, B);  d = V - min(R, G, B);  S = d / (V + eps)
        H = 60 (G - B) / (d + eps)        if V == R
            60 (B - R) / (d + eps) + 120  elif V == G
            60 (R - G) / (d + eps) + 240  otherwise;  H += 360 if H < 0
    """
    x = to_float(X)
    dt = x.dtype.type
    eps = dt(np.finfo(np.float32).eps)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = np.maximum(np.maximum(r, g), b)
    d = v - np.minimum(np.minimum(r, g), b)
    s = d / (np.abs(v) + eps)
    k = dt(60) / (d + eps)
    h = np.where(
        v == r, (g - b) * k, np.where(v == g, (b - r) * k + dt(120), (r - g) * k + dt(240))
    )
    h = np.where(h < 0, h + dt(360), h)
    return np.stack([h, s, v], axis=-1)


def _power(x, exponent):
    """``x ** exponent``; float32 ``x`` through float64, rounded once (machine-independent)."""
    if x.dtype == np.float32:
        return (x.astype(np.float64) ** exponent).astype(np.float32)
    return x ** exponent


def _cbrt(x):
    """Cube root; float32 ``x`` through float64, rounded once (machine-independent)."""
    if x.dtype == np.float32:
        return np.cbrt(x.astype(np.float64)).astype(np.float32)
    return np.cbrt(x)


def _srgb_to_linear(x):
    """sRGB gamma expansion of float ``x`` (first step of :func:`rgb_to_lab`), same dtype."""
    dt = x.dtype.type
    return np.where(x <= dt(0.04045), x / dt(12.92), _power((x + dt(0.055)) / dt(1.055), 2.4))


def rgb_to_lab(X):
    """RGB ``(..., 3)`` -> CIE L*a*b* ``(..., 3)`` float: L in [0, 100], a, b in [-128, 127].

    OpenCV's float formula (``cv2.COLOR_RGB2Lab``: sRGB gamma, OpenCV's sRGB->XYZ
    matrix, D65 white (0.950456, 1, 1.088754))::

        lin = c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        (X, Y, Z) = M @ lin / white;  f(t) = t ** (1/3) if t > 0.008856 else 7.787 t + 16/116
        L = 116 f(Y) - 16 if Y > 0.008856 else 903.3 Y
        a = 500 (f(X) - f(Y));  b = 200 (f(Y) - f(Z))

    The formula itself is evaluated. OpenCV evaluates it through a 33**3 lookup
    table with trilinear interpolation and int16 storage (its ``useInterpolation``
    path), which differs from the formula by up to ~0.6 between table nodes; at the
    nodes (RGB multiples of 1/32) only by half a storage step (L: 100/2**15, a and
    b: 1/128) plus < 2e-4 because the table uses the exact CIE constants 841/108,
    216/24389, 24389/27 for 7.787, 0.008856, 903.3.

    For float32 (and uint8) input the two transcendental functions, ``** 2.4`` and
    the cube root, are evaluated in float64 and rounded once to float32 (see
    :func:`_power`, :func:`_cbrt`): numpy's own float32 ``power`` / ``cbrt`` use different
    approximations on different CPUs (SVML on AVX-512, libm elsewhere; 20-40 % of
    results differ by an ulp), which would make the histogram bins depend on the
    machine and on the runtime (the ONNX graph does the same float64 evaluation).
    """
    x = to_float(X)
    dt = x.dtype.type
    lin = _srgb_to_linear(x)
    m = _RGB_TO_XYZ_WHITE.astype(x.dtype)
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    xyz = [r * m[i, 0] + g * m[i, 1] + b * m[i, 2] for i in range(3)]
    thr = dt(0.008856)
    f = [np.where(t > thr, _cbrt(t), dt(7.787) * t + dt(16.0 / 116.0)) for t in xyz]
    y = xyz[1]
    L = np.where(y > thr, dt(116) * f[1] - dt(16), dt(903.3) * y)
    a = dt(500) * (f[0] - f[1])
    bb = dt(200) * (f[1] - f[2])
    return np.stack([L, a, bb], axis=-1)


def convert(X, space):
    """Convert RGB images ``(..., 3)`` to ``space`` ('rgb', 'hsv' or 'lab'), as floats."""
    if space == "rgb":
        return to_float(X)
    if space == "hsv":
        return rgb_to_hsv(X)
    if space == "lab":
        return rgb_to_lab(X)
    raise ValueError(f"unknown colour space {space!r}; use 'rgb', 'hsv' or 'lab'.")
