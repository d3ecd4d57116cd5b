"""Tests run from the repository root; keep Taichi quiet and torch on 2 threads."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import designer  # noqa: E402,F401  (sets the OpenMP and Taichi environment before torch loads)
