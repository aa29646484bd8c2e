"""The model card: what an exported cvfeat graph is, written into its metadata.

``to_onnx`` writes these ``metadata_props`` (all strings; :func:`read_model_card`
parses them back): ``cvfeat.version``, ``cvfeat.count_params``
(:func:`cvfeat.budget.count_params`, or ``unknown``), ``cvfeat.input`` (input name),
``cvfeat.input_size`` (``"HxW"``, height first), ``cvfeat.input_color`` (``gray`` /
``rgb``), ``cvfeat.input_dtype`` (``uint8``), ``cvfeat.task`` (``regression`` /
``classification`` / ``features``), ``cvfeat.outputs`` (comma separated),
``cvfeat.classes`` (JSON, classifiers), ``cvfeat.target_name``, ``cvfeat.steps``
(e.g. ``HOG -> PCA -> Ridge``), ``cvfeat.domains``, ``cvfeat.opset``,
``cvfeat.command`` (default ``sys.argv``), ``cvfeat.created`` (UTC, ISO 8601) and
``cvfeat.quantization`` (``none`` or what was quantized).

Reading needs only ``onnx`` or, on a device, ``onnxruntime`` (no scikit-learn).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["read_model_card", "write_model_card"]

PREFIX = "cvfeat."


def write_model_card(onx, props):
    """Merge ``props`` (keys without the ``cvfeat.`` prefix) into the model's metadata."""
    current = {p.key: p.value for p in onx.metadata_props}
    current.update({PREFIX + k: "" if v is None else str(v) for k, v in props.items()})
    del onx.metadata_props[:]
    for key, value in current.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value


def _load_metadata(path_or_model):
    if hasattr(path_or_model, "metadata_props"):
        return {p.key: p.value for p in path_or_model.metadata_props}
    if isinstance(path_or_model, (bytes, bytearray)):
        import onnx

        model = onnx.load_from_string(bytes(path_or_model))
        return {p.key: p.value for p in model.metadata_props}
    path = Path(path_or_model)
    if not path.is_file():
        raise FileNotFoundError(f"read_model_card: {path} is not a file.")
    try:
        import onnx
    except ImportError:  # a device with onnxruntime only
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(sess.get_modelmeta().custom_metadata_map)
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def read_model_card(path_or_model):
    """The model card that :func:`to_onnx` wrote into an ONNX model.

    Parameters
    ----------
    path_or_model : str, Path, bytes or onnx.ModelProto

    Returns
    -------
    card : dict
        The ``cvfeat.*`` metadata without the prefix, parsed: ``count_params`` int
        (None if unknown), ``input_size`` ``(h, w)``, ``classes`` list, ``outputs`` and
        ``domains`` lists, the rest strings (``target_name`` None when not given).
        Metadata written by others is kept under its own key. Empty for a model with
        no metadata.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from cvfeat.export import read_model_card, to_onnx
    >>> from cvfeat.features import HOG
    >>> X = np.random.default_rng(0).integers(0, 256, (6, 16, 16), dtype=np.uint8)
    >>> pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), Ridge()).fit(X, np.arange(6))
    >>> card = read_model_card(to_onnx(pipe, X[:1], target_name="age", command="demo"))
    >>> card["input_size"], card["input_color"], card["target_name"], card["steps"]
    ((16, 16), 'gray', 'age', 'HOG -> Ridge')
    """
    raw = _load_metadata(path_or_model)
    card = {}
    for key, value in raw.items():
        if not key.startswith(PREFIX):
            card[key] = value
            continue
        k = key[len(PREFIX):]
        if k == "count_params":
            value = int(value) if value.isdigit() else None
        elif k == "input_size":
            value = tuple(int(v) for v in value.split("x"))
        elif k == "classes":
            value = json.loads(value) if value else None
        elif k in ("outputs", "domains"):
            value = value.split(",") if value else []
        elif k == "target_name":
            value = value or None
        card[k] = value
    return card
