"""``nnunet-deconver demo``: the whole nnU-Net pipeline with Deconver on a synthetic data set, on CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from nnunet_deconver.demo import run_demo

    mean = run_demo(Path(args.folder), args.train_cases, args.test_cases, args.min_dice)
    if mean < args.min_dice:
        print(f"demo FAILED: mean held-out Dice {mean:.3f} < {args.min_dice}", file=sys.stderr)
        return 1
    print(f"demo passed: mean held-out Dice {mean:.3f} >= {args.min_dice}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    from nnunet_deconver import demo

    parser = subparsers.add_parser(
        "demo", help="plan, train, predict and score Deconver on a synthetic data set (CPU, ~10 min)",
        description=demo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--folder", default="nnunet_deconver_demo",
                        help="working folder, replaced if it exists (default ./nnunet_deconver_demo)")
    parser.add_argument("--train-cases", type=int, default=9)
    parser.add_argument("--test-cases", type=int, default=3)
    parser.add_argument("--min-dice", type=float, default=0.5, help="fail below this mean held-out Dice")
    parser.set_defaults(func=run)
