"""nnU-Net's real commands with Deconver trainers on tiny synthetic data sets written as real files.

Each data set is planned, preprocessed, trained with the short variant (nnUNetTrainerDeconver_smoke)
and predicted once per module; the tests then check predictions, resuming, the network nnU-Net's
predictor builds, and the paper presets (with our trainers and with nnU-Net's own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from _pipeline import SMOKE, Pipeline, env_under as _env
from conftest import run_command
from nnunet_deconver.network.stats import count_parameters
from nnunet_deconver.nnunet.synthetic import make_2d_rgb_dataset, make_3d_dataset



def _check_prediction(p: Pipeline, ending: str, allowed: set[int]):
    for image in sorted((p.raw / "imagesTs").glob(f"*_0000{ending}")):
        case = image.name[: -len(f"_0000{ending}")]
        pred_file = p.pred / f"{case}{ending}"
        assert pred_file.is_file(), f"no prediction for {case}"
        src, pred = sitk.ReadImage(str(image)), sitk.ReadImage(str(pred_file))
        assert pred.GetSize()[:2] == src.GetSize()[:2]
        values = set(np.unique(sitk.GetArrayFromImage(pred)).tolist())
        assert values <= allowed, f"{pred_file.name}: label values {values} not in {allowed}"
        return src, pred
    pytest.fail("no test images")


def test_anisotropic_3d_pipeline(aniso3d):
    arch = aniso3d.plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert [1, 2, 2] in arch["strides"] and arch["kernel_sizes"][0] == [1, 3, 3]
    src, pred = _check_prediction(aniso3d, ".nii.gz", {0, 1})
    assert pred.GetSize() == src.GetSize()
    np.testing.assert_allclose(pred.GetSpacing(), src.GetSpacing())
    np.testing.assert_allclose(pred.GetOrigin(), src.GetOrigin())
    # the Deconver that was trained follows the plans: NDC kernels (1, 3, 3) where nnU-Net has (1, 3, 3)
    ckpt = torch.load(aniso3d.model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == SMOKE
    ndc_weight = ckpt["network_weights"]["encoder.stages.0.block.mixer.ndc.weight"]
    assert tuple(ndc_weight.shape[2:]) == tuple(arch["kernel_sizes"][0])
    assert (aniso3d.model / "fold_0" / "validation" / "summary.json").is_file()


def test_2d_rgb_pipeline(rgb2d):
    from PIL import Image

    assert "2d" in rgb2d.plans["configurations"] and "3d_fullres" not in rgb2d.plans["configurations"]
    _check_prediction(rgb2d, ".png", {0, 1})
    case = sorted((rgb2d.raw / "labelsTs").glob("*.png"))[0]
    assert Image.open(rgb2d.pred / case.name).size == Image.open(case).size


def test_region_based_pipeline(regions3d):
    ckpt = torch.load(regions3d.model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["network_weights"]["decoder.head.weight"].shape[0] == 3  # one sigmoid output per region
    src, pred = _check_prediction(regions3d, ".nii.gz", {0, 1, 2, 3})
    assert pred.GetSize() == src.GetSize()


def test_unknown_trainer_gives_nnunets_error(aniso3d):
    proc = subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_train"), "901", "3d_fullres", "0",
                           "-tr", "nnUNetTrainerDoesNotExist", "-device", "cpu"],
                          env=aniso3d.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "Could not find requested nnunet trainer nnUNetTrainerDoesNotExist" in proc.stdout + proc.stderr


def _trainer(p: Pipeline, name: str = SMOKE, plans: str = "nnUNetPlans"):
    from nnunetv2.run.run_training import get_trainer_from_args

    with pytest.MonkeyPatch.context() as mp:
        for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            mp.setenv(key, p.env[key])
        trainer = get_trainer_from_args(str(p.id), p.config, 0, name, plans, device=torch.device("cpu"))
        trainer.initialize()
    return trainer


def test_resume_restores_epoch_weights_and_optimizer(aniso3d, tmp_path):
    first = _trainer(aniso3d)
    first.current_epoch = 7
    with torch.no_grad():
        for p in first.network.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    # one optimiser step, so that AdamW has state to restore
    loss = sum(o.float().mean() for o in first.network(torch.randn(1, 2, *first.configuration_manager.patch_size)))
    loss.backward()
    first.optimizer.step()
    ckpt = tmp_path / "checkpoint_latest.pth"
    first.save_checkpoint(str(ckpt))

    second = _trainer(aniso3d)
    second.load_checkpoint(str(ckpt))
    assert second.current_epoch == 7 + 1  # nnU-Net stores the epoch to continue with
    for a, b in zip(first.network.state_dict().values(), second.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    exp_a = first.optimizer.state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(second.optimizer.state_dict()["state"][0]["exp_avg"], exp_a)
    # the schedule is a function of the epoch: the resumed run sets the same rate
    second.lr_scheduler.step(second.current_epoch)
    first.lr_scheduler.step(8)
    assert second.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]


PREDICT_SCRIPT = """
import sys, torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
predictor = nnUNetPredictor(device=torch.device('cpu'), perform_everything_on_device=False)
predictor.initialize_from_trained_model_folder(sys.argv[1], use_folds=(0,), checkpoint_name='checkpoint_final.pth')
x = torch.load(sys.argv[2])
predictor.network.eval()
with torch.no_grad():
    torch.save(predictor.network(x), sys.argv[3])
