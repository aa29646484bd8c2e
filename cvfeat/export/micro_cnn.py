"""ONNX converters of :class:`~cvfeat.models.MicroCNNRegressor` and
:class:`~cvfeat.models.MicroCNNClassifier`.

The network is not re-implemented: its fitted ``module_`` is exported by PyTorch's
own ONNX exporter and the resulting graph is spliced into skl2onnx's, so the
network, its input normalisation and its output decoding come from the code that
``predict`` runs.

1. ``module_`` is copied with every BatchNorm folded into its convolution
   (:func:`cvfeat.models.architectures.fold_batchnorm`: a deep copy in eval mode,
   moved to the CPU; the fitted model is untouched);
2. ``torch.onnx.export(..., dynamo=False)`` writes it to an in-memory ModelProto at
   the container's ai.onnx opset (18 by default; at most 20, the TorchScript
   exporter's limit), batch axis dynamic, with an example input of the operator's
   type: uint8 pixels stay uint8 (the module casts them itself), float images in
   [0, 1] are scaled to 0-255 first as :func:`cvfeat.models._base.pixels` does
   (``Mul`` by 255 in the input's float type, then ``Cast`` to float32);
3. :func:`embed_graph` copies its initializers and nodes into the skl2onnx
   container, every tensor and node renamed with the scope's unique names (several
   networks, or a network next to cvfeat's feature steps, never clash), its input
   wired to the operator's input and its output to the operator's output. Only
   standard ``ai.onnx`` operators (Conv, Relu, MaxPool, ReduceMean, Gemm, Pad,
   Concat, Softmax, ...) without subgraphs are accepted.

Outputs: regressors ``FloatTensorType([N, n_outputs_])`` in the target's units
(:func:`cvfeat.export.to_onnx` reshapes one target to ``[N]``); classifiers, like
skl2onnx's classifiers without ZipMap, ``label`` ``[N]`` (``Gather`` of
``classes_`` at the ``ArgMax`` of the probabilities: int64 for integer or bool
classes, string for strings, double for float classes) and ``probabilities``
float32 ``[N, n_classes]`` (the module's softmax).

A label-distribution head (``loss='ldl'``) is part of the module (``Softmax``, ``Mul``
by the bin centres, ``ReduceSum``), and so are test-time flips (``tta``: ``Slice``
with step -1 along the image axes, and the mean of the views' outputs).

Parity: the graph computes what ``predict`` computes, in float32; the differences
are float rounding of the folded BatchNorm and of ONNX Runtime's kernels: 7e-8 to
3e-7 of the largest prediction on the models of ``tests/test_export_micro_cnn.py``
(hybrids about 2e-6: their features are computed in float32 in the graph). int8:
:func:`cvfeat.export.quantize_int8` quantizes the ``Conv`` and ``Gemm`` nodes with at
least 256 weights, per output channel (a micro-CNN's smaller layers stay float).
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np

from ..models import MicroCNNClassifier, MicroCNNRegressor
from ._ops import MIN_OPSET, Graph

__all__ = [
    "classifier_converter",
    "classifier_shape_calculator",
    "embed_graph",
    "export_module",
    "pixel_input",
    "register",
    "regressor_converter",
    "regressor_shape_calculator",
]

#: the highest ai.onnx opset of PyTorch's TorchScript exporter (``dynamo=False``)
TORCH_MAX_OPSET = 20


# -- shape calculators ---------------------------------------------------------------


def _check_images(operator):
    """``(h, w, c, dtype)`` of the operator's images, checked against ``image_shape_``."""
    from .preprocessing import _input_layout

    est = operator.raw_operator
    h, w, c, dtype = _input_layout(operator)
    fitted = tuple(int(v) for v in est.image_shape_)
    if (h, w, c) != fitted:
        mode = {1: "grey", 3: "RGB"}
        size = "?x?" if h is None or w is None else f"{h}x{w}"
        raise ValueError(
            f"{type(est).__name__} (ONNX export): the graph gives it {size} {mode[c]} images but "
            f"it was fitted on {fitted[0]}x{fitted[1]} {mode[fitted[2]]} images. Export with "
            "X_sample of the training size and colour (or put cvfeat.preprocessing.Resize / "
            "Grayscale before it in the pipeline)."
        )
    return h, w, c, dtype


def regressor_shape_calculator(operator):
    """Output ``FloatTensorType([N, n_outputs_])``."""
    from skl2onnx.common.data_types import FloatTensorType

    _check_images(operator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, int(operator.raw_operator.n_outputs_)])


