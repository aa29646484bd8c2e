"""Run an exported cvfeat model on a device: numpy, OpenCV and ONNX Runtime only.

This module is what ``cvfeat predict`` uses. It must stay importable without
scikit-learn, scikit-image or torch, so that the deployed side needs nothing
but ``onnxruntime``, ``numpy`` and ``opencv-python-headless``.

Examples
--------
>>> from cvfeat.runtime import Model                          # doctest: +SKIP
>>> model = Model("m.onnx")                                   # doctest: +SKIP
>>> model.predict_files(["a.jpg", "b.png"])                   # doctest: +SKIP
array([3.1, 7.9], dtype=float32)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["Model", "file_kind", "read_image"]


def file_kind(path):
    """``'skops'`` (a zip archive), ``'pickle'`` (pickle or joblib) or ``'other'``, from the
    first bytes of the file (nothing is loaded)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return "skops"
    # pickle protocol 2+ starts with PROTO (0x80); joblib compresses with zlib or gzip
    if head[:1] == b"\x80" or head[:2] in (b"x\x9c", b"x\x01", b"x\xda", b"\x1f\x8b"):
        return "pickle"
    return "other"


def read_image(path, size, color):
    """Read one image file as uint8, converted to ``color`` and resized to ``size``.

    Parameters
    ----------
    path : str or Path
    size : (int, int)
        ``(h, w)`` of the model input; OpenCV ``INTER_AREA`` resize when different.
    color : {'rgb', 'gray'}

    Returns
    -------
    image : (h, w, 3) or (h, w) uint8 ndarray
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise FileNotFoundError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    img = cv2.imdecode(data, flag) if data.size else None
    if img is None:
        raise ValueError(f"{path} is not a readable image (OpenCV could not decode it).")
    if img.dtype != np.uint8:
        raise ValueError(f"{path} has {img.dtype} pixels; the model takes 8-bit images.")
    if color == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = size
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return img


class Model:
    """An exported cvfeat ONNX model with its expected input.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file written by ``cvfeat export`` / ``cvfeat.export.to_onnx``.

    Attributes
    ----------
    input_shape : (int, int) or (int, int, int)
        ``(h, w)`` for grey models, ``(h, w, 3)`` for RGB models.
    color : {'gray', 'rgb'}
    metadata : dict
        The model card written at export (``cvfeat.*`` keys without the prefix, string
        values; :func:`cvfeat.export.read_model_card` parses them).
    """

    def __init__(self, path):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file {self.path} does not exist.")
        kind = file_kind(self.path)
        if kind != "other":
            raise ValueError(
                f"{self.path} is {'a skops model file' if kind == 'skops' else 'a pickle'}, "
                "not an ONNX model; export it first: cvfeat export MODEL.skops --out m.onnx, "
                "then use m.onnx."
            )
        try:
            self.session = ort.InferenceSession(str(self.path),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (pybind) exception types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"{self.path} is not an ONNX model that ONNX Runtime can load ({reason[:200]}); "
                "cvfeat predict takes the .onnx file written by cvfeat export."
            ) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"{self.path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                "a cvfeat model has one, uint8 images. Was it written by cvfeat export?"
            )
        inp = inputs[0]
        if inp.type != "tensor(uint8)" or len(inp.shape) not in (3, 4):
            raise ValueError(
                f"{self.path} takes {inp.type} {inp.shape}; a cvfeat model takes uint8 images "
                "[N, H, W] or [N, H, W, 3]. Was it written by cvfeat export?"
            )
        meta = self.session.get_modelmeta().custom_metadata_map
        if not any(k.startswith("cvfeat.") for k in meta):
            raise ValueError(
                f"{self.path} has no cvfeat model card (metadata keys 'cvfeat.*'), so it was not "
                "written by cvfeat export and its input conventions are unknown; export the "
                "fitted model with cvfeat export or cvfeat.export.to_onnx."
            )
        if any(isinstance(d, str) or d is None for d in inp.shape[1:]):
            raise ValueError(
                f"{self.path} takes images of unknown size {inp.shape}; a cvfeat model has a "
                "fixed input size. Was it written by cvfeat export?"
            )
        self.input_name = inp.name
        self.input_shape = tuple(int(d) for d in inp.shape[1:])
        self.color = "rgb" if len(self.input_shape) == 3 else "gray"
        self.output_name = self.session.get_outputs()[0].name
        # the card's keys without their "cvfeat." prefix, values as stored (strings)
        self.metadata = {k.removeprefix("cvfeat."): v for k, v in meta.items()}

    def predict(self, images):
        """Predictions for a uint8 batch of the model's input shape.

        Parameters
        ----------
        images : (n, h, w[, 3]) uint8 ndarray

        Returns
        -------
        prediction : (n,) ndarray (the model's first output)
        """
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(
                f"the model takes uint8 pixels (0-255); got {images.dtype}. Convert camera "
                "frames with np.asarray(frame, dtype=np.uint8), not scaled floats."
            )
        if images.shape[1:] != self.input_shape:
            want = "x".join(map(str, self.input_shape))
            got = "x".join(map(str, images.shape[1:]))
            raise ValueError(
                f"the model takes images of shape (n, {', '.join(map(str, self.input_shape))}) "
                f"({want}, {self.color}); got {images.shape} ({got}). Resize (cv2.INTER_AREA) "
                f"and convert to {self.color} first, or pass file paths to predict_files."
            )
        return self.session.run([self.output_name], {self.input_name: images})[0]

    def predict_files(self, paths):
        """Read, convert and resize each file to the model's input, then predict."""
        size = self.input_shape[:2]
        batch = np.stack([read_image(p, size, self.color) for p in paths])
        return self.predict(batch)
