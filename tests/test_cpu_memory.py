"""Forwards without gradients on CPU that reuse freed memory (``network/cpu_memory.py`` and the C++
caching allocator): a freed block is handed out again, a held one never; small requests and
requests outside the block bypass it; the allocator is PyTorch's only inside the block, also
when the block raises; a network's forward with it equals the forward with fresh memory bit for
bit (2D and 3D, batch 1 and 2, sizes in turn), and leaves earlier results as they were; a forward
with gradients frees what was kept.
"""

from __future__ import annotations

import pytest
import torch

from nnunet_deconver.ndc.backends import cpp
from nnunet_deconver.network import Deconver, cpu_memory
from nnunet_deconver.network.cpu_memory import cpu_memory_stats, release_cpu_memory, reusing_cpu_memory

MB = 1 << 20


@pytest.fixture(autouse=True)
def _nothing_kept():
    assert cpp.extension() is not None, "the C++ extension did not build"
    release_cpu_memory()
    yield
    release_cpu_memory()


def _floats(megabytes: float) -> torch.Tensor:
    return torch.empty(int(megabytes * MB) // 4)


def test_freed_blocks_are_handed_out_again_and_held_ones_never():
    probe, in_use = torch.zeros(1), cpu_memory_stats()["blocks_in_use"]  # earlier tests' live results
    with torch.no_grad(), reusing_cpu_memory(probe):
        assert cpu_memory_stats()["installed"] == 1
        first = _floats(4)
        address = first.data_ptr()
        held = _floats(4)
        assert held.data_ptr() != address
        del first
        assert cpu_memory_stats()["kept_bytes"] == 4 * MB
        again = _floats(4)
        assert again.data_ptr() == address, "a freed block was not handed out again"
        assert cpu_memory_stats()["kept_bytes"] == 0
        bigger = _floats(8)  # no kept block holds it: a new one
        assert bigger.data_ptr() not in (address, held.data_ptr())
        del bigger
        # a block more than a quarter larger than the request is not taken
        smaller = _floats(4)
        assert smaller.data_ptr() != address and cpu_memory_stats()["kept_bytes"] == 8 * MB
        fits = _floats(7)
        assert cpu_memory_stats()["kept_bytes"] == 0, "the 8 MB block did not serve a 7 MB request"
        small = _floats(0.5)  # below 1 MB: PyTorch's own allocator
        del small
        assert cpu_memory_stats()["kept_bytes"] == 0
        values = torch.arange(fits.numel(), dtype=fits.dtype)
        fits.copy_(values)
        del again, held, smaller
    assert cpu_memory_stats()["installed"] == 0
    assert cpu_memory_stats()["kept_bytes"] == 12 * MB, "blocks freed in the block are kept for the next one"
    outside = _floats(4)  # not served by the kept blocks
    assert cpu_memory_stats()["kept_bytes"] == 12 * MB
    del outside
    assert cpu_memory_stats()["kept_bytes"] == 12 * MB
    assert torch.equal(fits, values), "a held block was written"
    release_cpu_memory()
    assert cpu_memory_stats()["kept_bytes"] == 0
    del fits, values  # freed after the release: goes back to the C library
    assert cpu_memory_stats() == {"installed": 0, "kept_bytes": 0, "blocks_in_use": in_use}


def test_not_used_with_gradients_and_left_when_the_block_raises():
    x = torch.zeros(1)
    with reusing_cpu_memory(x):  # gradients on: a no-op
        assert cpu_memory_stats()["installed"] == 0
    with pytest.raises(RuntimeError, match="inside"):
        with torch.no_grad(), reusing_cpu_memory(x):
            with reusing_cpu_memory(x):  # nests
                assert cpu_memory_stats()["installed"] == 1
            assert cpu_memory_stats()["installed"] == 1
            raise RuntimeError("inside")
    assert cpu_memory_stats()["installed"] == 0


def _network(dims: int) -> Deconver:
    torch.manual_seed(0)
    return Deconver(input_channels=2, num_classes=3, spatial_dims=dims, features_per_stage=[16, 24, 32],
                    strides=[1, 2, 2], kernel_sizes=3).eval()


@pytest.mark.parametrize("dims, shapes", [(3, [(1, 2, 32, 36, 28), (2, 2, 24, 32, 36)]),
                                          (2, [(2, 2, 160, 120), (1, 2, 136, 200)])])
def test_network_forward_reusing_memory_equals_fresh_memory(monkeypatch, dims, shapes):
    """Shapes in turn (the second one's tensors in the first one's freed blocks), then the first
    again; oneDNN's convolutions (raw allocations) included."""
    net = _network(dims)
    inputs = [torch.rand(shape, generator=torch.Generator().manual_seed(i)) for i, shape in enumerate(shapes)]
    with torch.no_grad():
        with monkeypatch.context() as patched:
            patched.setattr(cpu_memory, "_applies", lambda x: False)
            expected = [net(x) for x in inputs]
            assert cpu_memory_stats()["kept_bytes"] == 0
        results = [net(x) for x in (*inputs, inputs[0])]
        kept = cpu_memory_stats()["kept_bytes"]
        assert kept >= 16 * MB, f"only {kept} bytes kept: the forward did not use the cache"
        with torch.inference_mode():
            results.append(net(inputs[1]))
    for got, ref in zip(results, [*expected, expected[0], expected[1]]):
        assert torch.equal(got, ref), "a forward reusing memory differs from one with fresh memory"
    assert cpu_memory_stats()["installed"] == 0
    net.train()
    net(inputs[0]).sum().backward()  # a forward with gradients frees what was kept
    assert cpu_memory_stats()["kept_bytes"] == 0
