"""``to_c`` and ``check_parity_c``: see :mod:`cvfeat.export.c`."""

from __future__ import annotations

import datetime
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from ... import __version__
from ..onnx import _check_sample, _describe, _unwrap, input_spec
from ..parity import parity_measures
from ._build import STRICT_FLAGS, compile_model, cortex_m_size, find_compiler, measure_size
from ._cnn import is_cnn, micro_cnn
from ._emit import Program
from ._features import FEATURE_STEPS, IMAGE_STEPS, Arena, Image, LinearSink, StoreSink
from ._models import VECTOR_STEPS, dot_function, final_model, fold_scaler, scaler_parameters

__all__ = ["CExport", "check_parity_c", "supported_c_steps", "to_c"]

ERRORS = {"OK": 0, "ERR_NULL": 1}


def supported_c_steps():
    """The steps :func:`to_c` can export, by role (class names)."""
    return {
        "image": sorted(c.__name__ for c in IMAGE_STEPS),
        "features": sorted(c.__name__ for c in FEATURE_STEPS) + ["FeatureUnion"],
        "transformers": sorted(c.__name__ for c in VECTOR_STEPS),
        "models": ["any linear regressor (Ridge, LinearRegression, Lasso, ElasticNet, "
                   "LinearSVR, SGDRegressor, HuberRegressor, ...)",
                   "SVR / NuSVR (rbf, linear)",
                   "DecisionTreeRegressor, ExtraTreeRegressor, RandomForestRegressor, "
                   "ExtraTreesRegressor, GradientBoostingRegressor, XGBRegressor",
                   "MicroCNNRegressor, MicroCNNClassifier, HybridCNNRegressor (after image "
                   "steps only)"],
    }


def _supported_message():
    s = supported_c_steps()
    return (f"C export supports: image steps {', '.join(s['image']) or '(none)'}; features "
            f"{', '.join(s['features'])}; then {', '.join(s['transformers'])}; then "
            f"{'; '.join(s['models'])}, or no model (the features are the output).")


def _unsupported(path, step, why=""):
    return TypeError(f"to_c: {path} {type(step).__name__} has no C generator{why}. "
                     + _supported_message())


def _flat_steps(est, path=""):
    """(path, step) of a Pipeline's steps, nested Pipelines flattened."""
    if isinstance(est, Pipeline):
        for i, (_, step) in enumerate(est.steps):
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            yield from _flat_steps(step, f"{path}.steps[{i}]" if path else f"steps[{i}]")
    else:
        yield path or "estimator", est


def _is_features(step):
    if isinstance(step, FeatureUnion):
        return True
    if isinstance(step, Pipeline):
        return any(_is_features(s) for _, s in _flat_steps(step))
    return type(step) in FEATURE_STEPS


def _gen_features(program, est, path, img, sink, arena):
    """Emit the code of a feature part (image steps, then one feature step or a
    FeatureUnion of feature parts); returns its number of features."""
    if isinstance(est, FeatureUnion):
        weights = est.transformer_weights or {}
        n = 0
        for i, (name, branch) in enumerate(est.transformer_list):
            where = f"{path}.transformer_list[{i}]"
            if isinstance(branch, str) and branch == "drop":
                continue
            if isinstance(branch, str):
                raise TypeError(f"to_c: {where} {branch!r}: a FeatureUnion branch that passes "
                                "images through cannot be exported; remove it. "
                                + _supported_message())
            n += _gen_features(program, branch, where, img,
                               sink.shifted(n, float(weights.get(name, 1.0))), arena)
        return n
    steps = list(_flat_steps(est, path))
    mark = arena.top
    for i, (where, step) in enumerate(steps):
        last = i == len(steps) - 1
        if type(step) in IMAGE_STEPS and not last:
            img = IMAGE_STEPS[type(step)](program, step, img, arena, where)
            continue
        if last and (type(step) in FEATURE_STEPS or isinstance(step, FeatureUnion)):
            gen = FEATURE_STEPS.get(type(step))
            n = (gen(program, step, img, sink, arena, where) if gen
                 else _gen_features(program, step, where, img, sink, arena))
            arena.pop(mark)
            return n
        raise _unsupported(where, step, " in a feature part (image steps, then one feature "
                           "step or FeatureUnion)")
    raise TypeError(f"to_c: {path} has no feature step. " + _supported_message())


