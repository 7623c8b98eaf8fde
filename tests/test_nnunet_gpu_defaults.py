"""Installing, benchmarking and sharing with nnU-Net's real commands.

- the installed metadata requires the nnU-Net version whose trainer lookup we rely on;
- ``nnUNetTrainerDeconverBenchmark_5epochs`` and ``nnUNetTrainerUNetBenchmark_5epochs`` write
  nnU-Net's ``benchmark_result.json`` entry on CPU (run through ``nnUNetv2_train`` as short
  subclasses from a trainer folder of the test's own);
- a smoke-trained model goes through ``nnUNetv2_export_model_to_zip``,
  ``nnUNetv2_install_pretrained_model_from_zip`` into fresh folders and ``nnUNetv2_predict``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from packaging.requirements import Requirement
from packaging.version import Version

from _pipeline import SMOKE, Pipeline, env_under
from conftest import run_command

BENCH = "nnUNetTrainerDeconverBenchmark_5epochs"


def test_installed_metadata_requires_nnunet_with_external_trainer_lookup():
    """nnUNet_extTrainer, which finds our trainers, first appeared in nnunetv2 2.8.0."""
    requirements = [Requirement(r) for r in importlib.metadata.requires("nnunet-deconver")]
    (nnunet,) = [r for r in requirements if r.name == "nnunetv2"]
    assert not nnunet.specifier.contains("2.7.0") and not nnunet.specifier.contains("2.7.99")
    assert nnunet.specifier.contains("2.8.0")
    installed = Version(importlib.metadata.version("nnunetv2"))
    assert nnunet.specifier.contains(installed)
    from nnunetv2 import paths

    assert hasattr(paths, "nnUNet_extTrainer")


SHORT_BENCHMARKS = f'''
import torch

from nnunet_deconver.nnunet.benchmark import {BENCH}, nnUNetTrainerUNetBenchmark_5epochs


class {BENCH}_ci({BENCH}):
    """The benchmark with 2 training and 1 validation iterations per epoch."""

    iterations_per_epoch = 2
    val_iterations_per_epoch = 1


class nnUNetTrainerUNetBenchmark_5epochs_ci(nnUNetTrainerUNetBenchmark_5epochs):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 1
'''


@pytest.mark.parametrize("trainer,network", [(f"{BENCH}_ci", "Deconver"),
                                             ("nnUNetTrainerUNetBenchmark_5epochs_ci", "PlainConvUNet")])
def test_benchmark_trainers_write_nnunets_entry_on_cpu(aniso3d, tmp_path, trainer, network):
    """The Deconver benchmark and its nnU-Net U-Net counterpart, through nnUNetv2_train, shortened
    by subclasses in a trainer folder of the test's own (listed in nnUNet_extTrainer)."""
    trained = aniso3d
    folder = tmp_path / "test_trainers"
    folder.mkdir()
    (folder / "short_benchmarks.py").write_text(SHORT_BENCHMARKS)
    env = {**trained.env, "nnUNet_extTrainer": str(folder), "nnUNet_n_proc_DA": "0"}
    run_command(["nnUNetv2_train", str(trained.id), "3d_fullres", "0", "-tr", trainer, "-device", "cpu"], env)
    out = Path(env["nnUNet_results"]) / trained.name / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
    results = json.loads((out / "benchmark_result.json").read_text())
    (key, entry), = results.items()
    assert key.endswith("__cpu__num_gpus_0")
    # nnU-Net's fields, then ours
    assert {"torch_version", "cudnn_version", "gpu_name", "fastest_epoch", "num_gpus", "hostname"} <= entry.keys()
    assert entry["device"] == "cpu" and entry["num_gpus"] == 0
    assert entry["gpu_name"] is None and entry["peak_gpu_memory_gib"] is None
    times = entry["epoch_times"]
    assert len(times) == 5 and all(t > 0 for t in times)
    assert entry["fastest_epoch"] == min(times)
    assert not list(out.glob("checkpoint_*.pth")), "a benchmark writes no checkpoints"
    debug = json.loads((out / "debug.json").read_text())
    assert debug["network"] == network  # the network the trainer is meant to benchmark


def _predict(p: Pipeline, env: dict, output: Path) -> None:
    run_command(["nnUNetv2_predict", "-i", str(p.raw / "imagesTs"), "-o", str(output), "-d", str(p.id), "-c", p.config,
                 "-tr", SMOKE, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--save_probabilities"], env)


def test_export_install_predict_reproduces_predictions(aniso3d, tmp_path):
    trained = aniso3d
    archive = tmp_path / "model.zip"
    run_command(["nnUNetv2_export_model_to_zip", "-d", str(trained.id), "-o", str(archive), "-c", "3d_fullres",
                 "-tr", SMOKE, "-f", "0"], trained.env)
    fresh = env_under(tmp_path / "fresh")  # empty nnUNet_raw / _preprocessed / _results
    run_command(["nnUNetv2_install_pretrained_model_from_zip", str(archive)], fresh)
    model = Path(fresh["nnUNet_results"]) / trained.name / f"{SMOKE}__nnUNetPlans__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file() and (model / "plans.json").is_file()
    _predict(trained, trained.env, tmp_path / "original")
    _predict(trained, fresh, tmp_path / "installed")
    originals = sorted((tmp_path / "original").glob("*.npz"))
    assert len(originals) == 1
    for original in originals:
        again = tmp_path / "installed" / original.name
        assert again.is_file(), f"no prediction for {original.name} from the installed model"
        expected = np.load(original)["probabilities"]
        assert expected.std() > 0  # probabilities that vary: equal ones would tell nothing
        np.testing.assert_array_equal(np.load(again)["probabilities"], expected)
        segmentation = original.name.replace(".npz", ".nii.gz")
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "installed" / segmentation))),
            sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "original" / segmentation))))
    assert os.listdir(fresh["nnUNet_preprocessed"]) == []  # prediction needs nothing but the archive
