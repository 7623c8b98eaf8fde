"""The nonnegative deconvolution (NDC) operator.

- :func:`ndc`: the functional multiplicative update, through the backends (fused C++ kernels on
  CPU, PyTorch's convolutions elsewhere; see :mod:`nnunet_deconver.ndc.backends`).
- :func:`ndc_reference`: the same update as a plain autograd graph (reference for tests/benchmarks).
- :class:`NDC`: the layer (learned nonnegative initialisation and rectified filter).
"""

from nnunet_deconver.ndc.functional import ndc, ndc_reference, reconstruction_error
from nnunet_deconver.ndc.module import NDC

__all__ = ["NDC", "ndc", "ndc_reference", "reconstruction_error"]
