"""ONNX converter of :class:`~cvfeat.models.HybridCNNRegressor`.

A hybrid predicts from two things computed from the same images: its CNN and its
classical features (``features_``, a fitted cvfeat transformer, Pipeline or
FeatureUnion). Both are computed inside the one graph, from the same input tensor:

* a custom skl2onnx **parser** (:func:`parser`) first parses ``features_`` as
  skl2onnx parses any sub-model (``_parse_sklearn``: every cvfeat step gets its own
  registered converter, e.g. ``CvfeatHOG``), then declares the hybrid's operator
  with two inputs, the images and the features variable, and one output;
* the converter exports the BatchNorm-folded ``module_`` with PyTorch's exporter
  as :mod:`cvfeat.export.micro_cnn` does, with two inputs (pixels and raw
  features: the module standardises them itself) and splices it in.

So the features reach the network exactly as in ``predict`` (the numpy path computes
them in float64 and casts them to float32; the graph computes them in float32 within
the feature converters' own parity, then standardises them in the network). Output:
``FloatTensorType([N, n_outputs_])`` in the target's units.
"""

from __future__ import annotations

import numpy as np

from ..models import HybridCNNRegressor
from ._ops import Graph
from .micro_cnn import _check_images, _export

__all__ = ["converter", "parser", "register", "shape_calculator"]

ALIAS = "CvfeatHybridCNNRegressor"


def parser(scope, model, inputs, custom_parsers=None):
    """Declare ``features_``'s operators, then the hybrid's on (images, features)."""
    from skl2onnx._parse import _parse_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from .onnx import _prune

    features = _parse_sklearn(scope, _prune(model.features_), inputs,
                              custom_parsers=custom_parsers)
    if len(features) != 1:
        raise RuntimeError(
            f"HybridCNNRegressor (ONNX export): its features {model.features_!r} give "
            f"{len(features)} outputs in ONNX; expected one (n, d) feature tensor."
        )
    op = scope.declare_local_operator(ALIAS, model)
    op.inputs = [inputs[0], features[0]]
    op.outputs.append(scope.declare_local_variable("variable", FloatTensorType()))
    return op.outputs


def shape_calculator(operator):
    """Inputs images and ``[N, n_features_extra_]`` features; output ``[N, n_outputs_]``."""
    from skl2onnx.common.data_types import FloatTensorType

    est = operator.raw_operator
    _check_images(operator)
    if len(operator.inputs) != 2:
        raise RuntimeError(
            "HybridCNNRegressor (ONNX export): expected two inputs (images, features), got "
            f"{len(operator.inputs)}; the hybrid's parser was bypassed. Export with "
            "cvfeat.export.to_onnx (or call cvfeat.export.register_all() first)."
        )
    shape = operator.inputs[1].type.shape
    d = shape[1] if len(shape) == 2 else None
    if isinstance(d, int) and d != est.n_features_extra_:
        raise ValueError(
            f"HybridCNNRegressor (ONNX export): the features' graph gives {d} features but the "
            f"model was fitted on {est.n_features_extra_}."
        )
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, int(est.n_outputs_)])


def converter(scope, operator, container):
    """HybridCNNRegressor -> the exported network on (pixels, float32 features)."""
    import torch
    from skl2onnx.common.data_types import FloatTensorType

    est = operator.raw_operator
    feats = operator.inputs[1].full_name
    if not isinstance(operator.inputs[1].type, FloatTensorType):
        feats = Graph(scope, operator, container).cast(feats, np.float32)
    example = torch.zeros((2, int(est.n_features_extra_)), dtype=torch.float32)
    g, out = _export(scope, operator, container, extra_inputs=[(feats, example)])
    g.identity(out, operator.outputs[0].full_name)


def register():
    """Register the hybrid's parser, shape calculator and converter with skl2onnx."""
    from skl2onnx import update_registered_converter

    update_registered_converter(HybridCNNRegressor, ALIAS, shape_calculator, converter,
                                parser=parser)