def _label_type(classes):
    """skl2onnx tensor type of the labels (int64, string or double) and the classes array."""
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType, StringTensorType

    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return Int64TensorType, classes.astype(np.int64)
    if classes.dtype.kind == "f":
        return DoubleTensorType, classes.astype(np.float64)
    if all(isinstance(c, str) for c in classes.tolist()):
        return StringTensorType, classes.astype(object)
    raise TypeError(
        f"MicroCNNClassifier (ONNX export): classes_ of dtype {classes.dtype} cannot be ONNX "
        "labels; use integer or string class labels."
    )


def classifier_shape_calculator(operator):
    """Outputs ``label`` ``[N]`` (int64 / string / double) and ``probabilities``
    ``FloatTensorType([N, n_classes])``."""
    from skl2onnx.common.data_types import FloatTensorType

    _check_images(operator)
    classes = operator.raw_operator.classes_
    if len(operator.outputs) != 2:
        raise RuntimeError(
            "MicroCNNClassifier (ONNX export): expected the outputs label and probabilities "
            f"(no ZipMap), got {len(operator.outputs)}; export with cvfeat.export.to_onnx."
        )
    n = operator.inputs[0].get_first_dimension()
    label_type, _ = _label_type(classes)
    operator.outputs[0].type = label_type([n])
    operator.outputs[1].type = FloatTensorType([n, len(classes)])


# -- exporting and splicing the torch module -----------------------------------------


def _opset(container, where):
    """ai.onnx opset to export the module at: the container's, at most the exporter's."""
    target = container.target_opset
    if target is None:
        return MIN_OPSET
    if target < MIN_OPSET:
        raise ValueError(
            f"{where} (ONNX export): target opset {target} is too old; the exported network "
            f"needs ai.onnx opset >= {MIN_OPSET}."
        )
    return min(int(target), TORCH_MAX_OPSET)


def export_module(module, example_inputs, input_names, opset):
    """``torch.onnx.export`` of an eval-mode CPU module into an ``onnx.ModelProto``.

    Parameters
    ----------
    module : torch.nn.Module
    example_inputs : tuple of torch.Tensor
        Each with a batch of 2 (the batch axis is exported as dynamic).
    input_names : list of str
    opset : int
        ai.onnx opset version.

    Returns
    -------
    proto : onnx.ModelProto
        One output, ``output``; batch axis ``N`` of every input and of the output.
    """
    import onnx
    import torch

    buf = io.BytesIO()
    axes = {name: {0: "N"} for name in [*input_names, "output"]}
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter warns about its own deprecation and tracing details
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, tuple(example_inputs), buf, dynamo=False, opset_version=opset,
            input_names=list(input_names), output_names=["output"], dynamic_axes=axes,
            do_constant_folding=True, export_params=True)
    proto = onnx.load_from_string(buf.getvalue())
    versions = {d.domain or "": d.version for d in proto.opset_import}
    if versions.get("", opset) > opset or set(versions) - {""}:
        raise RuntimeError(
            f"torch.onnx.export wrote opsets {versions} for a requested ai.onnx {opset}; the "
            "network cannot be embedded. Please report this with your torch version."
        )
    return proto


_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def embed_graph(g, proto, inputs, outputs):
    """Copy ``proto``'s initializers and nodes into ``g``'s container, renamed.

    Parameters
    ----------
    g : cvfeat.export._ops.Graph
    proto : onnx.ModelProto
        A graph of standard ai.onnx operators without subgraphs.
    inputs, outputs : dict
        ``{proto tensor name: container tensor name}`` for the graph's inputs and
        outputs; every other tensor gets a unique name from the scope.
    """
    from onnx import AttributeProto, helper, numpy_helper

    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    free = [i.name for i in graph.input if i.name not in initializers]
    if sorted(free) != sorted(inputs) or sorted(o.name for o in graph.output) != sorted(outputs):
        raise RuntimeError(
            f"the exported network has inputs {free} and outputs "
            f"{[o.name for o in graph.output]}; expected {list(inputs)} and {list(outputs)}."
        )
    names = {**inputs, **outputs, "": ""}

    def rename(name):
        if name not in names:
            names[name] = g.name(_UNSAFE.sub("_", name).strip("_") or "t")
        return names[name]

    for t in graph.initializer:
        arr = numpy_helper.to_array(t)
        new = rename(t.name)
        g.container.add_initializer(new, t.data_type, list(arr.shape),
                                    numpy_helper.from_array(arr, new))
    reserved = {"op_type", "inputs", "outputs", "op_domain", "op_version", "name"}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise RuntimeError(
                f"the exported network uses {node.domain}.{node.op_type}; only standard "
                "ai.onnx operators can be embedded."
            )
        attrs = {}
        for a in node.attribute:
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) or a.name in reserved:
                raise RuntimeError(
                    f"the exported network's {node.op_type} node has attribute {a.name!r} "
                    "(a subgraph or a reserved name), which cannot be embedded."
                )
            attrs[a.name] = helper.get_attribute_value(a)
        node_inputs = list(node.input)
        while node_inputs and node_inputs[-1] == "":  # omitted trailing optional inputs
            node_inputs.pop()
        if "" in node_inputs:
            raise RuntimeError(
                f"the exported network's {node.op_type} node omits an optional input before "
                "a given one, which skl2onnx's graph sorting does not support."
            )
        g.container.add_node(
            node.op_type, [rename(i) for i in node_inputs], [rename(o) for o in node.output],
            name=g.scope.get_unique_operator_name(f"{g.prefix}_{node.op_type}"), **attrs)


