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
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
