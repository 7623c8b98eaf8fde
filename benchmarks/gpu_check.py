"""One prepared check on one CUDA GPU (about 5 minutes): the Triton NDC kernels, their self-check,
one training step under nnU-Net's defaults and the kernel timings; one Markdown section as output.

    .venv/bin/python benchmarks/gpu_check.py [--output FILE]

1. The Triton kernels on CUDA tensors against PyTorch's convolutions in float64 on the CPU:
   forward and all three gradients, batch 1 and 2, 2D and 3D, G in {1, 2, C}, R in {1, 4},
   kernels 3, 5 and (1, 3, 3), with and without the ReLU of s, float32 and float16 storage, a
   non-contiguous input (the same cases the interpreter tests run on the CPU).
2. The backend's self-check (``auto`` on CUDA picks ``triton`` only if it passes) and its time.
3. One training step on the plans nnU-Net writes for a BraTS-like data set (4 channels, 3
   regions, 1 mm, patch 128 x 160 x 112, batch 2; stages and strides from nnU-Net's own
   ``get_pool_and_conv_props``), under nnU-Net's defaults: ``torch.compile``, float16 autocast
   with a GradScaler, deep supervision with nnU-Net's loss. Deconver as ``nnUNetTrainerDeconver``
   builds it (AdamW) and nnU-Net's PlainConvUNet (SGD, Nesterov), each: first step (compilation
   included), median of 3 further steps, ``torch.cuda.max_memory_allocated``.
4. The NDC update forward + backward, ``triton`` vs ``torch`` backend, C = 32, R = 4, 128^3, batch 2.

``--quick`` runs every part at tiny sizes (CPU allowed, with ``TRITON_INTERPRET=1`` for the
kernels), to check the script itself.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nnunet_deconver.ndc.backends import BACKEND_ENV, torch_ops, triton_backend  # noqa: E402

EPS = 1e-8
# (batch, C, R, G or None for C, spatial size, kernel)
KERNEL_CASES = [(2, 4, 4, None, (5, 6, 7), (3, 3, 3)), (1, 4, 1, 1, (6, 5, 7), (5, 5, 5)),
                (1, 4, 4, 2, (3, 6, 5), (1, 3, 3)), (2, 3, 4, None, (7, 9), (3, 3)), (1, 4, 1, 2, (9, 6), (5, 5))]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def check_kernel_cases(device: torch.device) -> list[str]:
    """Rows ``case | dtype | worst normwise error`` of every kernel case; raises on a failure."""
    rows = []
    for batch, channels, ratio, groups, size, kernel in KERNEL_CASES:
        groups = channels if groups is None else groups
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, channels, *size, generator=gen, dtype=torch.float64)
        s = torch.rand(batch, ratio * channels, *size, generator=gen, dtype=torch.float64) - 0.3
        weight = torch.rand(channels, ratio * channels // groups, *kernel, generator=gen, dtype=torch.float64)
        grad = torch.rand(s.shape, generator=gen, dtype=torch.float64)
        for rectify in (False, True):
            s_in = s if rectify else s.clamp_min(0)
            want = torch_ops.forward(x, s_in, weight, groups, EPS, rectify)
            want += torch_ops.backward(grad, x, s_in, weight, want[1], groups, EPS, rectify, True, True, True)
            for dtype, tolerance in ((torch.float32, 1e-4), (torch.float16, 2e-2)):
                args = [t.to(device, dtype) for t in (x, s_in, weight)]
                if dtype == torch.float32 and batch == 2:  # a sliced (non-contiguous) source
                    wide = torch.zeros(batch, 2 * s.shape[1], *size, device=device, dtype=dtype)
                    wide[:, ::2] = args[1]
                    args[1] = wide[:, ::2]
                out, y = triton_backend.forward(*args, groups, EPS, rectify)
                got = (out, y) + triton_backend.backward(grad.to(device, dtype), *args, y, groups, EPS, rectify,
                                                         True, True, True)
                worst = max(float((a.double().cpu() - b).abs().max() / b.abs().max()) for a, b in zip(got, want))
                label = f"B{batch} C{channels} R{ratio} G{groups} {'x'.join(map(str, size))} k{kernel} relu={rectify}"
                rows.append(f"| {label} | {str(dtype)[6:]} | {worst:.2e} |")
                if not worst <= tolerance:
                    raise AssertionError(f"Triton kernels wrong for {label}, {dtype}: normwise error {worst:.3g}")
    return rows


def brats_like_configuration(patch: tuple[int, ...], batch: int):
    """nnU-Net's ConfigurationManager for a BraTS-like 3d_fullres configuration with this patch."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    _, strides, kernels, patch, _ = get_pool_and_conv_props((1.0, 1.0, 1.0), patch, 4, 999999)
    n = len(strides)
    arch = {"n_stages": n, "features_per_stage": [min(32 * 2**i, 320) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [list(k) for k in kernels],
            "strides": [list(s) for s in strides], "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    plans = {"dataset_name": "Dataset999_BraTSLike", "plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {
        "data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "batch_size": batch,
        "patch_size": [int(p) for p in patch], "median_image_size_in_voxels": [140, 171, 136],
        "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"] * 4,
        "use_mask_for_norm": [True] * 4, "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {},
        "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {}, "batch_dice": False,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": arch, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
    }}, "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2], "image_reader_writer": "SimpleITKIO", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {}}
    manager = PlansManager(plans)
    return manager, manager.get_configuration("3d_fullres")