def pixel_input(g, operator, h, w, c, dtype):
    """The module's pixel input from the operator's images: ``(name, example tensor)``.

    uint8 images go in as they are (the module casts them to float32 itself);
    float images in [0, 1] become ``float32(x * 255)`` as in
    :func:`cvfeat.models._base.pixels`.
    """
    import torch

    x = operator.inputs[0].full_name
    shape = (2, h, w) if c == 1 else (2, h, w, c)
    if dtype == np.uint8:
        return x, torch.zeros(shape, dtype=torch.uint8)
    x = g.op("Mul", x, g.const(np.asarray(255.0, dtype=dtype)), hint="pixels255")
    if dtype != np.float32:
        x = g.cast(x, np.float32)
    return x, torch.zeros(shape, dtype=torch.float32)


def folded_module(est):
    """BatchNorm-folded, eval-mode float32 CPU copy of a fitted model's ``module_``,
    wrapped in :class:`~cvfeat.models.architectures.FlipAverage` when ``est.tta`` asks
    for test-time flips (the flips and the mean are then part of the graph)."""
    from ..models.architectures import FlipAverage, fold_batchnorm

    module = fold_batchnorm(est.module_).cpu().float().eval()
    views = est._views()
    return FlipAverage(module, views).eval() if len(views) > 1 else module


def _export(scope, operator, container, extra_inputs=()):
    """Export ``operator.raw_operator.module_`` and splice it in; returns (g, output name).

    ``extra_inputs``: ``(container name, example tensor)`` pairs after the pixels.
    """
    est = operator.raw_operator
    where = type(est).__name__
    h, w, c, dtype = _check_images(operator)
    g = Graph(scope, operator, container)
    x, example = pixel_input(g, operator, h, w, c, dtype)
    names = ["images", *(f"input{i}" for i in range(1, 1 + len(extra_inputs)))]
    examples = [example, *(t for _, t in extra_inputs)]
    proto = export_module(folded_module(est), examples, names, _opset(container, where))
    out = g.name("network_output")
    inputs = dict(zip(names, [x, *(n for n, _ in extra_inputs)], strict=True))
    embed_graph(g, proto, inputs, {"output": out})
    return g, out


# -- converters ----------------------------------------------------------------------


def regressor_converter(scope, operator, container):
    """MicroCNNRegressor -> the exported network, predictions ``[N, n_outputs_]``."""
    g, out = _export(scope, operator, container)
    g.identity(out, operator.outputs[0].full_name)


def classifier_converter(scope, operator, container):
    """MicroCNNClassifier -> the network's probabilities, and ``classes_[ArgMax]``."""
    g, proba = _export(scope, operator, container)
    _, classes = _label_type(operator.raw_operator.classes_)
    g.identity(proba, operator.outputs[1].full_name)
    idx = g.op("ArgMax", proba, axis=1, keepdims=0, select_last_index=0)
    if classes.dtype == object:  # strings: the container's list path writes string_data
        from onnx import TensorProto

        table = g.name("classes")
        g.container.add_initializer(table, TensorProto.STRING, [len(classes)],
                                    [s.encode("utf-8") for s in classes])
    else:
        table = g.const(classes, hint="classes")
    g.op("Gather", table, idx, axis=0, out=operator.outputs[0].full_name)


def register():
    """Register both converters with skl2onnx (torch is imported only when converting)."""
    from skl2onnx import update_registered_converter

    update_registered_converter(MicroCNNRegressor, "CvfeatMicroCNNRegressor",
                                regressor_shape_calculator, regressor_converter)
    update_registered_converter(MicroCNNClassifier, "CvfeatMicroCNNClassifier",
                                classifier_shape_calculator, classifier_converter,
                                options={"zipmap": [True, False]})
