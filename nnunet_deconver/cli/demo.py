"""``nnunet-deconver demo``: the whole nnU-Net pipeline with Deconver on a synthetic data set, on CPU."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from nnunet_deconver.cli.reporting import positive_int, probability


def train_cases(text: str) -> int:
    """argparse type: at least 5 cases (nnU-Net's 5-fold split)."""
    if not re.fullmatch(r"\d+", text) or int(text) < 5:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 5 (nnU-Net splits the training cases "
                                         f"into 5 folds), got {text!r}")
    return int(text)


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
                        help="working folder, replaced if it is an earlier demo's; any other existing folder "
                        "or file is refused (default ./nnunet_deconver_demo)")
    parser.add_argument("--train-cases", type=train_cases, default=9, help="at least 5 (default %(default)s)")
    parser.add_argument("--test-cases", type=positive_int, default=3, help="held-out cases (default %(default)s)")
    parser.add_argument("--min-dice", type=probability, default=0.5,
                        help="fail below this mean held-out Dice, from 0 to 1 (default %(default)s)")
    parser.set_defaults(func=run)
