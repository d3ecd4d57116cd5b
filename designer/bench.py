"""Latency of a design against its dense network, measured in the same run.

The dense baseline is the same architecture with plain convolutions; it and
every backend are timed in NCHW and channels-last, each judged by its faster
layout. Every
backend runs the same weights (copied from one reference build). Medians
after warm-up; the first call of each backend (Taichi compiles there) is
reported separately as `first_call_ms` and never enters a median.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from designer.build import build_model, dense_design, design_layers, validate
from designer.counting import count_design
from designer.data import dataset_info
from designer.design import Design
from designer.errors import DesignError

BACKENDS = ("reference", "decomposed", "taichi")
MODES = ("infer", "train")


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int = 1
    repeats: int = 10
    warmup: int = 2
    mode: str = "infer"  # infer: eval forward; train: forward + backward of a cross-entropy loss


def check_config(config: BenchConfig) -> BenchConfig:
    if config.batch_size < 1:
        raise DesignError(f"batch size must be at least 1, got {config.batch_size}", "--batch-size")
    if config.repeats < 1:
        raise DesignError(f"repeats must be at least 1, got {config.repeats}", "--repeats")
    if config.mode not in MODES:
        raise DesignError(f"unknown mode {config.mode!r} (choose one of {', '.join(MODES)})", "--mode")
    return config


def resolve_backends(name: str) -> list[str]:
    if name == "all":
        return list(BACKENDS)
    if name not in BACKENDS:
        raise DesignError(f"unknown backend {name!r} (choose one of {', '.join(BACKENDS)}, all)", "--backend")
    return [name]


def step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, mode: str) -> Callable[[], None]:
    if mode == "infer":
        model.eval()

        def infer():
            with torch.inference_mode():
                model(x)
        return infer
    model.train()
    loss_fn = nn.CrossEntropyLoss()

    def train():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
    return train


def time_call(fn: Callable[[], None], config: BenchConfig) -> dict:
    """First call, then warm-up, then `repeats` timed calls: median and spread in ms."""
    start = time.perf_counter()
    fn()
    first = (time.perf_counter() - start) * 1e3
    for _ in range(config.warmup):
        fn()
    samples = []
    for _ in range(config.repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples),
            "first_call_ms": first, "repeats": len(samples)}


def _inputs(design: Design, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    info = dataset_info(design.network.dataset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, info.in_channels, info.input_size, info.input_size, generator=g)
    return x, torch.randint(0, info.num_classes, (batch_size,), generator=g)


def time_layouts(model: nn.Module, x: torch.Tensor, target: torch.Tensor, config: BenchConfig) -> dict:
    """Time `model` in NCHW and in channels-last; the faster layout is its figure."""
    nchw = time_call(step(model, x, target, config.mode), config)
    model = model.to(memory_format=torch.channels_last)
    channels_last = time_call(step(model, x.contiguous(memory_format=torch.channels_last), target, config.mode),
                              config)
    best, layout = min((nchw, "nchw"), (channels_last, "channels_last"), key=lambda t: t[0]["median_ms"])
    return {**best, "layout": layout, "nchw_ms": nchw["median_ms"], "channels_last_ms": channels_last["median_ms"]}


def bench_design(design: Design, backends: list[str], config: BenchConfig,
                 progress: Callable[[str, float], None] | None = None) -> dict:
    """Whole-network latency of `design` per backend and of its dense network, one run.

    Every candidate, dense included, runs in NCHW and in channels-last and is
    judged by its faster layout.
    """
    design, config = validate(design), check_config(config)
    progress = progress or (lambda what, fraction: None)
    x, target = _inputs(design, config.batch_size)
    steps = 1 + len(backends)
    progress("dense", 0.0)
    result = {
        "batch_size": config.batch_size, "threads": torch.get_num_threads(), "mode": config.mode,
        "dense": time_layouts(build_model(dense_design(design.network)), x, target, config),
        "backends": {},
    }
    dense_flops = count_design(dense_design(design.network), "macs").flops
    design_flops = count_design(design, "macs").flops
    result["flop_ratio"] = dense_flops / max(design_flops, 1)
    weights = build_model(design).state_dict()
    for i, name in enumerate(backends):
        progress(name, (1 + i) / steps)
        try:
            model = build_model(design, backend=name)
        except (ValueError, ImportError, RuntimeError) as err:
            result["backends"][name] = {"error": str(err).splitlines()[0]}
            continue
        model.load_state_dict(weights)
        timing = time_layouts(model, x, target, config)
        timing["speedup_vs_dense"] = result["dense"]["median_ms"] / timing["median_ms"]
        timing["gflops"] = 2 * design_flops * config.batch_size / timing["median_ms"] / 1e6
        result["backends"][name] = timing
    progress("done", 1.0)
    return result


def bench_layers(design: Design, backend: str, config: BenchConfig) -> list[dict]:
    """Latency of each convolution alone (the design's module vs a dense conv), same input size."""
    design, config = validate(design), check_config(config)
    dense_net = build_model(dense_design(design.network))
    net = build_model(design, backend=backend)
    modules = dict(net.named_modules())
    dense_modules = dict(dense_net.named_modules())
    rows = []
    for layer, choice in zip(design_layers(design), design.layers):
        x = torch.randn(config.batch_size, layer.spec.in_channels, *layer.in_size)
        timings = {}
        for label, module in (("dense", dense_modules[layer.name]), ("design", modules[layer.name])):
            timings[label] = time_call(_modulestep(module, x, config.mode), config)
        rows.append({"name": layer.name, "kind": choice.kind, "dense_ms": timings["dense"]["median_ms"],
                     "design_ms": timings["design"]["median_ms"],
                     "speedup_vs_dense": timings["dense"]["median_ms"] / timings["design"]["median_ms"]})
    return rows


def _modulestep(module: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    if mode == "infer":
        def infer():
            with torch.inference_mode():
                module(x)
        return infer
    x = x.clone().requires_grad_(True)

    def train():
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
    return train
