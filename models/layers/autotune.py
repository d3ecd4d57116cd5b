"""The `auto` backend: each layer runs whichever exact backend is fastest on its input.

As cudnn.benchmark does for cuDNN algorithms: the first call with a new input
signature (shape, strides, dtype, device, whether gradients are wanted) times
every other registered backend on that very input (the forward alone, or
forward + backward when gradients are wanted; median of a few calls,
interleaved across the candidates), keeps the fastest, and later calls with
the same signature go straight to it. Every backend computes the same function (the suite checks each against `reference`), so the choice
changes speed only. A layer's choices live in `module.auto_choices`, outside
the state_dict; a backend that cannot take the input (e.g. float64 into a
float32 kernel) is skipped, and so is one whose forward carries a `usable(x)`
that says False: sconv where its C++ kernel cannot build, Taichi on the CPU
where sconv builds (see taichi_usable).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn as nn

from kernels_taichi import sconv
from models.layers.epilogue import Epilogue

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]

AUTO = "auto"
TRIALS = 5  # timed calls per candidate per round, after one warm-up call (Taichi compiles there)
MAX_ROUNDS = 3  # rounds of TRIALS while other candidates are within CLOSE of the fastest
CLOSE = 0.10  # on a loaded machine one round's medians wander by this much


def _wants_grad(module: nn.Module, x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def _signature(x: torch.Tensor, wants_grad: bool, fused: bool = False) -> tuple:
    """What a choice holds for: shape, strides (the layout), dtype, device, whether an epilogue is fused,
    gradients; built at every call of a layer, so it stays cheap (0.4 us; with the memory format and the
    device's name it took 1.3)."""
    return x.shape, x.stride(), x.dtype, x.device, fused, wants_grad


def run_with_epilogue(forward: Forward, module: nn.Module, x: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
    """forward(module, x) followed by the epilogue: in the backend's own call where it has one (`with_epilogue`)."""
    fused = getattr(forward, "with_epilogue", None)
    return fused(module, x, epilogue) if fused is not None else epilogue.apply(forward(module, x))


def _trial(forward: Forward, module: nn.Module, x: torch.Tensor, wants_grad: bool,
           epilogue: Epilogue | None = None) -> Callable[[], None]:
    if not wants_grad:
        def infer():
            with torch.no_grad():
                forward(module, x) if epilogue is None else run_with_epilogue(forward, module, x, epilogue)
        return infer
    inp = x.detach().requires_grad_(x.requires_grad)
    inputs = [p for p in module.parameters() if p.requires_grad] + ([inp] if inp.requires_grad else [])

    def train():
        y = forward(module, inp)
        # leaves every .grad untouched; allow_unused: an empty parameter (HetConv P=1's 1x1) is not in the graph
        torch.autograd.grad(y, inputs, torch.ones_like(y), allow_unused=True)
    return train


def sconv_usable(x: torch.Tensor) -> bool:
    """sconv's backends are candidates where the C++ kernel builds."""
    return sconv.available()


def taichi_usable(x: torch.Tensor) -> bool:
    """Taichi's backends are candidates on CUDA, and on the CPU only where sconv cannot build.

    On the CPU, Taichi's thread pool and torch's OpenMP one hand the cores to each other at every
    layer of a network, which timing a layer alone does not see: ResNet-20 ASK_5a at batch 1 took
    5.8-6.0 ms (fastest call) with the 7 of 19 layers auto gave Taichi, 1.6-1.9 ms with sconv there."""
    return x.device.type != "cpu" or not sconv.available()


def _usable(forward: Forward, x: torch.Tensor) -> bool:
    """False for a backend that says it should not run x here (its `usable(x)`)."""
    usable = getattr(forward, "usable", None)
    return usable is None or bool(usable(x))


def fastest(registry: dict[str, Forward], module: nn.Module, x: torch.Tensor, wants_grad: bool,
            epilogue: Epilogue | None = None) -> str:
    """The name of the backend in `registry` (other than auto) with the lowest median time on x, each with
    `epilogue` after it when one is given (the inference form: the conv and its folded BatchNorm, ReLU, add).

    Each candidate runs once untimed (Taichi compiles there, sconv builds its plans), then TRIALS rounds
    time one call of every candidate each, interleaved, so that a change of the machine's load hits all
    candidates alike; the median of a candidate's calls is its time (a minimum favours erratic candidates:
    Taichi's varies most). While others are within CLOSE of the fastest, those few get more rounds,
    up to MAX_ROUNDS in all."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    trials = {}
    for name, forward in registry.items():
        if name == AUTO or not _usable(forward, x):
            continue
        try:
            run = _trial(forward, module, x, wants_grad, epilogue)
            run()
            trials[name] = run
        except (TypeError, ValueError, RuntimeError, ImportError, NotImplementedError):
            continue  # this backend cannot run this input; the others can
    if not trials:
        raise RuntimeError(f"no backend of {type(module).__name__} can run an input of shape {tuple(x.shape)}")
    samples: dict[str, list[float]] = {name: [] for name in trials}
    for _ in range(MAX_ROUNDS):
        for _ in range(TRIALS):
            for name, run in trials.items():
                sync()
                start = time.perf_counter()
                run()
                sync()
                samples[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(samples[name]) for name in trials}
        best = min(medians.values())
        trials = {name: run for name, run in trials.items() if medians[name] <= (1 + CLOSE) * best}
        if len(trials) < 2:
            break  # a clear winner; close ones get more rounds, so that noise does not decide between them
    return min(trials, key=lambda name: statistics.median(samples[name]))


def chosen_backend(registry: dict[str, Forward], module: nn.Module, x: torch.Tensor,
                   epilogue: Epilogue | None = None) -> str:
    """The backend auto runs for x (followed by `epilogue`, when given): measured on the first input of its
    signature, remembered after."""
    wants_grad = _wants_grad(module, x)
    choices = module.__dict__.setdefault("auto_choices", {})
    key = _signature(x, wants_grad, epilogue is not None)
    if key not in choices:
        choices[key] = fastest(registry, module, x, wants_grad, epilogue)
    return choices[key]


def register_auto(registry: dict[str, Forward]) -> None:
    """Add the `auto` backend to a layer kind's registry of backends."""

    def auto_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return registry[chosen_backend(registry, module, x)](module, x)

    registry[AUTO] = auto_forward