def _plan(est):
    """Split the flat steps into (feature part, vector steps, model)."""
    steps = list(_flat_steps(est))
    k = 0
    while k < len(steps) and not _is_features(steps[k][1]):
        if type(steps[k][1]) not in IMAGE_STEPS:
            raise _unsupported(*steps[k])
        k += 1
    if k == len(steps):
        raise TypeError("to_c: the estimator computes no features: it needs a feature step "
                        "(e.g. HOG). " + _supported_message())
    feature_steps = steps[: k + 1]
    rest = steps[k + 1:]
    vector = []
    model = None
    for j, (where, step) in enumerate(rest):
        if type(step) in VECTOR_STEPS:
            vector.append((where, step))
        elif j == len(rest) - 1 and hasattr(step, "predict"):
            model = (where, step)
        else:
            raise _unsupported(where, step)
    return feature_steps, vector, model


def _feature_part(feature_steps):
    if len(feature_steps) == 1:
        return feature_steps[0][1]
    return Pipeline([(f"s{i}", s) for i, (_, s) in enumerate(feature_steps)])


def _generate_cnn(program, steps, X, img):
    """Image steps, then a micro-CNN (or hybrid): :func:`cvfeat.export.c._cnn.micro_cnn`."""
    arena = Arena(program)
    *image_steps, (where, cnn) = steps
    Xs = X[:1]
    for path, step in image_steps:
        if type(step) not in IMAGE_STEPS:
            raise _unsupported(path, step, " before a micro-CNN (only image steps can be)")
        img = IMAGE_STEPS[type(step)](program, step, img, arena, path)
        Xs = step.transform(Xs)

    def feature_gen(program, features, img, arena):
        d = int(np.asarray(features.transform(Xs)).shape[1])
        off = arena.push(d)
        program.emit(f"float *feat = work + {off};")
        _gen_features(program, features, f"{where}.features_", img, StoreSink(), arena)
        return "feat", d

    n_out, task, classes = micro_cnn(program, cnn, img, arena, where, feature_gen)
    return {"task": task, "n_outputs": int(n_out), "n_features": 0, "classes": classes,
            "macs": int(cnn.n_macs_), "streamed": False}


def _generate(est, X, name):
    program = Program(name)
    h, w = X.shape[1:3]
    c = 3 if X.ndim == 4 else 1
    img = Image("pixels", h, w, c)
    steps = list(_flat_steps(est))
    if steps and is_cnn(steps[-1][1]):
        info = _generate_cnn(program, steps, X, img)
        info["input"] = (h, w, c)
        return program, ["int i, j;", "(void)i;", "(void)j;"], info
    feature_steps, vector, model = _plan(est)
    part = _feature_part(feature_steps)
    d = int(np.asarray(part.transform(X[:1])).shape[1])
    arena = Arena(program)
    n_out, task, final = d, "features", None
    if model is not None:
        where, m = model
        d_in = d
        for _, s in vector:
            d_in = int(getattr(s, "n_components_", d_in))
        final = final_model(m, d_in, where)
        if final is None:
            raise _unsupported(where, m)
        task, n_out = "regression", final.n_out
    stream = (final is not None and final.kind == "linear" and len(vector) <= 1
              and all(type(s) is StandardScaler for _, s in vector))
    decls = ["int i, j;", "(void)i;", "(void)j;"]
    if stream:
        W, b = final.W, final.b
        mean = scale = None
        if vector:
            folded = fold_scaler(vector[0][1], W, b)
            if folded is None:
                mu, sd = scaler_parameters(vector[0][1])
                mean = program.table("scaler_mean", mu, what="StandardScaler mean_")
                scale = program.table("scaler_scale", sd, what="StandardScaler scale_")
            else:
                W, b = folded
        wt = program.table("weights", W, what="linear coef_")
        bt = program.table("intercept", b, what="linear intercept_")
        sink = LinearSink(wt, d, n_out, mean=mean, scale=scale)
        program.emit(f"for (i = 0; i < {n_out}; ++i) out[i] = 0.0f;")
        _gen_features(program, part, "steps[0]", img, sink, arena)
        program.emit(f"for (i = 0; i < {n_out}; ++i) out[i] += {bt}[i];")
    else:
        store_in_out = model is None and not vector
        extra = max([0] + [int(getattr(s, "n_components_", 0)) for _, s in vector])  # PCA
        feat_off = 0 if store_in_out else arena.push(d + extra)
        decls.append("float *feat = out;" if store_in_out else f"float *feat = work + {feat_off};")
        _gen_features(program, part, "steps[0]", img, StoreSink(), arena)
        dd = d
        for _, s in vector:
            dd, _ = VECTOR_STEPS[type(s)](program, s, dd)
        if final is not None and final.kind == "linear":
            wt = program.table("weights", final.W, what="linear coef_")
            bt = program.table("intercept", final.b, what="linear intercept_")
            dot = dot_function(program)
            program.emit(f"for (j = 0; j < {n_out}; ++j) "
                         f"out[j] = {dot}(feat, {wt} + j * {dd}, {dd}) + {bt}[j];")
        elif final is not None:
            final.emit(program, dd)
        elif not store_in_out:
            n_out = dd
            program.emit(f"for (i = 0; i < {dd}; ++i) out[i] = feat[i];")
    return program, decls, {"task": task, "n_outputs": int(n_out),
                            "n_features": d, "input": (h, w, c), "streamed": bool(stream)}


