"""Mistyped settings end in one line before any work: the NDC backend variable (at the start of
``nnunet-deconver`` and when a Deconver trainer is constructed, ``nnUNetv2_train`` included), the
trainer attributes a variant sets, and the numbers ``nnunet-deconver``'s subcommands take.

Each case runs the real command (or constructs the trainer) and checks the exit code, the one
error line and that there is no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from nnunet_deconver.ndc.backends import BACKEND_ENV, NDCBackendWarning, backend_for, check_request, registry
from nnunet_deconver.nnunet import trainers
from nnunet_deconver.nnunet.trainer_settings import ATTRIBUTE_CHECKS, configuration_of, settings_problem

BIN = Path(sys.executable).parent
CHOICES = "choose one of auto, torch, cpp, triton"


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != BACKEND_ENV}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _run(args: list, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = BIN / args[0]
    return subprocess.run([str(exe), *map(str, args[1:])], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess, code: int, prefix: str, *needles: str) -> str:
    """Exit ``code``; exactly one line of stderr holds ``error:``, it is the last, starts with ``prefix``
    and holds every needle; no traceback. Returns the line."""
    assert proc.returncode == code, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and proc.stderr.rstrip().splitlines()[-1] == errors[0], proc.stderr
    assert errors[0].startswith(prefix), errors[0]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ----------------------------------------------------------------------------- the backend variable

def test_cli_rejects_unknown_backend_before_any_work(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    out.mkdir()
    for args in (["stats", "--preset", "glas"], ["convert", "glas", raw, "--output-root", out, "-j", "1"]):
        proc = _run(["nnunet-deconver", *args], _env(**{BACKEND_ENV: "garbage"}))
        line = _one_error_line(proc, 1, "nnunet-deconver: error: ", f"{BACKEND_ENV}='garbage'", CHOICES)
        assert proc.stderr.strip() == line and proc.stdout == ""
    assert list(out.iterdir()) == []


def test_forced_backend_that_does_not_serve_the_device_warns_once(monkeypatch):
    monkeypatch.setattr(registry, "_warned_unserved", set())
    monkeypatch.setenv(BACKEND_ENV, "triton")  # serves CUDA tensors only, on any machine
    cpu = torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_request(cpu) == "triton"
        chosen = [backend_for(cpu).name for _ in range(3)]
    assert chosen == ["torch"] * 3
    ours = [str(w.message) for w in caught if issubclass(w.category, NDCBackendWarning)]
    assert len(ours) == 1, ours
    assert f"{BACKEND_ENV}=triton" in ours[0] and "cpu tensors" in ours[0] and "the torch backend computes" in ours[0]


def test_stats_with_triton_forced_on_cpu_warns_once_and_computes():
    proc = _run(["nnunet-deconver", "stats", "--preset", "glas", "--json"], _env(**{BACKEND_ENV: "triton"}))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["preset"] == "glas"
    assert proc.stderr.count("NDCBackendWarning") == 1, proc.stderr
    assert "does not compute on cpu tensors" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- trainers

def _plans(widths: list[int]) -> dict:
    """nnU-Net plans of a tiny 3D configuration (what the trainer reads of them before any work)."""
    n = len(widths)
    return {
        "dataset_name": "Dataset990_Settings", "plans_name": "nnUNetPlans",
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [16, 16, 16], "spacing": [1.0, 1.0, 1.0],
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": n, "features_per_stage": widths,
                                "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1), "kernel_sizes": [[3, 3, 3]] * n},
                "_kw_requires_import": [],
            },
        }},
    }


BAD_ATTRIBUTES = [
    ("kernel_size", 4), ("kernel_size", 0), ("kernel_size", -3), ("kernel_size", 3.0), ("kernel_size", "3"),
    ("ratio", 0), ("ratio", -1), ("ratio", 2.5), ("ratio", True),
    ("groups", 0), ("groups", -8), ("groups", "8"),
    ("norm_affine", "yes"), ("norm_affine", 1),
    ("ndc_eps", 0), ("ndc_eps", -1e-8), ("ndc_eps", float("nan")), ("ndc_eps", float("inf")), ("ndc_eps", "1e-8"),
    ("ndc_iterations", 0), ("ndc_iterations", 1.5),
    ("epochs", 0), ("epochs", -5), ("epochs", 10.0),
    ("iterations_per_epoch", 0), ("iterations_per_epoch", "250"),
    ("val_iterations_per_epoch", -1),
    ("warmup_fraction", -0.1), ("warmup_fraction", 1.5), ("warmup_fraction", float("nan")), ("warmup_fraction", "1%"),
]


@pytest.mark.parametrize("name, value", BAD_ATTRIBUTES)
def test_trainer_rejects_bad_attribute_on_construction(name, value, monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    variant = type("nnUNetTrainerDeconver_bad", (trainers.nnUNetTrainerDeconver,), {name: value})
    with pytest.raises(SystemExit) as exc:
        variant(_plans([32, 64, 128]), "3d_fullres", 0, {}, torch.device("cpu"))
    assert exc.value.code == (f"nnUNetTrainerDeconver_bad: error: {name} = {value!r} (a class attribute of the "
                              f"trainer): expected {ATTRIBUTE_CHECKS[name][1]}")


def test_trainer_rejects_groups_that_do_not_divide_the_widths(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    with pytest.raises(SystemExit) as exc:
        trainers.nnUNetTrainerDeconver_G8(_plans([12, 24, 48]), "3d_fullres", 0, {}, torch.device("cpu"))
    assert str(exc.value.code).startswith("nnUNetTrainerDeconver_G8: error: groups = 8 does not divide 12: ")
    assert "(12, 24, 48 in this configuration)" in exc.value.code


def test_every_shipped_variant_passes_the_checks(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    variants = [getattr(trainers, name) for name in trainers.__all__]
    assert len(variants) > 10
    for variant in variants:
        assert settings_problem(variant, configuration_of(_plans([32, 64, 128]), "3d_fullres"), torch.device("cpu")) \
            is None, variant


@pytest.mark.parametrize("trainer, setting, needle", [
    ("nnUNetTrainerDeconver", {BACKEND_ENV: "Garbage "}, f"{BACKEND_ENV}='Garbage ' is not a known NDC backend"),
    ("nnUNetTrainerDeconver_G8", {}, "groups = 8 does not divide 12"),
])
def test_building_the_network_checks_too(trainer, setting, needle, monkeypatch):
    """nnUNetv2_predict builds the network with the class method, constructing no trainer."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    config = configuration_of(_plans([12, 24, 48]), "3d_fullres")
    with pytest.raises(SystemExit) as exc:
        getattr(trainers, trainer).build_network_architecture(None, config, 1, 2, enable_deep_supervision=False)
    assert exc.value.code.startswith(f"{trainer}: error: {needle}"), exc.value.code


