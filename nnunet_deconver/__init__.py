"""Deconver, a U-Net with learnable nonnegative deconvolution, as a plugin for nnU-Net v2.

Layers of the package, each importable without the ones after it:

- :mod:`nnunet_deconver.ndc`: the nonnegative deconvolution (NDC) operator and module.
- :mod:`nnunet_deconver.network`: Deconver blocks, the U-Net and the paper's presets.
- :mod:`nnunet_deconver.nnunet`: nnU-Net trainers and plans.
- :mod:`nnunet_deconver.evaluation`: Dice / HD95 metrics and cross-validation reports.
- :mod:`nnunet_deconver.cli`: the ``nnunet-deconver`` command.
"""

__version__ = "0.1.0"
