"""One real float32 CPU training step of a small Deconver; prints the growth of the peak RSS in bytes.

Run as ``python _memory_step.py MODE`` by tests/test_memory.py, in a process of its own (the peak
RSS, VmHWM, is reset just before the step through /proc/self/clear_refs).
"""

from __future__ import annotations

import gc
import sys

import torch

from nnunet_deconver.network import Deconver

SHAPE = (2, 2, 48, 48, 48)


def network(mode: str) -> Deconver:
    return Deconver(2, 2, 3, [16, 32], [1, 2], 3, deep_supervision=True, activation_memory=mode)


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def main(mode: str) -> None:
    torch.manual_seed(0)
    net = network(mode)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-5)
    x = torch.randn(*SHAPE)
    for _ in range(2):  # warm-up: optimiser state, kernels, the allocator's first arenas
        sum(o.float().square().mean() for o in net(x)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _kib("VmRSS")
    sum(o.float().square().mean() for o in net(x)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    print((_kib("VmHWM") - before) * 1024)


if __name__ == "__main__":
    main(sys.argv[1])
