"""Latency in onnxruntime: the design's fast ONNX export against the dense network's, in the same run.

Both exports (designer.networks.export) run in one process with the same
threads, interleaved by designer.bench.timing's loop.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

from designer.analysis.counting import count_design
from designer.bench.latency import inputs
from designer.bench.timing import BenchConfig, check_config, machine_load, time_interleaved
from designer.designs.design import Design
from designer.errors import DesignError
from designer.networks.build import dense_design, validate

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

    from designer.networks.export import export
    design, config = validate(design), check_config(config)
    if config.mode != "infer":
        raise DesignError("onnxruntime times inference only (--mode infer)", "--mode")
    x = inputs(design, config.batch_size)[0].numpy()
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
