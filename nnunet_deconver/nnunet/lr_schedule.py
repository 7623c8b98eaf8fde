"""Cosine annealing with a linear warm-up, stepped per epoch like nnU-Net's schedulers."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


class WarmupCosineLRScheduler(_LRScheduler):
    """Learning rate ``initial_lr * f(step)`` over ``max_steps`` steps.

    During the first ``warmup_steps`` (at least 1) f rises linearly from ``warmup_start`` (0.1: the
    paper scales the rate by 10 during warm-up) to 1, then follows a half cosine from 1 to 0.
    Stateless in the step: ``step(current_step)`` sets the rate of that step, so resuming from a
    checkpoint at epoch e gives the same rate as an uninterrupted run.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        initial_lr: float,
        max_steps: int,
        warmup_fraction: float = 0.01,
        warmup_start: float = 0.1,
        current_step: int | None = None,
    ):
        self.initial_lr, self.max_steps = initial_lr, max_steps
        self.warmup_steps = max(1, round(warmup_fraction * max_steps))
        self.warmup_start = warmup_start
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.initial_lr * (self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        return self.initial_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = self.lr_at(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr
