"""Tests run from the repository root (the package is installed with `pip install -e .`)."""
import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)
