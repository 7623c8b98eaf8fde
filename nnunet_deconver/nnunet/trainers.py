"""nnU-Net trainers that train Deconver: ``nnUNetv2_train DATASET CONFIG FOLD -tr nnUNetTrainerDeconver``.

The network is built from the plans of the chosen configuration, nnU-Net's own or the paper's
preset plans that name Deconver (see :func:`~nnunet_deconver.nnunet.plans.deconver_arguments`),
with the NDC settings of the trainer variant; everything else — data loading,
augmentation, Dice + CE loss with deep supervision, validation, checkpoints, DDP — is nnU-Net's.
The paper's recipe replaces the optimiser: AdamW (lr 1e-4, weight decay 1e-5) with cosine
annealing after a 1% linear warm-up.

Variants follow nnU-Net's naming: ``_k5`` (NDC kernel 5), ``_300epochs`` / ``_500epochs`` (the
paper's lengths), the ablations ``_R1``, ``_R2``, ``_G1``, ``_G8``, ``_affineNorm`` (instance norms
with learnable scale and shift, as nnU-Net's own networks; the paper's have none),
``_fullActivations`` (keeps every activation for backward instead of recomputing the blocks' wide
ones in slabs: more memory, less time), and ``_smoke``
(2 epochs of 4 iterations, for tests). nnU-Net finds them through ``nnUNet_extTrainer`` (set at start-up by the
installed ``nnunet_deconver_trainers.pth``).

On CPU the trainers turn on PyTorch's huge-page allocation (``THP_MEM_ALLOC_ENABLE=1``) unless
the variable is already set: Deconver allocates many tensors of hundreds of MB per step, and with
4 KiB pages the kernel's page faults cost about a fifth of a CPU training step (see
benchmarks/RESULTS.md).

A trainer checks its attributes and ``NNUNET_DECONVER_NDC_BACKEND`` when constructed, before any
work, and ends the process with one line if one is wrong (:mod:`~nnunet_deconver.nnunet.trainer_settings`).
"""

from __future__ import annotations

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_deconver.network import Deconver
from nnunet_deconver.nnunet.lr_schedule import WarmupCosineLRScheduler
from nnunet_deconver.nnunet.plans import deconver_arguments
from nnunet_deconver.nnunet.trainer_settings import configuration_of, require_valid_settings


def check_norm_variant(network_weights: dict, trainer: type, source: str) -> None:
    """Raise ``RuntimeError`` when ``network_weights`` were trained with the other norm variant."""
    keys = [k for k in network_weights if k.endswith(".block.mixer.proj_in.weight")]
    if not keys:
        return
    affine = keys[0].replace(".mixer.proj_in.weight", ".norm1.weight") in network_weights
    if affine == trainer.norm_affine:
        return
    def variant(a: bool) -> str:
        return "affine (norm_affine=True)" if a else "non-affine (norm_affine=False)"
    raise RuntimeError(
        f"{source}: this checkpoint's Deconver has {variant(affine)} instance norms, but {trainer.__name__} builds "
        f"{variant(not affine)} ones, so training cannot continue from it. Continue with a trainer that builds "
        f"{'affine' if affine else 'non-affine'} norms (e.g. "
        f"{'nnUNetTrainerDeconver_affineNorm' if affine else 'nnUNetTrainerDeconver'}; rename the output folder to "
        "its name), or predict with nnUNetv2_predict, which builds the checkpoint's own variant."
    )


def enable_huge_pages() -> None:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the user set it (to anything, "0" included).

    PyTorch reads the variable at its first allocation of 2 MB or more, so this must run before
    that; nnU-Net constructs the trainer before it allocates any tensor of that size.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


class nnUNetTrainerDeconver(nnUNetTrainer):
    """Deconver (NDC kernel 3, R = 4, G = channels, non-affine norms) with the paper's optimiser,
    nnU-Net's 1000 epochs."""

    kernel_size: int = 3
    ratio: int = 4
    groups: int | None = None
    norm_affine: bool = False
    ndc_eps: float = 1e-8
    ndc_iterations: int = 1
    activation_memory: str = "lean"  # "full": keep every activation for backward (faster, more memory)
    epochs: int = 1000
    iterations_per_epoch: int | None = None  # None: nnU-Net's default (250 / 50 for validation)
    val_iterations_per_epoch: int | None = None
    warmup_fraction: float = 0.01

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        require_valid_settings(type(self), configuration_of(plans, configuration), device)  # one line, before any work
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
        require_valid_settings(cls, configuration_manager)
        return Deconver(**deconver_arguments(
            configuration_manager, num_input_channels, num_output_channels,
            kernel_size=cls.kernel_size, ratio=cls.ratio, groups=cls.groups, norm_affine=cls.norm_affine,
            eps=cls.ndc_eps, iterations=cls.ndc_iterations, activation_memory=cls.activation_memory,
            deep_supervision=enable_deep_supervision,
        ))

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's, after checking that the checkpoint's norms are the ones this trainer builds.

        Prediction loads a checkpoint of either norm variant (the network switches to it); a
        training or validation run cannot, since its optimiser was made for this trainer's network.
        """
        if isinstance(filename_or_checkpoint, str):
            checkpoint = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False, mmap=True)
            check_norm_variant(checkpoint["network_weights"], type(self), filename_or_checkpoint)
        else:
            check_norm_variant(filename_or_checkpoint["network_weights"], type(self), "the checkpoint")
        super().load_checkpoint(filename_or_checkpoint)

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


class nnUNetTrainerDeconver_affineNorm(nnUNetTrainerDeconver):
    """Instance norms with learnable scale and shift (nnU-Net's own networks have them)."""

    norm_affine = True


class nnUNetTrainerDeconver_fullActivations(nnUNetTrainerDeconver):
    """Keeps every activation for backward (``activation_memory="full"``): more memory, less time."""

    activation_memory = "full"


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
