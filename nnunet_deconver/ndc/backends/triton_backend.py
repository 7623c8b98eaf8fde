"""The ``triton`` backend: the NDC update and its gradients in Triton kernels, for CUDA tensors.

Forward is two kernels: ``y = A(s')`` and one fused pass that computes ``A^T(x)`` and ``A^T(y)``
together and writes ``s' * (A^T(x) + eps) / (A^T(y) + eps)``. Backward is five: the fused pass
again (now writing ``q``, ``p`` and ``g * num / den``), ``A(q)`` (= dL/dx), ``A(p)``, ``A^T`` of it
subtracted from ``g * num / den`` (and masked by ``s > 0`` under ``rectify``) (= dL/ds), and one
kernel for the three filter-gradient terms (see :mod:`.triton_kernels`). Besides dL/ds, which is
formed in the buffer of ``g * num / den``, backward holds two (B, E, *S) work tensors (``q`` and
``p``, both read by the filter-gradient kernel). Products are summed, and results stored, in the
filter's dtype (float32 or float64); x and s may be stored narrower (float16 or bfloat16, as autocast
keeps them for backward). Kernels and arguments follow the contract of
:mod:`nnunet_deconver.ndc.backends`; results are contiguous. The filter gradient is summed over
slices of the volume with atomic additions, so its last bits may differ from run to run (as with
the non-deterministic cuDNN algorithms nnU-Net enables).

Triton is imported on first use, so this module imports on machines without it. Triton's
interpreter (``TRITON_INTERPRET=1`` before the first import) runs the same kernels on CPU
tensors, which is how they are tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings

import torch

from nnunet_deconver.ndc.backends import torch_ops
from nnunet_deconver.ndc.backends.registry import BACKEND_ENV, NDCBackendError, NDCBackendWarning, requested_backend

Tensor = torch.Tensor

_state: dict = {"available": None, "reason": ""}

#: CUDA's launch limits: up to 2^31 - 1 programs along a grid's first axis, 65535 along the others
GRID_LIMITS = (2**31 - 1, 65535, 65535)


def is_available() -> bool:
    """Whether the kernels run here: Triton is installed, there is a CUDA device (or Triton's
    interpreter is on), and every kernel variant computes what the ``torch`` backend computes in
    float64 (:func:`check_kernels`: forward and backward, with and without the ReLU of s, 2D and 3D).

    Decided once per process, on the first call (the kernels compile then, a few seconds), and the
    same on every rank of a ``torch.distributed`` job (each rank's verdict is combined: if one fails,
    all use ``torch``). A failure on a CUDA machine gives one
    :class:`~nnunet_deconver.ndc.backends.registry.NDCBackendWarning` and the ``torch`` backend
    computes instead; when ``NNUNET_DECONVER_NDC_BACKEND=triton`` forces this backend it is an
    :class:`~nnunet_deconver.ndc.backends.registry.NDCBackendError` that says why instead.
    """
    if _state["available"] is None:
        available, reason = _self_test()
        available = _agree_across_ranks(available)
        if not available and not reason and torch.cuda.is_available():
            reason = "another rank of this distributed job failed the check"
        _state.update(available=available, reason=reason)
        if not available and reason and requested_backend() != "triton":
            warnings.warn(
                f"nnunet_deconver: the Triton NDC kernels cannot run here, so the NDC update runs on PyTorch "
                f"operators instead (slower, more memory). Cause: {reason} Set {BACKEND_ENV}=torch to skip "
                f"this check.", NDCBackendWarning, stacklevel=4,
            )
    if not _state["available"] and _state["reason"] and requested_backend() == "triton":
        raise NDCBackendError(f"{BACKEND_ENV}=triton, but the Triton NDC kernels cannot run here: {_state['reason']}")
    return _state["available"]


def _self_test() -> tuple[bool, str]:
    """(whether the kernels run here, why not: empty when there is no device for them at all)."""
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    if not (torch.cuda.is_available() or interpret):
        return False, ""
    if importlib.util.find_spec("triton") is None:
        return False, "Triton is not installed."
    try:
        problems = check_kernels(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    except Exception as exc:  # any failure to compile or launch means: use the torch backend
        return False, " ".join(str(exc).split())[-600:]
    if problems:
        return False, "its results differ from PyTorch's float64 convolutions: " + "; ".join(problems[:4]) + "."
    return True, ""


def _agree_across_ranks(available: bool) -> bool:
    """``available`` on every rank of an initialised ``torch.distributed`` job, else False everywhere."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return available
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    flag = torch.tensor([1 if available else 0], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


#: The self-check's problems: (batch, C, E, groups, spatial size, kernel), 3D and 2D, sizes that are
#: not multiples of a block, a filter wider than one axis.
CHECK_CASES = [(2, 4, 8, 4, (3, 5, 7), (3, 3, 3)), (1, 2, 8, 1, (9, 4), (5, 3))]

#: Normwise tolerance of the self-check: float32 accumulation of the n <= 2000 products a value here
#: sums has a typical relative error of sqrt(n) * 2^-24 (about 3e-6; 2^-24 * n = 1.2e-4 at worst);
#: a kernel that drops a tap, a source or a position is off by percents.
CHECK_TOLERANCE = 1e-4


def check_kernels(device: torch.device) -> list[str]:
    """Run every kernel variant on ``device`` in float32 and compare with the ``torch`` backend in
    float64 (no TF32 there): forward and backward (all three gradients), with and without the ReLU
    of s, for :data:`CHECK_CASES`. Returns what differs (empty: everything agrees to
    :data:`CHECK_TOLERANCE` times the largest reference value). Raises what compiling or launching raises."""
    problems = []
    for batch, channels, sources, groups, size, kernel in CHECK_CASES:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, channels, *size, generator=gen, dtype=torch.float64)
        s = torch.rand(batch, sources, *size, generator=gen, dtype=torch.float64) - 0.2
        weight = torch.rand(channels, sources // groups, *kernel, generator=gen, dtype=torch.float64)
        grad = torch.rand(s.shape, generator=gen, dtype=torch.float64)
        for rectify in (False, True):
            s_in = s if rectify else s.clamp_min(0.0)
            want = torch_ops.forward(x, s_in, weight, groups, 1e-8, rectify)
            want += torch_ops.backward(grad, x, s_in, weight, want[1], groups, 1e-8, rectify, True, True, True)
            args = [t.to(device=device, dtype=torch.float32) for t in (x, s_in, weight)]
            out, y = forward(*args, groups, 1e-8, rectify)
            got = (out, y) + backward(grad.to(device=device, dtype=torch.float32), *args, y, groups, 1e-8, rectify,
                                      True, True, True)
            for name, a, b in zip(("out", "y", "dL/dx", "dL/ds", "dL/dV"), got, want):
                error = float((a.double().cpu() - b).abs().max())
                if not error <= CHECK_TOLERANCE * float(b.abs().max()):
                    problems.append(f"{name} ({len(size)}D, rectify={rectify}) off by {error:.3g}")
    return problems


def _kernels():
    from nnunet_deconver.ndc.backends import triton_kernels

    return triton_kernels


def _as_3d(t: Tensor) -> Tensor:
    """(B, ch, H, W) -> (B, ch, 1, H, W) (a view); 3D tensors as they are; contiguous."""
    return (t.unsqueeze(2) if t.dim() == 4 else t).contiguous()


#: Positions per program of :func:`conv_kernel` and :func:`update_kernel` (each computes them for all
#: output channels of a group): two per thread of the default four warps, so that each filter value
#: a thread loads serves two positions (benchmarks/triton_instructions.py counts the instructions).
BLOCK = 256


def _geometry(x: Tensor, s: Tensor, weight: Tensor, groups: int) -> dict:
    w = _as_3d(weight)
    kd, kh, kw = w.shape[2:]
    taps = kd * kh * kw
    kpad = _next_power_of_2(taps)
    batch, channels, depth, height, width = _as_3d(x).shape
    sources = s.shape[1]
    return dict(
        B=batch, C=channels, E=sources, G=groups, Cg=channels // groups, Eg=sources // groups, D=depth, H=height,
        W=width, S=depth * height * width, KD=kd, KH=kh, KW=kw, KPAD=kpad, BLOCK=BLOCK,
        WBLOCK=max(16, min(256, 4096 // kpad)),
    )


def position_grid(geo: dict, rows: int) -> tuple[int]:
    """Launch grid of :func:`conv_kernel` / :func:`update_kernel`: one program per (row, block of
    ``BLOCK`` positions), rows = B * G (each program computes every output channel of its group),
    along the grid's first axis (up to 2^31 - 1 programs; the other axes allow only 65535, which
    B * G passes for a 2D network at batch 32 with G = 2048). The kernels split the program index
    into batch, group and block."""
    programs = rows * math.ceil(geo["S"] / geo["BLOCK"])
    if programs > GRID_LIMITS[0]:
        raise ValueError(f"the NDC update over {rows} (sample, group) pairs of {geo['S']} voxels needs {programs} "
                         f"Triton programs, more than CUDA launches at once ({GRID_LIMITS[0]}): split the batch")
    return (programs,)


def weight_grad_grid(geo: dict) -> tuple[tuple[int, int], int]:
    """Launch grid of :func:`weight_grad_kernel` and the positions each program sums: one row of
    the filter (c, j) per program along the first axis (C * Eg of them), the B * S positions in
    slices along the second, enough programs to fill a GPU (about 4 per row when there are few
    rows, at most 2048 slices), whole blocks of ``WBLOCK`` positions each."""
    rows = geo["C"] * geo["Eg"]
    blocks = math.ceil(geo["B"] * geo["S"] / geo["WBLOCK"])
    slices = max(1, min(blocks, math.ceil(2048 / rows)))
    chunk = math.ceil(blocks / slices) * geo["WBLOCK"]
    return (rows, math.ceil(geo["B"] * geo["S"] / chunk)), chunk


def _next_power_of_2(n: int) -> int:
    return 1 << (max(1, n) - 1).bit_length()


def _acc(dtype: torch.dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def tap_major(weight: Tensor, groups: int, transpose: bool) -> Tensor:
    """The filter (C, Eg, *k) as the kernels read it: (G, sources per group, K, OPAD), entry
    [g, i, t, j] the tap t between the group's source i and output j, zero-padded to OPAD (the
    outputs per group rounded up to a power of two). ``transpose`` (A^T and the update): sources
    are the Cg channels c, outputs the Eg sources e; else (A) the other way round."""
    channels, per_e = weight.shape[:2]
    taps = weight[0, 0].numel()
    w = weight.reshape(groups, channels // groups, per_e, taps)  # (g, c in group, j, t)
    w = w.permute(0, 1, 3, 2) if transpose else w.permute(0, 2, 3, 1)
    width = _next_power_of_2(w.shape[-1])
    return torch.nn.functional.pad(w, (0, width - w.shape[-1])).contiguous()


def _conv(src: Tensor, weight: Tensor, geo: dict, transpose: bool, relu_src: bool = False,
          base: Tensor | None = None, mask_src: Tensor | None = None) -> Tensor:
    """``A(src)`` (B, C, *S) or, ``transpose``, ``A^T(src)`` (B, E, *S), all 3D-shaped, in the filter's
    dtype; ReLU(src) with ``relu_src``; with ``base``: ``(base - result) * (mask_src > 0)`` (no mask
    when mask_src is None), written into ``base`` itself (each position reads its own value first)."""
    n_out, n_src = (geo["E"], geo["C"]) if transpose else (geo["C"], geo["E"])
    out = base if base is not None else src.new_empty(geo["B"], n_out, geo["D"], geo["H"], geo["W"],
                                                      dtype=weight.dtype)
    grid = position_grid(geo, geo["B"] * geo["G"])
    epilogue = base is not None
    _kernels().conv_kernel[grid](
        src, tap_major(weight, geo["G"], transpose), out, base if epilogue else out, mask_src if mask_src is not None else out,
        n_out, n_src, geo["Cg"], geo["Eg"], geo["D"], geo["H"], geo["W"],
        TRANSPOSE=transpose, RELU_SRC=relu_src, EPILOGUE=epilogue, MASK=mask_src is not None, KD=geo["KD"],
        KH=geo["KH"], KW=geo["KW"], OPAD=_next_power_of_2(geo["Eg"] if transpose else geo["Cg"]), BLOCK=geo["BLOCK"],
        ACC=_acc(weight.dtype),
    )
    return out


def _update(x: Tensor, y: Tensor, s: Tensor, grad: Tensor | None, weight: Tensor, eps: float, rectify: bool,
            geo: dict) -> tuple[Tensor, ...]:
    backward = grad is not None
    outs = [torch.empty_like(s, dtype=weight.dtype) for _ in range(3 if backward else 1)]
    out_p, out_gs = (outs[1], outs[2]) if backward else (outs[0], outs[0])  # unused in forward
    grid = position_grid(geo, geo["B"] * geo["G"])
    _kernels().update_kernel[grid](
        x, y, s, grad if backward else s, tap_major(weight, geo["G"], True), outs[0], out_p, out_gs, float(eps),
        geo["C"], geo["E"], geo["Cg"], geo["Eg"], geo["D"], geo["H"], geo["W"],
        BACKWARD=backward, RECTIFY=rectify, KD=geo["KD"], KH=geo["KH"], KW=geo["KW"],
        OPAD=_next_power_of_2(geo["Eg"]), BLOCK=geo["BLOCK"], ACC=_acc(weight.dtype),
    )
    return tuple(outs)


def _weight_grad(q: Tensor, x: Tensor, pp: Tensor, y: Tensor, s: Tensor, ap: Tensor, weight: Tensor,
                 rectify: bool, geo: dict) -> Tensor:
    acc_dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device)
    grid, chunk = weight_grad_grid(geo)
    _kernels().weight_grad_kernel[grid](
        q, x, pp, y, s, ap, grad_w, geo["B"], geo["C"], geo["E"], geo["Cg"], geo["Eg"], geo["D"], geo["H"],
        geo["W"], chunk, RECTIFY=rectify, KD=geo["KD"], KH=geo["KH"], KW=geo["KW"], KPAD=geo["KPAD"],
        BLOCK=geo["WBLOCK"], ACC=_acc(weight.dtype),
    )
    return grad_w.to(weight.dtype)


def forward(x: Tensor, s: Tensor, weight: Tensor, groups: int, eps: float, rectify: bool) -> tuple[Tensor, Tensor]:
    """``(s' * (A^T(x) + eps) / (A^T(y) + eps), y = A(s'))``, s' = ReLU(s) if ``rectify`` else s."""
    shape_x, shape_s = x.shape, s.shape
    geo = _geometry(x, s, weight, groups)
    x3, s3, w3 = _as_3d(x), _as_3d(s), _as_3d(weight)
    y = _conv(s3, w3, geo, transpose=False, relu_src=rectify)
    (out,) = _update(x3, y, s3, None, w3, eps, rectify, geo)
    return out.view(shape_s), y.view(shape_x)


def backward(grad: Tensor, x: Tensor, s: Tensor, weight: Tensor, y: Tensor, groups: int, eps: float,
             rectify: bool, need_x: bool, need_s: bool, need_w: bool):
    """Gradients w.r.t. x, s (before its ReLU when ``rectify``) and the filter; None where not needed."""
    geo = _geometry(x, s, weight, groups)
    x3, s3, w3, y3, g3 = _as_3d(x), _as_3d(s), _as_3d(weight), _as_3d(y), _as_3d(grad)
    q, pp, gs = _update(x3, y3, s3, g3, w3, eps, rectify, geo)
    grad_x = _conv(q, w3, geo, transpose=False).view(x.shape) if need_x else None
    grad_s = grad_w = None
    if need_s or need_w:
        ap = _conv(pp, w3, geo, transpose=False)
        if need_s:
            grad_s = _conv(ap, w3, geo, transpose=True, base=gs, mask_src=s3 if rectify else None).view(s.shape)
        if need_w:
            grad_w = _weight_grad(q, x3, pp, y3, s3, ap, w3, rectify, geo).view(weight.shape)
    return grad_x, grad_s, grad_w