def _preprocessed(root: Path, widths: list[int]) -> dict:
    """nnU-Net folders with a planned (not preprocessed) data set 990: enough for nnUNetv2_train to
    construct the trainer."""
    env = _env(nnUNet_compile="f")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        env[name] = str(root / name)
    pre = root / "nnUNet_preprocessed" / "Dataset990_Settings"
    pre.mkdir()
    (pre / "nnUNetPlans.json").write_text(json.dumps(_plans(widths)))
    (pre / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "x": 1},
                                                  "numTraining": 2, "file_ending": ".nii.gz"}))
    return env


@pytest.mark.parametrize("trainer, setting, needles", [
    ("nnUNetTrainerDeconver_smoke", {BACKEND_ENV: "garbage"}, (f"{BACKEND_ENV}='garbage'", CHOICES)),
    ("nnUNetTrainerDeconver_G8", {}, ("groups = 8 does not divide 12",)),
])
def test_nnunet_train_ends_in_one_line_before_any_work(tmp_path, trainer, setting, needles):
    env = _preprocessed(tmp_path, [12, 24, 48])
    proc = _run(["nnUNetv2_train", "990", "3d_fullres", "0", "-tr", trainer, "-device", "cpu"], {**env, **setting})
    _one_error_line(proc, 1, f"{trainer}: error: ", *needles)  # after nnU-Net's imports' own warnings
    assert "Using device" not in proc.stdout  # nnU-Net's trainer had not started
    assert list((tmp_path / "nnUNet_results").iterdir()) == []  # no output folder, no log


