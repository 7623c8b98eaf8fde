"""Sliding-window inference with nnU-Net's predictor: Deconver (ISLES'22) against PlainConvUNet.

``nnUNetPredictor.predict_sliding_window_return_logits`` on a random two-channel S^3 volume, patch
P^3, tile step 0.5, Gaussian weighting on, no mirroring, on CPU; networks in eval mode with deep
supervision off and 2 outputs (Deconver ISLES'22 preset; PlainConvUNet as nnU-Net's default plans
build it for a 64^3 patch). No trained model folder is needed: the predictor gets the network, a
ConfigurationManager holding the patch size and a LabelManager with two labels, which is all this
method reads. Deconver runs with the fused C++ NDC kernels (``NNUNET_DECONVER_NDC_BACKEND=cpp``),
with ``lean`` blocks (the default; without gradients they run their slabs' forward only) and
``full`` ones. Reported: seconds per volume
(median after a warm-up on a one-tile volume) and peak
memory growth of one volume (fresh processes, see ``_worker.py``).

Run from the repository root::

    .venv/bin/python benchmarks/bench_inference.py            # 128^3 volume, patch 64^3 (27 tiles)
    .venv/bin/python benchmarks/bench_inference.py --quick    # 48^3 volume, patch 32^3 (8 tiles)
"""

from __future__ import annotations

import argparse

from _cli import add_patch_options, base_parser, bench_main, patch_edge
from _format import fmt_mb, fmt_ratio, fmt_s, markdown_table
from _machine import Session
from _networks import INPUT_CHANNELS, build_network, network_label, select_ndc_backend
from _protocol import measure
from _worker import Case

#: (network, activation memory, NDC backend) of each row
ROWS = (("deconver", "lean", "cpp"), ("deconver", "full", "cpp"), ("plainconvunet", None, None))


def make_predictor(network, patch: list[int], tile_step: float):
    """An ``nnUNetPredictor`` set up for ``predict_sliding_window_return_logits`` with ``network``."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    predictor = nnUNetPredictor(
        tile_step_size=tile_step, use_gaussian=True, use_mirroring=False, perform_everything_on_device=False,
        device=torch.device("cpu"), verbose=False, allow_tqdm=False,
    )
    predictor.network = network
    predictor.configuration_manager = ConfigurationManager({"patch_size": patch, "architecture": {}})
    predictor.label_manager = LabelManager({"background": 0, "lesion": 1}, regions_class_order=None)
    predictor.allowed_mirroring_axes = None
    return predictor


def build_case(spec: dict) -> Case:
    """Predictor and volume of one network; phase "volume", warmed up and primed on a one-tile volume."""
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    from nnunet_deconver.network.stats import count_parameters

    select_ndc_backend(spec.get("backend"))
    network = build_network(spec["network"], deep_supervision=False,
                            activation_memory=spec["activation_memory"] or "lean").eval()
    patch = [spec["patch"]] * 3
    predictor = make_predictor(network, patch, spec["tile_step"])
    volume = torch.randn(INPUT_CHANNELS, *[spec["size"]] * 3)
    one_tile = torch.randn(INPUT_CHANNELS, *patch)

    def predict() -> None:
        predictor.predict_sliding_window_return_logits(volume)

    def predict_one_tile() -> None:
        predictor.predict_sliding_window_return_logits(one_tile)

    def info() -> dict:
        steps = compute_steps_for_sliding_window(tuple(volume.shape[1:]), tuple(patch), spec["tile_step"])
        tiles = 1
        for axis in steps:
            tiles *= len(axis)
        return {"params": count_parameters(network), "tiles": tiles}

    return Case({"volume": predict}, memory_phase="volume", warmup=predict_one_tile, prime=predict_one_tile,
                info=info)


def report(args: argparse.Namespace, session: Session) -> str:
    """Measure both networks; the Markdown section."""
    size = args.size or (48 if args.quick else 128)
    patch = patch_edge(args)
    results = {
        (network, activations, backend): measure(
            __file__, {"network": network, "size": size, "patch": patch, "tile_step": args.tile_step,
                       "backend": backend, "activation_memory": activations},
            session.settings, network_label(network, backend=backend, activation_memory=activations))
        for network, activations, backend in ROWS
    }
    plain = results[("plainconvunet", None, None)]
    rows = [
        [network_label(network, backend=backend, activation_memory=activations), m.info.get("tiles", "n/a"),
         fmt_s(m.median("volume")), fmt_mb(m.growth_mb), fmt_ratio(m.median("volume"), plain.median("volume")),
         fmt_ratio(m.growth_mb, plain.growth_mb)]
        for (network, activations, backend), m in results.items()
    ]
    intro = [
        f"nnU-Net's `nnUNetPredictor.predict_sliding_window_return_logits` on a {size}^3 two-channel volume, "
        f"patch {patch}^3, tile step {args.tile_step}, Gaussian weighting, no mirroring, CPU, float32; networks "
        "in eval mode, deep supervision off, 2 outputs.",
    ]
    body = [
        *markdown_table(["network", "tiles", "s / volume", "peak growth MB", "time vs nnU-Net",
                         "memory vs nnU-Net"], rows),
        "",
        "Peak growth includes the predictor's float16 buffers (logits of 2 outputs and the Gaussian "
        f"weight sums: {6 * size ** 3 / 2 ** 20:.0f} MB).",
    ]
    return session.section("Sliding-window inference: Deconver vs nnU-Net's U-Net", intro, body)


def parser() -> argparse.ArgumentParser:
    """Command line of this benchmark."""
    p = base_parser(__doc__.splitlines()[0], reps=1)
    p.add_argument("--size", type=int, help="cubic volume edge (default 128; quick 48)")
    add_patch_options(p, batch=False)
    p.add_argument("--tile-step", type=float, default=0.5, help="tile step as a fraction of the patch (default 0.5)")
    return p


if __name__ == "__main__":
    raise SystemExit(bench_main(parser(), build_case, report))
