"""The settings of a Deconver trainer, checked when it is constructed, before any work.

A trainer variant sets class attributes (``ratio = 1``, ``epochs = 300``, ...); a value out of
range or of the wrong type would otherwise fail deep inside training, after nnU-Net has made the
output folder and started its data-loader workers. :data:`ATTRIBUTE_CHECKS` says what each
attribute accepts (one entry per attribute); :func:`require_valid_settings` also checks the NDC
backend variable (``NNUNET_DECONVER_NDC_BACKEND``) for the trainer's device and that ``groups``
divides every NDC layer of the configuration. The trainer checks when it is constructed and
when it builds its network (which is all ``nnUNetv2_predict`` does of it).

A problem ends the process with one line, ``TRAINER: error: MESSAGE``, and exit code 1, never a
traceback: the trainer raises :class:`SystemExit` (``nnUNetv2_train`` constructs the trainer in
its own entry point, so nothing between catches a :class:`~nnunet_deconver.errors.DeconverError`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from nnunet_deconver.errors import DeconverError
from nnunet_deconver.nnunet.plans import deconver_arguments
from nnunet_deconver.paper import undivided_widths

if TYPE_CHECKING:
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_whole(value: object) -> bool:
    return _whole(value) and value >= 1


def _number(value: object) -> bool:
    return (_whole(value) or isinstance(value, float)) and math.isfinite(value)


#: attribute -> (whether a value is valid, what is expected). One line per checked attribute.
ATTRIBUTE_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "kernel_size": (lambda v: _positive_whole(v) and v % 2 == 1, "an odd positive integer (the paper: 3 or 5)"),
    "ratio": (_positive_whole, "a positive integer (the NDC source channel ratio R)"),
    "groups": (lambda v: v is None or _positive_whole(v), "None (one group per channel) or a positive integer"),
    "norm_affine": (lambda v: isinstance(v, bool), "True or False"),
    "ndc_eps": (lambda v: _number(v) and v > 0, "a positive finite number"),
    "ndc_iterations": (_positive_whole, "a positive integer"),
    "activation_memory": (lambda v: v in ("lean", "full"), "'lean' (recompute in slabs) or 'full' (keep everything)"),
    "epochs": (_positive_whole, "a positive integer"),
    "iterations_per_epoch": (lambda v: v is None or _positive_whole(v), "None (nnU-Net's 250) or a positive integer"),
    "val_iterations_per_epoch": (lambda v: v is None or _positive_whole(v),
                                 "None (nnU-Net's 50) or a positive integer"),
    "warmup_fraction": (lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1"),
}


def configuration_of(plans: dict, configuration: str) -> ConfigurationManager:
    """nnU-Net's ``ConfigurationManager`` of ``configuration`` in ``plans`` (what the trainer builds)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return PlansManager(plans).get_configuration(configuration)


def settings_problem(trainer: type, configuration_manager: ConfigurationManager | None = None,
                     device: torch.device | None = None) -> str | None:
    """What is wrong with ``trainer``'s settings for this configuration and device, or None.

    Checks, in this order: ``NNUNET_DECONVER_NDC_BACKEND`` (a forced backend that does not serve
    ``device`` warns once, see :func:`~nnunet_deconver.ndc.backends.check_request`), every
    attribute of :data:`ATTRIBUTE_CHECKS`, and that ``groups`` divides every width C of the
    stages of ``configuration_manager`` (nnU-Net's) and R * C. None skips the device's or the
    configuration's check.
    """
    from nnunet_deconver.ndc.backends import check_request, requested_backend

    try:
        if device is not None:
            check_request(device)
        else:
            requested_backend()
    except DeconverError as exc:
        return str(exc)
    for name, (valid, expected) in ATTRIBUTE_CHECKS.items():
        value = getattr(trainer, name)
        if not valid(value):
            return f"{name} = {value!r} (a class attribute of the trainer): expected {expected}"
    if trainer.groups is not None and configuration_manager is not None:
        widths = deconver_arguments(configuration_manager, 1, 1)["features_per_stage"]
        undivided = undivided_widths(widths, trainer.ratio, trainer.groups)
        if undivided:
            return (f"groups = {trainer.groups} does not divide {', '.join(map(str, undivided))}: every stage's width "
                    f"({', '.join(map(str, widths))} in this configuration) and ratio = {trainer.ratio} "
                    "times it must be divisible by groups")
    return None


def require_valid_settings(trainer: type, configuration_manager: ConfigurationManager | None = None,
                           device: torch.device | None = None) -> None:
    """Raise :class:`SystemExit` with the one line ``TRAINER: error: MESSAGE`` if
    :func:`settings_problem` finds a problem."""
    problem = settings_problem(trainer, configuration_manager, device)
    if problem is not None:
        raise SystemExit(f"{trainer.__name__}: error: {problem}")
