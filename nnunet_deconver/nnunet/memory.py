"""Peak memory of one training step, counted without allocating: what a GPU must hold.

A step is: forward under 16-bit autocast (or float32), a loss over every output, backward, and an
optimiser step with its state already created (a step in the middle of training). It runs on fake
tensors (``torch._subclasses.fake_tensor.FakeTensorMode``: shapes, dtypes and strides, no data), and
PyTorch's ``torch.distributed._tools.mem_tracker.MemTracker`` counts every tensor's bytes as
they come and go: parameters, gradients, optimiser state, activations kept for backward and
temporaries. The largest total is the step's peak.

On a CPU, 16-bit autocast is bfloat16 (the bytes of CUDA's float16). What is not counted: the
CUDA context, the caching allocator's slack and work space a kernel allocates internally.

:func:`plans_networks` builds, for an nnU-Net configuration, nnU-Net's own network and a trainer's
Deconver in each activation-memory mode, as nnU-Net's training would build them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from nnunet_deconver.errors import DeconverError
from nnunet_deconver.network.blocks import ACTIVATION_MEMORY

GIB = 2**30


@dataclass(frozen=True)
class StepMemory:
    """Peak bytes of one training step at ``batch``, and its split into what the batch size scales
    (activations, temporaries, inputs) and what it does not (parameters, gradients, optimiser state)."""

    batch: int
    peak: int
    fixed: int
    start: int = 0  # held before the step: parameters, optimiser state, the input

    @property
    def per_sample(self) -> float:
        return (self.peak - self.fixed) / self.batch

    def largest_batch(self, budget: float) -> int:
        """The largest batch whose peak, scaled linearly from this one, fits ``budget`` bytes (0: none)."""
        return max(0, int((budget - self.fixed) // self.per_sample)) if self.per_sample > 0 else 0


def _loss(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    outputs = [output] if isinstance(output, torch.Tensor) else list(output)
    return sum(o.float().square().mean() for o in outputs)


def step_memory(build: Callable[[], nn.Module], input_shape: Sequence[int], optimizer: str = "adamw",
                autocast: bool = True) -> StepMemory:
    """Peak of one training step of ``build()`` on an input of ``input_shape`` (B, C, *S).

    Args:
        build: makes the network (called under fake tensors: nothing is allocated).
        input_shape: (batch, channels, *patch).
        optimizer: ``"adamw"`` (two state tensors per parameter) or ``"sgd"`` (nnU-Net's SGD with
            Nesterov momentum: one).
        autocast: forward under 16-bit autocast (bfloat16 on the CPU) or float32.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        network = build()
        params = [p for p in network.parameters() if p.requires_grad]
        if optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-5)
        elif optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
        else:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        for p in params:  # one step creates the optimiser state: count a step in mid-training
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
        x = torch.randn(*input_shape)
        tracker = MemTracker()
        tracker.track_external(network, opt, x)
        with tracker:
            start = next(iter(tracker.get_tracker_snapshot("current").values()))["Total"]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = _loss(network(x))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    fixed = sum(v for k, v in peak.items() if getattr(k, "name", None) in ("PARAM", "BUFFER", "GRAD", "OPT"))
    return StepMemory(batch=input_shape[0], peak=peak["Total"], fixed=fixed, start=start)


class MemoryEstimateError(DeconverError):
    """The plans cannot be read or the trainer does not build Deconver (message says why)."""


@dataclass(frozen=True)
class PlannedNetwork:
    """One network of a memory comparison: how to build it, and which optimiser trains it."""

    name: str
    activation_memory: str | None  # None: not a Deconver
    build: Callable[[], nn.Module]
    optimizer: str


@dataclass(frozen=True)
class PlannedConfiguration:
    """An nnU-Net configuration as the training would read it."""

    dataset: str
    configuration: str
    plans: str
    patch_size: tuple[int, ...]
    batch_size: int
    input_channels: int
    networks: tuple[PlannedNetwork, ...]


def _trainer_class(name: str) -> type:
    from nnunet_deconver.nnunet import benchmark, trainers

    for module in (trainers, benchmark):
        if isinstance(getattr(module, name, None), type):
            return getattr(module, name)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    found = recursive_find_trainer_class_by_name(name)
    if found is None:
        raise MemoryEstimateError(f"trainer {name} not found (neither a Deconver trainer nor one of nnU-Net's)")
    return found


