"""The dependency rule of docs/architecture.md, checked on the imports themselves.

The contracts live in pyproject.toml (``[tool.importlinter]``): layers top to bottom, the layers
inside ``hw``, no import cycles among a package's modules (function-level imports count), and a
core that knows neither the command line nor the data folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("bits", "quant", "faults", "evaluate", "hw")


def lint_imports() -> str:
    """The import-linter command next to this Python, else the one on the PATH."""
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports not found: pip install -e '.[test]' installs import-linter")
    return found


def test_import_contracts_hold():
    command = [lint_imports(), "--no-cache", "--config", str(ROOT / "pyproject.toml")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("bitrobust", include_external_packages=True, cache_dir=None)


@pytest.mark.parametrize("core", CORE)
def test_core_never_imports_the_command_line(graph, core):
    reached = graph.find_upstream_modules(f"bitrobust.{core}", as_package=True)
    assert "argparse" not in reached
    assert not {m for m in reached if m == "bitrobust.cli" or m.startswith("bitrobust.cli.")}


def test_the_code_fingerprint_follows_the_sources(tmp_path):
    from bitrobust.provenance import code_fingerprint, provenance

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = code_fingerprint(tmp_path)
    assert first == code_fingerprint(tmp_path) and len(first) == 16
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert code_fingerprint(tmp_path) != first
    record = provenance()
    assert set(record) == {"bitrobust", "code"} and len(record["code"]) == 16
