"""Formulations and memory layouts of the block's kernels, compared on CPU (what was tried).

Each row computes the same thing as the first row of its group (the largest difference is
printed); time = fastest of ``--reps`` runs after one warm-up, in one process (the kernels are
independent of each other; peak memory is not measured here). Groups, for a (B, C, *S) input
with E = R * C sources, groups = C:

- NDC synthesis ``A(s)`` (B, E) -> (B, C): grouped convolution, contiguous and channels-last; a
  depthwise convolution over E channels followed by the sum over each group's R outputs.
- NDC analysis ``A^T(x)`` (B, C) -> (B, E): grouped transposed convolution, contiguous and
  channels-last; x repeated R times per channel, then a depthwise convolution.
- NDC filter gradient ``d<A(s), x>/dV``: grouped ``convolution_backward``, contiguous and
  channels-last; the depthwise one with x repeated.
- MLP forward + backward (pointwise C -> 4C, GELU, 4C -> C): Conv 1x1 contiguous, channels-last,
  and ``nn.Linear`` on a channels-last (B, *S, C) view.
- Instance norm forward + backward: contiguous and channels-last.
- One pass over a (B, E, *S) tensor: a copy into an existing buffer, ReLU in place, ReLU into a
  new tensor: what allocating a fresh large tensor costs under the chosen ``--allocator``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_kernels.py                 # 3D 64^3, C = 64
    .venv/bin/python benchmarks/bench_kernels.py --size 256x256  # 2D
    .venv/bin/python benchmarks/bench_kernels.py --quick         # 3D 16^3, C = 16
    .venv/bin/python benchmarks/bench_kernels.py --allocator default  # plain malloc
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from _measure import Session, base_parser, fmt_s, in_process_settings, markdown_table, parse_sizes


def _fastest(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    out = fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def groups_of_variants(batch: int, channels: int, ratio: int, kernel: int, size: tuple[int, ...]):
    """``{group: [(variant, fn), ...]}``; every fn returns the tensor compared within its group."""
    import torch
    from torch import nn

    from nnunet_deconver.ndc.ops import analysis, synthesis, synthesis_weight_grad

    dims = len(size)
    sources = ratio * channels
    last = torch.channels_last_3d if dims == 3 else torch.channels_last
    s = torch.rand(batch, sources, *size)
    x = torch.rand(batch, channels, *size)
    weight = torch.rand(channels, ratio, *[kernel] * dims)
    depthwise = weight.reshape(sources, 1, *weight.shape[2:])
    flipped = depthwise.flip(list(range(2, 2 + dims)))
    s_cl, x_cl = s.contiguous(memory_format=last), x.contiguous(memory_format=last)
    norm_upstream = torch.randn(x.shape)
    buffer = torch.empty_like(s)
    pad, ones, zeros = [kernel // 2] * dims, [1] * dims, [0] * dims

    def conv(inp, w, groups):
        return torch.ops.aten.convolution(inp, w, None, ones, pad, ones, False, zeros, groups)

    def repeated(t):  # (B, C, *S) -> (B, E, *S), channel c * R + r = t[:, c]; keeps t's layout
        return t.repeat_interleave(ratio, dim=1).contiguous(memory_format=last)

    def depthwise_weight_grad():
        grad = torch.ops.aten.convolution_backward(
            repeated(x_cl), s_cl, depthwise, None, ones, pad, ones, False, zeros, sources, [False, True, False])[1]
        return grad.view_as(weight)

    def mlp_variant(layout: str):
        conv_op = nn.Conv3d if dims == 3 else nn.Conv2d
        torch.manual_seed(0)
        fc1, fc2 = conv_op(channels, 4 * channels, 1), conv_op(4 * channels, channels, 1)
        lin1, lin2 = nn.Linear(channels, 4 * channels), nn.Linear(4 * channels, channels)
        with torch.no_grad():
            lin1.weight.copy_(fc1.weight.flatten(1)), lin1.bias.copy_(fc1.bias)
            lin2.weight.copy_(fc2.weight.flatten(1)), lin2.bias.copy_(fc2.bias)
        inp = x.clone(memory_format=torch.contiguous_format if layout == "contiguous" else last).requires_grad_()

        def run():
            inp.grad = None
            if layout == "linear":
                out = lin2(nn.functional.gelu(lin1(inp.movedim(1, -1)))).movedim(-1, 1)
            else:
                out = fc2(nn.functional.gelu(fc1(inp)))
            out.sum().backward()
            return inp.grad

        return run

    def norm_variant(memory_format):
        norm = (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels, affine=True)
        inp = x.clone(memory_format=memory_format).requires_grad_()
        upstream = norm_upstream.contiguous(memory_format=memory_format)

        def run():
            inp.grad = None
            norm(inp).backward(upstream)
            return inp.grad

        return run

    return {
        "NDC synthesis A(s)": [
            ("grouped conv, contiguous", lambda: synthesis(s, weight, channels)),
            ("grouped conv, channels-last (used)", lambda: synthesis(s_cl, weight, channels)),
            ("depthwise over E + sum over R, channels-last",
             lambda: conv(s_cl, depthwise, sources).unflatten(1, (channels, ratio)).sum(2)),
        ],
        "NDC analysis A^T(x)": [
            ("grouped transposed conv, contiguous", lambda: analysis(x, weight, channels)),
            ("grouped transposed conv, channels-last (used)", lambda: analysis(x_cl, weight, channels)),
            ("repeat x R times + depthwise, channels-last", lambda: conv(repeated(x_cl), flipped, sources)),
        ],
        "NDC filter gradient": [
            ("grouped conv backward, contiguous", lambda: synthesis_weight_grad(s, x, weight, channels)),
            ("grouped conv backward, channels-last (used)",
             lambda: synthesis_weight_grad(s_cl, x_cl, weight, channels)),
            ("depthwise conv backward with x repeated, channels-last", depthwise_weight_grad),
        ],
        "MLP forward + backward": [
            ("1x1 convs, contiguous (used)", mlp_variant("contiguous")),
            ("1x1 convs, channels-last", mlp_variant("channels_last")),
            ("nn.Linear on channels-last", mlp_variant("linear")),
        ],
        "instance norm forward + backward": [
            ("contiguous (used)", norm_variant(torch.contiguous_format)),
            ("channels-last", norm_variant(last)),
        ],
        # s >= 0, so ReLU returns its input's values: every row gives the same tensor
        "one pass over a (B, E, *S) tensor": [
            ("copy into an existing buffer", lambda: buffer.copy_(s)),
            ("ReLU in place", lambda: s.relu_()),
            ("ReLU into a new tensor (allocation)", lambda: torch.relu(s)),
        ],
    }


def report(args: argparse.Namespace, session: Session) -> str:
    import torch

    size = parse_sizes(args.size or ("16x16x16" if args.quick else "64x64x64"))[0]
    channels = args.channels or (16 if args.quick else 64)
    reps = session.settings.reps
    rows = []
    for group, variants in groups_of_variants(args.batch, channels, args.ratio, args.kernel, size).items():
        print(f"  {group}", file=sys.stderr, flush=True)
        reference_time, reference = None, None
        for name, fn in variants:
            seconds, out = _fastest(fn, reps)
            if reference is None:
                reference_time, reference, diff = seconds, out, "reference"
            else:
                scale = reference.abs().max().item() or 1.0
                diff = f"{(out.float() - reference.float()).abs().max().item() / scale:.1e}"
            rows.append([group, name, fmt_s(seconds), f"{seconds / reference_time:.2f}x", diff])
    intro = [
        f"One process, fastest of {reps} run(s) after a warm-up; batch {args.batch}, "
        f"{'x'.join(map(str, size))}, C = {channels}, R = {args.ratio}, k = {args.kernel}, float32, "
        f"torch {torch.__version__}. \"vs first\": time relative to the group's first row; \"max diff\": largest "
        "absolute difference from the first row's result, relative to its largest value.",
    ]
    body = markdown_table(["kernel", "formulation / layout", "s", "vs first", "max diff"], rows, "llrrr")
    return session.section("Kernel formulations and layouts (what was tried)", intro, body)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], reps=3)
    p.add_argument("--size", help="one spatial size, e.g. 64x64x64 or 256x256 (default 64^3; quick 16^3)")
    p.add_argument("--channels", type=int, help="C (default 64; quick 16)")
    p.add_argument("--ratio", type=int, default=4, help="R (default 4)")
    p.add_argument("--kernel", type=int, default=3, help="k (default 3)")
    p.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    args = p.parse_args(argv)
    settings = in_process_settings(args, reps=args.reps or (1 if args.quick else args.default_reps))
    print(report(args, Session(settings, method="one process; fastest of the timed runs after a warm-up")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