def plans_networks(dataset: str, configuration: str, plans_identifier: str = "nnUNetPlans",
                   trainer: str = "nnUNetTrainerDeconver") -> PlannedConfiguration:
    """Read ``<plans_identifier>.json`` of a preprocessed data set as ``nnUNetv2_train`` would, and
    give nnU-Net's own network of the configuration (none when the plans name Deconver) and
    ``trainer``'s Deconver in each activation-memory mode, as built for training (deep supervision on).

    Raises:
        MemoryEstimateError: no such data set, plans file or configuration; a trainer that does
            not build Deconver from these plans.
    """
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_deconver.nnunet.plans import names_deconver
    from nnunet_deconver.nnunet.trainers import nnUNetTrainerDeconver

    try:
        name = maybe_convert_to_dataset_name(int(dataset) if dataset.isdigit() else dataset)
        folder = Path(nnUNet_preprocessed.require()) / name
    except RuntimeError as e:
        raise MemoryEstimateError(" ".join(str(e).split())) from None
    plans_file, dataset_json_file = folder / f"{plans_identifier}.json", folder / "dataset.json"
    for path in (plans_file, dataset_json_file):
        if not path.is_file():
            raise MemoryEstimateError(f"{path} does not exist: plan the data set first (nnUNetv2_plan_and_preprocess "
                                      f"-d {dataset}, or nnunet-deconver plan for the paper's presets)")
    try:
        plans_manager = PlansManager(json.loads(plans_file.read_text()))
        dataset_json = json.loads(dataset_json_file.read_text())
    except (OSError, ValueError) as e:
        raise MemoryEstimateError(f"cannot read {plans_file.name} or dataset.json in {folder}: {e}") from None
    available = list(plans_manager.available_configurations)
    if configuration not in available:
        raise MemoryEstimateError(f"configuration {configuration} is not in {plans_file} "
                                  f"(available: {', '.join(available)})")
    config = plans_manager.get_configuration(configuration)
    inputs = determine_num_input_channels(plans_manager, config, dataset_json)
    outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    networks = []
    own = None if names_deconver(config) else config  # plans that name Deconver name no nnU-Net network
    if own is not None:
        arch = own.network_arch_class_name.rsplit(".", 1)[-1]
        networks.append(PlannedNetwork(f"{arch} (nnU-Net)", None, partial(
            get_network_from_plans, own.network_arch_class_name, own.network_arch_init_kwargs,
            own.network_arch_init_kwargs_req_import, inputs, outputs, allow_init=True, deep_supervision=True), "sgd"))
    trainer_class = _trainer_class(trainer)
    deconver_trainer = issubclass(trainer_class, nnUNetTrainerDeconver)
    if not deconver_trainer and not names_deconver(config):
        raise MemoryEstimateError(f"{trainer} builds nnU-Net's {config.network_arch_class_name} from these plans, not "
                                  "Deconver: name a Deconver trainer (-tr nnUNetTrainerDeconver) or plans that name "
                                  "Deconver (-p nnUNetDeconverPlans)")
    for mode in ACTIVATION_MEMORY:
        if deconver_trainer:
            variant = type(trainer_class.__name__, (trainer_class,), {"activation_memory": mode})
            build = partial(variant.build_network_architecture, plans_manager, config, inputs, outputs, True)
        else:  # an nnU-Net trainer on plans that name Deconver: the plans' arguments, this mode
            kwargs = {**config.network_arch_init_kwargs, "activation_memory": mode}
            build = partial(get_network_from_plans, config.network_arch_class_name, kwargs,
                            config.network_arch_init_kwargs_req_import, inputs, outputs, allow_init=True,
                            deep_supervision=True)
        networks.append(PlannedNetwork(f"Deconver {mode} ({trainer})", mode, build,
                                       "adamw" if deconver_trainer else "sgd"))
    return PlannedConfiguration(name, configuration, plans_identifier, tuple(int(p) for p in config.patch_size),
                                int(config.batch_size), inputs, tuple(networks))
