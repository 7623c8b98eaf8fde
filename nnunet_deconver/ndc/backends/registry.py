"""Which implementation of the NDC update serves a tensor: backends, the environment variable.

See :mod:`nnunet_deconver.ndc.backends` for the contract every backend fulfils.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from nnunet_deconver.errors import DeconverError

#: environment variable that forces a backend: ``auto`` (default) or a registered name (``torch``, ``cpp``, ``triton``)
BACKEND_ENV = "NNUNET_DECONVER_NDC_BACKEND"

Tensor = torch.Tensor
ForwardFn = Callable[[Tensor, Tensor, Tensor, int, float, bool], tuple[Tensor, Tensor]]
BackwardFn = Callable[
    [Tensor, Tensor, Tensor, Tensor, Tensor, int, float, bool, bool, bool, bool],
    tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]],
]


class NDCBackendWarning(UserWarning):
    """A requested or preferred NDC backend is unavailable; the PyTorch-op backend is used."""


class NDCBackendError(DeconverError, ValueError):
    """``NNUNET_DECONVER_NDC_BACKEND`` names no registered backend, or the backend it forces cannot
    compute here (the message says why)."""


@dataclass(frozen=True)
class Backend:
    """One implementation of the NDC update.

    Attributes:
        name: the value of ``NNUNET_DECONVER_NDC_BACKEND`` that forces it.
        device_types: the ``torch.device.type`` values it computes on (e.g. ``("cpu",)``).
        forward: ``(x, s, weight, groups, eps, rectify) -> (out, y)``.
        backward: ``(grad, x, s, weight, y, groups, eps, rectify, need_x, need_s, need_weight)
            -> (grad_x, grad_s, grad_weight)``, None where not needed.
        is_available: False when it cannot run here (e.g. its build failed); it may build or
            import lazily on the first call and must warn (once) itself when it gives up.
        preferred_on: device types on which ``auto`` picks it (before ``torch``).
    """

    name: str
    device_types: tuple[str, ...]
    forward: ForwardFn
    backward: BackwardFn
    is_available: Callable[[], bool] = lambda: True
    preferred_on: tuple[str, ...] = field(default=())


BACKENDS: dict[str, Backend] = {}
FALLBACK = "torch"
#: (forced backend, device type) pairs already warned about (see :func:`check_request`)
_warned_unserved: set[tuple[str, str]] = set()


def register(backend: Backend) -> None:
    """Add (or replace) a backend; ``auto`` prefers backends in the order they were registered."""
    BACKENDS[backend.name] = backend


def requested_backend() -> str:
    """The value of ``NNUNET_DECONVER_NDC_BACKEND`` (``auto`` when unset or empty).

    Raises:
        NDCBackendError: a value that names no registered backend (a ``ValueError`` too).
    """
    value = os.environ.get(BACKEND_ENV, "")
    name = value.strip().lower() or "auto"
    if name != "auto" and name not in BACKENDS:
        choices = ", ".join(["auto", *BACKENDS])
        raise NDCBackendError(f"{BACKEND_ENV}={value!r} is not a known NDC backend; choose one of {choices}")
    return name


def check_request(device: torch.device) -> str:
    """:func:`requested_backend`, for work on ``device``: a forced backend that does not compute on
    this device type (``triton`` for CPU tensors, ``cpp`` for CUDA ones) gives one
    :class:`NDCBackendWarning` per process and device type, naming the backend that computes instead.

    Builds and self-checks nothing, so it is cheap enough to call before any work.
    """
    name = requested_backend()
    unserved = name != "auto" and device.type not in BACKENDS[name].device_types
    if unserved and (name, device.type) not in _warned_unserved:
        _warned_unserved.add((name, device.type))
        warnings.warn(
            f"nnunet_deconver: {BACKEND_ENV}={name} forces a backend that does not compute on {device.type} tensors "
            f"(it serves {', '.join(BACKENDS[name].device_types)}), so the {FALLBACK} backend computes the NDC "
            "update instead.", NDCBackendWarning, stacklevel=2,
        )
    return name


def backend_for(device: torch.device) -> Backend:
    """The backend that computes the NDC update for tensors on ``device``.

    ``auto``: the first registered backend preferred on this device type that is available, else
    ``torch``. A forced name: that backend where it serves this device type and is available,
    else ``torch`` (an unavailable backend has already warned; a backend that does not serve this
    device type warns once, see :func:`check_request`). A forced backend that serves this device but
    fails its own check may raise :class:`NDCBackendError` instead (the Triton kernels do).
    """
    name = check_request(device)
    if name == "auto":
        candidates = [b for b in BACKENDS.values() if device.type in b.preferred_on]
    else:
        candidates = [BACKENDS[name]]
    for backend in candidates:
        if device.type in backend.device_types and backend.is_available():
            return backend
    return BACKENDS[FALLBACK]
