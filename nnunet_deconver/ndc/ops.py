"""The two linear operators of the NDC update and their weight gradient, for 2D and 3D.

With a grouped filter ``weight`` of shape (C, E // G, *k) and "same" zero padding (odd k):

- :func:`synthesis` ``A(s) = conv(s, weight, groups=G)``: (B, E, *S) -> (B, C, *S);
- :func:`analysis` ``A^T(x) = conv_transpose(x, weight, groups=G)``: (B, C, *S) -> (B, E, *S),
  exactly the adjoint of ``A``: ``<A(s), x> == <s, A^T(x)>``;
- :func:`synthesis_weight_grad` ``d<A(s), x>/d weight``: the gradient of the filter.

``torch.ops.aten.convolution`` serves 2D and 3D alike, so nothing here is duplicated per
dimensionality.
"""

from __future__ import annotations

from typing import Sequence

import torch


def _geometry(weight: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    ndim = weight.dim() - 2
    padding = [k // 2 for k in weight.shape[2:]]
    return [1] * ndim, padding, [0] * ndim


def synthesis(s: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``A(s)``: (B, E, *S) source -> (B, C, *S) observed."""
    stride, padding, zeros = _geometry(weight)
    return torch.ops.aten.convolution(s, weight, None, stride, padding, stride, False, zeros, groups)


def analysis(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``A^T(x)``: (B, C, *S) observed -> (B, E, *S) source; the adjoint of :func:`synthesis`."""
    stride, padding, zeros = _geometry(weight)
    return torch.ops.aten.convolution(x, weight, None, stride, padding, stride, True, zeros, groups)


def synthesis_weight_grad(s: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Gradient of ``<A(s), x>`` w.r.t. ``weight`` (shape of ``weight``); s (B, E, *S), x (B, C, *S)."""
    stride, padding, zeros = _geometry(weight)
    return torch.ops.aten.convolution_backward(
        x, s, weight, None, stride, padding, stride, False, zeros, groups, [False, True, False]
    )[1]


def channels_last_format(dims: int) -> torch.memory_format:
    """The channels-last memory format of a tensor of ``dims`` dimensions (4: 2D, 5: 3D)."""
    return torch.channels_last_3d if dims == 5 else torch.channels_last


def channels_innermost(t: torch.Tensor) -> bool:
    """Whether the channels (dim 1) of ``t`` are its innermost axis: channels-last, or a slice of
    a channels-last tensor (one channel counts as no layout)."""
    return t.stride(1) == 1 and t.shape[1] > 1


def voxel_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) channels-last and dense (or whole planes of one sample of such) -> the
    (B * prod(S), C) view of its voxels; an error rather than a copy for any other layout."""
    return x.movedim(1, -1).view(-1, x.shape[1])


def pointwise_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1(x1) convolution as one matrix product over the channel axis of a channels-last tensor.

    x (B, C_in, *S), weight (C_out, C_in, 1, ...), bias (C_out,) or None -> (B, C_out, *S),
    channels-last. An input in another layout is made channels-last first (one copy). On CPU this
    is faster than the convolution and never copies a channels-last input (benchmarks/RESULTS.md).
    """
    x = x.contiguous(memory_format=channels_last_format(x.dim()))
    return torch.nn.functional.linear(x.movedim(1, -1), weight.flatten(1), bias).movedim(-1, 1)


def preferred_memory_format(t: torch.Tensor) -> torch.memory_format:
    """The layout the NDC convolutions, and on CPU the whole network, run fastest in on ``t``'s device.

    On CPU the grouped convolutions are 3-4x faster channels-last (measured: see
    benchmarks/RESULTS.md), and so are the network's other convolutions; elsewhere the tensor's
    own layout is kept.
    """
    if t.device.type != "cpu":
        return torch.preserve_format
    return channels_last_format(t.dim())


def in_preferred_layout(t: torch.Tensor) -> torch.Tensor:
    """``t`` in :func:`preferred_memory_format` (a copy only when its layout differs); any layout,
    sliced or permuted, is accepted. Off CPU ``t`` itself: ``Tensor.contiguous`` does not take
    ``torch.preserve_format``, and the backends there accept every layout."""
    memory_format = preferred_memory_format(t)
    return t if memory_format == torch.preserve_format else t.contiguous(memory_format=memory_format)


def check_arguments(x: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor, groups: int) -> None:
    """Raise ``ValueError`` when shapes of an NDC update do not fit together."""
    if x.dim() not in (4, 5):
        raise ValueError(f"x must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}")
    if s0.dim() != x.dim() or weight.dim() != x.dim():
        raise ValueError(
            f"x, s0 and weight must have the same number of dimensions, got {tuple(x.shape)}, "
            f"{tuple(s0.shape)} and {tuple(weight.shape)}"
        )
    if s0.shape[0] != x.shape[0] or s0.shape[2:] != x.shape[2:]:
        raise ValueError(f"s0 {tuple(s0.shape)} must match x {tuple(x.shape)} in batch and spatial size")
    channels, sources = x.shape[1], s0.shape[1]
    if groups < 1 or channels % groups or sources % groups:
        raise ValueError(f"groups={groups} must divide both C={channels} and E={sources}")
    expected = (channels, sources // groups)
    if tuple(weight.shape[:2]) != expected:
        raise ValueError(
            f"weight must have shape (C, E // groups, *kernel) = {expected + tuple(weight.shape[2:])}, "
            f"got {tuple(weight.shape)}"
        )
    check_kernel_size(weight.shape[2:])


def check_kernel_size(kernel_size: Sequence[int]) -> None:
    """Raise ``ValueError`` unless every kernel size is a positive odd number ("same" padding)."""
    if any(k < 1 or k % 2 == 0 for k in kernel_size):
        raise ValueError(f"NDC kernel sizes must be odd and positive, got {tuple(kernel_size)}")


def check_iterations(iterations: int) -> None:
    """Raise ``ValueError`` unless at least one update is asked for."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
