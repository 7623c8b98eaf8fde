"""``nnunet-deconver plan``: write the paper's configuration as an nnU-Net plans file."""

from __future__ import annotations

import argparse
import sys

from nnunet_deconver.network.presets import PRESETS


def _run_plan(args: argparse.Namespace) -> int:
    from nnunet_deconver.nnunet.plans import PresetPlansError, write_preset_plans

    try:
        target = write_preset_plans(args.dataset, args.preset, args.source_plans, args.plans_identifier)
    except PresetPlansError as e:
        print(f"nnunet-deconver plan: {e}", file=sys.stderr)
        return 1
    config = "3d_fullres" if PRESETS[args.preset].spatial_dims == 3 else "2d"
    print(f"wrote {target}")
    print(f"train with: nnUNetv2_train {args.dataset} {config} FOLD -tr nnUNetTrainerDeconver -p {args.plans_identifier}")
    return 0


def register(subparsers) -> None:
    """Add the ``plan`` subcommand."""
    from nnunet_deconver.nnunet.plans import PRESET_PLANS_IDENTIFIER

    parser = subparsers.add_parser(
        "plan", help="write a paper configuration as an nnU-Net plans file",
        description="Write <plans identifier>.json beside nnU-Net's plans of DATASET with the paper's "
        "patch size, batch size, stage count and widths for the chosen preset. The data set must have "
        "been planned and preprocessed by nnUNetv2_plan_and_preprocess first; its preprocessed data "
        "is reused as is.",
    )
    parser.add_argument("dataset", help="data set id or name, e.g. 501 or Dataset501_ISLES22")
    parser.add_argument("--preset", required=True, choices=list(PRESETS))
    parser.add_argument("--source-plans", default="nnUNetPlans", help="nnU-Net plans to start from")
    parser.add_argument("--plans-identifier", default=PRESET_PLANS_IDENTIFIER,
                        help=f"name of the plans written (default {PRESET_PLANS_IDENTIFIER}; use with -p)")
    parser.set_defaults(func=_run_plan)
