"""ONNX converters for scikit-learn's kernel methods that skl2onnx lacks.

:class:`sklearn.kernel_approximation.Nystroem` (``K(X, components_) @
normalization_.T``) and :class:`sklearn.kernel_ridge.KernelRidge` (``K(X, X_fit_) @
dual_coef_``) are natural heads for a parameter budget, and skl2onnx has no
converter for either; cvfeat registers these so that such pipelines export like
any other (standard ``ai.onnx`` operators only).

The kernel ``K(X, Y)`` is written as scikit-learn's :func:`~sklearn.metrics.pairwise_kernels`
computes it (Nystroem: in the input's float type; KernelRidge: in float64, see below):

========================  ======================================================
kernel                    graph
========================  ======================================================
'linear'                  ``X @ Y.T`` (MatMul)
'poly' / 'polynomial'     ``(gamma X @ Y.T + coef0) ** degree``
'sigmoid'                 ``tanh(gamma X @ Y.T + coef0)``
'rbf'                     ``exp(-gamma max(|x|^2 - 2 X @ Y.T + |y|^2, 0))``, as
                          ``euclidean_distances(squared=True)``
'laplacian'               ``exp(-gamma sum |x - y|)`` (broadcast ``[N, m, d]``)
'cosine'                  ``normalize(X) @ normalize(Y).T`` (zero rows stay zero)
========================  ======================================================

KernelRidge evaluates its kernel and dual sum in float64 inside the graph: the sum
``sum_i dual_coef_i K(x, x_i)`` cancels heavily (on HOG features it lost up to 7e-5
of the prediction range in float32; in float64 4e-7 remains, the effect of the float32
features themselves). With the linear kernel it is written in its primal form ``X @
(X_fit_.T @ dual_coef_)``, the product computed in float64 at export. Nystroem's two
products (the kernel and ``normalization_ = K_mm^(-1/2)``) are marked to stay float
under int8 quantization (:data:`cvfeat.export.quantize.KEEP_FLOAT_MARK`).

``gamma=None`` means ``1 / n_features`` (scikit-learn's default); ``degree`` and
``coef0`` default to 3 and 1. Callable, 'chi2', 'additive_chi2' and 'precomputed'
kernels raise at export.
"""

from __future__ import annotations

import numpy as np

from ._ops import Graph, onnx_dtype
from .quantize import KEEP_FLOAT_MARK

__all__ = ["register"]

_SUPPORTED = ("linear", "poly", "polynomial", "sigmoid", "rbf", "laplacian", "cosine")


def _float_input(operator):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    var = operator.inputs[0]
    kinds = {FloatTensorType: np.float32, DoubleTensorType: np.float64}
    dtype = kinds.get(type(var.type))
    name = type(operator.raw_operator).__name__
    if dtype is None or len(var.type.shape) != 2:
        raise TypeError(
            f"{name} (ONNX export): expected a float feature matrix [N, d], got "
            f"{type(var.type).__name__} {var.type.shape}; put a feature step before it."
        )
    return np.dtype(dtype), type(var.type)


def _kernel_params(est):
    """(kernel name, gamma, degree, coef0) as pairwise_kernels would use them."""
    name = type(est).__name__
    kernel = est.kernel
    if callable(kernel) or kernel not in _SUPPORTED:
        raise TypeError(
            f"{name}(kernel={kernel!r}) has no ONNX converter; exportable kernels: "
            f"{', '.join(repr(k) for k in _SUPPORTED)}."
        )
    params = dict(getattr(est, "kernel_params", None) or {})
    for key in ("gamma", "degree", "coef0"):
        value = getattr(est, key, None)
        if value is not None:
            params.setdefault(key, value)
    return kernel, params


