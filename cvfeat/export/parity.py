"""Parity of an exported graph with the estimator it came from.

:func:`check_parity` runs the same uint8 images through the estimator (numpy /
scikit-learn / XGBoost, float64 features) and through the ONNX graph (ONNX Runtime,
float32) and reports how far apart the outputs are.

Measures (``a`` = graph output, ``b`` = estimator output, both ``(n, ...)``):

* ``max_abs = max |a - b|`` and ``mean_abs = mean |a - b|`` over all elements;
* ``scale = max(max |b|, tiny)`` with ``tiny`` the smallest normal float32 (so an
  all-zero reference does not divide by zero);
* ``max_rel = max_abs / scale``: the error relative to the largest reference
  value (a normwise measure; it does not blow up on predictions near zero);
* ``n_over_rtol``: how many images have ``max |a_i - b_i| > rtol * scale``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import check_images

__all__ = ["check_parity", "onnx_session", "parity_measures", "run_onnx"]


def onnx_session(onx):
    """ONNX Runtime CPU session of a ModelProto, serialized bytes or a file path."""
    import onnxruntime as ort

    if hasattr(onx, "SerializeToString"):
        data = onx.SerializeToString()
    elif isinstance(onx, (bytes, bytearray)):
        data = bytes(onx)
    else:
        path = Path(onx)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file.")
        data = str(path)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _check_input(sess, X, where):
    X = check_images(X, estimator=where, same_size=True)
    inp = sess.get_inputs()[0]
    if X.dtype != np.uint8:
        raise TypeError(
            f"{where}: the graph takes uint8 pixels (0-255); got {X.dtype} images. Pass the "
            "uint8 images the device sends (the same the estimator is compared on)."
        )
    want = tuple(inp.shape[1:])
    if X.shape[1:] != want:
        raise ValueError(
            f"{where}: the graph takes images of shape (n, {', '.join(map(str, want))}); got "
            f"{X.shape}. Resize them (cvfeat.preprocessing.Resize) or export with X_sample "
            "of this size."
        )
    return X, inp.name


def run_onnx(onx, X):
    """Run the graph on uint8 images; returns ``{output name: array}``.

    Parameters
    ----------
    onx : onnx.ModelProto, bytes, str or Path
    X : (n, h, w[, 3]) uint8 ndarray
        Of the graph's input shape.
    """
    sess = onnx_session(onx)
    X, name = _check_input(sess, X, "run_onnx")
    outs = sess.run(None, {name: X})
    return {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}


def check_parity(estimator, onx, X, *, rtol=1e-4):
    """Compare the ONNX graph's outputs with the estimator's on the same images.

    Parameters
    ----------
    estimator : fitted estimator
        The estimator that was exported.
    onx : onnx.ModelProto, bytes, str or Path
        The graph from :func:`cvfeat.export.to_onnx`.
    X : (n, h, w[, 3]) uint8 ndarray
        Images of the graph's input shape.
    rtol : float, default=1e-4
        Threshold of ``n_over_rtol``.

    Returns
    -------
    report : dict
        ``output`` (the output compared: ``prediction``, ``probabilities`` or
        ``features``), ``n``, ``max_abs``, ``mean_abs``, ``scale``, ``max_rel``,
        ``rtol``, ``n_over_rtol`` (see the module docstring), and for classifiers
        ``label_agreement`` (fraction of equal labels).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from cvfeat.export import check_parity, to_onnx
    >>> from cvfeat.features import HOG
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (10, 16, 16), dtype=np.uint8)
    >>> pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), Ridge()).fit(X, rng.random(10))
    >>> report = check_parity(pipe, to_onnx(pipe, X[:1]), X)
    >>> report["output"], report["n"], bool(report["max_rel"] < 1e-4)
    ('prediction', 10, True)
    """
    sess = onnx_session(onx)
    X, name = _check_input(sess, X, "check_parity")
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {name: X}), strict=True))
    report = {}
    if "prediction" in outs:
        output, got, ref = "prediction", outs["prediction"], estimator.predict(X)
    elif "probabilities" in outs:
        labels = estimator.predict(X)
        report["label_agreement"] = float(np.mean(np.asarray(outs["label"]) == labels))
        if not hasattr(estimator, "predict_proba"):
            return {"output": "label", "n": len(X), **report}
        output, got, ref = "probabilities", outs["probabilities"], estimator.predict_proba(X)
    elif "features" in outs:
        output, got, ref = "features", outs["features"], estimator.transform(X)
    else:
        raise ValueError(
            f"check_parity: the graph's outputs {names} are not cvfeat's (prediction, "
            "label/probabilities or features); was it written by cvfeat.export.to_onnx?"
        )
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(
            f"check_parity: the graph's {output!r} has shape {got.shape} but the estimator "
            f"returns {ref.shape}; the graph does not belong to this estimator."
        )
    return {"output": output, **parity_measures(got, ref, rtol), **report}


def parity_measures(got, ref, rtol):
    """``n``, ``max_abs``, ``mean_abs``, ``scale``, ``max_rel``, ``rtol``, ``n_over_rtol``
    of outputs ``got`` against ``ref`` (float64 arrays of one shape, one row per image;
    see the module docstring)."""
    diff = np.abs(got - ref)
    scale = max(float(np.abs(ref).max()), float(np.finfo(np.float32).tiny))
    per_image = diff.reshape(len(ref), -1).max(axis=1)
    return {
        "n": len(ref),
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "scale": scale,
        "max_rel": float(diff.max()) / scale,
        "rtol": rtol,
        "n_over_rtol": int(np.sum(per_image > rtol * scale)),
    }
