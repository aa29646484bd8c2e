"""Synthetic image regression tasks, each answerable by a different kind of feature.

Every generator returns ``(X, y)``: ``X`` uint8 images ``(n, h, w)`` (grey) or
``(n, h, w, 3)`` (RGB), ``y`` float64 targets ``(n,)``. They are seeded by
``random_state`` and sized by ``n_samples`` and ``size``, and they carry
realistic nuisances (illumination gradients, background texture, varying
contrast and polarity, sensor noise) so that a model has to use the right cue:

- :func:`make_counting`: number of discs, 0..max_count (10). Helps: blob and edge
  statistics (LBP histograms, SIFT bag-of-words counts, HOG energy); mean
  intensity only weakly (disc brightness and size vary).
- :func:`make_orientation`: orientation of the stripes in degrees, [0, 180).
  Helps: HOG / gradient-orientation histograms; colour and intensity histograms
  carry nothing.
- :func:`make_scale`: area of one object as a fraction of the image, about
  [0.02, 0.3]. Helps: intensity/colour histograms (the share of object-coloured
  pixels), pooled edge energy (perimeter).
- :func:`make_blur`: Gaussian blur sigma in pixels, [0, max_sigma). Helps:
  high-frequency energy, gradient-magnitude statistics, LBP; orientation and
  colour carry nothing.
- :func:`make_color_temperature`: illuminant colour temperature in kelvin,
  [2500, 10000). Helps: colour histograms and channel means/ratios; HOG and
  LBP carry nothing.

Generation is vectorised over the batch with numpy, with shapes drawn by
OpenCV: 1,000 images of 64x64 take well under a second per task
(single thread).
"""

from __future__ import annotations

from numbers import Integral, Real

import cv2
import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = [
    "TASKS",
    "load_task",
    "make_blur",
    "make_color_temperature",
    "make_counting",
    "make_orientation",
    "make_scale",
]

MIN_SIZE = 16

_COMMON = {
    "n_samples": [Interval(Integral, 1, None, closed="left")],
    "size": [Interval(Integral, MIN_SIZE, None, closed="left"), tuple, list],
    "noise": [Interval(Real, 0, None, closed="left")],
    "random_state": ["random_state"],
}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _check_size(size, where):
    if isinstance(size, Integral) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in size)
        or min(size) < MIN_SIZE
    ):
        raise ValueError(
            f"{where}: size must be an int or a (height, width) pair of ints >= {MIN_SIZE}; "
            f"got {size!r}."
        )
    return int(size[0]), int(size[1])


def _smooth_field(rng, n, h, w, knots=5):
    """(n, h, w) smooth random field, N(0, 1) at ``knots x knots`` points, bilinear between."""
    g = rng.standard_normal((n, knots, knots))
    ry = np.stack([np.interp(np.linspace(0, knots - 1, h), np.arange(knots), e)
                   for e in np.eye(knots)], axis=1)  # (h, knots)
    rx = np.stack([np.interp(np.linspace(0, knots - 1, w), np.arange(knots), e)
                   for e in np.eye(knots)], axis=1)  # (w, knots)
    return ry @ g @ rx.T


def _gradient(rng, n, h, w, amplitude):
    """(n, h, w) linear illumination ramps, peak-to-peak ``amplitude``, random direction."""
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w]
    u = (np.cos(angle) * (xx / max(w - 1, 1) - 0.5) + np.sin(angle) * (yy / max(h - 1, 1) - 0.5))
    return amplitude * u / np.sqrt(2)


def _colorize(g, rng):
    """Map grey (n, h, w) in [0, 1] to RGB between two random per-image colours.

    The dark colour has every channel in [0, 0.35], the light one in [0.65, 1], so
    each channel keeps at least 0.3 of the grey contrast.
    """
    n = len(g)
    dark = rng.uniform(0.0, 0.35, (n, 1, 1, 3))
    light = rng.uniform(0.65, 1.0, (n, 1, 1, 3))
    return dark + (light - dark) * g[..., None]


