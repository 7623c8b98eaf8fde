"""The NDC update as PyTorch custom operators: one dispatch point, autograd and a fake kernel.

``torch.ops.nnunet_deconver.ndc_update`` and ``ndc_update_backward`` call the backend that
:func:`~nnunet_deconver.ndc.backends.registry.backend_for` picks for the inputs' device at call
time (so ``NNUNET_DECONVER_NDC_BACKEND`` may change between calls). Their fake implementations
give shapes and strides without computing, so ``torch.compile`` traces through the update (forward
and backward) without a graph break; autograd is registered on the forward operator.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import register_flop_formula

from nnunet_deconver.ndc.backends.registry import backend_for
from nnunet_deconver.ndc.ops import channels_last_format

Tensor = torch.Tensor


def output_format(t: Tensor) -> torch.memory_format:
    """The layout of every (B, *, *S) result: channels-last on CPU, contiguous elsewhere."""
    if t.device.type != "cpu":
        return torch.contiguous_format
    return channels_last_format(t.dim())


@torch.library.custom_op("nnunet_deconver::ndc_update", mutates_args=())
def ndc_update(x: Tensor, s: Tensor, weight: Tensor, groups: int, eps: float, rectify: bool) -> tuple[Tensor, Tensor]:
    """One update: ``(s * (A^T(x) + eps) / (A^T(A(s)) + eps), A(s))``, s -> ReLU(s) first if ``rectify``.

    Computed in ``weight``'s dtype, which both results have; x and s may be narrower (they are saved
    for backward as they are)."""
    out, y = backend_for(x.device).forward(x, s, weight, groups, eps, rectify)
    fmt = output_format(x)
    return out.to(weight.dtype).contiguous(memory_format=fmt), y.to(weight.dtype).contiguous(memory_format=fmt)


@ndc_update.register_fake
def _ndc_update_fake(x, s, weight, groups, eps, rectify):
    fmt = output_format(x)
    return (torch.empty_like(s, dtype=weight.dtype, memory_format=fmt),
            torch.empty_like(x, dtype=weight.dtype, memory_format=fmt))


@torch.library.custom_op("nnunet_deconver::ndc_update_backward", mutates_args=())
def ndc_update_backward(
    grad: Tensor, x: Tensor, s: Tensor, weight: Tensor, y: Tensor, groups: int, eps: float, rectify: bool,
    need_x: bool, need_s: bool, need_weight: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients w.r.t. (x, s, weight), each in its input's dtype; an empty tensor where not needed."""
    grads = backend_for(x.device).backward(grad, x, s, weight, y, groups, eps, rectify, need_x, need_s, need_weight)
    fmt = output_format(x)
    return tuple(
        ref.new_empty(0) if g is None else g.to(ref.dtype).contiguous(memory_format=fmt if ref is not weight
                                                                      else torch.contiguous_format)
        for g, ref in zip(grads, (x, s, weight))
    )


@ndc_update_backward.register_fake
def _ndc_update_backward_fake(grad, x, s, weight, y, groups, eps, rectify, need_x, need_s, need_weight):
    fmt = output_format(x)
    return (
        torch.empty_like(x, memory_format=fmt) if need_x else x.new_empty(0),
        torch.empty_like(s, memory_format=fmt) if need_s else s.new_empty(0),
        torch.empty_like(weight, memory_format=torch.contiguous_format) if need_weight else weight.new_empty(0),
    )


def _setup_context(ctx, inputs, output) -> None:
    x, s, weight, groups, eps, rectify = inputs
    _, y = output
    ctx.save_for_backward(x, s, weight, y)
    ctx.groups, ctx.eps, ctx.rectify = groups, eps, rectify
    ctx.mark_non_differentiable(y)


def _backward(ctx, grad_out: Tensor, grad_y: Tensor | None):
    x, s, weight, y = ctx.saved_tensors
    need_x, need_s, need_weight = ctx.needs_input_grad[:3]
    grads = ndc_update_backward(grad_out, x, s, weight, y, ctx.groups, ctx.eps, ctx.rectify, need_x, need_s,
                                need_weight)
    return (*(g if needed else None for g, needed in zip(grads, (need_x, need_s, need_weight))), None, None, None)


ndc_update.register_autograd(_backward, setup_context=_setup_context)


def conv_flops(x_shape, weight_shape) -> int:
    """FLOPs of one NDC convolution, counted as PyTorch's FlopCounterMode counts a convolution."""
    return 2 * x_shape[0] * math.prod(x_shape[2:]) * math.prod(weight_shape)


@register_flop_formula(torch.ops.nnunet_deconver.ndc_update)
def _ndc_update_flops(x_shape, s_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """A^T(x), A(s) and A^T(A(s)): three convolutions."""
    return 3 * conv_flops(x_shape, weight_shape)


@register_flop_formula(torch.ops.nnunet_deconver.ndc_update_backward)
def _ndc_update_backward_flops(grad_shape, x_shape, s_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """num and den again, A(q), A(p), A^T(A(p)) and the three filter-gradient terms: eight convolutions."""
    return 8 * conv_flops(x_shape, weight_shape)
