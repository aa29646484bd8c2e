"""Compiling generated C: the compiler, the strict flags, sizes and the parity harness.

Flash and RAM are measured, not estimated, when a C compiler is present: the model's
``.c`` is compiled with ``cc -std=c99 -Os -c`` (plus ``-fstack-usage
-fcallgraph-info=su``), ``size -A`` gives the sections, and the deepest call chain
from ``NAME_predict`` in the call graph gives the stack. flash = text + rodata + data,
RAM = data + bss + stack. The same with ``arm-none-eabi-gcc`` for a Cortex-M4F when
it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["STRICT_FLAGS", "compile_model", "find_compiler", "measure_size"]

#: the flags the generated code is tested with (warnings are errors)
STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wdouble-promotion",
                "-Wfloat-conversion", "-Wvla", "-ffp-contract=off")

#: Cortex-M4F: single-precision FPU, as most boards in this class
CORTEX_M_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")


def find_compiler(cc=None):
    """Path of the C compiler: ``cc`` if given, else ``$CC``, else ``cc``; None if absent."""
    return shutil.which(cc or os.environ.get("CC") or "cc")


def _run(cmd, cwd, what):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({' '.join(map(str, cmd))}, exit {proc.returncode}):\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def compile_model(folder, name, cc, *, flags=(), opt="-O2", harness=None, out="model"):
    """Compile ``NAME.c`` (and a harness ``.c``) in ``folder`` with the strict flags."""
    sources = [f"{name}.c"] + ([harness] if harness else [])
    cmd = [cc, *STRICT_FLAGS, opt, *flags, *sources, "-o", out, "-lm"]
    _run(cmd, folder, "compiling the generated C")
    return Path(folder) / out


def _sections(size_tool, obj, cwd):
    text = _run([size_tool, "-A", obj], cwd, "size -A")
    sections = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    return sections


def _stack(ci_path, entry):
    """Deepest stack from ``entry`` in gcc's ``-fcallgraph-info=su`` graph (bytes);
    calls into the C library (sqrtf, ...) count as 0."""
    nodes, edges = {}, {}
    for line in Path(ci_path).read_text().splitlines():
        m = re.match(r'node: \{ title: "([^"]+)" label: "[^"]*?(\d+) bytes', line)
        if m:
            nodes[m.group(1)] = int(m.group(2))
        m = re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line)
        if m:
            edges.setdefault(m.group(1), set()).add(m.group(2))

    def depth(node, seen):
        if node in seen:  # recursion: the generated code has none
            raise RuntimeError(f"recursive call through {node} in the generated C")
        below = [depth(t, seen | {node}) for t in edges.get(node, ())]
        return nodes.get(node, 0) + max(below, default=0)

    return depth(entry, frozenset())


def measure_size(source, header, name, cc, *, target_flags=(), size_tool="size"):
    """Sections, flash, RAM and stack of one model's C source compiled at ``-Os``."""
    with tempfile.TemporaryDirectory(prefix="cvfeat_c_") as tmp:
        Path(tmp, f"{name}.c").write_text(source)
        Path(tmp, f"{name}.h").write_text(header)
        cmd = [cc, "-std=c99", "-Os", "-ffp-contract=off", *target_flags, "-fstack-usage",
               "-fcallgraph-info=su", "-c", f"{name}.c", "-o", f"{name}.o"]
        _run(cmd, tmp, "compiling the generated C for its size")
        sections = _sections(size_tool, f"{name}.o", tmp)
        stack = _stack(Path(tmp, f"{name}.ci"), f"{name}_predict")

    def total(prefix):
        return sum(v for k, v in sections.items() if k == prefix or k.startswith(prefix + "."))

    text, rodata, data, bss = total(".text"), total(".rodata"), total(".data"), total(".bss")
    return {
        "text": text, "rodata": rodata, "data": data, "bss": bss, "stack": stack,
        "flash_bytes": text + rodata + data, "ram_bytes": data + bss + stack,
        "command": " ".join(cmd[:-4]),
    }


def cortex_m_size(source, header, name):
    """:func:`measure_size` with ``arm-none-eabi-gcc`` for a Cortex-M4F, or a note."""
    gcc = shutil.which("arm-none-eabi-gcc")
    size = shutil.which("arm-none-eabi-size")
    if gcc is None or size is None:
        return {"skipped": "arm-none-eabi-gcc is not installed (Debian: apt-get install "
                           "gcc-arm-none-eabi)"}
    try:
        out = measure_size(source, header, name, gcc, target_flags=CORTEX_M_FLAGS,
                           size_tool=size)
    except RuntimeError as exc:  # e.g. the toolchain without its C library (newlib)
        first = str(exc).splitlines()[1:2] or [str(exc)]
        return {"skipped": f"arm-none-eabi-gcc failed: {first[0]}"}
    out["target"] = "cortex-m4f"
    return out
