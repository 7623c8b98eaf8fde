"""The NDC multiplicative update, as a memory-lean custom autograd function and as a plain graph.

One update (SPEC.md section 1, Ashtari et al. eq. 7), for x (B, C, *S) >= 0, s (B, E, *S) >= 0 and
a nonnegative grouped filter V (C, E // G, *k)::

    s_next = s * (A^T(x) + eps) / (A^T(A(s)) + eps)

with ``A = conv(., V, groups=G)`` and ``A^T`` its adjoint (see :mod:`nnunet_deconver.ndc.ops`).

Gradients of the custom function (``g`` = dL/ds_next, ``num`` and ``den`` the two factors)::

    q     = g * s / den                   (dL/dnum)
    p     = q * num / den                 (-dL/dden)
    dL/dx = A(q)
    dL/ds = g * num / den - A^T(A(p))
    dL/dV = W(q, x) - W(p, A(s)) - W(s, A(p))      W(a, b) = d<A(a), b>/dV

Only x, s, V and ``y = A(s)`` (B, C, *S) are kept for backward; ``num`` and ``den`` are recomputed
there, every elementwise step reuses a buffer in place, and each (B, E, *S) buffer is released as
soon as it is no longer needed, so backward holds at most four of them (g, s, num / den and one
work buffer) and no (B, E, *S) intermediate outlives a call.
"""

from __future__ import annotations

import torch

from nnunet_deconver.ndc.ops import (
    analysis,
    check_arguments,
    preferred_memory_format,
    synthesis,
    synthesis_weight_grad,
)


class _NDCUpdate(torch.autograd.Function):
    """One multiplicative update; inputs float32 (or float64) in the layout the caller chose."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int, eps: float):
        num = analysis(x, weight, groups).add_(eps)
        y = synthesis(s, weight, groups)
        den = analysis(y, weight, groups).add_(eps)
        ctx.save_for_backward(x, s, weight, y)
        ctx.groups, ctx.eps = groups, eps
        return num.div_(den).mul_(s)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        x, s, weight, y = ctx.saved_tensors
        groups, eps = ctx.groups, ctx.eps
        need_x, need_s, need_w = ctx.needs_input_grad[:3]
        g = g.contiguous(memory_format=preferred_memory_format(s)) if s.device.type == "cpu" else g
        with torch.autocast(device_type=s.device.type, enabled=False):
            den = analysis(y, weight, groups).add_(eps)
            ratio = analysis(x, weight, groups).add_(eps).div_(den)  # num / den
            q = den.reciprocal_().mul_(s).mul_(g)  # g * s / den, in den's buffer
            del den
            grad_x = synthesis(q, weight, groups) if need_x else None
            grad_w = synthesis_weight_grad(q, x, weight, groups) if need_w else None
            p = q.mul_(ratio)  # g * s * num / den^2, in q's buffer
            del q
            ap = synthesis(p, weight, groups)
            if need_w:
                grad_w = grad_w.sub_(synthesis_weight_grad(p, y, weight, groups))
            del p  # the (B, E, *S) buffer is free before A^T(ap) allocates the next one
            grad_s = ratio.mul_(g).sub_(analysis(ap, weight, groups)) if need_s else None
            del ratio
            if need_w:
                grad_w = grad_w.sub_(synthesis_weight_grad(s, ap, weight, groups))
        return grad_x, grad_s, grad_w, None, None


def _update_reference(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    num = analysis(x, weight, groups) + eps
    den = analysis(synthesis(s, weight, groups), weight, groups) + eps
    return s * num / den


def _run(update, x, s0, weight, groups, eps, iterations, memory_format) -> torch.Tensor:
    check_arguments(x, s0, weight, groups)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    out_dtype = s0.dtype
    # The update runs in float32 at least: eps = 1e-8 underflows in float16.
    compute = torch.promote_types(torch.promote_types(x.dtype, s0.dtype), torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype=compute, memory_format=memory_format)
        s = s0.to(dtype=compute, memory_format=memory_format)
        weight = weight.to(compute)
        for _ in range(iterations):
            s = update(x, s, weight, groups, eps)
    return s.to(out_dtype)


def ndc(
    x: torch.Tensor,
    s0: torch.Tensor,
    weight: torch.Tensor,
    groups: int,
    eps: float = 1e-8,
    iterations: int = 1,
) -> torch.Tensor:
    """Nonnegative deconvolution: ``iterations`` multiplicative updates of ``s0``.

    Args:
        x: observed features (B, C, *S), nonnegative; S is (H, W) or (D, H, W).
        s0: initial source (B, E, *S), nonnegative.
        weight: rectified (nonnegative) filter (C, E // groups, *k), k odd per axis.
        groups: number of groups G; G divides C and E.
        eps: added to numerator and denominator.
        iterations: number of updates.

    Returns:
        The source after the updates, (B, E, *S), in ``s0``'s dtype. Under autocast the update runs
        in float32. Nonnegativity of the inputs is assumed, not checked (a check costs a full pass
        and, on GPU, a synchronisation): with negative inputs the result is meaningless, not an error.

    Raises:
        ValueError: shapes that do not fit, groups that do not divide C and E, even kernel sizes.
    """
    return _run(_NDCUpdate.apply, x, s0, weight, groups, eps, iterations, preferred_memory_format(x))


def ndc_reference(
    x: torch.Tensor,
    s0: torch.Tensor,
    weight: torch.Tensor,
    groups: int,
    eps: float = 1e-8,
    iterations: int = 1,
) -> torch.Tensor:
    """:func:`ndc` as a plain autograd graph in the inputs' own layout (reference for tests)."""
    return _run(_update_reference, x, s0, weight, groups, eps, iterations, torch.preserve_format)


def reconstruction_error(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``||x - A(s)||^2`` per batch element, shape (B,): the objective NDC decreases (Theorem 1)."""
    return (x - synthesis(s, weight, groups)).pow(2).flatten(1).sum(1)
