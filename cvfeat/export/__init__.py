"""Export cvfeat pipelines to ONNX: one graph from uint8 camera pixels to the prediction.

* :func:`to_onnx` -- fitted pipeline -> ``onnx.ModelProto`` (optionally int8);
* :func:`check_parity` -- the graph's outputs vs the estimator's, on images;
* :func:`to_c` / :func:`check_parity_c` -- dependency-free C99 for microcontrollers
  (:mod:`cvfeat.export.c`), and its parity compiled with the system C compiler;
* :func:`compare_quantized` -- fp32 vs int8: bytes, prediction change, latency;
* :func:`read_model_card` -- the metadata ``to_onnx`` writes into the graph;
* :func:`check_exportable` -- raises, naming the step, if a pipeline cannot be exported;
* :func:`supported_steps` -- what can be exported;
* :func:`register_all` -- registers cvfeat's converters with skl2onnx (``to_onnx``
  does it itself).

Each cvfeat step has its converter in the module of the same name
(``cvfeat.features.hog`` -> ``cvfeat.export.hog``).
"""

from .c import check_parity_c, to_c
from .card import read_model_card
from .onnx import check_exportable, input_spec, register_all, supported_steps, to_onnx
from .parity import check_parity
from .quantize import compare_quantized, quantize_int8

__all__ = [
    "check_exportable",
    "check_parity",
    "check_parity_c",
    "compare_quantized",
    "input_spec",
    "quantize_int8",
    "read_model_card",
    "register_all",
    "supported_steps",
    "to_c",
    "to_onnx",
]
