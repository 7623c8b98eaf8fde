"""nnU-Net plans -> Deconver arguments, and the paper's configurations as an nnU-Net plans file.

Deconver is built from either kind of plans:

- nnU-Net's own plans (PlainConvUNet): number of stages, per-stage strides (possibly anisotropic,
  e.g. [1, 2, 2]), the conv kernel sizes (an axis with kernel 1 keeps an NDC kernel of 1 there),
  patch and batch size. Widths follow the paper, C_l = min(C0 * 2^l, 512) with C0 the plans'
  first-stage width.
- plans that name Deconver (``network_class_name`` ``nnunet_deconver.network.unet.Deconver`` and
  its keyword arguments in ``arch_kwargs``), as :func:`write_preset_plans` writes them: nnU-Net's
  ``get_network_from_plans`` builds the network, so every nnU-Net trainer (``nnUNetTrainer``,
  ``nnUNetTrainer_250epochs``, ``nnUNetTrainerNoMirroring``, ...) trains Deconver from them.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from nnunet_deconver.errors import DeconverError, one_line, os_error_message, path_problem
# standard library and this project only at import time: the command line registers ``plan`` from here
from nnunet_deconver.paper import PaperDataset, get_dataset, paper_widths

#: plans identifier of the files :func:`write_preset_plans` writes (``-p nnUNetDeconverPlans``)
PRESET_PLANS_IDENTIFIER = "nnUNetDeconverPlans"
#: what the preset plans name as ``network_class_name`` (located by nnU-Net with ``pydoc.locate``)
DECONVER_CLASS_NAME = "nnunet_deconver.network.unet.Deconver"


def names_deconver(configuration_manager) -> bool:
    """Whether the configuration's plans name Deconver as their network."""
    return configuration_manager.network_arch_class_name == DECONVER_CLASS_NAME


def deconver_arguments(
    configuration_manager,
    num_input_channels: int,
    num_output_channels: int,
    kernel_size: int = 3,
    ratio: int = 4,
    groups: int | None = None,
    mlp_ratio: int = 4,
    norm_affine: bool = False,
    eps: float = 1e-8,
    iterations: int = 1,
    activation_memory: str = "lean",
    deep_supervision: bool = True,
) -> dict:
    """Keyword arguments of :class:`~nnunet_deconver.network.Deconver` for an nnU-Net configuration.

    ``configuration_manager`` is nnU-Net's ``ConfigurationManager``. The geometry (widths, strides,
    where the kernel is 1, stem) comes from its plans, Deconver's or nnU-Net's U-Net's; the NDC
    settings are the arguments here (a trainer variant's), and replace those the plans name.
    """
    arch = configuration_manager.network_arch_init_kwargs
    strides = [[int(s) for s in stride] for stride in arch["strides"]]
    plan_kernels = [[int(k) for k in kernel] for kernel in arch["kernel_sizes"]]
    if names_deconver(configuration_manager):
        features = [int(c) for c in arch["features_per_stage"]]
        stem = [int(k) for k in arch["stem_kernel_size"]]
    else:
        features = paper_widths(int(arch["features_per_stage"][0]), int(arch["n_stages"]))
        stem = plan_kernels[0]
    return dict(
        input_channels=num_input_channels,
        num_classes=num_output_channels,
        spatial_dims=len(configuration_manager.patch_size),
        features_per_stage=features,
        strides=strides,
        kernel_sizes=[[1 if k == 1 else kernel_size for k in kernel] for kernel in plan_kernels],
        stem_kernel_size=stem,
        ratio=ratio,
        groups=groups,
        mlp_ratio=mlp_ratio,
        norm_affine=norm_affine,
        eps=eps,
        iterations=iterations,
        activation_memory=activation_memory,
        deep_supervision=deep_supervision,
    )


def preset_architecture(dataset: PaperDataset) -> dict:
    """The ``architecture`` entry of a configuration: Deconver with the paper's structure for
    ``dataset`` (NDC kernel 3, R = 4, G = channels, non-affine norms, one update)."""
    return {"network_class_name": DECONVER_CLASS_NAME, "arch_kwargs": dataset.network_arguments(),
            "_kw_requires_import": []}