def _normal(rng, shape):
    """float32 N(0, 1) noise from a Generator seeded by ``rng`` (faster than RandomState)."""
    return np.random.default_rng(rng.randint(0, 2**31 - 1)).standard_normal(
        shape, dtype=np.float32
    )


def _finish(img, noise, rng):
    """Add sensor noise (std ``noise`` on the 0-1 scale) and quantise to uint8."""
    if noise > 0:
        img = img + np.float32(noise) * _normal(rng, img.shape)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------
def _place_discs(rng, count, h, w, r_lo, r_hi, gap):
    """Centres and radii of ``count`` non-overlapping discs (>= gap pixels apart)."""
    for _ in range(100):
        radii = rng.uniform(r_lo, r_hi, 20 * count + 20)
        cy = rng.uniform(radii + 1, h - radii - 2)
        cx = rng.uniform(radii + 1, w - radii - 2)
        keep = []
        for i in range(len(radii)):
            if len(keep) == count:
                break
            if keep:
                k = np.asarray(keep)
                d = np.hypot(cy[k] - cy[i], cx[k] - cx[i])
                if np.any(d < radii[k] + radii[i] + gap + 1):  # +1: rasterisation margin
                    continue
            keep.append(i)
        if len(keep) == count:
            k = np.asarray(keep, dtype=int)
            return cy[k], cx[k], radii[k]
    raise ValueError(  # pragma: no cover - prevented by the area check in make_counting
        f"make_counting: could not place {count} separate discs in a {h}x{w} image; "
        "use a smaller max_count or a larger size."
    )


