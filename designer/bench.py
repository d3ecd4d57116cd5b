"""Latency of a design against its dense network, measured in the same run.

The dense baseline is the same architecture with plain convolutions; it and
every backend are timed in NCHW and channels-last, each judged by its faster
layout. Every backend runs the same weights (copied from one reference
build). The timed calls are interleaved, one call of every candidate per
round, so that load changes on a shared machine hit all candidates alike;
each timed call follows an untimed one of the same candidate, so it runs
with its own weights in cache (at batch 1 VGG-16 reads 60 MB of weights, and
a cold cache costs it 20%); medians after warm-up. The first call of each candidate (Taichi compiles
there, `auto` measures its choices there) is reported as `first_call_ms` and
never enters a median.

Trust: every timing carries its min and max over the repeats and their
spread, (max - min) / median; a spread above NOISY (10%) means the repeats
disagree, which the app and the CLI say next to the number (the simple
max-min rule rather than an IQR: it is what the min..max shown beside each
median reads as, and with 5 repeats quartiles are interpolated guesses). The
1-minute load average is recorded before the first call (so the benchmark's
own threads do not count) with the machine's core count: a load above the
cores means other work shared the CPUs.

bench_onnx times the same comparison in onnxruntime: the dense network's
and the design's fast ONNX exports (designer.export), in one process, same
threads, interleaved the same way.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Hashable

import torch
import torch.nn as nn

from designer.build import build_model, dense_design, design_layers, validate
from designer.counting import count_design
from designer.data import dataset_info
from designer.design import Design
from designer.errors import DesignError

BACKENDS = ("reference", "decomposed", "taichi", "auto")  # auto: each layer its fastest (models.layers.autotune)
MODES = ("infer", "train")
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
LIMITS = {"batch_size": (1, 1024, "--batch-size"), "repeats": (1, 1000, "--repeats"), "warmup": (0, 100, "--warmup")}
NOISY = 0.10  # a spread (max - min) / median above this: the repeats disagree
RUN_ERRORS = (TypeError, ValueError, RuntimeError, ImportError, NotImplementedError)  # a candidate that cannot run


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int = 1
    repeats: int = 10
    warmup: int = 2
    mode: str = "infer"  # infer: eval forward; train: forward + backward of a cross-entropy loss


def check_config(config: BenchConfig) -> BenchConfig:
    """The config if it can run; DesignError naming the option and its allowed range otherwise."""
    for field, (low, high, option) in LIMITS.items():
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DesignError(f"{field.replace('_', ' ')} must be an integer in {low}..{high}, got {_shown(value)}",
                              option)
    if config.mode not in MODES:
        raise DesignError(f"unknown mode {_shown(config.mode)} (choose one of {', '.join(MODES)})", "--mode")
    if config.mode == "train" and config.batch_size < 2:
        raise DesignError("a training step needs batch size at least 2: BatchNorm normalises by the batch's own "
                          "statistics, which one image per channel cannot give (VGG's classifier fails at batch 1)",
                          "--batch-size")
    return config


def _shown(value, limit: int = 20) -> str:
    """A bad value, short enough for one error line (repr of a 5,000-digit int even raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def spread(timing: dict) -> float:
    """(max - min) / median of a timing's repeats: 0 when they agree, above NOISY when they do not."""
    return (timing["max_ms"] - timing["min_ms"]) / timing["median_ms"] if timing["median_ms"] else 0.0


def machine_load() -> dict:
    """The 1-minute load average and the core count: above the cores, other work shares the CPUs."""
    return {"load_average": os.getloadavg()[0], "cpu_count": os.cpu_count() or 1}


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


def _one_call(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def time_interleaved(calls: dict[Hashable, Callable[[], None]], config: BenchConfig,
                     progress: Callable[[str, float], None] = lambda what, fraction: None) -> dict:
    """Per call: first call, then warm-up, then `repeats` rounds that run every call twice, timing the second.

    Returns, per key, the median, min and max wall time, their spread and the
    median process CPU time of the timed calls, and the first call's wall
    time, in ms; or {"error": its first line} for a call that raised on its
    first call (it is left out of the rounds, the others still run).
    """
    steps = len(calls) + config.repeats
    first, failed = {}, {}
    for i, (key, fn) in enumerate(calls.items()):
        progress(str(key[0] if isinstance(key, tuple) else key), i / steps)
        try:
            first[key] = _one_call(fn)[0]
            for _ in range(config.warmup):
                fn()
        except RUN_ERRORS as err:
            failed[key] = {"error": first_line(err)}
    samples: dict = {key: [] for key in calls if key not in failed}
    for r in range(config.repeats):
        progress(f"round {r + 1} of {config.repeats}", (len(calls) + r) / steps)
        for key in samples:
            calls[key]()  # untimed: brings this candidate's weights back into the caches the previous one evicted
            samples[key].append(_one_call(calls[key]))
    timings = {}
    for key in calls:
        if key in failed:
            timings[key] = failed[key]
            continue
        wall = [w for w, _ in samples[key]]
        timing = {"median_ms": statistics.median(wall), "min_ms": min(wall), "max_ms": max(wall),
                  "cpu_ms": statistics.median([c for _, c in samples[key]]), "first_call_ms": first[key],
                  "repeats": len(wall)}
        timings[key] = {**timing, "spread": spread(timing)}
    return timings


def first_line(err: BaseException, limit: int = 300) -> str:
    """An error as one short line (a torch error can be pages long)."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[:limit] + "..."


def _inputs(design: Design, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    info = dataset_info(design.network.dataset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, info.in_channels, info.input_size, info.input_size, generator=g)
    return x, torch.randint(0, info.num_classes, (batch_size,), generator=g)


def _faster_layout(timings: dict, name: str) -> dict:
    """The timing of `name` in its faster layout, with both layouts' medians; its error if a layout failed."""
    for lay in LAYOUTS:
        if "error" in timings[name, lay]:
            return {"error": f"{timings[name, lay]['error']} ({lay})"}
    layout = min(LAYOUTS, key=lambda lay: timings[name, lay]["median_ms"])
    return {**timings[name, layout], "layout": layout,
            **{f"{lay}_ms": timings[name, lay]["median_ms"] for lay in LAYOUTS}}


def bench_design(design: Design, backends: list[str], config: BenchConfig,
                 progress: Callable[[str, float], None] | None = None) -> dict:
    """Whole-network latency of `design` per backend and of its dense network, one run.

    Every candidate, dense included, runs in NCHW and in channels-last and is
    judged by its faster layout. A backend that cannot be built or run gets
    {"error": ...}; DesignError when the dense network itself cannot run.
    """
    design, config = validate(design), check_config(config)
    progress = progress or (lambda what, fraction: None)
    x, target = _inputs(design, config.batch_size)
    weights = build_model(design).state_dict()
    dense_net = dense_design(design.network, design.padfree)
    result: dict = {"batch_size": config.batch_size, "threads": torch.get_num_threads(), "mode": config.mode,
                    **machine_load(), "backends": {}}
    calls = {}
    for name in ["dense", *backends]:
        for layout, memory_format in LAYOUTS.items():
            try:
                if name == "dense":
                    model = build_model(dense_net)
                else:
                    model = build_model(design, backend=name)
                    model.load_state_dict(weights)
            except (ValueError, ImportError, RuntimeError) as err:
                result["backends"][name] = {"error": first_line(err)}
                break
            model = model.to(memory_format=memory_format)
            calls[name, layout] = step(model, x.contiguous(memory_format=memory_format), target, config.mode)
    timings = time_interleaved(calls, config, progress)
    passes = 3 if config.mode == "train" else 1  # a training step: forward, input and weight gradients
    dense_flops = count_design(dense_net, "macs").flops
    design_flops = count_design(design, "macs").flops
    result["flop_ratio"] = dense_flops / max(design_flops, 1)
    dense = result["dense"] = _faster_layout(timings, "dense")
    if "error" in dense:
        raise DesignError(f"the dense network cannot run a {config.mode} step at batch {config.batch_size}: "
                          f"{dense['error']}", "bench")
    dense["gflops"] = 2 * passes * dense_flops * config.batch_size / dense["median_ms"] / 1e6
    for name in backends:
        if name in result["backends"]:
            continue  # it could not be built
        timing = result["backends"][name] = _faster_layout(timings, name)
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


RUNTIMES = ("torch", "onnxruntime")


def ort_session(path: str, threads: int):
    """An onnxruntime CPU session at ORT_ENABLE_ALL with `threads` intra-op threads; its pool spins only when
    OMP_WAIT_POLICY is not PASSIVE (as torch's OpenMP threads do), so a shared machine is not kept busy."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if passive else "1")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def bench_onnx(design: Design, config: BenchConfig, progress: Callable[[str, float], None] | None = None) -> dict:
    """Latency in onnxruntime of the design's fast ONNX export against the dense network's, one run, interleaved.

    Same shape as bench_design: {"dense": timing, "backends": {"onnxruntime": timing with speedup_vs_dense}},
    with "runtime": "onnxruntime"; both sessions use torch.get_num_threads() threads. Inference only.
    """
    import tempfile

    from designer.export import export
    design, config = validate(design), check_config(config)
    if config.mode != "infer":
        raise DesignError("onnxruntime times inference only (--mode infer)", "--mode")
    x = _inputs(design, config.batch_size)[0].numpy()
    threads = torch.get_num_threads()
    dense_net = dense_design(design.network, design.padfree)
    result: dict = {"batch_size": config.batch_size, "threads": threads, "mode": config.mode,
                    "runtime": "onnxruntime", **machine_load(), "backends": {}}
    with tempfile.TemporaryDirectory() as folder:
        sessions = {}
        for name, net in (("dense", dense_net), ("onnxruntime", design)):
            path = os.path.join(folder, f"{name}.onnx")
            export(net, "onnx", path)
            sessions[name] = ort_session(path, threads)
    calls = {name: (lambda s=s: s.run(None, {"input": x})) for name, s in sessions.items()}
    timings = time_interleaved(calls, config, progress or (lambda what, fraction: None))
    dense_flops, design_flops = count_design(dense_net, "macs").flops, count_design(design, "macs").flops
    result["flop_ratio"] = dense_flops / max(design_flops, 1)
    dense = result["dense"] = {**timings["dense"], "layout": "onnx"}
    if "error" in dense:
        raise DesignError(f"onnxruntime cannot run the dense network: {dense['error']}", "bench")
    dense["gflops"] = 2 * dense_flops * config.batch_size / dense["median_ms"] / 1e6
    timing = result["backends"]["onnxruntime"] = {**timings["onnxruntime"], "layout": "onnx"}
    if "error" not in timing:
        timing["speedup_vs_dense"] = dense["median_ms"] / timing["median_ms"]
        timing["cpu_speedup_vs_dense"] = dense["cpu_ms"] / timing["cpu_ms"]
        timing["gflops"] = 2 * design_flops * config.batch_size / timing["median_ms"] / 1e6
    return result
