"""A tiny node builder used by cvfeat's ONNX converters.

skl2onnx hands each converter a ``scope`` (unique names) and a ``container``
(nodes and initializers). :class:`Graph` wraps the two so that a converter
reads like the numpy code it mirrors::

    g = Graph(scope, operator, container)
    x = g.cast(operator.inputs[0].full_name, np.float32)
    d = g.op("Sub", g.slice(x, [2], [None], axes=[1]), g.slice(x, [0], [-2], axes=[1]))
    g.identity(d, operator.outputs[0].full_name)

Only standard ``ai.onnx`` operators are emitted.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from onnx import TensorProto, numpy_helper

# opset of the ai.onnx domain cvfeat's converters are written for (and the default of
# to_onnx); ai.onnx.ml is only used by scikit-learn / XGBoost models after the features.
MIN_OPSET = 18

#: a converter puts this in the name of a Slice whose dropped entries are always finite
#: (e.g. HOG's block-norm epsilon entries): a linear model right after it may then read
#: the whole tensor with zero weights on them (cvfeat.export.onnx._fuse_linear_head)
FINITE_SLICE_MARK = "_finiteslice_"

_NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.bool_): TensorProto.BOOL,
}


def onnx_dtype(dtype):
    """TensorProto element type of a numpy dtype."""
    return _NP_TO_ONNX[np.dtype(dtype)]


class Graph:
    """Add nodes and constants to a skl2onnx container under unique names."""

    def __init__(self, scope, operator, container):
        self.scope = scope
        self.operator = operator
        self.container = container
        self.prefix = operator.full_name if operator is not None else "cvfeat"

    def name(self, hint):
        return self.scope.get_unique_variable_name(f"{self.prefix}_{hint}")

    def const(self, value, dtype=None, hint="c"):
        """An initializer holding ``value`` (numpy array or scalar); returns its name."""
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        tensor = numpy_helper.from_array(arr, name)
        self.container.add_initializer(name, tensor.data_type, list(arr.shape),
                                       arr.ravel().tolist())
        return name

    def op(self, op_type, *inputs, out=None, hint=None, mark="", **attrs):
        """Add one node; returns its (single) output name, or ``out`` if given.

        ``mark`` goes into the node's name (e.g. :data:`FINITE_SLICE_MARK`).
        """
        out = out or self.name(hint or op_type.lower())
        self.container.add_node(
            op_type, [i if i is not None else "" for i in inputs], [out],
            name=self.scope.get_unique_operator_name(f"{self.prefix}{mark or '_'}{op_type}"),
            **attrs)
        return out

    def cast(self, x, dtype):
        return self.op("Cast", x, to=onnx_dtype(dtype))

    def slice(self, x, starts, ends, axes, mark=""):
        """``x[..., starts:ends, ...]`` on ``axes``; ``None`` in ends means to the end."""
        big = np.iinfo(np.int64).max
        ends = [big if e is None else e for e in ends]
        return self.op("Slice", x, self.const(starts, np.int64), self.const(ends, np.int64),
                       self.const(axes, np.int64), mark=mark)

    def reshape(self, x, shape):
        return self.op("Reshape", x, self.const(shape, np.int64))

    def reduce(self, op_type, x, axes, keepdims=0):
        """ReduceSum / ReduceMax / ... over ``axes`` (axes as an input: opset >= 18)."""
        return self.op(op_type, x, self.const(axes, np.int64), keepdims=keepdims)

    def identity(self, x, out):
        return self.op("Identity", x, out=out)


class ImageInput(NamedTuple):
    """The checked input of an image step's converter (see :func:`image_input`)."""

    shape: list
    h: int | None
    w: int | None
    channels: int
    dtype: np.dtype
    where: str


def image_input(operator, *, fixed_size=False, check_fit=True):
    """Check the input variable of an image step's operator; return its layout.

    The checks every cvfeat image converter shares: a uint8 / float / double
    tensor (else ``TypeError``), of shape ``[N, H, W]`` or ``[N, H, W, 3]`` (a
    trailing 1 counts as grey), with the colour mode the step was fitted on
    (``image_shape_``, when ``check_fit``), and with a fixed ``H`` and ``W`` when
    ``fixed_size`` (the step's constants depend on them). Messages name the step
    and the input.
    """
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, UInt8TensorType

    est = operator.raw_operator
    var = operator.inputs[0]
    where = f"{type(est).__name__} (ONNX export, input {var.onnx_name!r})"
    kinds = {UInt8TensorType: np.uint8, FloatTensorType: np.float32, DoubleTensorType: np.float64}
    dtype = kinds.get(type(var.type))
    if dtype is None:
        raise TypeError(
            f"{where}: input type {type(var.type).__name__} is not supported; use "
            "UInt8TensorType (0-255 pixels), FloatTensorType or DoubleTensorType ([0, 1])."
        )
    shape = list(var.type.shape)
    if len(shape) == 3:
        channels = 1
    elif len(shape) == 4 and shape[3] in (1, 3):
        channels = shape[3]
    else:
        raise ValueError(
            f"{where}: input shape {shape} is not an image batch; expected [N, H, W] (grey) "
            "or [N, H, W, 3] (RGB)."
        )
    fitted = getattr(est, "image_shape_", None)
    if check_fit and fitted is not None and (channels == 1) != (fitted[2] == 1):
        seen = "grey" if fitted[2] == 1 else "RGB"
        raise ValueError(
            f"{where}: the step was fitted on {seen} images but the input shape {shape} is "
            f"{'grey' if channels == 1 else 'RGB'}; declare the input as "
            f"{'[N, H, W]' if fitted[2] == 1 else '[N, H, W, 3]'}."
        )
    h, w = (s if isinstance(s, int) else None for s in shape[1:3])
    if fixed_size and (h is None or w is None):
        raise ValueError(
            f"{where}: the image size must be fixed in the graph: its height and width must be "
            f"fixed numbers (got {shape}), since the step's constants depend on them. Declare "
            "the input as [N, H, W(, 3)] with numbers (cvfeat.export.to_onnx fixes them from "
            "X_sample) or put a Resize step first."
        )
    return ImageInput(shape, h, w, channels, np.dtype(dtype), where)
