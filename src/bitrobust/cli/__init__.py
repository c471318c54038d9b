"""The ``bitrobust`` command: a thin layer over the library.

One module per command group registers its subcommands (``register(subparsers)``); add a new
group by writing a module and naming it in ``COMMAND_MODULES``. User errors
(``BitrobustError``) are printed as one line, ``bitrobust: error: ...``, with exit status 2
and no traceback. Commands that report figures take ``--json`` and then print exactly one JSON
object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bitrobust.cli.common import int_type
from bitrobust.errors import BitrobustError

COMMAND_MODULES = ("train", "evaluate", "studies", "campaign", "sram", "bnn", "hw", "bench")

DEFAULT_THREADS = 1
"""CPU threads per process unless ``--threads`` says otherwise. Measured: the demo takes 21 s
with 1 thread and 18 s with 2 on an idle 2-core machine, but 13.5 min with torch's default
(one thread per core) when the machine has other work, because the threads spin waiting for
each other. One thread is never much slower for the small models here, and is safe."""


def build_parser() -> argparse.ArgumentParser:
    from bitrobust import __version__

    parser = argparse.ArgumentParser(
        prog="bitrobust",
        description="Measure and improve how neural networks survive bit errors and hardware "
        "faults in energy-efficient accelerators.",
    )
    parser.add_argument("--version", action="version", version=f"bitrobust {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(f"bitrobust.cli.{module}").register(sub)
    for command in _command_parsers(parser):
        command.add_argument(
            "--threads",
            type=_thread_count,
            help=f"CPU threads for torch (default: $OMP_NUM_THREADS if set, else "
            f"{DEFAULT_THREADS}, which is robust when the machine has other work; more can help "
            "large convolutional models on an idle machine)",
        )
    return parser


def _command_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (they set a handler), at any depth of subcommands."""
    found = [parser] if parser.get_default("handler") else []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found.extend(_command_parsers(child))
    return found


_thread_count = int_type("--threads", 1)


def _threads_from_environment() -> int | None:
    try:
        return _thread_count(os.environ.get("OMP_NUM_THREADS", ""))
    except BitrobustError:
        return None


class _StderrHandler(logging.Handler):
    """Writes records to the ``sys.stderr`` of the moment (which tests may swap)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def show_progress_on_stderr() -> None:
    """The library logs its progress (``bitrobust`` loggers, INFO) and prints nothing; the
    command shows those lines on stderr, once however often ``main`` runs."""
    logger = logging.getLogger("bitrobust")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


def use_threads(count: int) -> None:
    """Run torch (and the BLAS/OpenMP libraries below it) on ``count`` CPU threads.

    Sets the environment before torch is imported (so child processes inherit it) and the
    running torch if it is already imported.
    """
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # list-valued options validate while parsing
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        use_threads(args.threads or _threads_from_environment() or DEFAULT_THREADS)
        show_progress_on_stderr()
        return args.handler(args)
    except BitrobustError as exc:
        print(f"bitrobust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bitrobust: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `bitrobust multipliers list | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