"""


def test_predictor_builds_the_trained_network(aniso3d, tmp_path):
    """nnU-Net's predictor, in a new process, computes what the training-time network computes."""
    torch.manual_seed(0)
    trainer = _trainer(aniso3d)
    x = torch.randn(1, 2, *trainer.configuration_manager.patch_size)
    torch.save(x, tmp_path / "x.pt")
    proc = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, str(aniso3d.model), str(tmp_path / "x.pt"),
                           str(tmp_path / "y.pt")], env=aniso3d.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(aniso3d.model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    trainer.network.load_state_dict(ckpt["network_weights"])  # built with deep supervision, as in training
    trainer.network.eval()
    with torch.no_grad():
        expected = trainer.network(x)[0]
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=1e-5, atol=1e-5)


def _affine_checkpoint(p: Pipeline, folder: Path) -> tuple[Path, dict]:
    """A copy of the trained model whose checkpoint has affine norms, as the earlier default trained."""
    import shutil

    shutil.copytree(p.model, folder)
    path = folder / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    weights = ckpt["network_weights"]
    gen = torch.Generator().manual_seed(0)
    for key in [k for k in weights if k.endswith(".block.mixer.proj_in.weight")]:
        width = weights[key].shape[0]
        for norm in ("norm1", "norm2"):
            stem = key.replace("mixer.proj_in.weight", norm)
            weights[f"{stem}.weight"] = torch.rand(width, generator=gen) + 0.5
            weights[f"{stem}.bias"] = torch.rand(width, generator=gen) - 0.5
    torch.save(ckpt, path)
    return path, weights


def test_checkpoint_with_affine_norms_predicts_and_refuses_to_resume(aniso3d, tmp_path):
    """A checkpoint trained with affine norms loads in nnU-Net's predictor through a trainer whose
    default is non-affine, and computes what the affine network computes; resuming it is refused
    with a message that names the variant to use."""
    from nnunet_deconver.network import Deconver
    from nnunet_deconver.nnunet.plans import deconver_arguments

    path, weights = _affine_checkpoint(aniso3d, tmp_path / "model")
    torch.manual_seed(0)
    trainer = _trainer(aniso3d)
    assert not trainer.network.norm_affine
    x = torch.randn(1, 2, *trainer.configuration_manager.patch_size)
    torch.save(x, tmp_path / "x.pt")
    proc = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, str(tmp_path / "model"), str(tmp_path / "x.pt"),
                           str(tmp_path / "y.pt")], env=aniso3d.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "norm_affine=True" in proc.stderr  # the predictor says which variant it built
    arguments = deconver_arguments(trainer.configuration_manager, 2, 2, deep_supervision=False)
    expected_net = Deconver(**{**arguments, "norm_affine": True})
    expected_net.load_state_dict({k: v for k, v in weights.items() if "aux_heads" not in k})
    expected_net.eval()
    with torch.no_grad():
        expected = expected_net(x)
        non_affine = trainer.network.eval()(x)[0]
    result = torch.load(tmp_path / "y.pt")
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(result, non_affine, atol=1e-3)  # the norms' scale and shift were used
    with pytest.raises(RuntimeError, match="affine \\(norm_affine=True\\) instance norms.*nnUNetTrainerDeconver_affineNorm"):
        trainer.load_checkpoint(str(path))


def _preset_network(p: Pipeline, preset: str, trainer: str = "nnUNetTrainerDeconver"):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    run_command(["nnunet-deconver", "plan", str(p.id), "--preset", preset], p.env)
    plans = PlansManager(str(p.pre / "nnUNetDeconverPlans.json"))
    config = plans.get_configuration(p.config)
    dataset_json = json.loads((p.pre / "dataset.json").read_text())
    outputs = plans.get_label_manager(dataset_json).num_segmentation_heads
    channels = len(dataset_json["channel_names"])
    from nnunet_deconver.nnunet import trainers

    cls = getattr(trainers, trainer)
    return config, cls.build_network_architecture(plans, config, channels, outputs, enable_deep_supervision=False)


