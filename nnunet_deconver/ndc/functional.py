"""The NDC multiplicative update: :func:`ndc` (through the backends) and :func:`ndc_reference`.

One update (Ashtari et al., eq. 7), for x (B, C, *S) >= 0, s (B, E, *S) >= 0 and a nonnegative
grouped filter V (C, E // G, *k)::

    s_next = s * (A^T(x) + eps) / (A^T(A(s)) + eps)

with ``A = conv(., V, groups=G)`` and ``A^T`` its adjoint (see :mod:`nnunet_deconver.ndc.ops`).

:func:`ndc` runs each update through the custom operator of :mod:`nnunet_deconver.ndc.backends`
(fused C++ kernels on CPU, Triton kernels on CUDA, PyTorch's convolutions on other devices and as
the fallback, chosen per device; its docstring gives the gradients). :func:`ndc_reference` is the same update as a plain autograd graph, the
reference for tests and benchmarks. Both check their arguments on every call, then run
:func:`run_updates`, the one code path for 2D and 3D, which checks nothing: the
:class:`~nnunet_deconver.ndc.NDC` layer calls it directly, its arguments checked once when it is built.
"""

from __future__ import annotations

import torch

from nnunet_deconver.ndc.backends import ndc_update
from nnunet_deconver.ndc.ops import analysis, check_arguments, check_iterations, preferred_memory_format, synthesis


def _update(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int, eps: float,
            rectify: bool) -> torch.Tensor:
    return ndc_update(x, s, weight, groups, eps, rectify)[0]


def _update_reference(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int, eps: float,
                      rectify: bool) -> torch.Tensor:
    if rectify:
        s = torch.relu(s)
    num = analysis(x, weight, groups) + eps
    den = analysis(synthesis(s, weight, groups), weight, groups) + eps
    return s * num / den


def run_updates(
    x: torch.Tensor,
    s0: torch.Tensor,
    weight: torch.Tensor,
    groups: int,
    eps: float,
    iterations: int,
    rectify_s0: bool,
    fused: bool,
) -> torch.Tensor:
    """``iterations`` updates of ``s0``, with no argument checks (see :func:`ndc` for the checks).

    x (B, C, *S), s0 (B, E, *S), weight (C, E // G, *k) -> (B, E, *S) in ``s0``'s dtype; the
    arguments are :func:`ndc`'s. ``fused``: each update through the backends' operator, in the
    device's preferred layout (:func:`ndc`), or as a plain autograd graph in the inputs' own layout
    (:func:`ndc_reference`). The update runs in float32 at least, autocast off. The fused
    operator takes x and s0 in their own dtype (16-bit under autocast), so that what it keeps for
    backward stays in that dtype; it computes in float32 (the filter's dtype here) all the same.
    """
    update = _update if fused else _update_reference
    memory_format = preferred_memory_format(x) if fused else torch.preserve_format
    out_dtype = s0.dtype
    # The update runs in float32 at least: eps = 1e-8 underflows in float16.
    compute = torch.promote_types(torch.promote_types(x.dtype, s0.dtype), torch.float32)
    stored = {} if fused else {"dtype": compute}
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(memory_format=memory_format, **stored)
        s = s0.to(memory_format=memory_format, **stored)
        weight = weight.to(compute)
        for step in range(iterations):
            s = update(x, s, weight, groups, eps, rectify_s0 and step == 0)
    return s.to(out_dtype)


def ndc(
    x: torch.Tensor,
    s0: torch.Tensor,
    weight: torch.Tensor,
    groups: int,
    eps: float = 1e-8,
    iterations: int = 1,
    rectify_s0: bool = False,
) -> torch.Tensor:
    """Nonnegative deconvolution: ``iterations`` multiplicative updates of ``s0``.

    Args:
        x: observed features (B, C, *S), nonnegative; S is (H, W) or (D, H, W).
        s0: initial source (B, E, *S), nonnegative.
        weight: rectified (nonnegative) filter (C, E // groups, *k), k odd per axis.
        groups: number of groups G; G divides C and E.
        eps: added to numerator and denominator.
        iterations: number of updates.
        rectify_s0: use ``ReLU(s0)`` as the initial source (inside the first update, which saves
            a pass over s0 and one over its gradient); the gradient is then w.r.t. ``s0`` itself.

    Returns:
        The source after the updates, (B, E, *S), in ``s0``'s dtype. Under autocast the update runs
        in float32. Nonnegativity of the inputs is assumed, not checked (a check costs a full pass
        and, on GPU, a synchronisation): with negative inputs the result is meaningless, not an error.

    Raises:
        ValueError: shapes that do not fit, groups that do not divide C and E, even kernel sizes,
            ``iterations`` < 1.
    """
    check_arguments(x, s0, weight, groups)
    check_iterations(iterations)
    return run_updates(x, s0, weight, groups, eps, iterations, rectify_s0, fused=True)


def ndc_reference(
    x: torch.Tensor,
    s0: torch.Tensor,
    weight: torch.Tensor,
    groups: int,
    eps: float = 1e-8,
    iterations: int = 1,
    rectify_s0: bool = False,
) -> torch.Tensor:
    """:func:`ndc` as a plain autograd graph in the inputs' own layout (reference for tests); the
    same checks, shapes and dtypes."""
    check_arguments(x, s0, weight, groups)
    check_iterations(iterations)
    return run_updates(x, s0, weight, groups, eps, iterations, rectify_s0, fused=False)


def reconstruction_error(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``||x - A(s)||^2`` per batch element, shape (B,): the objective NDC decreases (Theorem 1)."""
    return (x - synthesis(s, weight, groups)).pow(2).flatten(1).sum(1)
