"""The ``nnunet-deconver`` command: one entry point, one module per subcommand.

Every subcommand module has ``register(subparsers)``, which adds its parser and sets ``func``
(``run(args) -> exit code``). Registration imports no torch or nnU-Net code: those load only when a
subcommand runs. Errors of every subcommand end the same way (:func:`~nnunet_deconver.cli.reporting.report_errors`).
Before any subcommand runs, a set ``NNUNET_DECONVER_NDC_BACKEND`` is checked (:func:`check_environment`).
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Sequence

from nnunet_deconver import __version__
from nnunet_deconver.cli.reporting import report_errors

PROG = "nnunet-deconver"
#: Subcommand modules of this package, in the order ``--help`` lists them.
COMMANDS = ("stats", "plan", "memory", "demo", "convert", "brats_labels", "evaluate", "evaluate_folders")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deconver for nnU-Net v2: model report, paper presets, training-step memory, demo, data set "
        "conversion and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def check_environment() -> None:
    """Raise :class:`~nnunet_deconver.ndc.backends.NDCBackendError` (a ``DeconverError``) when
    ``NNUNET_DECONVER_NDC_BACKEND`` names no NDC backend. Unset, empty or ``auto`` (the default)
    is not looked at further, so torch loads only to check a value that was set."""
    if os.environ.get("NNUNET_DECONVER_NDC_BACKEND", "").strip().lower() in ("", "auto"):
        return
    from nnunet_deconver.ndc.backends import requested_backend

    requested_backend()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit code (see :func:`report_errors` for the failures)."""
    parser = build_parser()

    def parse() -> argparse.Namespace:
        args = parser.parse_args(argv)
        check_environment()
        return args

    return report_errors(PROG, parse)