def _header(program, info, sizes, measured):
    N, U = program.name, program.upper
    h, w, c = info["input"]
    how = ("measured: cc -Os, size -A, -fcallgraph-info" if measured
           else "estimated (no C compiler at export): tables + work buffer only")
    guard = f"{U}_H"
    return f"""/* {N}.h: generated by cvfeat {__version__} (cvfeat.export.to_c); do not edit.

   int {N}_predict(const uint8_t *pixels, float *out);
       pixels: {h} x {w}{' x 3 (RGB)' if c == 3 else ' (grey)'} uint8, row-major, as the ONNX export's input;
       out: {info['n_outputs']} float{'s' if info['n_outputs'] > 1 else ''} ({info['task']}).
       Returns {U}_OK (0) or an error code. Not re-entrant (one static work buffer):
   int {N}_predict_r(const uint8_t *pixels, float *out, float *work);
       the same with a caller-supplied buffer of {U}_WORK_FLOATS floats. */
#ifndef {guard}
#define {guard}

#include <stddef.h>
#include <stdint.h>

#define {U}_IN_HEIGHT {h}
#define {U}_IN_WIDTH {w}
#define {U}_IN_CHANNELS {c}
#define {U}_IN_BYTES {h * w * c}
#define {U}_N_OUTPUTS {info['n_outputs']}
#define {U}_WORK_FLOATS {max(program.work_floats, 1)}
/* {how} */
#define {U}_FLASH_BYTES {sizes['flash_bytes']}
#define {U}_RAM_BYTES {sizes['ram_bytes']}

#define {U}_OK 0
#define {U}_ERR_NULL 1 /* a NULL pointer argument */

#ifdef __cplusplus
extern "C" {{
#endif

int {N}_predict(const uint8_t *pixels, float *out);
int {N}_predict_r(const uint8_t *pixels, float *out, float *work);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""


def _source(program, decls, info):
    N, U = program.name, program.upper
    body = "\n".join("    " + line for line in decls + [
        f"if (pixels == NULL || out == NULL || work == NULL) return {U}_ERR_NULL;"]
        + program.body + [f"return {U}_OK;"])
    return f"""/* {N}.c: generated by cvfeat {__version__} (cvfeat.export.to_c); do not edit.
   {info['steps']} */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "{N}.h"

{chr(10).join(program.tables)}
static float {N}_work[{U}_WORK_FLOATS];

{chr(10).join(program.functions)}
int {N}_predict_r(const uint8_t *pixels, float *out, float *work)
{{
{body}
}}

int {N}_predict(const uint8_t *pixels, float *out)
{{
    return {N}_predict_r(pixels, out, {N}_work);
}}
"""


class CExport:
    """A model exported to C99 by :func:`to_c`.

    Attributes
    ----------
    name : str
        Prefix of every C identifier; the files are ``NAME.h`` / ``NAME.c`` / ``NAME.json``.
    header, source : str
        The C header and source.
    report : dict
        Input shape, outputs, flash / RAM / stack bytes (measured with the C compiler
        when there is one), the constant and work bytes, the Cortex-M figures (or why
        they are missing) and the model card.
    """

    def __init__(self, name, header, source, report):
        self.name, self.header, self.source, self.report = name, header, source, report

    def save(self, folder):
        """Write ``NAME.h``, ``NAME.c`` and ``NAME.json`` into ``folder`` (created if
        missing; existing files of the same names are replaced). Returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in ((".h", self.header), (".c", self.source),
                             (".json", json.dumps(self.report, indent=2) + "\n")):
            path = folder / f"{self.name}{suffix}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            paths.append(path)
        return paths

    def __repr__(self):
        r = self.report
        return (f"CExport(name={self.name!r}, input={r['input']}, outputs={r['n_outputs']}, "
                f"flash_bytes={r['flash_bytes']}, ram_bytes={r['ram_bytes']})")


