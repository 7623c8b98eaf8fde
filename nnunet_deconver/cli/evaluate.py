"""``nnunet-deconver evaluate``: Dice / HD95 (and challenge metrics) of an nnU-Net cross-validation.

The options both evaluation subcommands share (:func:`add_evaluation_options`) and the printing of
their summary (:func:`print_summary`) live here; ``evaluate-folders`` uses them too. Registration
imports nothing heavy: nnU-Net and torch load only when the subcommand runs.
"""

from __future__ import annotations

import argparse
import functools

from nnunet_deconver.cli.reporting import dataset_name_or_id, fold, plans_name, positive_int
from nnunet_deconver.paper import DATASETS
from nnunet_deconver.workers import default_workers

#: the same as evaluation.metrics.HD95_DEFINITIONS (not imported: that module loads NumPy and SciPy)
HD95_DEFINITIONS = ("directed-max", "pooled")


def _penalty(value: str):
    from nnunet_deconver.evaluation.penalty import EmptyPenalty

    try:
        return EmptyPenalty.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_evaluation_options(p: argparse.ArgumentParser) -> None:
    """Options of ``evaluate`` and ``evaluate-folders``."""
    p.add_argument("-o", "--output", default=None, help="output folder for summary.json, per_case.csv "
                   "and table.md")
    p.add_argument("-j", "--processes", type=positive_int, default=default_workers(),
                   help="worker processes over cases (default: %(default)s; 1 = no pool)")
    p.add_argument("--empty-hd95", type=_penalty, default="diagonal", metavar="{diagonal,brats,NUMBER}",
                   help="HD95 when exactly one of prediction and reference is empty: the image "
                   "diagonal in mm (default), 'brats' (373.13 mm, the BraTS grid's diagonal) or a number "
                   "(the paper's metrics and the GlaS / FIVES figures; the BraTS figures use 374)")
    p.add_argument("--compare-paper", choices=list(DATASETS), default=None,
                   help="add the paper's Deconver row(s) for this data set to the table")
    p.add_argument("--kernel", type=int, choices=(3, 5), default=None,
                   help="with --compare-paper: only the paper row of this kernel size, plus the "
                   "difference (default: both rows)")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 1 if any fold, prediction or reference is missing")
    p.add_argument("--hd95-definition", choices=HD95_DEFINITIONS, default="directed-max",
                   help="directed-max (default, the paper's equation (9), MONAI's): the larger of the two "
                   "directed 95th percentiles of the surface distances; pooled (medpy's): one 95th "
                   "percentile of both directions' distances together (not the BraTS figures, which use "
                   "the BraTS tools' own HD95)")
    p.add_argument("--metrics", choices=("paper", "challenge", "all"), default=None,
                   help="the paper's DSC / HD95, the data set's challenge metrics, or both (default: all "
                   "when the challenge is known from --challenge or the data set name, else paper)")
    p.add_argument("--challenge", choices=list(DATASETS), default=None,
                   help="whose challenge metrics to compute (default: from the data set name)")


def check_evaluation_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The checks of :func:`add_evaluation_options` that argparse cannot do alone (exit code 2)."""
    if args.kernel is not None and args.compare_paper is None:
        parser.error("argument --kernel: picks the paper row of --compare-paper; give --compare-paper too")


def print_summary(summary: dict, strict: bool) -> int:
    """Print the table and the files written; with ``strict``, fail when anything was missing."""
    from nnunet_deconver.evaluation.files import EvaluationError

    print(summary["markdown"])
    for kind, path in summary["output_files"].items():
        print(f"{kind}: {path}")
    m = summary["missing"]
    anything_missing = bool(
        m["missing_folds"] or any(m["missing_cases"].values())
        or any(m["predictions_without_reference"].values()) or m["references_without_prediction"]
    )
    if strict and anything_missing:
        raise EvaluationError("missing folds, predictions or references (see warnings); --strict set")
    return 0


def evaluation_options(args: argparse.Namespace) -> dict:
    """The options of :func:`add_evaluation_options` as keyword arguments of
    ``evaluate_crossval`` / ``evaluate_folders``."""
    return dict(output_folder=args.output, num_processes=args.processes, empty_penalty=args.empty_hd95,
                compare_paper=args.compare_paper, kernel=args.kernel, hd95_definition=args.hd95_definition,
                metrics=args.metrics, challenge=args.challenge)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    check_evaluation_options(args, parser)
    from nnunet_deconver.evaluation.report import evaluate_crossval

    summary = evaluate_crossval(args.dataset, args.trainer, args.configuration, plans=args.plans,
                                folds=args.folds, **evaluation_options(args))
    return print_summary(summary, args.strict)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="Dice / HD95 of an nnU-Net cross-validation (fold_k/validation vs labelsTr)",
        description="Evaluate the validation predictions of each fold "
        "($nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG/fold_k/validation) against "
        "$nnUNet_raw/DatasetXXX/labelsTr: Dice and HD95 per case, label or region, fold and "
        "over folds; writes summary.json, per_case.csv and table.md.",
    )
    p.add_argument("dataset", metavar="DATASET", type=dataset_name_or_id,
                   help="data set id or name (e.g. 2 or Dataset002_X)")
    p.add_argument("-tr", dest="trainer", required=True, help="trainer class name")
    p.add_argument("-c", dest="configuration", required=True, help="configuration, e.g. 3d_fullres")
    p.add_argument("-p", dest="plans", type=plans_name, default="nnUNetPlans",
                   help="plans identifier (default: %(default)s)")
    p.add_argument("-f", "--folds", nargs="+", type=fold, default=["0", "1", "2", "3", "4"],
                   help="folds to evaluate (default: 0 1 2 3 4)")
    add_evaluation_options(p)
    p.set_defaults(func=functools.partial(run, parser=p))
