"""Export fitted pipelines as dependency-free C99 for microcontrollers.

* :func:`to_c` -- fitted pipeline -> :class:`CExport` (``.header``, ``.source``,
  ``.report``, ``.save(folder)`` writing ``NAME.h``, ``NAME.c``, ``NAME.json``);
* :func:`check_parity_c` -- compiles the export with a host harness and the strict
  flags and compares it with the estimator (the measures of ``check_parity``);
* :func:`supported_c_steps` -- what can be exported.

Pipelines of image steps, features (HOG, ColorHistogram, LBP, FeatureUnion), scalers /
PCA and a linear model, SVR or trees; and micro-CNNs (MicroCNNRegressor,
MicroCNNClassifier, HybridCNNRegressor) after image steps, with their label-distribution
head and test-time flips (:mod:`cvfeat.export.c._cnn`).

The generated code is C99 and includes only ``<stdint.h>``, ``<stddef.h>`` and
``<math.h>``: no malloc, no stdio, no VLAs. Weights are ``static const`` tables
(float literals that round-trip exactly); work memory is one static ``float`` buffer
sized at generation time, or the caller's (``NAME_predict_r``). Computation is in
float32 (a microcontroller's FPU is single precision); the few steps whose
decisions numpy makes in float64 (HOG with ``transform_sqrt``; the tie between two
colour channels of equal gradient magnitude) use double there only.
"""

from ._build import STRICT_FLAGS, find_compiler
from ._export import CExport, check_parity_c, run_c, supported_c_steps, to_c

__all__ = ["STRICT_FLAGS", "CExport", "check_parity_c", "find_compiler", "run_c",
           "supported_c_steps", "to_c"]