def to_c(estimator, X_sample, *, name="cvfeat_model", target_name=None, command=None, cc=None):
    """Export a fitted pipeline as dependency-free C99: uint8 pixels in, prediction out.

    Parameters
    ----------
    estimator : fitted Pipeline or estimator
        Image steps, then features (HOG, or a FeatureUnion of feature steps), then
        optionally StandardScaler / PCA and a linear regressor (see
        :func:`supported_c_steps`). A fitted search exports its best estimator.
    X_sample : (n, h, w[, 3]) uint8 ndarray
        Images of the size and colour the device sends (one is enough).
    name : str, default='cvfeat_model'
        Prefix of every C identifier and of the file names.
    target_name : str, optional
        What the prediction is (e.g. ``'age'``), for the model card.
    command : str, optional
        The command that made the model, for the model card (default: ``sys.argv``).
    cc : str, optional
        C compiler used to measure flash and RAM (default ``$CC`` or ``cc``); without
        one the sizes are estimated from the tables and the work buffer.

    Returns
    -------
    CExport
        ``.header``, ``.source``, ``.report`` and ``.save(folder)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from cvfeat.export import to_c
    >>> from cvfeat.features import HOG
    >>> X = np.random.default_rng(0).integers(0, 256, (8, 16, 16), dtype=np.uint8)
    >>> pipe = make_pipeline(HOG(pixels_per_cell=(8, 8)), Ridge()).fit(X, np.arange(8))
    >>> exported = to_c(pipe, X[:1], name="demo")
    >>> "int demo_predict(const uint8_t *pixels, float *out);" in exported.header
    True
    """
    est = _unwrap(estimator)
    X = _check_sample(X_sample)
    try:
        want = input_spec(est)
    except ValueError:
        want = None
    got = (X.shape[1], X.shape[2], 3 if X.ndim == 4 else 1)
    if want is not None and want != got:
        raise ValueError(
            f"to_c: X_sample has images of shape {got} (h, w, c) but the model was fitted on "
            f"{want}; pass images of the fitted size and colour.")
    program, decls, info = _generate(est, X, name)
    info["steps"] = _describe(est)
    program.functions.insert(0, "")
    source = _source(program, decls, info)
    estimate = {"flash_bytes": program.const_bytes,
                "ram_bytes": 4 * max(program.work_floats, 1)}
    compiler = find_compiler(cc)
    sizes = None
    if compiler is not None:
        sizes = measure_size(source, _header(program, info, estimate, False), program.name,
                             compiler)
    header = _header(program, info, sizes or estimate, sizes is not None)
    try:
        from ...budget import count_params

        n_params = count_params(est)
    except Exception:  # noqa: BLE001 - the card says unknown
        n_params = None
    report = {
        "name": program.name,
        "input": {"height": got[0], "width": got[1], "channels": got[2], "dtype": "uint8"},
        "n_outputs": info["n_outputs"],
        "task": info["task"],
        "n_features": info["n_features"],
        "features_streamed": info["streamed"],
        "classes": info.get("classes"),
        "macs": info.get("macs"),
        "activation_bytes": program.activation_bytes,
        "const_bytes": program.const_bytes,
        "work_bytes": 4 * max(program.work_floats, 1),
        "flash_bytes": (sizes or estimate)["flash_bytes"],
        "ram_bytes": (sizes or estimate)["ram_bytes"],
        "stack_bytes": sizes["stack"] if sizes else None,
        "sizes_measured": sizes is not None,
        "host": sizes,
        "cortex_m": cortex_m_size(source, header, program.name),
        "uses_double": program.uses_double,
        "card": {
            "cvfeat_version": __version__,
            "count_params": n_params,
            "steps": info["steps"],
            "target_name": target_name,
            "command": command if command is not None else shlex.join(sys.argv),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
        },
    }
    return CExport(program.name, header, source, report)