class PresetPlansError(DeconverError):
    """The preset plans cannot be written for this data set (message says why)."""


def _read_plans(source: Path, rerun: str) -> tuple[dict, dict]:
    """``(plans, plans["configurations"])`` of an nnU-Net plans file; :class:`PresetPlansError`
    naming the file when it cannot be read, is not JSON or not shaped like nnU-Net's plans."""
    problem = path_problem(source, "file")
    if problem and not source.exists() and not source.is_symlink():
        raise PresetPlansError(f"{source} does not exist: the data set has not been planned yet. {rerun}")
    if problem:
        raise PresetPlansError(f"cannot read the plans: {problem}")
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as e:
        raise PresetPlansError(os_error_message(e, "read the plans file", source)) from None
    except UnicodeDecodeError:
        raise PresetPlansError(f"{source} is not a text file (damaged?). {rerun}") from None
    if not text.strip():
        raise PresetPlansError(f"{source} is empty. {rerun}")
    try:
        plans = json.loads(text)
    except json.JSONDecodeError as e:
        raise PresetPlansError(f"{source} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
                               f"{rerun}") from None
    configurations = plans.get("configurations") if isinstance(plans, dict) else None
    if not isinstance(configurations, dict) or not all(isinstance(c, dict) for c in configurations.values()):
        raise PresetPlansError(f"{source} is not an nnU-Net plans file: expected a JSON object whose "
                               f"'configurations' maps names to objects. {rerun}")
    return plans, configurations


def write_preset_plans(
    dataset_name_or_id: str | int,
    preset: str,
    source_plans: str = "nnUNetPlans",
    plans_identifier: str = PRESET_PLANS_IDENTIFIER,
) -> Path:
    """Write ``<plans_identifier>.json`` beside nnU-Net's plans with the paper's configuration for
    data set ``preset`` (isles22, brats23, glas, fives).

    The configuration (``3d_fullres`` for the 3D presets, ``2d`` for the 2D ones) keeps nnU-Net's
    preprocessing (same ``data_identifier``, so nothing is preprocessed again), takes the paper's
    patch size and batch size, and names Deconver with the paper's structure as its network
    (:func:`preset_architecture`). Returns the file written.
    """
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    p = get_dataset(preset)
    try:
        dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    except RuntimeError as e:
        rerun = f"Run nnUNetv2_plan_and_preprocess -d {dataset_name_or_id} first."
        raise PresetPlansError(f"{one_line(e)} {rerun}") from None
    folder = Path(nnUNet_preprocessed.require()) / dataset_name
    source = folder / f"{source_plans}.json"
    rerun = f"Run nnUNetv2_plan_and_preprocess -d {dataset_name_or_id} first."
    plans, configurations = _read_plans(source, rerun)
    data_is_3d = "3d_fullres" in configurations
    config_name = p.configuration
    if (p.spatial_dims == 3) != data_is_3d or config_name not in configurations:
        kind = "3D" if data_is_3d else "2D"
        raise PresetPlansError(
            f"preset {p.key} is {p.spatial_dims}D but data set {dataset_name} is {kind} "
            f"(configurations in {source.name}: {', '.join(configurations)})"
        )
    config = copy.deepcopy(configurations[config_name])
    if "inherits_from" in config:
        raise PresetPlansError(f"configuration {config_name} of {source} inherits from another; expected a full one")
    missing = [key for key in ("data_identifier", "architecture") if key not in config]
    if missing or not isinstance(config["architecture"], dict) or "network_class_name" not in config["architecture"]:
        raise PresetPlansError(f"configuration {config_name} of {source} is malformed: no "
                               f"{', '.join(missing) or 'architecture.network_class_name'}. {rerun}")
    config["architecture"] = preset_architecture(p)
    config["patch_size"] = list(p.patch_size)
    config["batch_size"] = p.batch_size
    plans["plans_name"] = plans_identifier
    plans["configurations"] = {config_name: config}
    target = folder / f"{plans_identifier}.json"
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(plans, indent=4, sort_keys=False))
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PresetPlansError(os_error_message(e, "write", target)) from None
    return target