# ----------------------------------------------------------------------------- nnunet-deconver stats

@pytest.mark.parametrize("args, needles", [
    (["--ratio", "0"], ("argument --ratio: expected a positive integer, got '0'",)),
    (["--ratio", "-2"], ("argument --ratio: expected a positive integer, got '-2'",)),
    (["--ratio", "1.5"], ("argument --ratio: expected a positive integer, got '1.5'",)),
    (["--groups", "0"], ("argument --groups: expected a positive integer, got '0'",)),
    (["--groups", "-1"], ("argument --groups: expected a positive integer, got '-1'",)),
    (["--groups", "3"], ("argument --groups: 3 does not divide 64, 128, 256, 512, 1024, 2048 of isles22",
                         "(widths 64, 128, 256, 512)")),
    (["--groups", "64", "--ratio", "1", "--preset", "all"],
     ("argument --groups: 64 does not divide 32 of brats23", "; 32 of glas", "; 32 of fives")),
    (["--kernel", "4"], ("argument --kernel: invalid choice: 4",)),
])
def test_stats_rejects_bad_numbers(args, needles):
    proc = _run(["nnunet-deconver", "stats", *args], _env())
    _one_error_line(proc, 2, "nnunet-deconver stats: error: ", *needles)
    assert proc.stdout == ""


# ----------------------------------------------------------------------------- the other subcommands