_HARNESS = """\
#include <stdio.h>
#include "{N}.h"

static uint8_t image[{U}_IN_BYTES];
static float caller_work[{U}_WORK_FLOATS];

int main(int argc, char **argv)
{{
    float out[{U}_N_OUTPUTS];
    long k = 0;
    FILE *in, *res;
    if (argc != 3) return 2;
    in = fopen(argv[1], "rb");
    res = fopen(argv[2], "wb");
    if (in == NULL || res == NULL) return 3;
    if ({N}_predict(NULL, out) != {U}_ERR_NULL) return 4;
    while (fread(image, 1, {U}_IN_BYTES, in) == {U}_IN_BYTES) {{
        /* both entry points: even images the static buffer, odd ones the caller's */
        int rc = (k++ % 2) ? {N}_predict_r(image, out, caller_work) : {N}_predict(image, out);
        if (rc != {U}_OK) return 10 + rc;
        if (fwrite(out, sizeof(float), {U}_N_OUTPUTS, res) != {U}_N_OUTPUTS) return 5;
    }}
    return fclose(res) == 0 && fclose(in) == 0 ? 0 : 6;
}}
"""


def run_c(exported, X, *, opt="-O2", cc=None):
    """Compile ``exported`` with a host harness (strict flags, ``opt``) and run it on
    uint8 images ``X``; returns the ``(n, n_outputs)`` float32 outputs."""
    compiler = find_compiler(cc)
    if compiler is None:
        raise RuntimeError("no C compiler: install one (e.g. gcc) or pass cc=, or set $CC.")
    r = exported.report["input"]
    shape = (r["height"], r["width"]) + ((3,) if r["channels"] == 3 else ())
    X = np.asarray(X)
    if X.dtype != np.uint8 or X.shape[1:] != shape:
        raise ValueError(f"run_c: the C model takes uint8 images of shape (n, "
                         f"{', '.join(map(str, shape))}); got {X.dtype} {X.shape}.")
    with tempfile.TemporaryDirectory(prefix="cvfeat_c_") as tmp:
        exported.save(tmp)
        N = exported.name
        Path(tmp, "harness.c").write_text(_HARNESS.format(N=N, U=N.upper()))
        exe = compile_model(tmp, N, compiler, opt=opt, harness="harness.c")
        np.ascontiguousarray(X).tofile(Path(tmp, "images.bin"))
        proc = subprocess.run([str(exe), "images.bin", "out.bin"], cwd=tmp,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"the compiled C model failed (exit {proc.returncode}).")
        out = np.fromfile(Path(tmp, "out.bin"), dtype=np.float32)
    return out.reshape(len(X), exported.report["n_outputs"])


def check_parity_c(estimator, exported, X, *, rtol=1e-4, opt="-O2", cc=None):
    """Compile the C export with a host harness and compare it with the estimator.

    The harness is built with the strict flags (:data:`STRICT_FLAGS`: C99, all
    warnings as errors, no VLAs, no FMA contraction) at ``opt``, runs both entry
    points (static and caller-supplied work buffer) on ``X``, and the outputs are
    compared with ``estimator.predict(X)`` (``transform`` for a feature pipeline,
    ``predict_proba`` for a classifier, whose label agreement is reported too).

    Returns
    -------
    report : dict
        As :func:`cvfeat.export.check_parity`: ``output``, ``n``, ``max_abs``,
        ``mean_abs``, ``scale``, ``max_rel``, ``rtol``, ``n_over_rtol``; plus
        ``compiler`` and ``flags``.
    """
    X = np.asarray(X)
    got = run_c(exported, X, opt=opt, cc=cc).astype(np.float64)
    task = exported.report["task"]
    est = _unwrap(estimator)
    extra = {}
    if task == "features":
        output, ref = "features", np.asarray(est.transform(X), dtype=np.float64)
    elif task == "classification":
        output, ref = "probabilities", np.asarray(est.predict_proba(X), dtype=np.float64)
        classes = np.asarray(exported.report["classes"])
        extra["label_agreement"] = float(np.mean(classes[got.argmax(axis=1)] == est.predict(X)))
    else:
        output, ref = "prediction", np.asarray(est.predict(X), dtype=np.float64)
    got = got.reshape(ref.shape)
    return {
        "output": output, **parity_measures(got, ref, rtol),
        "compiler": find_compiler(cc), "flags": " ".join((*STRICT_FLAGS, opt)), **extra,
    }
