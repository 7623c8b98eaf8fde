"""``nnunet-deconver evaluate-folders``: Dice / HD95 (and challenge metrics) of a folder of
predictions against a folder of references."""

from __future__ import annotations

import argparse
import functools

from nnunet_deconver.cli.evaluate import (
    add_evaluation_options,
    check_evaluation_options,
    evaluation_options,
    print_summary,
)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    check_evaluation_options(args, parser)
    from nnunet_deconver.evaluation.report import evaluate_folders

    summary = evaluate_folders(args.pred, args.ref, args.djfile, instance_folder=args.instances,
                               **evaluation_options(args))
    return print_summary(summary, args.strict)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate-folders`` subcommand."""
    q = subparsers.add_parser(
        "evaluate-folders",
        help="Dice / HD95 of a folder of predictions against a folder of references",
        description="Evaluate PRED against REF (same file names); file ending and labels or "
        "regions from the dataset.json. Writes summary.json, per_case.csv and table.md.",
    )
    q.add_argument("pred", metavar="PRED", help="folder of predicted segmentations")
    q.add_argument("ref", metavar="REF", help="folder of reference segmentations")
    q.add_argument("-djfile", dest="djfile", required=True, help="dataset.json of the data set")
    q.add_argument("--instances", default=None, metavar="FOLDER",
                   help="with --challenge glas: folder of reference gland instance maps (CASE.png, e.g. "
                   "the converted data set's instancesTr); default: connected components of REF")
    add_evaluation_options(q)
    q.set_defaults(func=functools.partial(run, parser=q))
