"""Pieces of the nnU-Net integration that need no nnU-Net run: schedule, plans mapping, trainer lookup."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnunet_deconver.nnunet import ext_trainer_hook
from nnunet_deconver.nnunet.lr_schedule import WarmupCosineLRScheduler
from nnunet_deconver.nnunet.plans import deconver_arguments


def test_warmup_cosine_schedule_values():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLRScheduler(opt, 1e-4, max_steps=500)
    assert sched.warmup_steps == 5  # 1% of 500
    rates = []
    for epoch in range(500):
        sched.step(epoch)
        rates.append(opt.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1e-5)  # a tenth of the rate at the start of the warm-up
    assert rates[1] == pytest.approx(1e-5 + 0.9e-4 / 5)
    assert rates[5] == pytest.approx(1e-4)  # end of the warm-up: the full rate
    assert rates[5 + 495 // 2] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * (495 // 2) / 495)))
    assert rates[-1] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 494 / 495)))
    assert all(a <= b for a, b in zip(rates[:5], rates[1:6])) and all(a >= b for a, b in zip(rates[5:], rates[6:]))


class _Config:
    """The three things deconver_arguments reads of nnU-Net's ConfigurationManager."""

    network_arch_class_name = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    patch_size = [20, 64, 64]
    network_arch_init_kwargs = {
        "n_stages": 6,
        "features_per_stage": [32, 64, 128, 256, 320, 320],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]],
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
    }


def test_plans_to_network_arguments():
    args = deconver_arguments(_Config(), 4, 3, kernel_size=5, deep_supervision=False)
    assert args["features_per_stage"] == [32, 64, 128, 256, 512, 512]  # min(C0 2^l, 512), not nnU-Net's 320
    assert args["strides"][1] == [1, 2, 2] and len(args["strides"]) == 6
    assert args["kernel_sizes"][0] == [1, 5, 5] and args["kernel_sizes"][1] == [5, 5, 5]
    assert args["stem_kernel_size"] == [1, 3, 3]
    assert (args["input_channels"], args["num_classes"], args["spatial_dims"]) == (4, 3, 3)


def test_preset_plans_name_deconver_and_nnunet_builds_it():
    """The preset plans' architecture entry survives JSON and nnU-Net's own get_network_from_plans
    builds the paper's network from it (exact parameter counts of the paper's structure)."""
    import json

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from nnunet_deconver.network import Deconver
    from nnunet_deconver.network.stats import count_parameters
    from nnunet_deconver.nnunet.plans import preset_architecture
    from nnunet_deconver.paper import get_dataset

    for key, outputs, params in (("isles22", 1, 10_476_545), ("brats23", 3, 10_553_859), ("glas", 1, 20_635_041)):
        arch = json.loads(json.dumps(preset_architecture(get_dataset(key))))
        net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     get_dataset(key).input_channels, outputs, deep_supervision=False)
        assert type(net) is Deconver and count_parameters(net) == params, key


class _DeconverConfig:
    """A ConfigurationManager of plans that name Deconver (anisotropic first stage)."""

    network_arch_class_name = "nnunet_deconver.network.unet.Deconver"
    patch_size = [16, 64, 64]
    network_arch_init_kwargs = {
        "spatial_dims": 3, "features_per_stage": [24, 48, 96], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]], "stem_kernel_size": [1, 3, 3], "ratio": 4,
        "groups": None, "mlp_ratio": 4, "norm_affine": False, "eps": 1e-8, "iterations": 1,
    }


def test_deconver_plans_to_network_arguments():
    """Plans that name Deconver keep their widths and stem; the trainer's NDC settings replace theirs."""
    args = deconver_arguments(_DeconverConfig(), 2, 2, kernel_size=5, ratio=2, norm_affine=True,
                              deep_supervision=False)
    assert args["features_per_stage"] == [24, 48, 96]  # as planned, not recomputed from C0
    assert args["kernel_sizes"] == [[1, 5, 5], [5, 5, 5], [5, 5, 5]] and args["stem_kernel_size"] == [1, 3, 3]
    assert (args["ratio"], args["norm_affine"], args["spatial_dims"]) == (2, True, 3)


