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
    assert "18 passed" in summary and "failed" not in summary and "skipped" not in summary, summary


# Every kernel variant the backend launches, compiled ahead of time to CUDA machine code by
# Triton's own compiler and ptxas (no GPU needed): what the interpreter accepts, CUDA compiles too.
POINTERS = {"src", "weight", "out", "base", "mask_src", "x", "y", "s", "grad", "out_p", "out_gs", "q", "pp", "ap",
            "grad_w"}
FLOATS = {"eps"}


def _variants():
    return [("conv_kernel", dict(TRANSPOSE=False, RELU_SRC=relu, EPILOGUE=False, MASK=False)) for relu in (False, True)] + [
        ("conv_kernel", dict(TRANSPOSE=True, RELU_SRC=False, EPILOGUE=epi, MASK=epi)) for epi in (False, True)] + [
        ("update_kernel", dict(BACKWARD=bw, RECTIFY=True)) for bw in (False, True)] + [
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
    taps = kernel[0] * kernel[1] * kernel[2]
    kpad = triton_backend._next_power_of_2(taps)
    block = triton_backend._geometry(*_meta(kernel))["BLOCK"]
    geometry = dict(KD=kernel[0], KH=kernel[1], KW=kernel[2], KPAD=kpad, BLOCK=block, ACC=tl.float32)
    for name, flags in _variants():
        fn = getattr(triton_kernels, name)
        constexprs = {**geometry, **flags}
        signature = {a: "constexpr" if a in constexprs else f"*{dtype}" if a in POINTERS else "fp32" if a in FLOATS
                     else "i32" for a in fn.arg_names}
        compiled = triton.compile(triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", capability, 32))
        assert len(compiled.asm["cubin"]) > 1000, (name, flags)


def _meta(kernel):
    import torch

    x = torch.empty(1, 2, 4, 4, 4, device="meta")
    return x, torch.empty(1, 8, 4, 4, 4, device="meta"), torch.empty(2, 4, *kernel, device="meta"), 2
