"""The ``cpp`` backend: the fused CPU kernels of ``nnunet_deconver/ndc/csrc``, built on first use.

The sources are compiled with PyTorch's own extension tooling (``torch.utils.cpp_extension.load``,
ninja, the system's C++ compiler, OpenMP) the first time a process needs them and cached: in
``$TORCH_EXTENSIONS_DIR`` when set, else in PyTorch's default (``~/.cache/torch_extensions/``),
under a name that carries a hash of the sources, so an edited or upgraded package builds afresh
and the cache of another version is never loaded. Processes that start together wait for one
build (PyTorch's file lock). The kernels are compiled three times, for the baseline instruction
set, for AVX2 + FMA and for AVX-512, and the widest one the CPU runs is used (the operator
``instruction_set(name)`` tells which, or selects another one the CPU can run); no
``-march=native``, so a cache is portable.

When the build fails (no compiler, a broken toolchain, ...) :func:`is_available` returns False
after one :class:`~nnunet_deconver.ndc.backends.registry.NDCBackendWarning` and the update runs on
the ``torch`` backend.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import register_flop_formula

from nnunet_deconver.ndc.backends.op import conv_flops
from nnunet_deconver.ndc.backends.registry import BACKEND_ENV, NDCBackendWarning
from nnunet_deconver.ndc.ops import channels_last_format

CSRC = Path(__file__).resolve().parent.parent / "csrc"
SOURCES = ("ndc_cpu.cpp", "ndc_kernels_base.cpp", "ndc_kernels_avx2.cpp", "ndc_kernels_avx512.cpp",
           "cpu_memory_cache.cpp")
FLAGS = ["-O3", "-fopenmp", "-ffp-contract=fast"]

_lock = threading.Lock()
_state: dict = {"module": None, "failed": False}


def extension_name() -> str:
    """``nnunet_deconver_ndc_cpu_<hash of csrc/ and the flags>``."""
    digest = hashlib.sha256(" ".join(FLAGS).encode())
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return f"nnunet_deconver_ndc_cpu_{digest.hexdigest()[:12]}"


def _empty(shape, like: torch.Tensor, needed: bool = True) -> torch.Tensor:
    """What the kernels return for a field of ``shape`` in ``like``'s dtype: channels-last, or an
    empty tensor when not ``needed``."""
    if not needed:
        return like.new_empty(0)
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=channels_last_format(len(shape)))


def _window(s: torch.Tensor, plane_lo: int, plane_hi: int) -> tuple[int, ...]:
    return (*s.shape[:2], (s.shape[2] if plane_hi < 0 else plane_hi) - plane_lo, *s.shape[3:])


def _forward_fake(x, s, weight, groups, eps, rectify, plane_lo=0, plane_hi=-1, need_out=True, workspace=None,
                  planar=False):
    """Shapes and strides of the compiled ``forward`` (fake tensors: memory counting, tracing; fresh
    tensors whether or not a workspace is given)."""
    return [_empty(_window(s, plane_lo, plane_hi), s, need_out), _empty(x.shape, x)]


def _backward_fake(grad, x, s, weight, y, groups, eps, rectify, need_x, need_s, need_weight, plane_lo=0, plane_hi=-1,
                   need_out=False, workspace=None):
    """Shapes and strides of the compiled ``backward``."""
    grad_weight = weight.new_empty(weight.shape if need_weight else 0)
    return [_empty(x.shape, x, need_x), _empty(s.shape, s, need_s), grad_weight,
            _empty(_window(s, plane_lo, plane_hi), s, need_out)]


def _planes(x_shape, plane_lo: int, plane_hi: int, reach: int) -> int:
    """The planes of the window [plane_lo, plane_hi) widened by ``reach`` within the first axis."""
    extent = x_shape[2]
    return min(extent, (extent if plane_hi < 0 else plane_hi) + reach) - max(0, plane_lo - reach)


def _forward_flops(x_shape, s_shape, weight_shape, groups, eps, rectify, plane_lo=0, plane_hi=-1, need_out=True,
                   workspace=None, planar=False, out_shape=None) -> int:
    """A(s) within k0 // 2 planes of the window, A^T(x) and A^T(y) on it: the operator's count
    (:mod:`~nnunet_deconver.ndc.backends.op`) over the planes computed."""
    reach, per_plane = weight_shape[2] // 2, conv_flops(x_shape, weight_shape) // x_shape[2]
    return per_plane * (_planes(x_shape, plane_lo, plane_hi, reach) + 2 * need_out * _planes(x_shape, plane_lo,
                                                                                              plane_hi, 0))


def _backward_flops(grad_shape, x_shape, s_shape, weight_shape, y_shape, groups, eps, rectify, need_x, need_s,
                    need_weight, plane_lo=0, plane_hi=-1, need_out=False, workspace=None,
                    out_shape=None) -> int:
    """The operator's eight convolutions, over the planes within k0 // 2 of the window."""
    per_plane = conv_flops(x_shape, weight_shape) // x_shape[2]
    return 8 * per_plane * _planes(x_shape, plane_lo, plane_hi, weight_shape[2] // 2)


def _build() -> object:
    from torch.utils import cpp_extension

    path = os.environ.get("PATH", "")
    if shutil.which("ninja") is None:  # the ninja package's binary sits next to the interpreter
        try:
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path
        except ImportError:
            pass
    try:
        cpp_extension.load(
            name=extension_name(), sources=[str(CSRC / name) for name in SOURCES], extra_include_paths=[str(CSRC)],
            extra_cflags=FLAGS, extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False,
        )
        torch.library.register_fake("nnunet_deconver_cpp::forward")(_forward_fake)
        torch.library.register_fake("nnunet_deconver_cpp::backward")(_backward_fake)
        register_flop_formula(torch.ops.nnunet_deconver_cpp.forward)(_forward_flops)
        register_flop_formula(torch.ops.nnunet_deconver_cpp.backward)(_backward_flops)
        return torch.ops.nnunet_deconver_cpp
    finally:
        os.environ["PATH"] = path


def extension() -> object | None:
    """``torch.ops.nnunet_deconver_cpp`` (the compiled kernels), built on the first call; None (after one
    warning) if that failed."""
    with _lock:
        if _state["module"] is None and not _state["failed"]:
            try:
                _state["module"] = _build()
            except Exception as exc:  # a failed build of any kind means: use the torch backend
                _state["failed"] = True
                reason = " ".join(str(exc).split())
                warnings.warn(
                    "nnunet_deconver: the fused C++ NDC kernel could not be built, so the NDC update runs on "
                    f"PyTorch operators instead (slower, more memory). Cause: {reason[-600:]} "
                    f"Set {BACKEND_ENV}=torch to skip the build.",
                    NDCBackendWarning,
                    stacklevel=4,
                )
        return _state["module"]


def built_extension() -> object | None:
    """The compiled kernels when this process has built (or loaded) them already, else None; never builds."""
    return _state["module"]


def is_available() -> bool:
    """True when the kernels are (or could now be) built."""
    return extension() is not None


def forward(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int, eps: float,
            rectify: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """See the backend contract in :mod:`nnunet_deconver.ndc.backends` (the kernels take one dtype: a
    narrower x or s is widened to the filter's for the call)."""
    out, y = extension().forward(x.to(weight.dtype), s.to(weight.dtype), weight, groups, eps, rectify)
    return out, y


def backward(grad: torch.Tensor, x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, y: torch.Tensor,
             groups: int, eps: float, rectify: bool, need_x: bool, need_s: bool, need_w: bool):
    """See the backend contract in :mod:`nnunet_deconver.ndc.backends`."""
    grads = extension().backward(grad.to(weight.dtype), x.to(weight.dtype), s.to(weight.dtype), weight, y, groups,
                                 eps, rectify, need_x, need_s, need_w)
    return tuple(g if needed else None for g, needed in zip(grads, (need_x, need_s, need_w)))
