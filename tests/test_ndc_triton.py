"""The Triton backend of the NDC update, run by Triton's interpreter on CPU tensors.

The cases live in ``_triton_interpreter_cases.py``, run by pytest in a process of its own with
``TRITON_INTERPRET=1``: forward and all three gradients against the plain autograd graph
(``ndc_reference``) in float64 and float32, 2D and 3D, G in {1, 2, C}, R in {1, 4}, kernels 3,
5 and (1, 3, 3), with and without the ReLU of s; only the requested gradients; non-contiguous
inputs; float16 storage with float32 arithmetic; the custom operator forced to the backend with
``NNUNET_DECONVER_NDC_BACKEND=triton``; the fallback when the kernels fail. Here, in the test
process itself, every kernel variant is compiled ahead of time for CUDA (sm_80, sm_90), which
needs Triton's compiler but no GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_triton_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(HERE.parent),
         str(HERE / "_triton_interpreter_cases.py")],
        env=env, capture_output=True, text=True, timeout=900, cwd=HERE.parent,
    )
    assert proc.returncode == 0, f"{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    summary = proc.stdout.strip().splitlines()[-1]
    assert "24 passed" in summary and "failed" not in summary and "skipped" not in summary, summary


# Every kernel variant the backend launches, compiled ahead of time to CUDA machine code by
# Triton's own compiler and ptxas (no GPU needed): what the interpreter accepts, CUDA compiles too.
POINTERS = {"src", "weight", "out", "base", "mask_src", "x", "y", "s", "grad", "out_p", "out_gs", "q", "pp", "ap",
            "grad_w"}
FLOATS = {"eps"}


def _variants():
    """(kernel, flags) of every launch; OPAD: outputs per group as the presets have them (G = C, R = 4)
    for A (one) and A^T (four), and three rounded up to four."""
    return [("conv_kernel", dict(TRANSPOSE=False, RELU_SRC=relu, EPILOGUE=False, MASK=False, OPAD=opad))
            for relu in (False, True) for opad in (1, 4)] + [
        ("conv_kernel", dict(TRANSPOSE=True, RELU_SRC=False, EPILOGUE=epi, MASK=epi, OPAD=4)) for epi in (False, True)] + [
        ("update_kernel", dict(BACKWARD=bw, RECTIFY=True, OPAD=4)) for bw in (False, True)] + [
        ("weight_grad_kernel", dict(RECTIFY=True))]


@pytest.mark.parametrize("kernel,dtype,capability", [
    ((3, 3, 3), "fp32", 80), ((1, 3, 3), "fp32", 80), ((5, 5, 5), "fp32", 80), ((3, 3, 3), "fp16", 80),
    ((3, 3, 3), "fp32", 90),
])
def test_kernels_compile_for_cuda(kernel, dtype, capability):
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    from nnunet_deconver.ndc.backends import triton_backend, triton_kernels

    assert os.environ.get("TRITON_INTERPRET", "0") != "1"
    geo = triton_backend._geometry(*_meta(kernel))
    geometry = dict(KD=kernel[0], KH=kernel[1], KW=kernel[2], KPAD=geo["KPAD"], ACC=tl.float32)
    for name, flags in _variants():
        fn = getattr(triton_kernels, name)
        block = geo["WBLOCK"] if name == "weight_grad_kernel" else geo["BLOCK"]
        constexprs = {k: v for k, v in {**geometry, **flags, "BLOCK": block}.items() if k in fn.arg_names}
        signature = {a: "constexpr" if a in constexprs else f"*{dtype}" if a in POINTERS else "fp32" if a in FLOATS
                     else "i32" for a in fn.arg_names}
        compiled = triton.compile(triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", capability, 32))
        assert len(compiled.asm["cubin"]) > 1000, (name, flags)


def _meta(kernel):
    import torch

    x = torch.empty(1, 2, 4, 4, 4, device="meta")
    return x, torch.empty(1, 8, 4, 4, 4, device="meta"), torch.empty(2, 4, *kernel, device="meta"), 2


@pytest.mark.parametrize("batch,channels,ratio,size,kernel", [
    (32, 2048, 4, (16, 16), (3, 3)),  # a 2D network's deepest level at batch 32: B * G = 65536
    (2, 32, 4, (128, 160, 112), (3, 3, 3)),  # BraTS-sized first level
    (64, 320, 4, (1, 1), (3, 3)),  # one voxel per plane, many planes
])
def test_launch_grids_stay_within_cuda_limits(batch, channels, ratio, size, kernel):
    """Every launch grid of the backend for shapes whose B * G passes CUDA's 65535 limit of a
    grid's second axis: within the limits, and one program per (sample, group, block) / filter row."""
    import math

    import torch

    from nnunet_deconver.ndc.backends import triton_backend

    x = torch.empty(batch, channels, *size, device="meta")
    s = torch.empty(batch, ratio * channels, *size, device="meta")
    weight = torch.empty(channels, ratio, *kernel, device="meta")
    geo = triton_backend._geometry(x, s, weight, channels)
    limits = triton_backend.GRID_LIMITS
    assert limits == (2**31 - 1, 65535, 65535)
    rows = batch * channels  # (sample, group) pairs, G = C
    grid = triton_backend.position_grid(geo, rows)
    assert len(grid) == 1 and grid[0] <= limits[0]
    assert grid[0] == rows * math.ceil(math.prod(size) / geo["BLOCK"])
    grid, chunk = triton_backend.weight_grad_grid(geo)
    assert all(g <= limit for g, limit in zip(grid, limits))
    assert grid[0] == channels * ratio and grid[1] * chunk >= batch * math.prod(size) > (grid[1] - 1) * chunk


def test_launch_grid_beyond_cuda_limits_is_a_clear_error():
    import torch

    from nnunet_deconver.ndc.backends import triton_backend

    x = torch.empty(1, 1, 2**16, 2**16, device="meta")
    geo = triton_backend._geometry(x, x, torch.empty(1, 1, 3, 3, device="meta"), 1)
    with pytest.raises(ValueError, match="more than CUDA launches at once"):
        triton_backend.position_grid(geo, 2**16)