OPTION_CASES = [  # (arguments, the error line's prefix, what it must say)
    (["plan", "abc", "--preset", "glas"], "nnunet-deconver plan: error: ",
     "argument dataset: expected an nnU-Net data set id from 1 to 999 or a name like Dataset501_ISLES22, got 'abc'"),
    (["plan", "0", "--preset", "glas"], "nnunet-deconver plan: error: ", "argument dataset: "),
    (["plan", "1000", "--preset", "glas"], "nnunet-deconver plan: error: ", "argument dataset: "),
    (["plan", "990", "--preset", "glas", "--plans-identifier", "nnUNetPlans"], "nnunet-deconver plan: error: ",
     "argument --plans-identifier: nnUNetPlans is the --source-plans; the preset plans would replace nnU-Net's own"),
    (["plan", "990", "--preset", "glas", "--plans-identifier", "../elsewhere"], "nnunet-deconver plan: error: ",
     "argument --plans-identifier: expected a plans identifier"),
    (["plan", "990", "--preset", "glas", "--plans-identifier", "a__b"], "nnunet-deconver plan: error: ",
     "argument --plans-identifier: "),
    (["plan", "990", "--preset", "glas", "--source-plans", "nnUNetPlans.json"], "nnunet-deconver plan: error: ",
     "argument --source-plans: "),
    (["memory", "abc", "-c", "3d_fullres"], "nnunet-deconver memory: error: ",
     "argument dataset: expected an nnU-Net data set id from 1 to 999 or a name like Dataset501_ISLES22, got 'abc'"),
    (["memory", "990", "-c", "3d_fullres", "-p", "../elsewhere"], "nnunet-deconver memory: error: ",
     "argument -p/--plans: expected a plans identifier"),
    (["demo", "--train-cases", "4"], "nnunet-deconver demo: error: ",
     "argument --train-cases: expected an integer of at least 5"),
    (["demo", "--train-cases", "-1"], "nnunet-deconver demo: error: ", "argument --train-cases: "),
    (["demo", "--test-cases", "0"], "nnunet-deconver demo: error: ", "argument --test-cases: expected a positive"),
    (["demo", "--min-dice", "1.5"], "nnunet-deconver demo: error: ",
     "argument --min-dice: expected a number from 0 to 1"),
    (["demo", "--min-dice", "nan"], "nnunet-deconver demo: error: ", "argument --min-dice: "),
    (["demo", "--min-dice", "-0.1"], "nnunet-deconver demo: error: ", "argument --min-dice: "),
    (["evaluate", "x1", "-tr", "T", "-c", "3d_fullres"], "nnunet-deconver evaluate: error: ", "argument DATASET: "),
    (["evaluate", "990", "-tr", "T", "-c", "3d_fullres", "-f", "0", "-1"], "nnunet-deconver evaluate: error: ",
     "argument -f/--folds: expected a fold number (0, 1, ...) or 'all', got '-1'"),
    (["evaluate", "990", "-tr", "T", "-c", "3d_fullres", "-p", "my/plans"], "nnunet-deconver evaluate: error: ",
     "argument -p: "),
    (["evaluate", "990", "-tr", "T", "-c", "3d_fullres", "-j", "0"], "nnunet-deconver evaluate: error: ",
     "argument -j/--processes: expected a positive integer, got '0'"),
    (["evaluate-folders", "p", "r", "-djfile", "d.json", "-j", "-2"], "nnunet-deconver evaluate-folders: error: ",
     "argument -j/--processes: expected a positive integer"),
    (["evaluate-folders", "p", "r", "-djfile", "d.json", "--kernel", "5"], "nnunet-deconver evaluate-folders: error: ",
     "argument --kernel: picks the paper row of --compare-paper; give --compare-paper too"),
    (["evaluate-folders", "p", "r", "-djfile", "d.json", "--empty-hd95", "-1"],
     "nnunet-deconver evaluate-folders: error: ", "argument --empty-hd95: "),
    (["convert", "glas", "raw", "-j", "0"], "nnunet-deconver convert: error: ", "argument -j/--num-workers: "),
    (["convert", "glas", "raw", "--dataset-id", "1000"], "nnunet-deconver convert: error: ", "argument --dataset-id: "),
    (["brats-labels", "in", "out", "-j", "-1"], "nnunet-deconver brats-labels: error: ", "argument -j/--num-workers: "),
]


@pytest.mark.parametrize("args, prefix, needle", OPTION_CASES)
def test_subcommand_rejects_bad_option(tmp_path, args, prefix, needle):
    proc = _run(["nnunet-deconver", *args], _env(), cwd=tmp_path)
    _one_error_line(proc, 2, prefix, needle)
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_a_folder_it_would_delete(tmp_path):
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "thesis.txt").write_text("not the demo's")
    (tmp_path / "file").write_text("a file")
    for folder, needle in ((keep, "is not empty and holds no earlier demo"), (tmp_path / "file", "is not a folder")):
        proc = _run(["nnunet-deconver", "demo", "--folder", folder], _env(), cwd=tmp_path)
        _one_error_line(proc, 1, "nnunet-deconver: error: ", f"--folder {folder}", needle)
    assert (keep / "thesis.txt").read_text() == "not the demo's" and (tmp_path / "file").read_text() == "a file"


def test_unknown_data_set_is_one_line(tmp_path):
    env = _preprocessed(tmp_path, [32, 64, 128])
    proc = _run(["nnunet-deconver", "plan", "991", "--preset", "isles22"], env)
    _one_error_line(proc, 1, "nnunet-deconver: error: ", "Could not find a dataset with the ID 991",
                    "Run nnUNetv2_plan_and_preprocess -d 991 first.")
    proc = _run(["nnunet-deconver", "evaluate", "991", "-tr", "T", "-c", "3d_fullres"], env)
    _one_error_line(proc, 1, "nnunet-deconver: error: cannot resolve data set '991': Could not find a dataset")
