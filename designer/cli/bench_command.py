"""The CLI's `bench` command: the design against its dense network, same run (torch or onnxruntime)."""
from __future__ import annotations

import os

import torch

from designer.bench.latency import BACKENDS, bench_design, bench_layers, resolve_backends
from designer.bench.onnx_runtime import RUNTIMES, bench_onnx
from designer.bench.timing import LIMITS, BenchConfig
from designer.cli.options import add_model_options, design_from_args, int_in
from designer.errors import DesignError
from designer.runs.reports import benchmark_notes, variant_label


def cmd_bench(args) -> dict:
    design = design_from_args(args)
    backends = resolve_backends(args.backend)
    config = BenchConfig(batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup, mode=args.mode,
                         fold=not args.no_fold)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.runtime == "onnxruntime":  # the fast ONNX export against the dense one (no backend, no per-layer)
        if args.per_layer:
            raise DesignError("--per-layer times torch modules; leave it out with --runtime onnxruntime",
                              "--per-layer")
        result = bench_onnx(design, config)
    else:
        result = bench_design(design, backends, config)
    if args.per_layer:
        result["layers"] = {name: bench_layers(design, name, config) for name in backends
                            if "error" not in result["backends"][name]}
    if not args.json:
        dense = result["dense"]
        print(f"batch {result['batch_size']}, {result['threads']} threads, {result['mode']}; "
              f"FLOP ratio {result['flop_ratio']:.2f}x")
        for note in benchmark_notes(result):
            print(f"note: {note}")
        labels = {"dense": f"dense ({variant_label(dense)})",
                  **{name: f"{name} ({variant_label(t)})" for name, t in result["backends"].items() if "error" not in t}}
        width = max(len(label) for label in labels.values()) + 1
        print(f"{'backend':{width}} {'median ms':>10} {'speed-up':>9}")
        print(f"{labels['dense']:{width}} {dense['median_ms']:10.2f} {1:9.2f}")
        for name, timing in result["backends"].items():
            if "error" in timing:
                print(f"{name:{width}} {'n/a':>10}  {timing['error']}")
            else:
                print(f"{labels[name]:{width}} {timing['median_ms']:10.2f} {timing['speedup_vs_dense']:9.2f}")
    return result


def add_commands(commands) -> None:
    """Register bench on the CLI's subparsers."""
    bench = commands.add_parser("bench", help="latency of the design against its dense network, same run")
    add_model_options(bench)
    for field, default in (("batch_size", 1), ("repeats", 10), ("warmup", 2)):
        low, high, option = LIMITS[field]
        bench.add_argument(option, type=int_in(low, high, field.replace("_", " ")), default=default,
                           help=f"{low}..{high} (default {default})")
    bench.add_argument("--backend", default="all", help=f"{', '.join(BACKENDS)} or all")
    bench.add_argument("--mode", default="infer", choices=("infer", "train"),
                       help="infer: eval forward; train: forward + backward")
    cores = os.cpu_count() or 1
    bench.add_argument("--threads", type=int_in(0, cores, "threads", ": 0 is torch's choice, at most the cores"),
                       default=0, help=f"torch threads, 1..{cores} (default 0: torch's choice)")
    bench.add_argument("--per-layer", action="store_true", help="also time each convolution alone")
    bench.add_argument("--no-fold", action="store_true",
                       help="infer: time both networks as trained (BatchNorm, add and ReLU as their own ops) "
                            "instead of their deployed form (BatchNorm folded, ReLU and residual in the conv)")
    bench.add_argument("--runtime", choices=RUNTIMES, default="torch",
                       help="torch (default) or onnxruntime: the fast ONNX exports of the design and the dense net")
    bench.set_defaults(run=cmd_bench)
