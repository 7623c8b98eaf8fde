"""Backends of the NDC update and the single point that dispatches between them.

Every caller goes through :func:`ndc_update` (the custom operator
``torch.ops.nnunet_deconver.ndc_update``, with autograd and a fake kernel for ``torch.compile``);
it asks :func:`backend_for` which backend serves the inputs' device, at call time:

- ``torch`` (:mod:`.torch_ops`): PyTorch's convolutions; every device; the fallback.
- ``cpp`` (:mod:`.cpp`): fused C++/OpenMP kernels for CPU tensors, compiled on first use.
- ``triton`` (:mod:`.triton_backend`): Triton kernels for CUDA tensors.

``NNUNET_DECONVER_NDC_BACKEND`` = ``auto`` (default: ``cpp`` on CPU when it builds, ``triton``
on CUDA when it runs, else ``torch``), ``torch``, ``cpp`` or ``triton``. On devices a backend does
not serve, and when it is unavailable, ``torch`` computes; an unavailable backend warns once, and so
does a forced one that does not serve the device (:func:`check_request`). A value that names no
backend is an :class:`NDCBackendError`. A
further backend is one module with the two functions below and one :func:`register` call here
(``preferred_on`` names the devices ``auto`` picks it for); callers do not change.

Contract of a backend (x: (B, C, *S), s: (B, E, *S), weight V: (C, E // G, *k) with odd k,
S = (H, W) or (D, H, W); the filter in float32 or float64, the dtype every backend computes in
and returns ``out`` and ``y`` in; x, s and grad in that dtype or a narrower one (16-bit under
autocast: the operator saves x and s for backward as they come, and returns each gradient in its
input's dtype); inputs arrive in any layout, and non-contiguous ones are allowed; results may have
any layout, the operator makes them channels-last on CPU and contiguous elsewhere):

``forward(x, s, weight, groups, eps, rectify) -> (out, y)``
    ``s' = ReLU(s)`` if ``rectify`` else ``s``; ``y = A(s') = conv(s', V, groups)`` (B, C, *S)
    and ``out = s' * (A^T(x) + eps) / (A^T(y) + eps)`` (B, E, *S), ``A^T`` the transposed
    convolution ("same" zero padding k // 2). ``y`` is returned so autograd can save it.

``backward(grad, x, s, weight, y, groups, eps, rectify, need_x, need_s, need_weight)
-> (grad_x, grad_s, grad_weight)``
    ``grad`` = dL/d out (any layout); x, s, weight and y are what forward received and returned
    (the operator saves exactly these four; num and den are recomputed). With ``q = grad * s' /
    den``, ``p = q * num / den``, ``num = A^T(x) + eps``, ``den = A^T(y) + eps``::

        grad_x      = A(q)
        grad_s      = (grad * num / den - A^T(A(p))) * [s > 0 if rectify]
        grad_weight = W(q, x) - W(p, y) - W(s', A(p)),   W(a, b) = d<A(a), b>/dV

    None (or anything; it is dropped) for a gradient whose ``need_*`` is False.

``is_available() -> bool`` (optional): False makes dispatch fall back to ``torch``.
"""

from __future__ import annotations

from nnunet_deconver.ndc.backends import cpp, torch_ops, triton_backend
from nnunet_deconver.ndc.backends.op import ndc_update, ndc_update_backward
from nnunet_deconver.ndc.backends.registry import (
    BACKEND_ENV,
    BACKENDS,
    Backend,
    NDCBackendError,
    NDCBackendWarning,
    backend_for,
    check_request,
    register,
    requested_backend,
)

register(Backend("torch", ("cpu", "cuda", "mps", "xpu", "meta"), torch_ops.forward, torch_ops.backward))
register(Backend("cpp", ("cpu",), cpp.forward, cpp.backward, cpp.is_available, preferred_on=("cpu",)))
register(Backend("triton", ("cuda",), triton_backend.forward, triton_backend.backward, triton_backend.is_available,
                 preferred_on=("cuda",)))

__all__ = [
    "BACKENDS", "BACKEND_ENV", "Backend", "NDCBackendError", "NDCBackendWarning", "backend_for", "check_request",
    "ndc_update", "ndc_update_backward", "register", "requested_backend",
]