def _kernel(g, x, Y, kernel, params, dt):
    """``K(x, Y)`` for the graph tensor ``x`` [N, d] and constant ``Y`` [m, d]."""
    c = lambda v: g.const(dt.type(v))  # noqa: E731
    n_features = Y.shape[1]
    gamma = params.get("gamma")
    gamma = 1.0 / n_features if gamma is None else gamma
    if kernel == "laplacian":
        diff = g.op("Sub", g.op("Unsqueeze", x, g.const(np.array([1], np.int64))),
                    g.const(Y.astype(dt)[None]))
        dist = g.reduce("ReduceSum", g.op("Abs", diff), [2])
        return g.op("Exp", g.op("Mul", dist, c(-gamma)))
    if kernel == "cosine":
        x = _normalize(g, x, dt)
        norms = np.sqrt((Y.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
        norms[norms == 0] = 1
        Y = Y / norms
    dot = g.name("dot")
    # an rbf / poly / sigmoid / cosine kernel is not linear in this product: int8 noise on
    # it would be amplified (|x|^2 - 2 x.y + |y|^2 cancels), so it stays float
    mark = "" if kernel == "linear" else KEEP_FLOAT_MARK
    g.container.add_node(
        "MatMul", [x, g.const(np.ascontiguousarray(Y.T).astype(dt))], [dot],
        name=g.scope.get_unique_operator_name(f"{g.prefix}{mark}MatMul"))
    if kernel in ("linear", "cosine"):
        return dot
    if kernel in ("poly", "polynomial"):
        base = g.op("Add", g.op("Mul", dot, c(gamma)), c(params.get("coef0", 1)))
        return g.op("Pow", base, c(params.get("degree", 3)))
    if kernel == "sigmoid":
        return g.op("Tanh", g.op("Add", g.op("Mul", dot, c(gamma)), c(params.get("coef0", 1))))
    # rbf: euclidean_distances(X, Y, squared=True) = |x|^2 - 2 x.y + |y|^2, clipped at 0
    xx = g.op("ReduceSumSquare", x, g.const(np.array([1], np.int64)), keepdims=1)
    yy = (Y.astype(np.float64) ** 2).sum(axis=1)[None].astype(dt)
    d2 = g.op("Add", g.op("Add", g.op("Mul", dot, c(-2)), xx), g.const(yy))
    d2 = g.op("Max", d2, c(0))
    return g.op("Exp", g.op("Mul", d2, c(-gamma)))


def _normalize(g, x, dt):
    norm = g.op("Sqrt", g.op("ReduceSumSquare", x, g.const(np.array([1], np.int64)), keepdims=1))
    zero = g.op("Equal", norm, g.const(dt.type(0)))
    return g.op("Div", x, g.op("Where", zero, g.const(dt.type(1)), norm))


def nystroem_shape_calculator(operator):
    """Output ``[N, n_components]`` of the input float type."""
    _, ttype = _float_input(operator)
    _kernel_params(operator.raw_operator)
    est = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = ttype([n, est.normalization_.shape[0]])


def nystroem_converter(scope, operator, container):
    """``pairwise_kernels(X, components_) @ normalization_.T``."""
    g = Graph(scope, operator, container)
    est = operator.raw_operator
    dt, _ = _float_input(operator)
    kernel, params = _kernel_params(est)
    k = _kernel(g, operator.inputs[0].full_name, np.asarray(est.components_), kernel, params, dt)
    # normalization_ = K_mm^(-1/2) is ill-conditioned by design: int8 noise on K would be
    # amplified by its largest entries, so this product stays float too
    g.container.add_node(
        "MatMul", [k, g.const(np.ascontiguousarray(est.normalization_.T).astype(dt))],
        [operator.outputs[0].full_name],
        name=g.scope.get_unique_operator_name(f"{g.prefix}{KEEP_FLOAT_MARK}MatMul"))


def kernel_ridge_shape_calculator(operator):
    """Output ``[N, n_targets]`` (``[N, 1]`` for one target) of the input float type."""
    _, ttype = _float_input(operator)
    est = operator.raw_operator
    _kernel_params(est)
    n = operator.inputs[0].get_first_dimension()
    k = 1 if est.dual_coef_.ndim == 1 else est.dual_coef_.shape[1]
    operator.outputs[0].type = ttype([n, k])


def kernel_ridge_converter(scope, operator, container):
    """``pairwise_kernels(X, X_fit_) @ dual_coef_``."""
    g = Graph(scope, operator, container)
    est = operator.raw_operator
    dt, _ = _float_input(operator)
    kernel, params = _kernel_params(est)
    coef = np.asarray(est.dual_coef_, dtype=np.float64)
    coef = coef.reshape(-1, 1) if coef.ndim == 1 else coef
    x, out = operator.inputs[0].full_name, operator.outputs[0].full_name
    if kernel == "linear":
        # (X @ X_fit.T) @ dual = X @ (X_fit.T @ dual): the primal weights, summed in
        # float64 here; the dual sum cancels badly in float32
        g.op("MatMul", x, g.const((np.asarray(est.X_fit_).T @ coef).astype(dt)), out=out)
        return
    # the dual sum cancels heavily (sum |alpha_i K_i| / |sum alpha_i K_i| reached 1e4 on
    # HOG features), so the kernel and the sum are evaluated in float64
    xd = g.cast(x, np.float64) if dt != np.float64 else x
    k = _kernel(g, xd, np.asarray(est.X_fit_), kernel, params, np.dtype(np.float64))
    pred = g.op("MatMul", k, g.const(coef))
    g.op("Cast", pred, to=onnx_dtype(dt), out=out)


def register():
    """Register the Nystroem and KernelRidge converters with skl2onnx."""
    from skl2onnx import update_registered_converter
    from sklearn.kernel_approximation import Nystroem
    from sklearn.kernel_ridge import KernelRidge

    update_registered_converter(Nystroem, "CvfeatNystroem", nystroem_shape_calculator,
                                nystroem_converter)
    update_registered_converter(KernelRidge, "CvfeatKernelRidge", kernel_ridge_shape_calculator,
                                kernel_ridge_converter)
