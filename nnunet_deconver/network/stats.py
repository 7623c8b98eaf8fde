"""Model report: parameters and FLOPs per voxel of the paper's configurations.

FLOPs come from PyTorch's own counter (``torch.utils.flop_counter.FlopCounterMode``: a multiply-add
is 2 FLOPs; convolutions and matrix products are counted, elementwise work is not), for one
forward pass, divided by the number of input voxels. Two conventions:

- ``flops_per_voxel``: every convolution, the NDC update's own included;
- ``flops_per_voxel_paper``: the NDC layer's own (functional) convolutions left out, which is how
  the paper's figures come out the same for k = 3 and k = 5.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from nnunet_deconver.ndc import NDC
from nnunet_deconver.ndc.backends import backend_for
from nnunet_deconver.network.presets import build_preset
from nnunet_deconver.paper import get_dataset


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Forward FLOPs of ``model`` on a zero-free random input (B, C, *S).

    Returns ``{"total": ..., "ndc_functional": ...}``; the latter is the part spent in the NDC
    layers' own convolutions (everything inside an NDC module but its initialisation conv), for
    full blocks: lean ones on CPU run the NDC's kernels from the block, outside the module.
    """
    from torch.utils.flop_counter import FlopCounterMode

    ndc_names = [name for name, m in model.named_modules() if isinstance(m, NDC)]
    # a counter sees the FLOP formulas registered before it starts: the C++ kernels' come with them
    backend_for(torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.rand(*input_shape))
    per_module = counter.get_flop_counts()
    root = type(model).__name__

    def flops_of(name: str) -> int:
        return sum(per_module.get(f"{root}.{name}", {}).values())

    functional = sum(flops_of(name) - flops_of(f"{name}.init") for name in ndc_names)
    return {"total": float(counter.get_total_flops()), "ndc_functional": float(functional)}


def model_report(
    preset: str,
    kernel_size: int = 3,
    ratio: int = 4,
    groups: int | None = None,
    patch_size: Sequence[int] | None = None,
    norm_affine: bool = False,
) -> dict:
    """Parameters and FLOPs per voxel of a preset, beside the paper's figures.

    The paper's figures are given for its own structure only (R = 4, G = channels, norms without
    affine parameters).

    FLOPs are counted on a small patch (twice the total stride per axis, unless ``patch_size`` is
    given): per voxel they do not depend on the patch size.
    """
    p = get_dataset(preset)
    # the structure's FLOPs: the full blocks (lean ones recompute the NDC's reach at slab borders)
    model = build_preset(preset, kernel_size, ratio, groups, norm_affine=norm_affine, activation_memory="full").eval()
    if patch_size is None:
        patch_size = (2 ** p.levels,) * p.spatial_dims
    flops = count_flops(model, (1, p.input_channels, *patch_size))
    voxels = math.prod(patch_size)
    default_structure = ratio == 4 and groups is None and not norm_affine
    return {
        "preset": p.key,
        "title": p.title,
        "kernel_size": kernel_size,
        "ratio": ratio,
        "groups": "channels" if groups is None else groups,
        "norm_affine": norm_affine,
        "params": count_parameters(model),
        "flops_per_voxel": flops["total"] / voxels,
        "flops_per_voxel_paper": (flops["total"] - flops["ndc_functional"]) / voxels,
        "paper_params_m": p.params_m.get(kernel_size) if default_structure else None,
        "paper_flops_per_voxel": p.flops_per_voxel if default_structure else None,
        "counted_on_patch": list(patch_size),
    }


def format_report(r: dict) -> str:
    """Human-readable lines for :func:`model_report`'s dict."""
    def paper(value, fmt):
        return f"   (paper: {fmt.format(value)})" if value is not None else ""

    return "\n".join(
        [
            f"Deconver {r['title']}  kernel {r['kernel_size']}  ratio {r['ratio']}  groups {r['groups']}"
            f"{'  affine norms' if r['norm_affine'] else ''}",
            f"  parameters                         {r['params']:>12,}{paper(r['paper_params_m'], '{:.1f}M')}",
            f"  FLOPs/voxel, every convolution     {r['flops_per_voxel'] / 1e3:>11.1f}K",
            f"  FLOPs/voxel, paper's convention    {r['flops_per_voxel_paper'] / 1e3:>11.1f}K"
            f"{paper(None if r['paper_flops_per_voxel'] is None else r['paper_flops_per_voxel'] / 1e3, '{:.1f}K')}",
            "  (paper's convention leaves out the NDC layer's own convolutions; "
            f"counted on a {'x'.join(map(str, r['counted_on_patch']))} patch)",
        ]
    )
