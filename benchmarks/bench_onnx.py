"""The exported speed-up in onnxruntime: each design's fast ONNX export against the dense export, same run.

Configurations (CIFAR-10 VGG-16, issue 13's targets): ASK_5a (>= 1.5x),
HetConv P=4 on the HetConv paper's VGG (>= 2.2x), low-rank ratio 2
(>= 1.6x), 1xN N=16 rate 0.5 (no target: its fast form is the masked dense
conv). Each is designer.bench.onnx_runtime.bench_onnx: both exports in one process, same
intra-op threads (torch.get_num_threads()), timed calls interleaved, medians
of the repeats with their min..max. The 1-minute load average is printed
with every row (the machine is shared). --profile adds, per design and
batch, onnxruntime's profiler time per operator type (per call, summed over
nodes) to show what limits a missed target; the table has the achieved
GFLOP/s of both networks (2 FLOPs per MAC of conv and linear layers).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_onnx.py [--configs ask hetconv lowrank blocksparse]
        [--batches 1 32] [--repeats 10] [--profile] [--out FILE]
"""
import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)

import numpy as np
import torch

from designer.bench.timing import BenchConfig

from designer.bench.onnx_runtime import bench_onnx
from designer.cli import build_parser
from designer.cli.options import design_from_args
from designer.networks.export import export

CONFIGS = {  # name -> (CLI model options, target ratio)
    "ask": ("--arch vgg --depth 16 --anycfg ASK_5a", 1.5),
    "hetconv": ("--arch vgg_hetconv --depth 16 --hetconv 4", 2.2),
    "lowrank": ("--arch vgg --depth 16 --lowrank-ratio 2", 1.6),
    "blocksparse": ("--arch vgg --depth 16 --block-n 16 --prune-rate 0.5", None),
}


def profile(design, batch: int, runs: int = 5) -> dict:
    """Per operator type: total ms per call in onnxruntime's profiler, over `runs` calls after one warm-up."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.onnx")
        export(design, "onnx", path)
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(folder, "prof")
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
        session.run(None, {"input": x})
        for _ in range(runs):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3 / (runs + 1)
    return dict(sorted(per_op.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default="bench_onnx.json")
    args = parser.parse_args()
    rows = []
    print(f"{'config':12} {'batch':>5} {'dense ms':>9} {'design ms':>10} {'ratio':>6} {'target':>6} "
          f"{'FLOP ratio':>10} {'GFLOP/s d/x':>12} {'spread d/x':>11} {'load':>5}")
    for name in args.configs:
        options, target = CONFIGS[name]
        design = design_from_args(build_parser().parse_args(["count", *options.split()]))
        for batch in args.batches:
            result = bench_onnx(design, BenchConfig(batch_size=batch, repeats=args.repeats, warmup=2))
            dense, fast = result["dense"], result["backends"]["onnxruntime"]
            row = {"config": name, "options": options, "batch_size": batch, "target": target, **result}
            if args.profile:
                row["profile_ms"] = {"dense": profile(design_from_args(build_parser().parse_args(
                    ["count", *options.split()[:4]])), batch), "design": profile(design, batch)}
            rows.append(row)
            print(f"{name:12} {batch:5d} {dense['median_ms']:9.2f} {fast['median_ms']:10.2f} "
                  f"{fast['speedup_vs_dense']:6.2f} {target or '-':>6} {result['flop_ratio']:10.2f} "
                  f"{dense['gflops']:5.0f}/{fast['gflops']:<6.0f} "
                  f"{dense['spread']:5.0%}/{fast['spread']:<5.0%} {result['load_average']:5.2f}", flush=True)
            if args.profile:
                for which, ops in row["profile_ms"].items():
                    print(f"    {which:6} " + ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:5]))
    Path(args.out).write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
