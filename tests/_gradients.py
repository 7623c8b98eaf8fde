"""A function's value and every gradient, for the tests comparing two ways of computing it."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def value_and_grads(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, module: nn.Module,
                    upstream: torch.Tensor) -> list[torch.Tensor]:
    """``[fn(x), dL/dx, dL/dp for each parameter p of module]`` for L = <fn(x), upstream>."""
    x = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = fn(x)
    out.backward(upstream)
    return [out.detach(), x.grad] + [p.grad.clone() for p in module.parameters()]
