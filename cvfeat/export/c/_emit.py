"""Writing C99: literals that round-trip, constant tables, and the program being built.

Everything the generated file contains goes through :class:`Program`: constant tables
(``static const``), helper functions (``static``), the statements of the entry point,
and the work memory each step asks for (offsets into one ``float`` buffer).
"""

from __future__ import annotations

import keyword
import re

import numpy as np

__all__ = ["Program", "c_float", "c_double", "c_name"]

_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto "
    "if inline int long register restrict return short signed sizeof static struct switch "
    "typedef union unsigned void volatile while _Bool _Complex _Imaginary main".split())
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def c_name(name):
    """``name`` if it can prefix C identifiers; else a ValueError saying why."""
    if not isinstance(name, str) or not _IDENT.match(name) or name in _C_KEYWORDS \
            or keyword.iskeyword(name) or len(name) > 40:
        raise ValueError(
            f"to_c: name={name!r} cannot prefix C identifiers: use letters, digits and "
            "underscores, a letter first, at most 40 characters, not a C keyword "
            "(e.g. name='age_model').")
    return name


def _finite(values, what):
    arr = np.asarray(values)
    if arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.ravel()))[0]
        raise ValueError(
            f"to_c: {what} holds a non-finite value ({arr.ravel()[bad]!r} at flat index "
            f"{bad}); a C constant table cannot hold it. Refit the model on finite data.")
    return arr


def c_float(value):
    """A float32 literal that parses back to exactly ``float32(value)``: ``0.1f``."""
    v = np.float32(value)
    if not np.isfinite(v):
        raise ValueError(f"to_c: {value!r} is not a finite float32 and has no C literal.")
    text = np.format_float_scientific(v, unique=True, trim="0", exp_digits=2)
    mantissa, exp = text.split("e")
    if mantissa.endswith("."):
        mantissa += "0"
    return f"{mantissa}e{int(exp)}f" if int(exp) else f"{mantissa}f"


def c_double(value):
    """A double literal that parses back to exactly ``float64(value)``."""
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"to_c: {value!r} is not finite and has no C literal.")
    text = repr(v)
    return text if ("e" in text or "." in text) else text + ".0"


_CTYPES = {
    "float": (np.float32, c_float, 4),
    "double": (np.float64, c_double, 8),
    "int32_t": (np.int32, lambda v: str(int(v)) if v != -2**31 else "(-2147483647 - 1)", 4),
    "int16_t": (np.int16, lambda v: str(int(v)), 2),
    "uint16_t": (np.uint16, lambda v: f"{int(v)}u", 2),
    "uint8_t": (np.uint8, lambda v: f"{int(v)}u", 1),
    "int8_t": (np.int8, lambda v: str(int(v)), 1),
}


class Program:
    """The C program being generated for one model (see the module docstring)."""

    def __init__(self, name):
        self.name = c_name(name)
        self.upper = self.name.upper()
        self.tables = []  # C text of static const arrays
        self.functions = []  # C text of static functions
        self.body = []  # statements of NAME_predict_r
        self.const_bytes = 0
        self.work_floats = 0  # high-water mark of the work buffer, in floats
        self._used = set()
        self.uses_double = False
        self.activation_bytes = None  # a micro-CNN's activations + scratch rows

    def ident(self, stem):
        """A fresh identifier ``name_stem[_k]``."""
        base = f"{self.name}_{stem}"
        ident, k = base, 1
        while ident in self._used:
            ident, k = f"{base}_{k}", k + 1
        self._used.add(ident)
        return ident

    def table(self, stem, values, ctype="float", what=None):
        """Emit ``static const ctype ident[n]`` holding ``values`` (flattened); its name."""
        dtype, literal, size = _CTYPES[ctype]
        arr = _finite(values, what or stem)
        flat = arr.astype(dtype).ravel()
        if not np.array_equal(flat.astype(np.float64), arr.astype(np.float64).ravel()) \
                and ctype not in ("float",):
            raise ValueError(f"to_c: {what or stem} does not fit {ctype}.")
        ident = self.ident(stem)
        items = [literal(v) for v in flat] or ["0"]
        lines, line = [], "   "
        for item in items:
            if len(line) + len(item) + 2 > 96:
                lines.append(line)
                line = "   "
            line += " " + item + ","
        lines.append(line)
        self.tables.append(
            f"static const {ctype} {ident}[{max(len(flat), 1)}] = {{\n" + "\n".join(lines)
            + "\n};\n")
        self.const_bytes += size * max(len(flat), 1)
        if ctype == "double":
            self.uses_double = True
        return ident

    def function(self, text):
        self.functions.append(text.strip("\n") + "\n")

    def emit(self, *lines):
        self.body.extend(lines)

    def need_work(self, n_floats):
        """Record that the work buffer must hold at least ``n_floats`` floats."""
        self.work_floats = max(self.work_floats, int(n_floats))
