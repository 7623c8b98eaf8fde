"""nnU-Net trainers that train Deconver: ``nnUNetv2_train DATASET CONFIG FOLD -tr nnUNetTrainerDeconver``.

The network is built from the plans of the chosen configuration (see
:func:`~nnunet_deconver.nnunet.plans.deconver_arguments`); everything else — data loading,
augmentation, Dice + CE loss with deep supervision, validation, checkpoints, DDP — is nnU-Net's.
The paper's recipe replaces the optimiser: AdamW (lr 1e-4, weight decay 1e-5) with cosine
annealing after a 1% linear warm-up.

Variants follow nnU-Net's naming: ``_k5`` (NDC kernel 5), ``_300epochs`` / ``_500epochs`` (the
paper's lengths), the ablations ``_R1``, ``_R2``, ``_G1``, ``_G8``, and ``_smoke`` (2 epochs of 4
iterations, for tests). nnU-Net finds them through ``nnUNet_extTrainer`` (set at start-up by the
installed ``nnunet_deconver_trainers.pth``).

On CPU the trainers turn on PyTorch's huge-page allocation (``THP_MEM_ALLOC_ENABLE=1``) unless
the variable is already set: Deconver allocates many tensors of hundreds of MB per step, and with
4 KiB pages the kernel's page faults cost about a fifth of a CPU training step (see
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_deconver.network import Deconver
from nnunet_deconver.nnunet.lr_schedule import WarmupCosineLRScheduler
from nnunet_deconver.nnunet.plans import deconver_arguments


def enable_huge_pages() -> None:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the user set it (to anything, "0" included).

    PyTorch reads the variable at its first allocation of 2 MB or more, so this must run before
    that; nnU-Net constructs the trainer before it allocates any tensor of that size.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


class nnUNetTrainerDeconver(nnUNetTrainer):
    """Deconver (NDC kernel 3, R = 4, G = channels) with the paper's optimiser, nnU-Net's 1000 epochs."""

    kernel_size: int = 3
    ratio: int = 4
    groups: int | None = None
    epochs: int = 1000
    iterations_per_epoch: int | None = None  # None: nnU-Net's default (250 / 50 for validation)
    val_iterations_per_epoch: int | None = None
    warmup_fraction: float = 0.01

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if device.type == "cpu":
            enable_huge_pages()
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.weight_decay = 1e-5
        self.num_epochs = self.epochs
        if self.iterations_per_epoch is not None:
            self.num_iterations_per_epoch = self.iterations_per_epoch
        if self.val_iterations_per_epoch is not None:
            self.num_val_iterations_per_epoch = self.val_iterations_per_epoch

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> Deconver:
        """Deconver for this configuration; nnU-Net calls it for training and for inference."""
        return Deconver(**deconver_arguments(
            configuration_manager, num_input_channels, num_output_channels,
            kernel_size=cls.kernel_size, ratio=cls.ratio, groups=cls.groups,
            deep_supervision=enable_deep_supervision,
        ))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        scheduler = WarmupCosineLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_fraction)
        return optimizer, scheduler


class nnUNetTrainerDeconver_k5(nnUNetTrainerDeconver):
    """NDC kernel 5 (the paper's choice for GlaS and FIVES)."""

    kernel_size = 5


class nnUNetTrainerDeconver_300epochs(nnUNetTrainerDeconver):
    """The paper's length for BraTS'23."""

    epochs = 300


class nnUNetTrainerDeconver_500epochs(nnUNetTrainerDeconver):
    """The paper's length for ISLES'22, GlaS and FIVES."""

    epochs = 500


class nnUNetTrainerDeconver_k5_300epochs(nnUNetTrainerDeconver_k5):
    epochs = 300


class nnUNetTrainerDeconver_k5_500epochs(nnUNetTrainerDeconver_k5):
    epochs = 500


class nnUNetTrainerDeconver_R1(nnUNetTrainerDeconver):
    """Ablation: source channel ratio R = 1."""

    ratio = 1


class nnUNetTrainerDeconver_R2(nnUNetTrainerDeconver):
    """Ablation: source channel ratio R = 2."""

    ratio = 2


class nnUNetTrainerDeconver_G1(nnUNetTrainerDeconver):
    """Ablation: one group per NDC layer."""

    groups = 1


class nnUNetTrainerDeconver_G8(nnUNetTrainerDeconver):
    """Ablation: eight groups per NDC layer."""

    groups = 8


class nnUNetTrainerDeconver_smoke(nnUNetTrainerDeconver):
    """2 epochs of 4 training and 1 validation iterations, no test-time mirroring: checks the
    pipeline end to end in little time, learns nothing."""

    epochs = 2
    iterations_per_epoch = 4
    val_iterations_per_epoch = 1

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, do_dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, do_dummy_2d, initial_patch_size, None


class nnUNetTrainerDeconver_demo(nnUNetTrainerDeconver):
    """The CPU demo's short run (``nnunet-deconver demo``): 6 epochs of 20 iterations, lr 1e-3."""

    epochs = 6
    iterations_per_epoch = 20
    val_iterations_per_epoch = 4

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3


__all__ = [
    name for name, obj in list(globals().items())
    if isinstance(obj, type) and issubclass(obj, nnUNetTrainerDeconver)
]
