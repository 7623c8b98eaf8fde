"""``nnunet-deconver memory``: peak memory of one training step on an nnU-Net configuration."""

from __future__ import annotations

import argparse
import json

from nnunet_deconver.cli.reporting import dataset_name_or_id, plans_name


def run(args: argparse.Namespace) -> int:
    from nnunet_deconver.nnunet.memory import GIB, plans_networks, step_memory

    planned = plans_networks(args.dataset, args.configuration, args.plans, args.trainer)
    budget = args.gpu_memory * GIB
    shape = (planned.batch_size, planned.input_channels, *planned.patch_size)
    rows = []
    for network in planned.networks:
        step = step_memory(network.build, shape, network.optimizer, autocast=True)
        rows.append({"network": network.name, "activation_memory": network.activation_memory,
                     "optimizer": network.optimizer, "peak_bytes": step.peak, "fixed_bytes": step.fixed,
                     "per_sample_bytes": round(step.per_sample), "largest_batch": step.largest_batch(budget)})
    report = {"dataset": planned.dataset, "configuration": planned.configuration, "plans": planned.plans,
              "patch_size": list(planned.patch_size), "batch_size": planned.batch_size,
              "input_channels": planned.input_channels, "gpu_memory_gib": args.gpu_memory,
              "autocast": "16-bit", "networks": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{planned.dataset} {planned.configuration} ({planned.plans}): patch "
          f"{'x'.join(map(str, planned.patch_size))}, batch {planned.batch_size}, {planned.input_channels} input "
          "channels")
    print("peak memory of one training step (16-bit autocast, backward, optimiser step), counted on fake tensors:")
    width = max(len(r["network"]) for r in rows)
    print(f"  {'network':<{width}}  {'peak':>10}  {'largest batch in ' + format(args.gpu_memory, 'g') + ' GiB':>24}")
    for r in rows:
        print(f"  {r['network']:<{width}}  {r['peak_bytes'] / GIB:>6.2f} GiB  {r['largest_batch']:>24}")
    print("tensors only: add the CUDA context and the allocator's slack (typically under 1 GiB) on a GPU")
    return 0


def _gib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of GiB, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``memory`` subcommand."""
    parser = subparsers.add_parser(
        "memory", help="peak memory of a training step on nnU-Net's plans, and the largest batch that fits",
        description="Estimate the peak memory of one training step (forward under 16-bit autocast, backward, "
        "optimiser step) of a trainer's Deconver on a planned nnU-Net configuration, with lean and full "
        "activation memory, beside nnU-Net's own network for the same plans, by counting every tensor of "
        "the step traced on fake tensors (nothing is allocated; runs on a CPU). Also the largest batch "
        "whose estimate fits --gpu-memory.",
    )
    parser.add_argument("dataset", type=dataset_name_or_id, help="data set id or name, e.g. 501 or Dataset501_ISLES22")
    parser.add_argument("-c", "--configuration", required=True, help="e.g. 3d_fullres or 2d")
    parser.add_argument("-p", "--plans", type=plans_name, default="nnUNetPlans",
                        help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerDeconver",
                        help="trainer whose network is estimated (default nnUNetTrainerDeconver)")
    parser.add_argument("--gpu-memory", type=_gib, default=24.0, metavar="GB",
                        help="GPU memory in GiB (2^30 bytes; a 24 GB card holds 24 GiB) for the largest batch (default 24)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