def training_step(network_name: str, patch: tuple[int, ...], batch: int, device: torch.device, compile_: bool,
                  steps: int) -> dict:
    """nnU-Net's train_step on random data: first step (compile included), median of the others, peak memory."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from nnunet_deconver.nnunet.trainers import nnUNetTrainerDeconver

    plans, config = brats_like_configuration(patch, batch)
    if network_name == "Deconver":
        net = nnUNetTrainerDeconver.build_network_architecture(plans, config, 4, 3, True)
        optimizer_of = lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-5)  # noqa: E731
    else:
        arch = config.network_arch_init_kwargs
        net = get_network_from_plans(config.network_arch_class_name, arch, config.network_arch_init_kwargs_req_import,
                                     4, 3, deep_supervision=True)
        optimizer_of = lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.99, nesterov=True)  # noqa: E731
    net = net.to(device)
    strides = config.pool_op_kernel_sizes
    scales = [[1.0] * 3]
    for stride in strides[1:-1]:
        scales.append([a / b for a, b in zip(scales[-1], stride)])
    state = SimpleNamespace(label_manager=SimpleNamespace(has_regions=True, ignore_label=None),
                            configuration_manager=config, is_ddp=False, _do_i_compile=lambda: compile_,
                            enable_deep_supervision=True, _get_deep_supervision_scales=lambda: scales)
    loss_fn = nnUNetTrainer._build_loss(state)
    optimizer = optimizer_of(net.parameters())
    scaler = torch.amp.GradScaler(device.type)
    model = torch.compile(net) if compile_ else net
    x = torch.randn(batch, 4, *config.patch_size, device=device)
    target = [(torch.rand(batch, 3, *[round(p * f) for p, f in zip(config.patch_size, scale)], device=device) > 0.7
               ).float() for scale in scales]
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = loss_fn(model(x), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        scaler.step(optimizer)
        scaler.update()
        sync(device)
        times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise AssertionError(f"{network_name}: non-finite loss {loss}")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"first": times[0], "median": statistics.median(times[1:]), "peak_gib": peak,
            "patch": config.patch_size, "stages": len(strides)}


def time_ndc(backend: str, size: tuple[int, ...], channels: int, device: torch.device, reps: int) -> float:
    """Median seconds of one NDC update forward + backward (all three gradients) on ``backend``."""
    from nnunet_deconver.ndc import ndc

    os.environ[BACKEND_ENV] = backend
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, channels, *size, generator=gen).to(device)
    s = torch.rand(2, 4 * channels, *size, generator=gen).to(device).requires_grad_()
    weight = torch.rand(channels, 4, 3, 3, 3, generator=gen).to(device).requires_grad_()
    times = []
    for _ in range(reps + 1):
        sync(device)
        start = time.perf_counter()
        ndc(x, s, weight, channels, EPS, rectify_s0=True).sum().backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the Markdown section to this file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, CPU allowed: checks the script")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.quick:
        parser.error("no CUDA device: this check needs a GPU (--quick runs it at tiny sizes on the CPU)")
    patch, ndc_size, steps, reps = ((32, 32, 32), (8, 8, 8), 3, 1) if args.quick else ((128, 160, 112), (128,) * 3, 4, 3)
    started = time.perf_counter()
    lines = ["## GPU check", ""]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or 'unknown'})"
    import triton

    lines += [f"- Device: {name}; torch {torch.__version__}, Triton {triton.__version__}, CUDA "
              f"{torch.version.cuda}; command: `{' '.join(sys.argv)}`", ""]

    rows = check_kernel_cases(device)
    lines += ["### Triton kernels vs PyTorch's convolutions in float64 (forward and all gradients)", "",
              "| case | storage | worst normwise error |", "|---|---|---:|", *rows, ""]

    os.environ[BACKEND_ENV] = "auto"
    triton_backend._state.update(available=None, reason="")
    start = time.perf_counter()
    available = triton_backend.is_available()
    lines += [f"- Self-check: {'passed' if available else 'FAILED: ' + triton_backend._state['reason']} "
              f"in {time.perf_counter() - start:.1f} s", ""]

    lines += [f"### One training step, BraTS-like nnU-Net plans (batch 2, "
              f"{'float16 autocast, torch.compile' if device.type == 'cuda' else 'float32, eager: --quick on CPU'})", "",
              "| network | patch | first step (s) | step (s, median) | max_memory_allocated (GiB) |",
              "|---|---|---:|---:|---:|"]
    for network_name in ("Deconver", "PlainConvUNet"):
        if device.type == "cuda":
            torch.cuda.empty_cache()
        r = training_step(network_name, patch, 2, device, compile_=device.type == "cuda", steps=steps)
        lines.append(f"| {network_name} | {'x'.join(map(str, r['patch']))} | {r['first']:.2f} | "
                     f"{r['median']:.3f} | {r['peak_gib']:.2f} |")
    lines.append("")

    from nnunet_deconver.ndc.backends import backend_for

    timings = {b: time_ndc(b, ndc_size, 4 if args.quick else 32, device, reps) for b in ("triton", "torch")}
    served = backend_for(device).name if os.environ.update({BACKEND_ENV: "triton"}) is None else ""
    lines += [f"- NDC update fwd + bwd, C = {4 if args.quick else 32}, R = 4, k = 3, "
              f"{'x'.join(map(str, ndc_size))}, batch 2: triton {timings['triton'] * 1e3:.1f} ms"
              f"{'' if served == 'triton' else f' (computed by {served}: triton does not serve {device.type})'}, "
              f"torch {timings['torch'] * 1e3:.1f} ms ({timings['triton'] / timings['torch']:.2f}x)",
              f"- Whole check: {time.perf_counter() - started:.0f} s", ""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
