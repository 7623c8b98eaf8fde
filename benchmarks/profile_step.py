"""Where the time of one training step goes: torch.profiler, Deconver vs PlainConvUNet.

Profiles one training step (the step of ``bench_step.py``: forward, loss, backward, AdamW) of
each network after one unprofiled warm-up step, and sums the profiler's self CPU time by what
the operator belongs to:

- NDC update: the fused C++ kernels (``cpp`` backend, the default on CPU), or, with
  ``--ndc-backend torch``, the convolutions, the filter gradients and the elementwise work inside
  the update's operators (``nnunet_deconver::ndc_update`` and ``ndc_update_backward``);
- pointwise (1x1) convolutions (as convolutions or as the matrix products they run as on CPU) and
  the other convolutions (k > 1: PlainConvUNet's 3^3 convs,
  down- and up-sampling), forward and backward;
- instance norm, activations (ReLU, GELU, LeakyReLU), the AdamW step, and the rest (residual
  adds, copies, loss, autograd bookkeeping).

Run from the repository root (it prints a Markdown section; progress goes to stderr)::

    .venv/bin/python benchmarks/profile_step.py              # patch 64^3, batch 2
    .venv/bin/python benchmarks/profile_step.py --quick      # patch 32^3, batch 1

PyTorch's huge-page allocation is on (``THP_MEM_ALLOC_ENABLE=1``, as in the other benchmarks)
unless ``--allocator default``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import bench_step
from _cli import add_patch_options, base_parser, batch_size, in_process_settings, patch_edge
from _format import log, markdown_table
from _machine import Session
from _networks import network_label

CATEGORIES = (
    "NDC update: fused C++ kernels",
    "NDC update: grouped convolutions",
    "NDC update: filter gradients",
    "NDC update: elementwise",
    "pointwise (1x1) convolutions and matrix products",
    "other convolutions (k > 1)",
    "instance norm",
    "activations",
    "AdamW step",
    "other (adds, copies, loss, autograd)",
)
_ACTIVATIONS = ("relu", "gelu", "leaky_relu", "threshold_backward", "clamp_min")
#: the pointwise convolutions computed as channels-last matrix products (and their backward, whose
#: weight gradients the fused halves accumulate in place)
_MATMULS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm")


def _ancestors(event):
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _kernel_is_pointwise(event) -> bool:
    shapes = [s for s in event.input_shapes if len(s) >= 4]
    # the weight is the second 4/5-D input of forward ops and the third of convolution_backward
    weight = shapes[2] if event.name == "aten::convolution_backward" and len(shapes) > 2 else shapes[1]
    return all(k == 1 for k in weight[2:])


def category(event) -> str:
    """The category of one profiler event (see :data:`CATEGORIES`)."""
    name = event.name
    parents = [p.name for p in _ancestors(event)]
    is_conv = "conv" in name
    if any(n.startswith("nnunet_deconver_cpp::") for n in parents + [name]):
        return CATEGORIES[0]
    if any("nnunet_deconver::ndc_update" in n for n in parents + [name]):
        if name == "aten::convolution_backward":
            return CATEGORIES[2]
        return CATEGORIES[1] if is_conv else CATEGORIES[3]
    if any("Optimizer.step" in p for p in parents):
        return CATEGORIES[8]
    if name in _MATMULS:
        return CATEGORIES[4]
    if is_conv:
        try:
            return CATEGORIES[4] if _kernel_is_pointwise(event) else CATEGORIES[5]
        except IndexError:
            return CATEGORIES[5]
    if "norm" in name:
        return CATEGORIES[6]
    if any(a in name for a in _ACTIVATIONS):
        return CATEGORIES[7]
    return CATEGORIES[9]


def profile_network(network: str, patch: int, batch: int, backend: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of the profiled step and self CPU seconds per category."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    spec = {"network": network, "checkpoint_levels": [], "patch": patch, "batch": batch, "activation_memory": "lean",
            "backend": backend if network == "deconver" else None}
    step = bench_step.build_case(spec).phases["step"]  # the very step bench_step.py times

    log(f"  {network}: warm-up step")
    step()
    log(f"  {network}: profiled step")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.events():
        # self times (an operator's time minus its children's) add up to the step's total
        seconds[category(event)] += event.self_cpu_time_total / 1e6
    return wall, dict(seconds)


def report(args: argparse.Namespace, session: Session) -> str:
    patch, batch = patch_edge(args), batch_size(args)
    results = {name: profile_network(name, patch, batch, args.ndc_backend) for name in ("deconver", "plainconvunet")}
    labels = [network_label(name) for name in results]
    rows = []
    for cat in CATEGORIES:
        rows.append([cat, *(f"{r[1].get(cat, 0.0):.2f}" for r in results.values()),
                     *(f"{100 * r[1].get(cat, 0.0) / sum(r[1].values()):.0f}%" for r in results.values())])
    rows.append(["**total self CPU time**", *(f"{sum(r[1].values()):.2f}" for r in results.values()),
                 "100%", "100%"])
    rows.append(["wall time of the profiled step", *(f"{r[0]:.2f}" for r in results.values()), "", ""])
    intro = [
        f"Self CPU seconds of one profiled training step (after one warm-up step), 3D patch {patch}^3, batch "
        f"{batch}, deep supervision on, float32, NDC backend {args.ndc_backend}, one process, torch.profiler "
        "with shapes recorded "
        "(its overhead included), categorised by `benchmarks/profile_step.py`.",
    ]
    body = markdown_table(["where", *(f"{label} s" for label in labels), *(f"{label} %" for label in labels)], rows)
    return session.section("Where the step's time goes (torch.profiler)", intro, body)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], reps=1)
    add_patch_options(p)
    p.add_argument("--ndc-backend", choices=("cpp", "torch"), default="cpp", help="NDC backend (default cpp)")
    args = p.parse_args(argv)
    settings = in_process_settings(args, reps=1)
    session = Session(settings, method="one process, both networks one after the other; one warm-up step, "
                      "then one profiled step each (--reps and --budget do not apply)")
    print(report(args, session))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
