"""Assertions shared by the conversion tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pytest

from _conversion_synth import Image2D, Volume3D, read_2d, read_nifti, snapshot
from conftest import run_command

REPO = Path(__file__).resolve().parents[1]


def load_json(path: Path):
    return json.loads(path.read_text())


def check_splits(folder: Path, case_ids: Iterable[str]) -> list[dict]:
    """nnU-Net's format: 5 dicts with train / val; every case in exactly one val fold."""
    case_ids = sorted(case_ids)
    splits = load_json(folder / "splits_final.json")
    assert isinstance(splits, list) and len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == case_ids
    for split in splits:
        assert set(split) == {"train", "val"}
        assert sorted(split["train"] + split["val"]) == case_ids
    return splits


def check_volumes(folder: Path, cases: dict[str, Volume3D], expected_label: Callable[[np.ndarray], np.ndarray]
                  ) -> None:
    """Each channel's voxels, spacing and origin equal the source's; the label is ``expected_label(source)``."""
    n_channels = len(next(iter(cases.values())).channels)
    expected_images = sorted(f"{c}_{k:04d}.nii.gz" for c in cases for k in range(n_channels))
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == expected_images
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
    for case_id, source in cases.items():
        for k, channel in enumerate(source.channels):
            array, image = read_nifti(folder / "imagesTr" / f"{case_id}_{k:04d}.nii.gz")
            np.testing.assert_array_equal(array, channel, err_msg=f"{case_id} channel {k}")
            assert image.GetSpacing() == pytest.approx(source.spacing)
            assert image.GetOrigin() == pytest.approx(source.origin)
        label, image = read_nifti(folder / "labelsTr" / f"{case_id}.nii.gz")
        np.testing.assert_array_equal(label, expected_label(source.label), err_msg=f"{case_id} label")
        assert image.GetSpacing() == pytest.approx(source.spacing)


def check_rgb_images(folder: Path, cases: dict[str, Image2D]) -> None:
    """One 3-channel ``_0000.png`` per case with R, G, B equal to the source; label 0/1 as expected."""
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == sorted(f"{c}_0000.png" for c in cases)
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == sorted(f"{c}.png" for c in cases)
    for case_id, source in cases.items():
        rgb = read_2d(folder / "imagesTr" / f"{case_id}_0000.png")
        assert rgb.shape == source.rgb.shape
        for channel in range(3):
            np.testing.assert_array_equal(rgb[..., channel], source.rgb[..., channel],
                                          err_msg=f"{case_id} channel {channel}")
        label = read_2d(folder / "labelsTr" / f"{case_id}.png")
        np.testing.assert_array_equal(label, source.expected_label, err_msg=f"{case_id} label")


def check_nnunet_reads_2d(folder: Path, case_id: str, source: Image2D) -> None:
    """nnU-Net's NaturalImage2DIO sees 3 channels (c, 1, H, W) in R, G, B order and spacing (999, 1, 1)."""
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    images, properties = NaturalImage2DIO().read_images([str(folder / "imagesTr" / f"{case_id}_0000.png")])
    assert images.shape == (3, 1, *source.rgb.shape[:2])
    np.testing.assert_array_equal(images[:, 0], source.rgb.transpose(2, 0, 1).astype(np.float32))
    seg, seg_properties = NaturalImage2DIO().read_seg(str(folder / "labelsTr" / f"{case_id}.png"))
    assert seg.shape == (1, 1, *source.rgb.shape[:2])
    assert list(properties["spacing"]) == list(seg_properties["spacing"]) == [999, 1, 1]


def verify_with_nnunet(dataset_id: int, env: dict) -> None:
    """nnU-Net's own integrity check (``nnUNetv2_extract_fingerprint --verify_dataset_integrity``)."""
    proc = run_command(["nnUNetv2_extract_fingerprint", "-d", str(dataset_id), "-np", "1",
                        "--verify_dataset_integrity"], env)
    assert "verify_dataset_integrity Done" in proc.stdout
    assert "Warning" not in proc.stdout and "Error" not in proc.stdout, proc.stdout


def python_module_env(env: dict) -> dict:
    """Environment for ``python -m dataset_conversion...`` from the repository root."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def run_module(module: str, args: list[str], env: dict):
    """``python -m module args`` (through conftest's run_command: fails the test on non-zero exit)."""
    return run_command([sys.executable, "-m", module, *args], python_module_env(env))


def existing_dataset(root: Path, folder_name: str) -> dict[str, bytes]:
    """Put an older data set at ``root/folder_name``; return a snapshot of ``root``."""
    folder = root / folder_name
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "dataset.json").write_text('{"old": true}')
    (folder / "imagesTr" / "old_0000.nii.gz").write_bytes(b"old image")
    return snapshot(root)


def expect_failure(main: Callable, argv: list[str], capsys, root: Path, before: dict[str, bytes]) -> str:
    """Run ``main(argv)``: exit code 1, an ``error:`` message and no traceback, ``root`` untouched."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "error: " in captured.err and "Traceback" not in captured.err
    assert snapshot(root) == before, "the output folder must be left untouched"
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")], "no temporary folder left behind"
    return captured.err
