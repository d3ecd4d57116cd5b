"""The `auto` backend: each layer runs whichever exact backend is fastest on its input.

As cudnn.benchmark does for cuDNN algorithms: the first call with a new input
signature (shape, memory format, device, whether gradients are wanted) times
every other registered backend on that very input (the forward alone, or
forward + backward when gradients are wanted; median of a few calls), keeps
the fastest, and later calls with the same signature go straight to it. Every backend computes the
same function (the suite checks each against `reference`), so the choice
changes speed only. A layer's choices live in `module.auto_choices`, outside
the state_dict; a backend that cannot take the input (e.g. float64 into a
float32 kernel) is skipped.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn as nn

from models.layers.layout import memory_format

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]

AUTO = "auto"
TRIALS = 5  # timed calls per candidate, after one warm-up call (Taichi compiles there)


def _wants_grad(module: nn.Module, x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def _signature(x: torch.Tensor, wants_grad: bool) -> tuple:
    return tuple(x.shape), memory_format(x), str(x.device), x.dtype, wants_grad


def _trial(forward: Forward, module: nn.Module, x: torch.Tensor, wants_grad: bool) -> Callable[[], None]:
    if not wants_grad:
        def infer():
            with torch.no_grad():
                forward(module, x)
        return infer
    inp = x.detach().requires_grad_(x.requires_grad)
    inputs = [p for p in module.parameters() if p.requires_grad] + ([inp] if inp.requires_grad else [])

    def train():
        y = forward(module, inp)
        torch.autograd.grad(y, inputs, torch.ones_like(y))  # leaves every .grad untouched
    return train


def _median_seconds(run: Callable[[], None], device: torch.device) -> float:
    """The median of TRIALS calls (a minimum favours erratic candidates: Taichi's varies most)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run()
    samples = []
    for _ in range(TRIALS):
        sync()
        start = time.perf_counter()
        run()
        sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def fastest(registry: dict[str, Forward], module: nn.Module, x: torch.Tensor, wants_grad: bool) -> str:
    """The name of the backend in `registry` (other than auto) with the lowest time on x."""
    timings = {}
    for name, forward in registry.items():
        if name == AUTO:
            continue
        try:
            timings[name] = _median_seconds(_trial(forward, module, x, wants_grad), x.device)
        except (TypeError, ValueError, RuntimeError, ImportError):
            continue  # this backend cannot run this input; the others can
    if not timings:
        raise RuntimeError(f"no backend of {type(module).__name__} can run an input of shape {tuple(x.shape)}")
    return min(timings, key=timings.get)


def register_auto(registry: dict[str, Forward]) -> None:
    """Add the `auto` backend to a layer kind's registry of backends."""

    def auto_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        wants_grad = _wants_grad(module, x)
        choices = module.__dict__.setdefault("auto_choices", {})
        key = _signature(x, wants_grad)
        if key not in choices:
            choices[key] = fastest(registry, module, x, wants_grad)
        return registry[choices[key]](module, x)

    registry[AUTO] = auto_forward
