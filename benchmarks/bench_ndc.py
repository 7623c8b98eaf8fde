"""NDC layer: ``ndc`` on its two CPU backends against the plain graph (``ndc_reference``).

For each case (channels C, ratio R, kernel k, groups = C, batch B, spatial size S): forward time,
forward + backward time and peak memory growth of forward + backward, for three implementations:
``ndc`` with ``NNUNET_DECONVER_NDC_BACKEND=cpp`` (the fused C++ kernels) and ``=torch`` (PyTorch's
convolutions), and ``ndc_reference``; each measurement in a fresh process (see ``_worker.py``).
Inputs are (B, C, *S) / (B, R*C, *S) tensors and a (C, R, *k) filter, all nonnegative leaves
requiring grad; the forward is timed with autograd recording (as in training); the backward takes
a random upstream gradient created with the inputs, before the memory baseline. Targets: cpp /
plain <= 0.10 for forward + backward time and <= 0.25 for peak growth.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ndc.py            # C 32,64 x k 3,5 x 32^3, 64^3, 256^2
    .venv/bin/python benchmarks/bench_ndc.py --quick    # C 32 x k 3 x 16^3, 64^2
"""

from __future__ import annotations

import argparse
import itertools
from typing import Callable, Sequence

from _cli import base_parser, bench_main, parse_ints, parse_sizes
from _format import fmt_mb, fmt_ratio, fmt_s, markdown_table
from _machine import Session
from _networks import select_ndc_backend
from _protocol import measure
from _worker import Case

IMPLEMENTATIONS = {"cpp": "`ndc`, cpp", "torch": "`ndc`, torch", "plain": "`ndc_reference`"}
TIME_TARGET, MEMORY_TARGET = 0.10, 0.25  # cpp / plain, forward + backward


def _phases(spec: dict, size: Sequence[int]) -> dict[str, Callable[[], None]]:
    """Inputs of the NDC case ``spec`` at spatial ``size``, and its phases "fwd" and "fwd+bwd"."""
    import torch

    from nnunet_deconver.ndc.functional import ndc, ndc_reference
    from nnunet_deconver.ndc.ops import preferred_memory_format

    update = ndc_reference if spec["impl"] == "plain" else ndc
    select_ndc_backend(None if spec["impl"] == "plain" else spec["impl"])
    batch, channels, sources = spec["batch"], spec["channels"], spec["ratio"] * spec["channels"]
    groups = channels
    x = torch.rand(batch, channels, *size)
    # Each side gets its inputs in the layout it runs in inside the network: the NDC module feeds
    # ``ndc`` channels-last tensors on CPU (no copy inside the update); the plain graph, contiguous.
    layout = torch.contiguous_format if spec["impl"] == "plain" else preferred_memory_format(x)
    x = x.contiguous(memory_format=layout).requires_grad_()
    s0 = torch.rand(batch, sources, *size).contiguous(memory_format=layout).requires_grad_()
    weight = torch.rand(channels, sources // groups, *[spec["kernel"]] * len(size), requires_grad=True)
    upstream = torch.randn(batch, sources, *size).contiguous(memory_format=layout)
    leaves = (x, s0, weight)

    def forward() -> None:
        update(x, s0, weight, groups)

    def forward_backward() -> None:
        for leaf in leaves:
            leaf.grad = None
        update(x, s0, weight, groups).backward(upstream)

    return {"fwd": forward, "fwd+bwd": forward_backward}


def build_case(spec: dict) -> Case:
    """One NDC case: phases "fwd" and "fwd+bwd" (the memory phase), primed at 4 voxels per axis."""
    tiny = _phases(spec, [4] * len(spec["size"]))["fwd+bwd"]
    return Case(_phases(spec, spec["size"]), memory_phase="fwd+bwd", prime=tiny)


def case_label(spec: dict) -> str:
    """E.g. "3D 32x32x32, C=64, k=5"."""
    size = spec["size"]
    return f"{len(size)}D {'x'.join(map(str, size))}, C={spec['channels']}, k={spec['kernel']}"


def report(args: argparse.Namespace, session: Session) -> str:
    """Measure every case with both implementations; the Markdown section."""
    sizes = parse_sizes(args.sizes or ("16x16x16,64x64" if args.quick else "32x32x32,64x64x64,256x256"))
    channels = parse_ints(args.channels or ("32" if args.quick else "32,64"))
    rows, ratio_rows = [], []
    kernels = parse_ints(args.kernels or ("3" if args.quick else "3,5"))
    for size, c, k in itertools.product(sizes, channels, kernels):
        base = {"channels": c, "ratio": args.ratio, "kernel": k, "size": list(size), "batch": args.batch}
        label = case_label(base)
        result = {
            impl: measure(__file__, {**base, "impl": impl}, session.settings, f"{label}, {impl}")
            for impl in IMPLEMENTATIONS
        }
        for impl, m in result.items():
            rows.append([label, IMPLEMENTATIONS[impl], fmt_s(m.median("fwd")), fmt_s(m.median("fwd+bwd")),
                         fmt_mb(m.growth_mb)])
        cpp, torch_backend, plain = result["cpp"], result["torch"], result["plain"]
        ratio_rows.append([
            label,
            fmt_ratio(cpp.median("fwd"), plain.median("fwd")),
            fmt_ratio(cpp.median("fwd+bwd"), plain.median("fwd+bwd"), TIME_TARGET),
            fmt_ratio(cpp.growth_mb, plain.growth_mb, MEMORY_TARGET),
            fmt_ratio(torch_backend.median("fwd+bwd"), plain.median("fwd+bwd")),
            fmt_ratio(cpp.median("fwd+bwd"), torch_backend.median("fwd+bwd")),
        ])
    intro = [
        f"`ndc` with `NNUNET_DECONVER_NDC_BACKEND=cpp` (fused C++ kernels) and `=torch` (PyTorch's "
        "convolutions), both with channels-last inputs on CPU as the NDC module gives them, vs "
        f"`ndc_reference` (plain autograd graph, contiguous inputs): one update, batch {args.batch}, "
        f"R = {args.ratio}, groups = C, float32, x and s0 (and the filter) requiring grad; backward with a "
        f"random upstream gradient. Targets: cpp/plain <= {TIME_TARGET} for fwd+bwd time and <= "
        f"{MEMORY_TARGET} for peak growth.",
    ]
    body = [
        *markdown_table(["case", "impl", "fwd s", "fwd+bwd s", "peak growth MB"], rows, "llrrr"),
        "",
        *markdown_table(
            ["case", "fwd cpp/plain", f"fwd+bwd cpp/plain (<= {TIME_TARGET})",
             f"peak growth cpp/plain (<= {MEMORY_TARGET})", "fwd+bwd torch/plain", "fwd+bwd cpp/torch"],
            ratio_rows,
        ),
        "",
        "Peak growth is of forward + backward and includes the gradients of x, s0 and the filter.",
    ]
    return session.section("NDC layer: cpp and torch backends vs plain graph", intro, body)


def parser() -> argparse.ArgumentParser:
    """Command line of this benchmark."""
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", help="spatial sizes, e.g. 32x32x32,256x256 (default: 32^3, 64^3, 256^2; quick: "
                   "16^3, 64^2)")
    p.add_argument("--channels", help="channel counts C, e.g. 32,64 (default 32,64; quick 32)")
    p.add_argument("--kernels", help="kernel sizes k (default 3,5; quick 3)")
    p.add_argument("--ratio", type=int, default=4, help="source channel ratio R (default 4)")
    p.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    return p


if __name__ == "__main__":
    raise SystemExit(bench_main(parser(), build_case, report))
