"""The Deconver network: blocks, the U-Net and the paper's configurations built from
:mod:`nnunet_deconver.paper` (needs torch only)."""

from nnunet_deconver.network.blocks import MLP, BlockConfig, BlockSpec, DeconverBlock, DeconverStage, DeconvMixer
from nnunet_deconver.network.presets import build_preset
from nnunet_deconver.network.unet import Deconver

__all__ = [
    "Deconver", "BlockConfig", "BlockSpec", "DeconverBlock", "DeconverStage", "DeconvMixer", "MLP",
    "build_preset",
]
