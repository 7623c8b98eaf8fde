"""Formulations and memory layouts of the block's kernels, compared on CPU (what was tried).

Each row computes the same thing as the first row of its group (the largest difference is
printed); time = mean of ``--reps`` back-to-back runs after two warm-up runs
(``torch.utils.benchmark.Timer.timeit`` at ``--threads`` threads), in one process (the kernels
are independent of each other; peak memory is not measured here). Groups, for a (B, C, *S) input
with E = R * C sources, groups = C:

- NDC synthesis ``A(s)`` (B, E) -> (B, C): grouped convolution, contiguous and channels-last; a
  depthwise convolution over E channels followed by the sum over each group's R outputs.
- NDC analysis ``A^T(x)`` (B, C) -> (B, E): grouped transposed convolution, contiguous and
  channels-last; x repeated R times per channel, then a depthwise convolution.
- NDC filter gradient ``d<A(s), x>/dV``: grouped ``convolution_backward``, contiguous and
  channels-last; the depthwise one with x repeated.
- The whole NDC update, forward and backward (all three gradients): the ``torch`` backend
  (PyTorch's convolutions) and the ``cpp`` backend (the fused C++ kernels, two passes each way).
  A second table sets the fused kernels against the copy: the least memory traffic each must
  make (forward: read s twice, x and y, write y and the output, 3 E + 3 C values per voxel;
  backward: 6 E + 5 C), divided by its time, as a share of the copy's bandwidth, and the rate of
  its multiply-adds (3 K E per voxel forward, 8 K E backward, K = k^dims, groups = C).
- MLP forward + backward (pointwise C -> 4C, GELU, 4C -> C): Conv 1x1 contiguous, channels-last,
  and ``nn.Linear`` on a channels-last (B, *S, C) view.
- Instance norm forward + backward: contiguous and channels-last.
- One Deconver block forward + backward (C channels, k, R = 4, MLP ratio 4, NDC on the ``cpp``
  backend): the pointwise convolutions as channels-last matrix products inside the mixer and the
  MLP, norms and residual stream contiguous (what ``network/blocks.py`` does); the same block
  with the pointwise work as 1x1 convolutions in the contiguous layout; the whole block
  channels-last with instance norm written from ``var_mean`` (no layout change anywhere).
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
from typing import Callable

from _cli import base_parser, in_process_settings, parse_sizes
from _format import fmt_s, log, markdown_table
from _machine import Session

METHOD = "mean of {reps} run(s) after two warm-up runs (`torch.utils.benchmark.Timer.timeit`)"


def mean_time(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    """Mean seconds of ``reps`` back-to-back runs of ``fn`` after two warm-up runs, at this process's
    torch threads (``torch.utils.benchmark.Timer.timeit``), and the result of the last run."""
    import torch
    from torch.utils.benchmark import Timer

    last: list[object] = []

    def run() -> None:
        last[:] = [fn()]

    timer = Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
    return timer.timeit(number=reps).mean, last[0]


def groups_of_variants(batch: int, channels: int, ratio: int, kernel: int, size: tuple[int, ...]):  # noqa: C901
    """``{group: [(variant, fn), ...]}``; every fn returns the tensor compared within its group."""
    import torch
    from torch import nn

    from nnunet_deconver.ndc.backends import cpp, torch_ops
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

    upstream = torch.randn(s.shape).contiguous(memory_format=last)
    y_cl = synthesis(s_cl, weight, channels)

    def backward(module):
        return lambda: module.backward(upstream, x_cl, s_cl, weight, y_cl, channels, 1e-8, False, True, True, True)[1]

    if not cpp.is_available():
        raise RuntimeError("the C++ NDC kernels did not build")
    return {
        "Deconver block forward + backward": block_variants(x, kernel),
        "NDC update forward": [
            ("torch backend", lambda: torch_ops.forward(x_cl, s_cl, weight, channels, 1e-8, False)[0]),
            ("cpp backend (fused)", lambda: cpp.forward(x_cl, s_cl, weight, channels, 1e-8, False)[0]),
        ],
        "NDC update backward (grad s shown)": [
            ("torch backend", backward(torch_ops)),
            ("cpp backend (fused)", backward(cpp)),
        ],
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
            ("1x1 convs, contiguous", mlp_variant("contiguous")),
            ("1x1 convs, channels-last", mlp_variant("channels_last")),
            ("nn.Linear on channels-last (used: PointwiseConv)", mlp_variant("linear")),
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


def block_variants(x, kernel: int) -> list[tuple[str, Callable[[], object]]]:
    """One Deconver block on x, forward + backward, in three formulations (each returns x's gradient)."""
    import torch
    import torch.nn.functional as F

    from nnunet_deconver.network.blocks import BlockSpec, DeconverBlock

    dims, channels = x.dim() - 2, x.shape[1]
    last = torch.channels_last_3d if dims == 3 else torch.channels_last
    torch.manual_seed(0)
    block = DeconverBlock(BlockSpec(channels, (kernel,) * dims))
    upstream = torch.randn(x.shape)

    def conv(m, h):  # the pointwise module as the 1x1 convolution, in h's layout
        return (F.conv3d if dims == 3 else F.conv2d)(h, m.weight, m.bias)

    def linear(m, h):  # channels-last matrix product
        h = h.contiguous(memory_format=last)
        return F.linear(h.movedim(1, -1), m.weight.flatten(1), m.bias).movedim(-1, 1)

    def norm(h, eps=1e-5):  # instance norm of a channels-last tensor without leaving the layout
        v = h.movedim(1, -1).flatten(1, -2)
        var, mean = torch.var_mean(v, dim=1, keepdim=True, unbiased=False)
        return ((v - mean) * torch.rsqrt(var + eps)).view(h.movedim(1, -1).shape).movedim(-1, 1)

    def as_convs(h):
        mixer, mlp = block.mixer, block.mlp
        z = h + conv(mixer.proj_out, mixer.ndc(torch.relu(conv(mixer.proj_in, block.norm1(h)))))
        return z + conv(mlp.fc2, F.gelu(conv(mlp.fc1, block.norm2(z))))

    def all_channels_last(h):
        mixer, mlp = block.mixer, block.mlp
        h = h.contiguous(memory_format=last)
        z = h + linear(mixer.proj_out, mixer.ndc(torch.relu(linear(mixer.proj_in, norm(h)))))
        return z + linear(mlp.fc2, F.gelu(linear(mlp.fc1, norm(z))))

    def run(forward):
        inp = x.clone().requires_grad_()

        def step():
            forward(inp).backward(upstream)
            grad, inp.grad = inp.grad, None
            return grad

        return step

    return [
        ("channels-last matmuls in mixer and MLP, contiguous norms (used)", run(block)),
        ("1x1 convolutions, contiguous", run(as_convs)),
        ("whole block channels-last, norm from var_mean", run(all_channels_last)),
    ]


def report(args: argparse.Namespace, session: Session) -> str:
    import torch

    size = parse_sizes(args.size or ("16x16x16" if args.quick else "64x64x64"))[0]
    channels = args.channels or (16 if args.quick else 64)
    reps = session.settings.reps
    rows, times = [], {}
    for group, variants in groups_of_variants(args.batch, channels, args.ratio, args.kernel, size).items():
        log(f"  {group}")
        reference_time, reference = None, None
        for name, fn in variants:
            seconds, out = mean_time(fn, reps)
            times[(group, name)] = seconds
            if reference is None:
                reference_time, reference, diff = seconds, out, "reference"
            else:
                scale = reference.abs().max().item() or 1.0
                diff = f"{(out.float() - reference.float()).abs().max().item() / scale:.1e}"
            rows.append([group, name, fmt_s(seconds), f"{seconds / reference_time:.2f}x", diff])
    intro = [
        f"One process, {METHOD.format(reps=reps)}; batch {args.batch}, "
        f"{'x'.join(map(str, size))}, C = {channels}, R = {args.ratio}, k = {args.kernel}, float32, "
        f"torch {torch.__version__}. \"vs first\": time relative to the group's first row; \"max diff\": largest "
        "absolute difference from the first row's result, relative to its largest value.",
    ]
    body = markdown_table(["kernel", "formulation / layout", "s", "vs first", "max diff"], rows, "llrrr")
    body += ["", *fused_against_copy(args, size, channels, times)]
    return session.section("Kernel formulations and layouts (what was tried)", intro, body)


def fused_against_copy(args: argparse.Namespace, size: tuple[int, ...], channels: int,
                       times: dict[tuple[str, str], float]) -> list[str]:
    """The fused kernels' effective bandwidth (least traffic / time) against the copy's, and their FLOP rate."""
    import math

    voxels = args.batch * math.prod(size)
    sources, taps = args.ratio * channels, args.kernel ** len(size)
    copy_seconds = times[("one pass over a (B, E, *S) tensor", "copy into an existing buffer")]
    copy_rate = 2 * sources * voxels * 4 / copy_seconds
    rows = []
    for group, values, fmas in (("NDC update forward", 3 * sources + 3 * channels, 3),
                                ("NDC update backward (grad s shown)", 6 * sources + 5 * channels, 8)):
        seconds = times[(group, "cpp backend (fused)")]
        rate = values * voxels * 4 / seconds
        rows.append([group.split(" (")[0], fmt_s(seconds), f"{rate / 1e9:.1f}", f"{rate / copy_rate:.0%}",
                     f"{2 * fmas * taps * sources * voxels / seconds / 1e9:.0f}"])
    return [
        f"Fused kernels against the copy (copy: {copy_rate / 1e9:.1f} GB/s, reading and writing one (B, E, *S) "
        "tensor). Least traffic: forward 3 E + 3 C, backward 6 E + 5 C float32 values per voxel.",
        "",
        *markdown_table(["cpp backend", "s", "least traffic GB/s", "share of copy bandwidth", "GFLOP/s"], rows),
    ]


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], reps=3)
    p.add_argument("--size", help="one spatial size, e.g. 64x64x64 or 256x256 (default 64^3; quick 16^3)")
    p.add_argument("--channels", type=int, help="C (default 64; quick 16)")
    p.add_argument("--ratio", type=int, default=4, help="R (default 4)")
    p.add_argument("--kernel", type=int, default=3, help="k (default 3)")
    p.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    args = p.parse_args(argv)
    settings = in_process_settings(args, reps=args.reps or (1 if args.quick else args.default_reps))
    print(report(args, Session(settings, method="one process; " + METHOD.format(reps=settings.reps))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
