"""One training step: Deconver (ISLES'22 preset) against nnU-Net's PlainConvUNet.

A step is: forward of a random (B, 2, P, P, P) batch, loss = sum over the deep-supervision outputs
of mean(output^2) (the same for every network), backward, AdamW step. Networks (3D, 2 inputs,
2 outputs, deep supervision on): Deconver ISLES'22 (widths 64-512, NDC k = 3, R = 4) with the NDC
update on each CPU backend (``NNUNET_DECONVER_NDC_BACKEND=cpp``: fused C++ kernels; ``torch``:
PyTorch's convolutions), with ``lean`` blocks (the default: 4C-channel work recomputed in backward,
slab by slab) and ``full`` ones, and PlainConvUNet as nnU-Net's default plans build it for a
64^3 patch (5 stages, 32-320 features).
Reported: seconds per step (median, after one warm-up step), peak memory growth of one step
(activations, gradients and AdamW state; each in a fresh process, see ``_worker.py``),
parameters and forward FLOPs per voxel (every convolution, PyTorch's FlopCounterMode, counted on
a smaller patch).

Run from the repository root::

    .venv/bin/python benchmarks/bench_step.py            # patch 64^3, batch 2
    .venv/bin/python benchmarks/bench_step.py --quick    # patch 32^3, batch 1
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from _cli import add_patch_options, base_parser, batch_size, bench_main, patch_edge
from _format import fmt_mb, fmt_ratio, fmt_s, markdown_table
from _machine import Session
from _networks import INPUT_CHANNELS, build_network, network_label, select_ndc_backend
from _protocol import measure
from _worker import Case

#: the rows: (network, activation memory, huge-page allocation, NDC backend); each is compared
#: with PlainConvUNet under the same allocator
ROWS = (
    ("deconver", "lean", False, "cpp"), ("deconver", "lean", True, "cpp"), ("deconver", "full", True, "cpp"),
    ("deconver", "lean", True, "torch"), ("plainconvunet", None, False, None), ("plainconvunet", None, True, None),
)
#: patch of the priming step (the smallest PlainConvUNet trains on: 2^3 at its 5th stage)
PRIME_PATCH = 32


def build_case(spec: dict) -> Case:
    """The network and AdamW of one row; phase "step" at the requested patch, primed at 32^3."""
    import torch

    from nnunet_deconver.network.stats import count_flops, count_parameters

    select_ndc_backend(spec.get("backend"))
    model = build_network(spec["network"], deep_supervision=True, activation_memory=spec["activation_memory"] or "lean")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step_on(x: torch.Tensor) -> Callable[[], None]:
        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = sum(out.square().mean() for out in model(x))
            loss.backward()
            optimizer.step()

        return step

    step = step_on(torch.randn(spec["batch"], INPUT_CHANNELS, *[spec["patch"]] * 3))
    tiny_step = step_on(torch.randn(1, INPUT_CHANNELS, *[PRIME_PATCH] * 3))

    def prime() -> None:
        tiny_step()
        optimizer.zero_grad(set_to_none=True)
        optimizer.state.clear()  # the measured step allocates gradients and AdamW state again

    def info() -> dict:
        patch = [spec["flops_patch"]] * 3
        flops = count_flops(model, (1, INPUT_CHANNELS, *patch))["total"]
        return {"params": count_parameters(model), "flops_per_voxel": flops / math.prod(patch)}

    return Case({"step": step}, memory_phase="step", prime=prime, info=info)


def report(args: argparse.Namespace, session: Session) -> str:
    """Measure every network; the Markdown section."""
    patch, batch = patch_edge(args), batch_size(args)
    results = []
    for network, activations, thp, backend in ROWS:
        spec = {"network": network, "activation_memory": activations, "patch": patch, "batch": batch,
                "flops_patch": args.flops_patch, "thp": thp, "backend": backend}
        results.append(measure(__file__, spec, session.settings, row_label(network, activations, thp, backend)))
    plain = {thp: m for (network, _, thp, _), m in zip(ROWS, results) if network == "plainconvunet"}
    rows = []
    for (network, activations, thp, backend), m in zip(ROWS, results):
        flops = m.info.get("flops_per_voxel")
        rows.append([
            row_label(network, activations, thp, backend), fmt_s(m.median("step")), fmt_mb(m.growth_mb),
            f"{m.info['params']:,}" if "params" in m.info else "n/a",
            "n/a" if flops is None else f"{flops / 1e3:,.1f}K",
            fmt_ratio(m.median("step"), plain[thp].median("step")), fmt_ratio(m.growth_mb, plain[thp].growth_mb),
        ])
    intro = [
        f"One training step (forward, loss = sum over deep-supervision outputs of mean(out^2), backward, "
        f"AdamW step), 3D patch {patch}^3, batch {batch}, 2 input channels, 2 outputs, deep "
        "supervision on, float32, CPU.",
    ]
    body = [
        *markdown_table(
            ["network", "s / step", "peak growth MB", "parameters", "FLOPs / voxel", "time vs nnU-Net",
             "memory vs nnU-Net"],
            rows,
        ),
        "",
        "Peak growth includes activations, gradients and the AdamW state created by the step. FLOPs: "
        f"forward, every convolution (NDC updates included), counted on a {args.flops_patch}^3 patch, per "
        "input voxel. \"huge pages\": THP_MEM_ALLOC_ENABLE=1 (PyTorch backs large tensors with transparent "
        "huge pages; the Deconver trainers turn it on for CPU training), \"malloc\": =0; ratios are against "
        "PlainConvUNet under the same allocator.",
    ]
    return session.section("Training step: Deconver vs nnU-Net's U-Net", intro, body)


def row_label(network: str, activations: str | None, thp: bool, backend: str | None = None) -> str:
    """E.g. "Deconver ISLES'22 lean, NDC cpp, huge pages"."""
    return f"{network_label(network, backend=backend, activation_memory=activations)}, {'huge pages' if thp else 'malloc'}"


def parser() -> argparse.ArgumentParser:
    """Command line of this benchmark."""
    p = base_parser(__doc__.splitlines()[0], reps=2)
    add_patch_options(p)
    p.add_argument("--flops-patch", type=int, default=32, help="patch edge FLOPs are counted on (default 32)")
    return p


if __name__ == "__main__":
    raise SystemExit(bench_main(parser(), build_case, report))
