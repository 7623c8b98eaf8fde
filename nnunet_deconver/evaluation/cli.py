"""``nnunet-deconver evaluate`` and ``nnunet-deconver evaluate-folders``.

Registration imports nothing heavy: nnU-Net and torch load only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import os
import sys

PAPER_DATASETS = ("isles22", "brats23", "glas", "fives")
HD95_DEFINITIONS = ("directed-max", "pooled")  # the same as metrics.HD95_DEFINITIONS (not imported: light)


def _default_processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _penalty(value: str):
    from nnunet_deconver.evaluation.penalty import EmptyPenalty

    try:
        return EmptyPenalty.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default=None, help="output folder for summary.json, per_case.csv "
                   "and table.md")
    p.add_argument("-j", "--processes", type=int, default=_default_processes(),
                   help="worker processes over cases (default: %(default)s; 1 = no pool)")
    p.add_argument("--empty-hd95", type=_penalty, default="diagonal", metavar="{diagonal,brats,NUMBER}",
                   help="HD95 when exactly one of prediction and reference is empty: the image "
                   "diagonal in mm (default), 'brats' (373.13 mm, the BraTS tools' value) or a number "
                   "(the paper's metrics and the GlaS / FIVES figures; the BraTS figures use 374)")
    p.add_argument("--compare-paper", choices=PAPER_DATASETS, default=None,
                   help="add the paper's Deconver row(s) for this data set to the table")
    p.add_argument("--kernel", type=int, choices=(3, 5), default=None,
                   help="with --compare-paper: only the paper row of this kernel size, plus the "
                   "difference (default: both rows)")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 1 if any fold, prediction or reference is missing")
    p.add_argument("--hd95-definition", choices=HD95_DEFINITIONS, default="directed-max",
                   help="directed-max (default, the paper's equation (9), MONAI's): the larger of the two "
                   "directed 95th percentiles of the surface distances; pooled (medpy's): one 95th "
                   "percentile of both directions' distances together")
    p.add_argument("--metrics", choices=("paper", "challenge", "all"), default=None,
                   help="the paper's DSC / HD95, the data set's challenge metrics, or both (default: all "
                   "when the challenge is known from --challenge or the data set name, else paper)")
    p.add_argument("--challenge", choices=PAPER_DATASETS, default=None,
                   help="whose challenge metrics to compute (default: from the data set name)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``evaluate-folders`` subcommands (each sets ``func``)."""
    p = subparsers.add_parser(
        "evaluate",
        help="Dice / HD95 of an nnU-Net cross-validation (fold_k/validation vs labelsTr)",
        description="Evaluate the validation predictions of each fold "
        "($nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG/fold_k/validation) against "
        "$nnUNet_raw/DatasetXXX/labelsTr: Dice and HD95 per case, label or region, fold and "
        "over folds; writes summary.json, per_case.csv and table.md.",
    )
    p.add_argument("dataset", metavar="DATASET", help="data set id or name (e.g. 2 or Dataset002_X)")
    p.add_argument("-tr", dest="trainer", required=True, help="trainer class name")
    p.add_argument("-c", dest="configuration", required=True, help="configuration, e.g. 3d_fullres")
    p.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier (default: %(default)s)")
    p.add_argument("-f", "--folds", nargs="+", default=["0", "1", "2", "3", "4"],
                   help="folds to evaluate (default: 0 1 2 3 4)")
    _add_common(p)
    p.set_defaults(func=run_evaluate)

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
    _add_common(q)
    q.set_defaults(func=run_evaluate_folders)


def _report(summary: dict, strict: bool) -> int:
    print(summary["markdown"])
    for kind, path in summary["output_files"].items():
        print(f"{kind}: {path}")
    m = summary["missing"]
    anything_missing = bool(
        m["missing_folds"] or any(m["missing_cases"].values())
        or any(m["predictions_without_reference"].values()) or m["references_without_prediction"]
    )
    if strict and anything_missing:
        print("ERROR: missing folds, predictions or references (see warnings); --strict set",
              file=sys.stderr)
        return 1
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``nnunet-deconver evaluate``: returns the exit code."""
    from nnunet_deconver.evaluation.report import EvaluationError, evaluate_crossval

    try:
        summary = evaluate_crossval(
            args.dataset, args.trainer, args.configuration, plans=args.plans, folds=args.folds,
            output_folder=args.output, num_processes=args.processes, empty_penalty=args.empty_hd95,
            compare_paper=args.compare_paper, kernel=args.kernel, hd95_definition=args.hd95_definition,
            metrics=args.metrics, challenge=args.challenge,
        )
    except EvaluationError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return _report(summary, args.strict)


def run_evaluate_folders(args: argparse.Namespace) -> int:
    """``nnunet-deconver evaluate-folders``: returns the exit code."""
    from nnunet_deconver.evaluation.report import EvaluationError, evaluate_folders

    try:
        summary = evaluate_folders(
            args.pred, args.ref, args.djfile, output_folder=args.output,
            num_processes=args.processes, empty_penalty=args.empty_hd95,
            compare_paper=args.compare_paper, kernel=args.kernel, hd95_definition=args.hd95_definition,
            metrics=args.metrics, challenge=args.challenge, instance_folder=args.instances,
        )
    except EvaluationError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return _report(summary, args.strict)
