"""``nnunet-deconver plan``: write the paper's configuration as an nnU-Net plans file."""

from __future__ import annotations

import argparse
import functools

from nnunet_deconver.cli.reporting import dataset_name_or_id, plans_name
from nnunet_deconver.nnunet import plans
from nnunet_deconver.paper import DATASETS, get_dataset


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.plans_identifier == args.source_plans:
        parser.error(f"argument --plans-identifier: {args.plans_identifier} is the --source-plans; the preset plans "
                     "would replace nnU-Net's own, choose another name")
    target = plans.write_preset_plans(args.dataset, args.preset, args.source_plans, args.plans_identifier)
    preset = get_dataset(args.preset)
    print(f"wrote {target}")
    print(f"train with: nnUNetv2_train {args.dataset} {preset.configuration} FOLD "
          f"-tr nnUNetTrainerDeconver_{preset.epochs}epochs -p {args.plans_identifier}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plan`` subcommand."""
    parser = subparsers.add_parser(
        "plan", help="write a paper configuration as an nnU-Net plans file",
        description="Write <plans identifier>.json beside nnU-Net's plans of DATASET with the paper's "
        "patch size and batch size, naming Deconver with the paper's structure as the network (any "
        "nnU-Net trainer trains it from these plans; nnUNetTrainerDeconver adds the paper's optimiser). "
        "The data set must have been planned and preprocessed by nnUNetv2_plan_and_preprocess first; "
        "its preprocessed data is reused as is.",
    )
    parser.add_argument("dataset", type=dataset_name_or_id, help="data set id or name, e.g. 501 or Dataset501_ISLES22")
    parser.add_argument("--preset", required=True, choices=list(DATASETS))
    parser.add_argument("--source-plans", type=plans_name, default="nnUNetPlans", help="nnU-Net plans to start from")
    parser.add_argument("--plans-identifier", type=plans_name, default=plans.PRESET_PLANS_IDENTIFIER,
                        help=f"name of the plans written (default {plans.PRESET_PLANS_IDENTIFIER}; use with -p); "
                        "must differ from --source-plans")
    parser.set_defaults(func=functools.partial(run, parser=parser))
