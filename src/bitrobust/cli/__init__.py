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
import sys
from collections.abc import Sequence

from bitrobust.errors import BitrobustError

COMMAND_MODULES = ("train", "evaluate", "studies", "sram", "bnn", "hw")


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # list-valued options validate while parsing
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        return args.handler(args)
    except BitrobustError as exc:
        print(f"bitrobust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bitrobust: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
