"""Forwards without gradients on CPU that take their tensors' memory from the blocks freed before.

PyTorch's CPU allocator asks the C library for every tensor, and the C library maps a large block
afresh for each request and returns it to the system on free. A fresh page costs a page fault and
the kernel clearing it, in every block of every patch: on a 2-core virtual machine about a fifth
of a Deconver forward at 64^3 (measured in ``benchmarks/RESULTS.md``). Inside
:func:`reusing_cpu_memory` the C++ extension's caching allocator
(``nnunet_deconver/ndc/csrc/cpu_memory_cache.cpp``) serves every CPU request of 1 MB or more from
the blocks it handed out earlier and that were freed since (in this forward, in the forwards of
the patches before it, or by the caller after them); smaller requests, and every request outside,
go to PyTorch's allocator as usual.
A block is handed out again only after the tensor that held it is freed, so results are those of a
forward with fresh memory, bit for bit.

The freed blocks are kept after the forward, for the next one (a sliding-window prediction runs
the same sizes patch after patch): they take about what the forward needed at its peak (plus the
blocks that fit no later request: a 17% higher peak in ``benchmarks/RESULTS.md``). A call with
gradients (training, after validation) frees them, as does :func:`release_cpu_memory`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from nnunet_deconver.ndc.backends import backend_for, cpp


def _applies(x: torch.Tensor) -> bool:
    """CPU tensor, no gradients, not being compiled, and the C++ extension in use for this device."""
    return (x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and backend_for(x.device).name == "cpp")


@contextmanager
def reusing_cpu_memory(x: torch.Tensor) -> Iterator[None]:
    """Within the block, CPU tensors of 1 MB or more take freed memory (module docstring) when a
    forward of ``x`` without gradients runs on CPU with the C++ extension; else a no-op. Nests."""
    kernels = cpp.extension() if _applies(x) else None
    if kernels is None:
        yield
        return
    kernels.memory_cache_enter()
    try:
        yield
    finally:
        kernels.memory_cache_leave()


def release_cpu_memory() -> None:
    """Free the blocks kept by forwards without gradients (module docstring); no-op when the C++
    extension was never built in this process."""
    kernels = cpp.built_extension()
    if kernels is not None:
        kernels.memory_cache_release()


def cpu_memory_stats() -> dict[str, int]:
    """``installed`` (1 while a :func:`reusing_cpu_memory` block is open), ``kept_bytes`` and
    ``blocks_in_use`` of the caching allocator; all 0 when the C++ extension was never built."""
    kernels = cpp.built_extension()
    values = kernels.memory_cache_stats() if kernels is not None else [0, 0, 0]
    return dict(zip(("installed", "kept_bytes", "blocks_in_use"), values))
