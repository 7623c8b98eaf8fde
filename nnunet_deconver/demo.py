"""``nnunet-deconver demo``: the whole nnU-Net pipeline with Deconver on a synthetic data set, on CPU.

1. writes a 3D, two-channel data set of lesion-like blobs in noise in nnU-Net's raw format;
2. ``nnUNetv2_plan_and_preprocess``;
3. ``nnUNetv2_train ... -tr nnUNetTrainerDeconver_demo -device cpu`` (a short run, fold 0);
4. ``nnUNetv2_predict`` on the held-out cases;
5. Dice per held-out case and the mean; fails (exit code 1) when the mean is under ``--min-dice``.

Everything lives under one folder (its own nnUNet_raw / _preprocessed / _results), so a user's
nnU-Net folders are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nnunet_deconver.errors import DeconverError, describe_os_error
from nnunet_deconver.workers import default_workers

DEMO_ID = 990
DEMO_NAME = "DeconverDemo"
TRAINER = "nnUNetTrainerDeconver_demo"


def _step(message: str) -> None:
    print(f"\n[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(args: list[str], env: dict) -> None:
    """Run an nnU-Net command of this environment, its output streaming to the console."""
    exe = Path(sys.executable).parent / args[0]
    cmd = [str(exe) if exe.exists() else args[0], *args[1:]]
    print("$ " + " ".join(args), flush=True)
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        raise DeconverError(f"{args[0]} failed with exit code {result.returncode} (its output is above)")


def check_demo_folder(folder: Path) -> None:
    """Raise :class:`DeconverError` unless ``folder`` may be (re)made by the demo: absent, an empty
    folder, or an earlier demo's (its ``nnUNet_raw/Dataset990_DeconverDemo``); anything else would be
    deleted by :func:`run_demo`."""
    if folder.is_symlink():
        raise DeconverError(f"--folder {folder} is a symbolic link; give a folder itself")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DeconverError(f"--folder {folder} exists and is not a folder; choose another --folder")
    try:
        empty = next(folder.iterdir(), None) is None
    except OSError as exc:
        raise DeconverError(f"--folder {folder}: {describe_os_error(exc)}") from None
    if not empty and not (folder / "nnUNet_raw" / f"Dataset{DEMO_ID:03d}_{DEMO_NAME}").is_dir():
        raise DeconverError(f"--folder {folder} is not empty and holds no earlier demo (no nnUNet_raw/"
                            f"Dataset{DEMO_ID:03d}_{DEMO_NAME}); the demo replaces its folder, so choose a new or "
                            "empty one")


def run_demo(folder: Path, n_train: int = 9, n_test: int = 3, min_dice: float = 0.5, seed: int = 0) -> float:
    """Run the demo in ``folder`` (replaced if it exists; see :func:`check_demo_folder`); returns the
    mean held-out Dice."""
    check_demo_folder(folder)
    import numpy as np
    import SimpleITK as sitk

    from nnunet_deconver.evaluation.metrics import dice
    from nnunet_deconver.nnunet.synthetic import make_3d_dataset

    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    paths = {name: folder / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for p in paths.values():
        p.mkdir(parents=True)
    # nnU-Net spawns 8 worker processes by default (export, checks): no more than there are cores
    env = {**os.environ, **{k: str(v) for k, v in paths.items()}, "nnUNet_compile": "f",
           "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", str(default_workers()))}
    started = time.time()

    _step(f"1/5 writing {n_train + n_test} synthetic cases (2 channels, 32^3 voxels) under {paths['nnUNet_raw']}")
    raw = make_3d_dataset(paths["nnUNet_raw"], DEMO_ID, DEMO_NAME, n_train, n_test, seed=seed)

    _step("2/5 nnU-Net planning and preprocessing")
    _run(["nnUNetv2_plan_and_preprocess", "-d", str(DEMO_ID), "-c", "3d_fullres", "-np", "2",
          "--verify_dataset_integrity"], env)

    _step(f"3/5 training {TRAINER} on CPU (fold 0)")
    _run(["nnUNetv2_train", str(DEMO_ID), "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"],
         {**env, "nnUNet_n_proc_DA": "0"})

    _step(f"4/5 predicting the {n_test} held-out cases")
    predictions = folder / "predictions"
    _run(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(predictions), "-d", str(DEMO_ID),
          "-c", "3d_fullres", "-tr", TRAINER, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], env)

    _step("5/5 Dice of the held-out cases")
    scores = []
    for ref_file in sorted((raw / "labelsTs").glob("*.nii.gz")):
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_file))) > 0
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(predictions / ref_file.name))) > 0
        scores.append(dice(pred, ref))
        print(f"  {ref_file.name[:-7]:<24} Dice {scores[-1]:.3f}")
    mean = float(np.mean(scores))
    print(f"  {'mean':<24} Dice {mean:.3f}   (total {(time.time() - started) / 60:.1f} min)")
    return mean
