"""The ``nnunet-deconver`` command: one entry point, one module per subcommand.

Every subcommand module has ``register(subparsers)``, which adds its parser and sets ``func``
(``run(args) -> exit code``). Registration imports no torch or nnU-Net code: those load only when a
subcommand runs. Errors of every subcommand end the same way (:func:`~nnunet_deconver.cli.reporting.report_errors`).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Sequence

from nnunet_deconver import __version__
from nnunet_deconver.cli.reporting import report_errors

PROG = "nnunet-deconver"
#: Subcommand modules of this package, in the order ``--help`` lists them.
COMMANDS = ("stats", "plan", "demo", "convert", "brats_labels", "evaluate", "evaluate_folders")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deconver for nnU-Net v2: model report, paper presets, demo, data set "
        "conversion and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit code (see :func:`report_errors` for the failures)."""
    parser = build_parser()
    return report_errors(PROG, lambda: parser.parse_args(argv))
