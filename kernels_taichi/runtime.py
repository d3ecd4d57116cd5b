"""Initialise Taichi once, with an explicit arch.

CUDA when torch sees a GPU (falling back to CPU if Taichi cannot start on
it), else CPU. Never ti.gpu: its probing segfaults on machines without a
display stack. Initialisation is lazy so that importing models is cheap.
"""
from __future__ import annotations

import contextlib
import os
import sys

_state: dict[str, object] = {}


def taichi():
    """The taichi module, initialised on first use."""
    if "ti" not in _state:
        os.environ.setdefault("TI_SKIP_VERSION_CHECK", "ON")
        os.environ.setdefault("TI_LOG_LEVEL", "warn")
        os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "false")
        import taichi as ti
        import torch

        # ti.init prints a banner on stdout; stdout belongs to the caller (the CLI's --json).
        with contextlib.redirect_stdout(sys.stderr):
            _state["arch"] = _init(ti, torch.cuda.is_available())
        _state["ti"] = ti
    return _state["ti"]


def _init(ti, want_cuda: bool) -> str:
    if want_cuda:
        try:
            ti.init(arch=ti.cuda, offline_cache=True)
            if ti.lang.impl.current_cfg().arch == ti.cuda:
                return "cuda"
            ti.reset()  # Taichi fell back on its own: start again on the CPU explicitly
        except Exception:  # no usable CUDA for Taichi: run on the CPU instead
            pass
    # Keep ti.Vector/ti.Matrix as LLVM vectors: the CPU JIT then emits the host's
    # wide SIMD (AVX2/AVX-512) for the tile updates instead of 128-bit scalar code.
    ti.init(arch=ti.cpu, offline_cache=True, real_matrix_scalarize=False)
    return "cpu"


def arch() -> str:
    """'cuda' or 'cpu': the arch Taichi runs on (initialising it if needed)."""
    taichi()
    return str(_state["arch"])
