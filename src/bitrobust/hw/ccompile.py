"""A multiplier's C model (EvoApproxLib style) → product table, via the system C compiler.

The C file is ``#include``d, unchanged, into a small harness that calls the multiplier on all
65,536 operand patterns, ``f(a, b)`` with ``a`` the first positional argument, and writes the
results as 64-bit integers. Whatever types the model declares (``uint8_t``, ``int8_t``,
``uint64_t``) the C conversion rules hand it the right bits; the 16-bit result is then read as
int16 for signed circuits, which also fixes signed circuits declared with unsigned types
(``uint16_t mul8s_1L2H(uint8_t, uint8_t)``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bitrobust.errors import BitrobustError
from bitrobust.hw.tables import SIZE, TABLE_SHAPE, Multiplier, check_table, infer_signed

COMPILERS = ("cc", "gcc", "clang")
COMPILE_TIMEOUT_S = 300
RUN_TIMEOUT_S = 120

_HARNESS = """\
#include <stdio.h>
#define main bitrobust_model_main
#include "model.c"
#undef main

int main(int argc, char **argv) {{
    FILE *out;
    unsigned a, b;
    long long result;
    if (argc < 2 || (out = fopen(argv[1], "wb")) == NULL) return 3;
    for (a = 0; a < {size}u; ++a) {{
        for (b = 0; b < {size}u; ++b) {{
            result = (long long)({function}(a, b));
            if (fwrite(&result, sizeof result, 1, out) != 1) return 4;
        }}
    }}
    return fclose(out) != 0;
}}
"""

_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "main"}
_DEFINITION = re.compile(r"\b([A-Za-z_]\w*)\s*\(([^()]*)\)\s*\{")
_SIGNED_PARAM = re.compile(r"(?<![u\w])int8_t|\bsigned\s+char\b")


def find_compiler() -> str:
    """The C compiler to use: ``$CC`` if set, else the first of cc, gcc, clang on the PATH."""
    requested = os.environ.get("CC")
    if requested:
        found = shutil.which(requested)
        if found is None:
            raise BitrobustError(f"C compiler {requested!r} from $CC was not found")
        return found
    for name in COMPILERS:
        found = shutil.which(name)
        if found is not None:
            return found
    raise BitrobustError(
        "no C compiler found (looked for cc, gcc and clang on the PATH; set $CC to choose one): "
        "install one, or import the multiplier as a .npy or .bin table instead"
    )


def strip_comments(source: str) -> str:
    """C source without ``/* */`` and ``//`` comments (string literals are not special-cased)."""
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", source)


def detect_function(source: str, function: str | None = None) -> tuple[str, str]:
    """The multiplier function defined in ``source``: (name, parameter list).

    Candidates are function definitions with two parameters; a single one is taken, else those
    named ``mul*``; ``function`` picks one explicitly.
    """
    candidates = {}
    for match in _DEFINITION.finditer(strip_comments(source)):
        name, params = match[1], match[2]
        if name not in _KEYWORDS and len([p for p in params.split(",") if p.strip()]) == 2:
            candidates.setdefault(name, params)
    if function is not None:
        if function not in candidates:
            raise BitrobustError(
                f"the C model defines no two-argument function {function!r} "
                f"(found: {', '.join(candidates) or 'none'})"
            )
        return function, candidates[function]
    if len(candidates) > 1:
        preferred = {n: p for n, p in candidates.items() if n.lower().startswith("mul")}
        if len(preferred) == 1:
            candidates = preferred
    if not candidates:
        raise BitrobustError("the C model defines no function of two arguments (a, b)")
    if len(candidates) != 1:
        found = ", ".join(candidates)
        raise BitrobustError(
            f"cannot tell which function is the multiplier (two-argument functions: {found}); "
            "name it with --function"
        )
    return next(iter(candidates.items()))


def from_c(
    path: str | os.PathLike[str],
    signed: bool | None = None,
    name: str | None = None,
    function: str | None = None,
) -> Multiplier:
    """Compile the C model at ``path`` and tabulate it; signedness from ``signed``, else the
    function's name (``mul8s_``/``mul8u_``), else its parameter types (``int8_t`` → signed)."""
    path = Path(path)
    if not path.is_file():
        raise BitrobustError(f"C model {path} does not exist")
    try:
        source = path.read_text(errors="replace")
    except OSError as exc:
        raise BitrobustError(f"cannot read C model {path} ({exc})") from None
    func, params = detect_function(source, function)
    if signed is None and not re.search(r"mul8[su]", func.lower()):
        signed = bool(_SIGNED_PARAM.search(params))
    signed = infer_signed(func, signed)
    compiler = find_compiler()
    with tempfile.TemporaryDirectory(prefix="bitrobust-c-") as tmp:
        work = Path(tmp)
        (work / "model.c").write_text(source)
        (work / "harness.c").write_text(_HARNESS.format(size=SIZE, function=func))
        exe, out = work / "tabulate", work / "table.bin"
        command = [compiler, "-O1", "-w", "-o", str(exe), str(work / "harness.c")]
        compiled = _run(command, COMPILE_TIMEOUT_S, f"compiling {path}")
        if compiled.returncode != 0:
            message = _first_error(compiled.stderr).replace(str(work / "model.c"), str(path))
            raise BitrobustError(f"C model {path} does not compile: {message}")
        ran = _run([str(exe), str(out)], RUN_TIMEOUT_S, f"running the C model {path}")
        if ran.returncode != 0 or not out.is_file():
            raise BitrobustError(f"C model {path} failed when run (exit status {ran.returncode})")
        values = np.fromfile(out, dtype=np.int64)
    if values.size != SIZE * SIZE:
        raise BitrobustError(f"C model {path} produced {values.size} products, not 65,536")
    table = values.reshape(TABLE_SHAPE)
    if not signed and (table.min() < 0 or table.max() > 0xFFFF):
        raise BitrobustError(
            f"C model {path}: unsigned products must fit 16 bits, got {table.min()}..{table.max()}"
        )
    if signed:
        if table.min() < -0x8000 or table.max() > 0xFFFF:
            raise BitrobustError(
                f"C model {path}: signed products must fit 16 bits, got "
                f"{table.min()}..{table.max()}"
            )
        table = table & 0xFFFF  # int16 and uint16 returns alike: the 16-bit pattern
    return Multiplier(
        name=name or func,
        table=check_table(table, signed, str(path)),
        signed=signed,
        source=str(path),
    )


def _run(command: list[str], timeout: int, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BitrobustError(f"{what} took longer than {timeout} s") from None
    except OSError as exc:
        raise BitrobustError(f"{what} failed ({exc})") from None


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[0] if lines else "the compiler reported no message"
