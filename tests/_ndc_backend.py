"""The ``backend`` fixture of the NDC tests: each test using it runs once per backend.

``torch`` is PyTorch's convolutions, ``cpp`` the fused C++ kernels; the C++ build must succeed
on the test machine (a failed build fails these tests, it is not skipped).
"""

from __future__ import annotations

import pytest

from nnunet_deconver.ndc.backends import BACKEND_ENV, backend_for, cpp

NAMES = ("torch", "cpp")


@pytest.fixture(params=NAMES)
def backend(request, monkeypatch) -> str:
    """Forces ``NNUNET_DECONVER_NDC_BACKEND`` to the parameter for the test; returns the name."""
    import torch

    monkeypatch.setenv(BACKEND_ENV, request.param)
    if request.param == "cpp":
        assert cpp.is_available(), "the C++ NDC kernel did not build (see the warning above)"
    assert backend_for(torch.device("cpu")).name == request.param
    return request.param
