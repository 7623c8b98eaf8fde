"""Peak memory of one training step on nnU-Net's default plans and on the paper's presets.

For three data-set fingerprints (BraTS-like, ISLES-like, GlaS-like) nnU-Net's own
``nnUNetv2_plan_experiment`` writes its default plans; ``nnunet-deconver memory`` then counts one
training step (16-bit autocast, backward, optimiser step, on fake tensors) of nnU-Net's
PlainConvUNet and of ``nnUNetTrainerDeconver``'s Deconver, lean and full, with the plans' patch and
batch. The paper's four presets are written with ``nnunet-deconver plan`` on those data sets and
counted the same way. Prints a Markdown table.

    .venv/bin/python benchmarks/bench_memory.py            # about 10 min on 2 CPU cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent

# (id, name, channels, cases, median shape, spacing, labels, file ending, 2D)
FINGERPRINTS = [
    (951, "BraTSlike", 4, 1251, (140, 171, 136), (1.0, 1.0, 1.0), 4, ".nii.gz"),
    (952, "ISLESlike", 2, 250, (72, 112, 112), (2.0, 2.0, 2.0), 2, ".nii.gz"),
    (953, "GlaSlike", 3, 165, (1, 522, 775), (999.0, 1.0, 1.0), 2, ".png"),
]
DEFAULT_ROWS = [(951, "3d_fullres", "BraTS-like, 4 channels, 1251 cases, 140x171x136 at 1 mm"),
                (952, "3d_fullres", "ISLES-like, 2 channels, 250 cases, 72x112x112 at 2 mm"),
                (953, "2d", "GlaS-like, RGB, 165 images, 522x775")]
PRESET_ROWS = [(952, "isles22", "3d_fullres"), (951, "brats23", "3d_fullres"), (953, "glas", "2d"),
               (953, "fives", "2d")]


def _tiny_case(folder: Path, channels: int, ending: str) -> None:
    import numpy as np

    if ending == ".png":
        from PIL import Image

        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "imagesTr" / "case_0000.png")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "labelsTr" / "case.png")
        return
    import SimpleITK as sitk

    for c in range(channels):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32)), str(folder / "imagesTr" / f"case_{c:04d}{ending}"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(folder / "labelsTr" / f"case{ending}"))


def _write_fingerprint(raw: Path, pre: Path, dataset_id, name, channels, cases, shape, spacing, labels, ending):
    folder = f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr"):  # the planner reads the fingerprint, and one file for its reader
        (raw / folder / sub).mkdir(parents=True)
    _tiny_case(raw / folder, channels, ending)
    (pre / folder).mkdir(parents=True)
    names = ["R", "G", "B"] if ending == ".png" else [f"modality{c}" for c in range(channels)]
    dataset = {"channel_names": dict(enumerate(names)), "numTraining": cases, "file_ending": ending,
               "labels": {"background": 0, **{f"label{i}": i for i in range(1, labels)}}}
    (raw / folder / "dataset.json").write_text(json.dumps(dataset))
    stats = {"max": 1000.0, "mean": 100.0, "median": 100.0, "min": 0.0, "percentile_00_5": 1.0,
             "percentile_99_5": 900.0, "std": 50.0}
    fingerprint = {"foreground_intensity_properties_per_channel": {str(c): stats for c in range(channels)},
                   "median_relative_size_after_cropping": 1.0,
                   "shapes_after_crop": [list(shape)] * cases, "spacings": [list(spacing)] * cases}
    (pre / folder / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))


def _run(args: list[str], env: dict) -> str:
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _gib(row: dict | None) -> str:
    return "-" if row is None else f"{row['peak_bytes'] / 2**30:.1f} GiB"


def main() -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        raw, pre = Path(tmp) / "raw", Path(tmp) / "pre"
        env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(pre),
               "nnUNet_results": str(Path(tmp) / "results"), "OMP_NUM_THREADS": "1"}
        for fingerprint in FINGERPRINTS:
            _write_fingerprint(raw, pre, *fingerprint)
            _run(["nnUNetv2_plan_experiment", "-d", str(fingerprint[0])], env)
        print(f"torch {torch.__version__}; peak of one training step (16-bit autocast, backward, optimiser step), "
              "counted on fake tensors by `nnunet-deconver memory`\n")
        print("| plans | configuration | patch, batch | PlainConvUNet (nnU-Net) | Deconver lean | Deconver full "
              "| lean / PlainConvUNet | full / PlainConvUNet |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for dataset_id, configuration, title in DEFAULT_ROWS:
            report = json.loads(_run(["nnunet-deconver", "memory", str(dataset_id), "-c", configuration, "--json"], env))
            rows = {r["activation_memory"]: r for r in report["networks"]}
            plain = rows[None]["peak_bytes"]
            print(f"| nnU-Net default, {title} | {configuration} | {'x'.join(map(str, report['patch_size']))}, "
                  f"{report['batch_size']} | {_gib(rows[None])} | {_gib(rows['lean'])} | {_gib(rows['full'])} | "
                  f"{rows['lean']['peak_bytes'] / plain:.2f}x | {rows['full']['peak_bytes'] / plain:.2f}x |")
        for dataset_id, preset, configuration in PRESET_ROWS:
            identifier = f"nnUNetDeconverPlans_{preset}"
            _run(["nnunet-deconver", "plan", str(dataset_id), "--preset", preset, "--plans-identifier", identifier],
                 env)
            report = json.loads(_run(["nnunet-deconver", "memory", str(dataset_id), "-c", configuration, "-p",
                                      identifier, "--json"], env))
            rows = {r["activation_memory"]: r for r in report["networks"]}
            print(f"| paper preset {preset} | {configuration} | {'x'.join(map(str, report['patch_size']))}, "
                  f"{report['batch_size']} | - | {_gib(rows['lean'])} | {_gib(rows['full'])} | | |")


if __name__ == "__main__":
    main()
