"""Tests run from the repository root (the package is installed with `pip install -e .`)."""
# isort: off
import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)
# isort: on
import pytest
import torch

from tests.device import DEVICE


@pytest.fixture(autouse=True)
def _default_device():
    """Under KERNEL_STUDIO_DEVICE=cuda (make gpu-check) every tensor a test makes is on that device."""
    if DEVICE == "cpu":
        yield
        return
    with torch.device(DEVICE):
        yield