def test_presets_write_plans_with_paper_parameter_counts(aniso3d, regions3d, rgb2d):
    # binary tasks: nnU-Net's two softmax outputs add C0 + 1 parameters to the paper's one sigmoid output
    config, net = _preset_network(aniso3d, "isles22")
    assert config.patch_size == [64, 64, 64] and config.batch_size == 8
    assert count_parameters(net) == 10_476_545 + 64 + 1
    _, net = _preset_network(aniso3d, "isles22", "nnUNetTrainerDeconver_k5")
    assert count_parameters(net) == 11_028_481 + 64 + 1
    _, net = _preset_network(aniso3d, "isles22", "nnUNetTrainerDeconver_affineNorm")  # + 4 x (960 + 448)
    assert count_parameters(net) == 10_482_177 + 64 + 1
    config, net = _preset_network(regions3d, "brats23")  # four channels, three sigmoid regions: as the paper
    assert config.patch_size == [128, 128, 128] and config.batch_size == 2
    assert count_parameters(net) == 10_553_859
    config, net = _preset_network(rgb2d, "glas")
    assert config.patch_size == [256, 256] and config.batch_size == 8
    assert count_parameters(net) == 20_635_041 + 32 + 1
    _, net = _preset_network(rgb2d, "fives", "nnUNetTrainerDeconver_k5")
    assert count_parameters(net) == 20_794_785 + 32 + 1
    # the preset plans keep nnU-Net's preprocessed data
    plans = json.loads((aniso3d.pre / "nnUNetDeconverPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["data_identifier"] == "nnUNetPlans_3d_fullres"


def test_preset_refusals(aniso3d, rgb2d, tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "nnunet-deconver"), "plan", "901", "--preset", "glas"],
                          env=aniso3d.env, capture_output=True, text=True)
    assert proc.returncode == 1 and "preset glas is 2D but data set Dataset901_Aniso is 3D" in proc.stderr
    proc = subprocess.run([str(Path(sys.executable).parent / "nnunet-deconver"), "plan", "902", "--preset", "isles22"],
                          env=rgb2d.env, capture_output=True, text=True)
    assert proc.returncode == 1 and "is 3D but data set Dataset902_Rgb is 2D" in proc.stderr
    env = _env(tmp_path)
    make_3d_dataset(Path(env["nnUNet_raw"]), 909, "Unplanned", 2)
    proc = subprocess.run([str(Path(sys.executable).parent / "nnunet-deconver"), "plan", "909", "--preset", "isles22"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "has not been planned yet" in proc.stderr


def test_stock_nnunet_trainer_trains_deconver_from_preset_plans(rgb2d, tmp_path):
    """The preset plans name Deconver, so nnU-Net's own trainer variants train it (here
    nnUNetTrainer_1epoch: nnU-Net's loss, optimiser and schedule) and nnUNetv2_predict predicts with it."""
    plans_id = "nnUNetDeconverPlansSmall"
    run_command(["nnunet-deconver", "plan", "902", "--preset", "glas", "--plans-identifier", plans_id], rgb2d.env)
    path = rgb2d.pre / f"{plans_id}.json"
    plans = json.loads(path.read_text())
    config = plans["configurations"]["2d"]
    assert config["architecture"]["network_class_name"] == "nnunet_deconver.network.unet.Deconver"
    # the paper's 256^2 patch and batch 8 take minutes per epoch on a CPU: the same network on smaller patches
    config["patch_size"], config["batch_size"] = [32, 64], 2
    path.write_text(json.dumps(plans, indent=4))
    trainer = "nnUNetTrainer_1epoch"
    run_command(["nnUNetv2_train", "902", "2d", "0", "-tr", trainer, "-p", plans_id, "-device", "cpu"],
                {**rgb2d.env, "nnUNet_n_proc_DA": "0"})
    model = Path(rgb2d.env["nnUNet_results"]) / rgb2d.name / f"{trainer}__{plans_id}__2d"
    checkpoint = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer
    weights = checkpoint["network_weights"]
    assert "encoder.stages.0.block.mixer.ndc.weight" in weights
    # the paper's GlaS structure, with nnU-Net's two softmax outputs (+ C0 + 1) and without the auxiliary heads
    assert sum(v.numel() for k, v in weights.items() if "aux_heads" not in k) == 20_635_041 + 32 + 1
    out = tmp_path / "pred"
    run_command(["nnUNetv2_predict", "-i", str(rgb2d.raw / "imagesTs"), "-o", str(out), "-d", "902", "-c", "2d",
                 "-tr", trainer, "-p", plans_id, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], rgb2d.env)
    tests = sorted(p.name.replace("_0000.png", ".png") for p in (rgb2d.raw / "imagesTs").glob("*_0000.png"))
    assert tests and sorted(p.name for p in out.glob("*.png")) == tests


def test_validation_only_with_npz_and_find_best_configuration(aniso3d):
    validation = aniso3d.model / "fold_0" / "validation"
    run_command(["nnUNetv2_train", "901", "3d_fullres", "0", "-tr", SMOKE, "--val", "--npz", "-device", "cpu"],
                {**aniso3d.env, "nnUNet_n_proc_DA": "0"})
    assert list(validation.glob("*.npz")), "--npz wrote no probabilities"
    run_command(["nnUNetv2_find_best_configuration", "901", "-c", "3d_fullres", "-tr", SMOKE, "-f", "0", "-np", "1"],
                aniso3d.env)
    info = json.loads((Path(aniso3d.env["nnUNet_results"]) / aniso3d.name / "inference_information.json").read_text())
    assert info["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == SMOKE
