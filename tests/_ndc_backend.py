"""The ``backend`` fixture of the NDC tests: each test using it runs once per backend; and
:func:`instruction_sets`, the builds of the C++ kernels one after the other.

``torch`` is PyTorch's convolutions, ``cpp`` the fused C++ kernels; the C++ build must succeed
on the test machine (a failed build fails these tests, it is not skipped).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from nnunet_deconver.ndc.backends import BACKEND_ENV, backend_for, cpp

NAMES = ("torch", "cpp")
#: the builds of the C++ kernels, narrowest first
BUILDS = ("base", "avx2", "avx512")


@pytest.fixture(params=NAMES)
def backend(request, monkeypatch) -> str:
    """Forces ``NNUNET_DECONVER_NDC_BACKEND`` to the parameter for the test; returns the name."""
    import torch

    monkeypatch.setenv(BACKEND_ENV, request.param)
    if request.param == "cpp":
        assert cpp.is_available(), "the C++ NDC kernel did not build (see the warning above)"
    assert backend_for(torch.device("cpu")).name == request.param
    return request.param


def instruction_sets() -> Iterator[str]:
    """Selects each build of the C++ kernels this CPU runs (the baseline always) and yields its
    name; the best build is selected again afterwards, and at least the baseline must have run."""
    kernels, ran = cpp.extension(), []
    try:
        for build in BUILDS:
            try:
                assert kernels.instruction_set(build) == build
            except RuntimeError as exc:
                assert "this CPU cannot run" in str(exc)
                continue
            ran.append(build)
            yield build
    finally:
        kernels.instruction_set("auto")
    assert "base" in ran
