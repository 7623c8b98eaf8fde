"""The ``torch`` backend: the NDC update and its gradients from PyTorch's convolutions.

Runs on every device. Only x, s, V and y = A(s) are kept between forward and backward; num and
den are recomputed in backward, every elementwise step reuses a buffer in place, and each
(B, E, *S) buffer is released as soon as it is used, so backward holds at most four of them.
"""

from __future__ import annotations

import torch

from nnunet_deconver.ndc.ops import analysis, in_preferred_layout, synthesis, synthesis_weight_grad


def forward(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int, eps: float,
            rectify: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s * (A^T(x) + eps) / (A^T(y) + eps), y = A(s))``, s rectified first when ``rectify``."""
    x, s = x.to(weight.dtype), s.to(weight.dtype)
    if rectify:
        s = torch.relu(s)
    num = analysis(x, weight, groups).add_(eps)
    y = synthesis(s, weight, groups)
    den = analysis(y, weight, groups).add_(eps)
    return num.div_(den).mul_(s), y


def backward(grad: torch.Tensor, x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, y: torch.Tensor,
             groups: int, eps: float, rectify: bool, need_x: bool, need_s: bool, need_w: bool):
    """Gradients of the update w.r.t. x, s (before its ReLU when ``rectify``) and the filter."""
    x, s, grad = x.to(weight.dtype), s.to(weight.dtype), grad.to(weight.dtype)
    raw = s
    if rectify:
        s = torch.relu(s)
    grad = in_preferred_layout(grad)
    den = analysis(y, weight, groups).add_(eps)
    ratio = analysis(x, weight, groups).add_(eps).div_(den)  # num / den
    q = den.reciprocal_().mul_(s).mul_(grad)  # g * s / den, in den's buffer
    del den
    grad_x = synthesis(q, weight, groups) if need_x else None
    grad_w = synthesis_weight_grad(q, x, weight, groups) if need_w else None
    p = q.mul_(ratio)  # g * s * num / den^2, in q's buffer
    del q
    ap = synthesis(p, weight, groups)
    if need_w:
        grad_w = grad_w.sub_(synthesis_weight_grad(p, y, weight, groups))
    del p  # the (B, E, *S) buffer is free before A^T(ap) allocates the next one
    grad_s = ratio.mul_(grad).sub_(analysis(ap, weight, groups)) if need_s else None
    del ratio
    if need_w:
        grad_w = grad_w.sub_(synthesis_weight_grad(s, ap, weight, groups))
    if rectify and grad_s is not None:
        grad_s = grad_s.mul_(raw > 0)
    return grad_x, grad_s, grad_w
