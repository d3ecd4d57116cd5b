"""Latency of a design against its dense network, measured in the same run.

The dense baseline is the same architecture with plain convolutions; it and
every backend are timed in NCHW and channels-last, each judged by its faster
layout. Every backend runs the same weights (copied from one reference
build). Inference is timed on the deployed form of both networks unless
config.fold is off: BatchNorm folded into the convs, the bias, residual add
and ReLU run in each conv's call (models.fold). Timing is
designer.bench.timing's interleaved loop.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from designer.analysis.counting import count_design
from designer.bench.timing import BenchConfig, check_config, first_line, machine_load, time_interleaved
from designer.designs.design import Design
from designer.errors import DesignError
from designer.networks.build import build_model, dense_design, design_layers, validate
from models.fold import fold_for_inference

BACKENDS = ("reference", "decomposed", "taichi", "sconv", "auto")  # auto: each layer its fastest (models.layers.autotune)
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
FORMS = {True: "folded", False: "as trained", None: None}  # how a network was timed (None: a training step)


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


def inputs(design: Design, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    network = validate(design).network
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *network.input_shape, generator=g)
    return x, torch.randint(0, network.num_classes, (batch_size,), generator=g)


def _fastest_variant(timings: dict, name: str) -> dict:
    """The timing of `name` in its fastest variant (layout, and folded or not), with each variant's median;
    its error if a variant failed."""
    variants = [key for key in timings if key[0] == name]
    for key in variants:
        if "error" in timings[key]:
            return {"error": f"{timings[key]['error']} ({_label(key)})"}
    best = min(variants, key=lambda key: timings[key]["median_ms"])
    return {**timings[best], "layout": best[1], "form": FORMS[best[2]],
            **{f"{_label(key)}_ms": timings[key]["median_ms"] for key in variants}}


def _label(key: tuple) -> str:
    """'channels_last', or 'channels_last_as_trained' for a network timed without folding where it was offered."""
    _, layout, folded = key
    return layout if folded is not False else f"{layout}_as_trained"


def _variants(name: str, config: BenchConfig) -> list[tuple[str, bool | None]]:
    """(layout, folded) pairs to time: the dense baseline also as trained, so that it runs in its fastest form
    (oneDNN's fused post-ops can lose to plain convs at small sizes); None where folding does not apply."""
    if config.mode != "infer":
        return [(layout, None) for layout in LAYOUTS]
    if not config.fold:
        return [(layout, False) for layout in LAYOUTS]
    forms = (True, False) if name == "dense" else (True,)
    return [(layout, folded) for folded in forms for layout in LAYOUTS]


def bench_design(design: Design, backends: list[str], config: BenchConfig,
                 progress: Callable[[str, float], None] | None = None) -> dict:
    """Whole-network latency of `design` per backend and of its dense network, one run.

    Every candidate, dense included, runs in NCHW and in channels-last and is
    judged by its faster layout; for inference the dense network is also
    timed as trained, and its faster form counts. A backend that cannot be
    built or run gets {"error": ...}; DesignError when the dense network
    itself cannot run.
    """
    design, config = validate(design), check_config(config)
    progress = progress or (lambda what, fraction: None)
    x, target = inputs(design, config.batch_size)
    weights = build_model(design).state_dict()
    dense_net = dense_design(design.network, design.padfree)
    result: dict = {"batch_size": config.batch_size, "threads": torch.get_num_threads(), "mode": config.mode,
                    **machine_load(), "backends": {}, "fold": config.mode == "infer" and config.fold, "folded": {},
                    "fold_notes": {}}
    calls = {}
    for name in ["dense", *backends]:
        for layout, folded in _variants(name, config):
            try:
                if name == "dense":
                    model = build_model(dense_net)
                else:
                    model = build_model(design, backend=name)
                    model.load_state_dict(weights)
            except (ValueError, ImportError, RuntimeError) as err:
                result["backends"][name] = {"error": first_line(err)}
                break
            memory_format = LAYOUTS[layout]
            model, inp = model.to(memory_format=memory_format), x.contiguous(memory_format=memory_format)
            if folded:
                model, report = fold_for_inference(model, inp)
                result["folded"][name] = report.folded
                if report.why_not:
                    result["fold_notes"][name] = report.why_not
            calls[name, layout, folded] = step(model, inp, target, config.mode)
    timings = time_interleaved(calls, config, progress)
    passes = 3 if config.mode == "train" else 1  # a training step: forward, input and weight gradients
    dense_flops = count_design(dense_net, "macs").flops
    design_flops = count_design(design, "macs").flops
    result["flop_ratio"] = dense_flops / max(design_flops, 1)
    dense = result["dense"] = _fastest_variant(timings, "dense")
    if "error" in dense:
        raise DesignError(f"the dense network cannot run a {config.mode} step at batch {config.batch_size}: "
                          f"{dense['error']}", "bench")
    dense["gflops"] = 2 * passes * dense_flops * config.batch_size / dense["median_ms"] / 1e6
    for name in backends:
        if name in result["backends"]:
            continue  # it could not be built
        timing = result["backends"][name] = _fastest_variant(timings, name)
        if "error" in timing:
            continue
        timing["speedup_vs_dense"] = dense["median_ms"] / timing["median_ms"]
        timing["cpu_speedup_vs_dense"] = dense["cpu_ms"] / timing["cpu_ms"]
        timing["gflops"] = 2 * passes * design_flops * config.batch_size / timing["median_ms"] / 1e6
    result["backends"] = {name: result["backends"][name] for name in backends}
    progress("done", 1.0)
    return result


def bench_layers(design: Design, backend: str, config: BenchConfig, names: list[str] | None = None) -> list[dict]:
    """Latency of each convolution alone (the design's module vs the dense network's conv), same input size.

    `names` restricts it to those convolutions (all by default). A layer that cannot be built or run gets
    its "error" (every layer, when the backend cannot build the network), so a caller keeps what it has.
    """
    design, config = validate(design), check_config(config)
    layers = [(layer, choice) for layer, choice in zip(design_layers(design), design.layers)
              if names is None or layer.name in names]
    try:
        dense_modules = dict(build_model(dense_design(design.network, design.padfree)).named_modules())
        modules = dict(build_model(design, backend=backend).named_modules())
    except (ValueError, ImportError, RuntimeError) as err:
        return [{"name": layer.name, "kind": choice.kind, "error": first_line(err)} for layer, choice in layers]
    rows = []
    for layer, choice in layers:
        x = torch.randn(config.batch_size, layer.spec.in_channels, *layer.in_size)
        x.requires_grad_(config.mode == "train")
        timings = time_interleaved({label: module_step(module, x, config.mode) for label, module in
                                    (("dense", dense_modules[layer.name]), ("design", modules[layer.name]))},
                                   config)
        row = {"name": layer.name, "kind": choice.kind}
        failed = [t["error"] for t in timings.values() if "error" in t]
        if failed:
            rows.append({**row, "error": failed[0]})
            continue
        for label in ("dense", "design"):
            t = timings[label]
            row.update({f"{label}_ms": t["median_ms"], f"{label}_min_ms": t["min_ms"],
                        f"{label}_max_ms": t["max_ms"], f"{label}_spread": t["spread"]})
        row["speedup_vs_dense"] = row["dense_ms"] / row["design_ms"]
        rows.append(row)
    return rows


def module_step(module: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    """One call of a layer alone: an inference forward, or forward + backward of out.sum()
    (the input's gradient too when x requires grad)."""
    if mode == "infer":
        def infer():
            with torch.inference_mode():
                module(x)
        return infer

    def train():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()
    return train
