"""The ``nnunet-deconver`` command: one entry point, one subcommand per job.

Each subcommand lives next to the code it drives and registers itself through a
``register(subparsers)`` function that adds its parser and sets ``func`` (``args -> exit code``).
Registration imports no torch or nnU-Net code: those load only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nnunet_deconver import __version__
from nnunet_deconver.errors import os_error_message
from nnunet_deconver.signals import Terminated, interruption_exit, termination_raises


def build_parser() -> argparse.ArgumentParser:
    from dataset_conversion import cli as conversion_cli
    from nnunet_deconver import demo
    from nnunet_deconver.evaluation import cli as evaluation_cli
    from nnunet_deconver.network import stats
    from nnunet_deconver.nnunet import cli as nnunet_cli

    parser = argparse.ArgumentParser(
        prog="nnunet-deconver",
        description="Deconver for nnU-Net v2: model report, paper presets, demo, data set "
        "conversion and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stats.register(subparsers)
    nnunet_cli.register(subparsers)
    demo.register(subparsers)
    conversion_cli.register(subparsers)
    evaluation_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return its exit code.

    Whatever the subcommand, Ctrl-C and SIGTERM end in one line and exit code 130 / 143, and an
    operating-system error that the subcommand did not report itself in one ``error:`` line naming
    the file (exit code 1), never in a traceback.
    """
    try:
        with termination_raises():
            args = build_parser().parse_args(argv)
            return int(args.func(args) or 0)
    except (KeyboardInterrupt, Terminated) as exc:
        return interruption_exit(exc, "nnunet-deconver")
    except OSError as exc:
        print(f"nnunet-deconver: error: {os_error_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
