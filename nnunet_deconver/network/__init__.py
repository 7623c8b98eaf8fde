"""The Deconver network: blocks, the U-Net and the paper's presets (needs torch only)."""

from nnunet_deconver.network.blocks import DeconverBlock, DeconverStage, DeconvMixer, MLP
from nnunet_deconver.network.presets import PRESETS, Preset, build_preset, get_preset, paper_widths
from nnunet_deconver.network.unet import Deconver

__all__ = [
    "Deconver", "DeconverBlock", "DeconverStage", "DeconvMixer", "MLP",
    "PRESETS", "Preset", "build_preset", "get_preset", "paper_widths",
]
