"""Start-up of the command line: help and argument errors import no heavy library; threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bitrobust.cli import _command_parsers, build_parser

HEAVY = ("torch", "matplotlib", "sklearn", "numpy")

PROBE = """
import sys
from bitrobust.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["reproduce", "--help"],
        ["bnn", "metrics", "--help"],
        ["train", "--method", "bogus", "--out", "x"],
        ["evaluate"],
        ["train", "--threads", "0", "--out", "x"],
    ],
)
def test_help_and_argument_errors_import_no_heavy_library(argv):
    code = PROBE.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "HEAVY:", done.stdout


def test_every_command_takes_threads():
    parser = build_parser()
    commands = _command_parsers(parser)
    assert len(commands) >= 10
    for command in commands:
        assert "--threads" in command.format_usage(), command.prog


@pytest.mark.parametrize(
    ("options", "environment", "expected"),
    [([], None, 1), (["--threads", "2"], None, 2), ([], "2", 2), (["--threads", "1"], "2", 1)],
)
def test_thread_count(tmp_path, options, environment, expected):
    """Default 1 thread; ``$OMP_NUM_THREADS`` when the user set it; ``--threads`` wins."""
    argv = ["sram", "make-chip", "--seed", "0", "--out", str(tmp_path / "c.npz"), *options]
    code = f"import torch, bitrobust.cli as c\nc.main({argv!r})\nprint(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if environment:
        env["OMP_NUM_THREADS"] = environment
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(expected)
