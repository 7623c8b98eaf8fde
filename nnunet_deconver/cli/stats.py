"""``nnunet-deconver stats``: parameters and FLOPs per voxel of the paper's configurations."""

from __future__ import annotations

import argparse
import functools
import json

from nnunet_deconver.cli.reporting import positive_int
from nnunet_deconver.paper import DATASETS, undivided_widths


def groups_problem(names: list[str], ratio: int, groups: int | None) -> str | None:
    """Why ``--groups`` cannot split the NDC layers of the presets ``names``, or None."""
    if groups is None:
        return None
    problems = []
    for name in names:
        widths = DATASETS[name].features_per_stage
        undivided = undivided_widths(widths, ratio, groups)
        if undivided:
            problems.append(f"{', '.join(map(str, undivided))} of {name} (widths {', '.join(map(str, widths))})")
    if not problems:
        return None
    return (f"argument --groups: {groups} does not divide {'; '.join(problems)}: every stage's width C and "
            f"R * C (--ratio {ratio}) must be divisible by the number of groups")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    names = list(DATASETS) if args.preset == "all" else [args.preset]
    problem = groups_problem(names, args.ratio, args.groups)
    if problem is not None:
        parser.error(problem)  # exit code 2, as argparse's own errors

    from nnunet_deconver.network.stats import format_report, model_report

    reports = [model_report(n, args.kernel, args.ratio, args.groups, norm_affine=args.norm_affine) for n in names]
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    else:
        print("\n\n".join(format_report(r) for r in reports))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stats`` subcommand."""
    parser = subparsers.add_parser(
        "stats", help="parameters and FLOPs per voxel of a paper configuration",
        description="Print the parameter count and FLOPs per voxel (two conventions) of a paper "
        "configuration of Deconver, beside the paper's figures.",
    )
    parser.add_argument("--preset", choices=[*DATASETS, "all"], default="isles22")
    parser.add_argument("--kernel", type=int, choices=(3, 5), default=3, help="NDC kernel size")
    parser.add_argument("--ratio", type=positive_int, default=4, help="NDC source channel ratio R")
    parser.add_argument("--groups", type=positive_int, default=None,
                        help="NDC groups; must divide every stage's width C and R * C (default: C, one per channel)")
    parser.add_argument("--norm-affine", action="store_true",
                        help="instance norms with learnable scale and shift (the paper's have none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=functools.partial(run, parser=parser))