def test_ext_trainer_hook_appends_once_and_keeps_user_folders(tmp_path):
    folder = ext_trainer_hook.trainer_folder()
    assert folder is not None and os.path.isfile(os.path.join(folder, "deconver_trainers.py"))
    env = {"nnUNet_extTrainer": str(tmp_path)}
    ext_trainer_hook.register(env)
    ext_trainer_hook.register(env)
    assert env["nnUNet_extTrainer"].split(os.pathsep) == [str(tmp_path), folder]
    empty: dict = {}
    ext_trainer_hook.register(empty)
    assert empty["nnUNet_extTrainer"] == folder


def test_installed_environment_finds_trainers():
    """A new interpreter of this environment has the trainer folder on nnU-Net's search path and
    nnU-Net's own lookup returns the trainer class (what -tr does)."""
    code = (
        "import os\n"
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
        "cls = find('nnUNetTrainerDeconver_k5')\n"
        "assert cls.__module__ == 'nnunet_deconver.nnunet.trainers', cls.__module__\n"
        "assert cls.kernel_size == 5\n"
        "print(os.environ['nnUNet_extTrainer'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(os.path.join("nnunet", "trainer_lookup"))


_HUGE_PAGE_PROBE = (
    "import os, torch\n"
    "from nnunet_deconver.nnunet.trainers import enable_huge_pages\n"
    "enable_huge_pages()\n"
    "t = torch.ones(64, 1024, 1024)\n"  # 256 MB, touched
    "kib = sum(int(l.split()[1]) for l in open('/proc/self/smaps') if l.startswith('AnonHugePages:'))\n"
    "print(os.environ['THP_MEM_ALLOC_ENABLE'], kib)\n"
)


def _huge_page_probe(extra_env: dict) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | extra_env
    proc = subprocess.run([sys.executable, "-c", _HUGE_PAGE_PROBE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    value, kib = proc.stdout.split()
    return value, int(kib)


def test_enable_huge_pages_backs_large_tensors_and_respects_the_user():
    """Before torch's first large allocation, enable_huge_pages() makes big tensors use
    transparent huge pages (when the kernel offers them); a user's own setting wins."""
    thp_setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp_setting.read_text() if thp_setting.exists() else "[never]"
    kernel_offers = "[never]" not in mode
    value, kib = _huge_page_probe({})
    assert value == "1"
    if kernel_offers:
        assert kib >= 128 * 1024, f"only {kib} KiB of the 256 MB tensor in huge pages"
    value, kib_off = _huge_page_probe({"THP_MEM_ALLOC_ENABLE": "0"})
    assert value == "0"
    if "[madvise]" in mode:  # with "[always]" the kernel may use huge pages anyway
        assert kib_off < 64 * 1024, f"{kib_off} KiB in huge pages although the user turned them off"


def test_trainers_hand_norm_and_ndc_settings_to_the_network():
    from nnunet_deconver.ndc import NDC
    from nnunet_deconver.nnunet import trainers

    class _Small(_Config):
        patch_size = [16, 16, 16]
        network_arch_init_kwargs = {"n_stages": 2, "features_per_stage": [4, 8], "strides": [[1, 1, 1], [2, 2, 2]],
                                    "kernel_sizes": [[3, 3, 3], [3, 3, 3]]}

    class _Variant(trainers.nnUNetTrainerDeconver):
        ndc_eps = 1e-16
        ndc_iterations = 2

    def build(cls):
        return cls.build_network_architecture(None, _Small(), 1, 2, enable_deep_supervision=False)

    def norms(net):
        return [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm3d)]

    default, affine, variant = build(trainers.nnUNetTrainerDeconver), build(trainers.nnUNetTrainerDeconver_affineNorm), build(_Variant)
    assert norms(default) and not any(m.affine for m in norms(default))
    assert norms(affine) and all(m.affine for m in norms(affine))
    layers = [m for m in variant.modules() if isinstance(m, NDC)]
    assert layers and all(m.eps == 1e-16 and m.iterations == 2 for m in layers)
    assert all(m.eps == 1e-8 and m.iterations == 1 for m in default.modules() if isinstance(m, NDC))