@validate_params(
    {
        **_COMMON,
        "max_count": [None, Interval(Integral, 1, None, closed="left")],
        "color": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_counting(
    n_samples=1000, *, size=(64, 64), max_count=None, color=False, noise=0.05, random_state=None
):
    """Images of separate discs; the target is how many there are.

    Each image holds ``y`` filled discs (``y`` uniform in ``0..max_count``) of
    random radius (4.5 % to 8.5 % of the shorter side, at least 2 px), at least
    2 pixels apart, brighter than a background with an illumination gradient.
    Disc brightness varies, so the mean intensity alone is a weak cue; a slight
    optical blur (sigma 0.7 px) and Gaussian sensor noise are added.

    Features that help: blob and edge statistics (LBP histograms, SIFT
    bag-of-words counts, HOG energy); mean intensity only weakly.

    Parameters
    ----------
    n_samples : int, default=1000
    size : int or (height, width), default=(64, 64)
        Both at least 16.
    max_count : int or None, default=None
        Largest number of discs; they must fit (the discs at their largest,
        with their gaps, may cover at most 40 % of the image). None: 10, or as
        many as fit in smaller images (4 at 24x24, 8 at 32x32, 10 from 40x40).
    color : bool, default=False
        RGB images with a dark, unsaturated background and discs of random hue
        (value >= 0.75) instead of grey images.
    noise : float, default=0.05
        Standard deviation of the sensor noise on the 0-1 scale (0.05 ~ 13
        grey levels). 0 gives clean images (discs still vary in brightness).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : (n_samples, h, w) uint8 ndarray, or (n_samples, h, w, 3) if ``color``
    y : (n_samples,) float64 ndarray
        The number of discs, an integer in ``[0, max_count]``.

    See Also
    --------
    make_scale : one object whose area is the target.

    Examples
    --------
    >>> from cvfeat.datasets import make_counting
    >>> X, y = make_counting(20, size=32, max_count=5, random_state=0)
    >>> X.shape, X.dtype, y.dtype, bool(0 <= y.min() <= y.max() <= 5)
    ((20, 32, 32), dtype('uint8'), dtype('float64'), True)
    """
    rng = check_random_state(random_state)
    h, w = _check_size(size, "make_counting")
    m = min(h, w)
    r_lo = max(2.0, 0.045 * m)
    r_hi = max(r_lo + 1.0, 0.085 * m)
    capacity = int(0.4 * h * w / (np.pi * (r_hi + 1) ** 2))
    if max_count is None:
        max_count = min(10, capacity)
    if max_count > capacity:
        raise ValueError(
            f"make_counting: max_count={max_count} discs of radius up to {r_hi:.1f} px (plus "
            f"their 2 px gaps) do not fit in a {h}x{w} image: they would cover more than 40 %; "
            f"use max_count <= {capacity} or a larger size."
        )
    counts = rng.randint(0, max_count + 1, n_samples)
    shape = (n_samples, h, w, 3) if color else (n_samples, h, w)
    X = np.empty(shape, dtype=np.float32)
    if color:
        # background: dark, low saturation; discs: bright, random hue (float HSV: H in degrees)
        bg_hsv = np.stack([rng.uniform(0, 360, n_samples), rng.uniform(0, 0.3, n_samples),
                           rng.uniform(0.1, 0.35, n_samples)], axis=1).astype(np.float32)
        bg = cv2.cvtColor(bg_hsv[None], cv2.COLOR_HSV2RGB)[0]  # (n, 3)
    else:
        bg = rng.uniform(0.15, 0.4, n_samples)
    ramp = _gradient(rng, n_samples, h, w, rng.uniform(0.0, 0.1, n_samples)[:, None, None])
    for i in range(n_samples):
        img = np.empty((h, w, 3) if color else (h, w), np.float32)
        img[...] = bg[i]
        k = int(counts[i])
        if k:
            cy, cx, r = _place_discs(rng, k, h, w, r_lo, r_hi, gap=2)
            if color:
                hsv = np.stack([rng.uniform(0, 360, k), rng.uniform(0.4, 1.0, k),
                                rng.uniform(0.75, 1.0, k)], axis=1).astype(np.float32)
                fg = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]
            else:
                fg = bg[i] + rng.uniform(0.3, 0.55, k)
            for j in range(k):
                value = tuple(float(v) for v in np.atleast_1d(fg[j]))
                cv2.circle(img, (int(round(cx[j])), int(round(cy[j]))), int(round(r[j])),
                           value, thickness=-1, lineType=cv2.LINE_8)
        X[i] = img
    X += ramp[..., None] if color else ramp
    for i in range(n_samples):
        X[i] = cv2.GaussianBlur(X[i], (5, 5), 0.7)
    return _finish(X, noise, rng), counts.astype(np.float64)


# --------------------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------------------
@validate_params(
    {**_COMMON, "color": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def make_orientation(n_samples=1000, *, size=(64, 64), color=False, noise=0.1,
                     random_state=None):
    """Noisy striped textures; the target is the orientation of the stripes.

    The target ``y`` in ``[0, 180)`` is the direction along which the stripes
    run, in degrees counter-clockwise from the image's horizontal axis (x to
    the right, y *up*, i.e. towards row 0): 0 = horizontal stripes, 90 =
    vertical stripes, 45 = stripes rising to the right. The image gradient is
    perpendicular to it. Stripes are a sinusoidal grating (period 7 % to 20 %
    of the shorter side) with a smoothly wandering phase (wavy lines), a
    spatially varying contrast, a weaker second grating at a random orientation
    (a distractor, up to 40 % of the amplitude), a random mean level and
    Gaussian sensor noise.

    The target is circular (179 is next to 0): a plain regressor sees a jump
    there. Regressing ``cos(2y)`` and ``sin(2y)`` (radians) and recovering
    ``y = atan2(s, c) / 2`` avoids it.

    Features that help: HOG and other gradient-orientation histograms; colour
    and intensity histograms carry nothing.

    Parameters
    ----------
    n_samples : int, default=1000
    size : int or (height, width), default=(64, 64)
        Both at least 16.
    color : bool, default=False
        Map the grey texture between two random colours per image.
    noise : float, default=0.1
        Standard deviation of the sensor noise on the 0-1 scale.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : (n_samples, h, w) uint8 ndarray, or (n_samples, h, w, 3) if ``color``
    y : (n_samples,) float64 ndarray
        Stripe orientation in degrees, in ``[0, 180)``.

    See Also
    --------
    make_blur : texture whose sharpness is the target.

    Examples
    --------
    >>> from cvfeat.datasets import make_orientation
    >>> X, y = make_orientation(10, size=(32, 48), random_state=0)
    >>> X.shape, bool((y >= 0).all() and (y < 180).all())
    ((10, 32, 48), True)
    """
    rng = check_random_state(random_state)
    h, w = _check_size(size, "make_orientation")
    n, m = n_samples, min(h, w)
    theta = rng.uniform(0.0, 180.0, n)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x = xx - (w - 1) / 2
    yup = (h - 1) / 2 - yy

    def grating(angle_deg, period, phase):
        t = np.deg2rad(angle_deg)[:, None, None]
        across = -x * np.sin(t) + yup * np.cos(t)  # distance across the stripes
        return 2 * np.pi * across / period[:, None, None] + phase

    period = rng.uniform(0.07, 0.2, n) * m
    warp = 1.2 * _smooth_field(rng, n, h, w, knots=4)
    main = np.cos(grating(theta, period, rng.uniform(0, 2 * np.pi, n)[:, None, None] + warp))
    other = np.cos(grating(rng.uniform(0, 180, n), rng.uniform(0.07, 0.2, n) * m,
                           rng.uniform(0, 2 * np.pi, n)[:, None, None]))
    texture = (main + rng.uniform(0.0, 0.4, n)[:, None, None] * other) / 1.4
    contrast = np.clip(0.6 + 0.25 * _smooth_field(rng, n, h, w, knots=4), 0.2, 1.0)
    contrast *= rng.uniform(0.4, 1.0, n)[:, None, None]
    img = rng.uniform(0.35, 0.65, n)[:, None, None] + 0.3 * contrast * texture
    if color:
        img = _colorize(img, rng)
    return _finish(img, noise, rng), theta


# --------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------
@validate_params(
    {**_COMMON, "color": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def make_scale(n_samples=1000, *, size=(64, 64), color=False, noise=0.05, random_state=None):
    """One object on a textured background; the target is its area.

    The object is a filled ellipse (aspect ratio 0.6-1) or a rectangle (aspect
    0.6-1), at a random angle and position, brighter or darker than the
    background (random polarity, contrast 0.2-0.45), with a requested area
    uniform in [0.02, 0.3] of the image. The target ``y`` is the fraction of
    pixels whose centre lies inside the object (the sharp mask, before blur and
    noise), so it is exact even if the object is cut by the border (possible
    in very elongated images). The background has a smooth texture and an
    illumination gradient; a slight blur (sigma 0.7 px) and sensor noise follow.

    Features that help: intensity/colour histograms (the share of pixels with
    the object's colour) and pooled edge energy (its perimeter).

    Parameters
    ----------
    n_samples : int, default=1000
    size : int or (height, width), default=(64, 64)
        Both at least 16.
    color : bool, default=False
        Map the grey image between two random colours per image.
    noise : float, default=0.05
        Standard deviation of the sensor noise on the 0-1 scale.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : (n_samples, h, w) uint8 ndarray, or (n_samples, h, w, 3) if ``color``
    y : (n_samples,) float64 ndarray
        Object area as a fraction of the image, in [0, 0.35]; close to uniform in
        [0.02, 0.3] (pixel rounding moves it by a few per cent on small images).

    See Also
    --------
    make_counting : several objects whose number is the target.

    Examples
    --------
    >>> from cvfeat.datasets import make_scale
    >>> X, y = make_scale(10, size=32, random_state=0)
    >>> X.shape, bool(((y >= 0) & (y <= 0.35)).all())
    ((10, 32, 32), True)
    """
    rng = check_random_state(random_state)
    h, w = _check_size(size, "make_scale")
    n = n_samples
    area = rng.uniform(0.02, 0.3, n) * h * w
    aspect = rng.uniform(0.6, 1.0, n)
    angle = np.deg2rad(rng.uniform(0, 180, n))
    is_ellipse = rng.random_sample(n) < 0.5
    # semi-axes a >= b = aspect * a with pi a b = area (ellipse) or 4 a b = area (rectangle)
    a = np.sqrt(area / np.where(is_ellipse, np.pi, 4.0) / aspect)
    b = aspect * a
    reach = np.where(is_ellipse, a, np.hypot(a, b))  # farthest point from the centre
    cy = rng.uniform(np.minimum(reach, h / 2), np.maximum(h - reach, h / 2))
    cx = rng.uniform(np.minimum(reach, w / 2), np.maximum(w - reach, w / 2))
    # pixel-centre inside test in the object's frame (pixel (r, c) has its centre at c + 0.5)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    dx = xx - cx[:, None, None]
    dy = yy - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dx * cos + dy * sin) / a[:, None, None]
    v = (-dx * sin + dy * cos) / b[:, None, None]
    masks = np.where(is_ellipse[:, None, None], u**2 + v**2 <= 1.0,
                     (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0))
    y = masks.reshape(n, -1).sum(axis=1) / float(h * w)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    contrast = sign * rng.uniform(0.2, 0.45, n)
    base = rng.uniform(0.3, 0.7, n)[:, None, None] - np.minimum(contrast, 0)[:, None, None] / 2
    base = base - np.maximum(contrast, 0)[:, None, None] / 2
    img = base + 0.04 * _smooth_field(rng, n, h, w, knots=6)
    img = img + _gradient(rng, n, h, w, rng.uniform(0.0, 0.1, n)[:, None, None])
    img = img + contrast[:, None, None] * masks
    img = img.astype(np.float32)
    for i in range(n):
        img[i] = cv2.GaussianBlur(img[i], (5, 5), 0.7)
    if color:
        img = _colorize(img, rng)
    return _finish(img, noise, rng), y


# --------------------------------------------------------------------------------------
# Blur
# --------------------------------------------------------------------------------------
def _scene(rng, n, h, w, max_shapes=15):
    """(n, h, w) float32 sharp scenes in [0, 1]: random rectangles and discs + fine texture."""
    m = min(h, w)
    out = np.empty((n, h, w), np.float32)
    out[...] = rng.uniform(0.2, 0.8, n)[:, None, None]
    n_shapes = rng.randint(6, max_shapes + 1, n)
    # all shape parameters drawn at once; only the drawing loops
    value = rng.uniform(0.0, 1.0, (n, max_shapes))
    cy = rng.uniform(0, h, (n, max_shapes))
    cx = rng.uniform(0, w, (n, max_shapes))
    r = rng.uniform(0.05, 0.3, (n, max_shapes)) * m
    disc = rng.random_sample((n, max_shapes)) < 0.5
    ry = r * rng.uniform(0.3, 1.0, (n, max_shapes))
    for i in range(n):
        for j in range(int(n_shapes[i])):
            if disc[i, j]:
                cv2.circle(out[i], (int(cx[i, j]), int(cy[i, j])), int(r[i, j]),
                           float(value[i, j]), -1, cv2.LINE_8)
            else:
                cv2.rectangle(out[i], (int(cx[i, j] - r[i, j]), int(cy[i, j] - ry[i, j])),
                              (int(cx[i, j] + r[i, j]), int(cy[i, j] + ry[i, j])),
                              float(value[i, j]), -1, cv2.LINE_8)
    texture = rng.uniform(0.0, 0.12, n).astype(np.float32)[:, None, None] * _normal(rng, (n, h, w))
    return np.clip(out + texture, 0.0, 1.0)


@validate_params(
    {**_COMMON, "color": ["boolean"], "max_sigma": [Interval(Real, 0, None, closed="neither")]},
    prefer_skip_nested_validation=True,
)
def make_blur(n_samples=1000, *, size=(64, 64), max_sigma=3.0, color=False, noise=0.02,
              random_state=None):
    """Sharp scenes blurred by a Gaussian; the target is the blur's sigma.

    Each scene is a random collage of 6-15 rectangles and discs (sharp edges at
    many scales) with a fine texture of random strength, so the amount of
    detail varies from scene to scene and raw high-frequency energy is only a
    confounded cue. The scene is blurred with a Gaussian of standard deviation
    ``y`` pixels (``y`` uniform in ``[0, max_sigma)``; kernel ``2 ceil(3 y) + 1``,
    reflected borders), then sensor noise is added *after* the blur (as in a
    camera), which masks weak blur differences.

    Features that help: high-frequency energy, gradient-magnitude statistics,
    LBP; orientation and colour carry nothing.

    Parameters
    ----------
    n_samples : int, default=1000
    size : int or (height, width), default=(64, 64)
        Both at least 16.
    max_sigma : float, default=3.0
        Upper end of the blur sigma in pixels.
    color : bool, default=False
        Map the grey scene between two random colours per image (before blurring).
    noise : float, default=0.02
        Standard deviation of the sensor noise on the 0-1 scale.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : (n_samples, h, w) uint8 ndarray, or (n_samples, h, w, 3) if ``color``
    y : (n_samples,) float64 ndarray
        Blur sigma in pixels, in ``[0, max_sigma)``.

    See Also
    --------
    make_orientation : texture whose direction is the target.

    Examples
    --------
    >>> from cvfeat.datasets import make_blur
    >>> X, y = make_blur(10, size=32, max_sigma=2.0, random_state=0)
    >>> X.shape, bool(((y >= 0) & (y < 2)).all())
    ((10, 32, 32), True)
    """
    rng = check_random_state(random_state)
    h, w = _check_size(size, "make_blur")
    sigma = rng.uniform(0.0, max_sigma, n_samples)
    img = _scene(rng, n_samples, h, w)
    if color:
        img = _colorize(img, rng).astype(np.float32)
    for i in range(n_samples):
        k = 2 * int(np.ceil(3 * sigma[i])) + 1
        if k > 1:
            img[i] = cv2.GaussianBlur(img[i], (k, k), sigma[i], borderType=cv2.BORDER_REFLECT_101)
    return _finish(img, noise, rng), sigma


# --------------------------------------------------------------------------------------
# Colour temperature
# --------------------------------------------------------------------------------------
def _blackbody_rgb(kelvin):
    """(n, 3) RGB in [0, 1] of a black body (Tanner Helland's fit, valid 1000-40000 K)."""
    t = np.asarray(kelvin, dtype=np.float64) / 100.0
    above = np.maximum(t - 60.0, 1e-9)
    r = np.where(t <= 66, 255.0, 329.698727446 * above**-0.1332047592)
    g = np.where(t <= 66, 99.4708025861 * np.log(t) - 161.1195681661,
                 288.1221695283 * above**-0.0755148492)
    b = np.where(t >= 66, 255.0,
                 np.where(t <= 19, 0.0, 138.5177312231 * np.log(np.maximum(t - 10, 1e-9))
                          - 305.0447927307))
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 255.0) / 255.0


@validate_params(_COMMON, prefer_skip_nested_validation=True)
def make_color_temperature(n_samples=1000, *, size=(64, 64), noise=0.02, random_state=None):
    """Colourful scenes under a tinted light; the target is the light's colour temperature.

    A scene is a "Mondrian" of 8-20 rectangles of random reflectance colours
    (with a random per-scene colour bias of up to +-0.08 per channel, so the
    scene average is not grey and the grey-world guess is only approximate)
    plus a fine texture. It is lit by a black body of temperature ``y`` kelvin
    (``y`` uniform in ``[2500, 10000)``; low = orange, 6600 = white, high =
    blue): each channel is multiplied by the black body's RGB (Tanner
    Helland's approximation) divided by its largest channel, then by a random
    exposure in [0.6, 1], and sensor noise is added.

    The colour changes fast with ``y`` at low temperatures and slowly above
    6600 K, so expect larger errors there; the reciprocal scale (mireds,
    ``1e6 / y``) is perceptually more uniform.

    Features that help: colour histograms and channel means or ratios; HOG and
    LBP carry nothing.

    Parameters
    ----------
    n_samples : int, default=1000
    size : int or (height, width), default=(64, 64)
        Both at least 16.
    noise : float, default=0.02
        Standard deviation of the sensor noise on the 0-1 scale.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : (n_samples, h, w, 3) uint8 ndarray
        RGB images.
    y : (n_samples,) float64 ndarray
        Colour temperature in kelvin, in ``[2500, 10000)``.

    See Also
    --------
    make_blur, make_counting

    Examples
    --------
    >>> from cvfeat.datasets import make_color_temperature
    >>> X, y = make_color_temperature(10, size=32, random_state=0)
    >>> X.shape, bool(((y >= 2500) & (y < 10000)).all())
    ((10, 32, 32, 3), True)
    """
    rng = check_random_state(random_state)
    h, w = _check_size(size, "make_color_temperature")
    n = n_samples
    kelvin = rng.uniform(2500.0, 10000.0, n)
    bias = rng.uniform(-0.08, 0.08, (n, 1, 3))
    scene = np.empty((n, h, w, 3), np.float32)
    scene[...] = np.clip(rng.uniform(0.3, 0.7, (n, 1, 3)) + bias, 0.05, 1.0)[:, :, None, :]
    max_patches = 20
    n_patches = rng.randint(8, max_patches + 1, n)
    colour = np.clip(rng.uniform(0.05, 1.0, (n, max_patches, 3)) + bias, 0.02, 1.0)
    y0 = rng.randint(0, h, (n, max_patches))
    x0 = rng.randint(0, w, (n, max_patches))
    y1 = y0 + rng.randint(h // 8, h // 2 + 1, (n, max_patches))
    x1 = x0 + rng.randint(w // 8, w // 2 + 1, (n, max_patches))
    for i in range(n):
        for j in range(int(n_patches[i])):
            cv2.rectangle(scene[i], (int(x0[i, j]), int(y0[i, j])), (int(x1[i, j]), int(y1[i, j])),
                          tuple(float(c) for c in colour[i, j]), -1)
    scene *= 1.0 + rng.uniform(0.0, 0.08, n).astype(np.float32)[:, None, None, None] * _normal(
        rng, (n, h, w, 1)
    )
    light = _blackbody_rgb(kelvin)
    light /= light.max(axis=1, keepdims=True)
    exposure = rng.uniform(0.6, 1.0, n)
    img = scene * (light * exposure[:, None])[:, None, None, :]
    return _finish(img, noise, rng), kelvin


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------
TASKS = {
    "counting": make_counting,
    "orientation": make_orientation,
    "scale": make_scale,
    "blur": make_blur,
    "color_temperature": make_color_temperature,
}


def load_task(name, **kwargs):
    """Generate the synthetic task called ``name`` (a key of :data:`TASKS`).

    Parameters
    ----------
    name : {'counting', 'orientation', 'scale', 'blur', 'color_temperature'}
    **kwargs
        Passed to the generator (``n_samples``, ``size``, ``noise``,
        ``random_state``, ...).

    Returns
    -------
    X : (n, h, w[, 3]) uint8 ndarray
    y : (n,) float64 ndarray

    Examples
    --------
    >>> from cvfeat.datasets import load_task
    >>> X, y = load_task("blur", n_samples=5, size=24, random_state=0)
    >>> X.shape
    (5, 24, 24)
    """
    try:
        make = TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown synthetic task {name!r}; choose one of {sorted(TASKS)}."
        ) from None
    return make(**kwargs)
