"""Whole-network benchmark: each fast backend against the dense torch network, same run.

Configurations (CIFAR-10 VGG-16): ASK_5a on every 3x3 conv; HetConv P=4 on
every conv but the first; 1xN N=16 rate 0.5 on every conv but the first
(also per pruned layer). For each batch size and mode (eval inference; one
training step = forward + backward of a cross-entropy loss) the dense
network is timed in NCHW and channels-last (the faster is the baseline), and
each backend in both layouts (the faster is reported), all by
designer.bench.latency.bench_design: medians after warm-up, timed calls interleaved
across candidates (one call of each per round), wall clock and process CPU
time (the machine is shared); achieved GFLOP/s count 2 FLOPs per MAC of the
design (x3 for a training step). The first call (Taichi start-up and
compile, auto's measured choices) is reported separately and never enters a
median.

    python benchmarks/bench_network.py [--configs ask hetconv blocksparse] [--infer-batches 1 32 128]
        [--train-batches 32 64 128] [--repeats 5] [--per-layer] [--out FILE]
"""
import argparse
import json
import os
from pathlib import Path

import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)

import torch

from designer.bench.latency import BACKENDS, bench_design, bench_layers

from designer.bench.timing import BenchConfig
from designer.cli import build_parser
from designer.cli.options import design_from_args
from designer.runs.reports import benchmark_notes
from models.layers.ask import ASK_BACKENDS
from models.layers.blocksparse import BLOCKSPARSE_BACKENDS
from models.layers.hetconv import HETCONV_BACKENDS

CONFIGS = {  # name -> (CLI model options, the backends registry of its layers)
    "ask": (["--arch", "vgg", "--depth", "16", "--anycfg", "ASK_5a"], ASK_BACKENDS),
    "hetconv": (["--arch", "vgg", "--depth", "16", "--hetconv", "4"], HETCONV_BACKENDS),
    "blocksparse": (["--arch", "vgg", "--depth", "16", "--block-n", "16", "--prune-rate", "0.5"],
                    BLOCKSPARSE_BACKENDS),
}


def design_for(name: str):
    args = build_parser().parse_args(["count", *CONFIGS[name][0]])
    return design_from_args(args)


def print_row(config: str, r: dict) -> None:
    """One line per run (each median with the spread of its repeats), then what makes it less trustworthy."""
    d = r["dense"]
    line = (f"{config:11} {r['mode']:5} {r['batch_size']:5d} {d['median_ms']:9.2f} {d['spread']:6.0%} "
            f"{d['layout'][:5]:5} {d['gflops']:6.1f}")
    for name, t in r["backends"].items():
        if "error" in t:
            line += f" | {name[:10]:10} n/a: {t['error']}"
            continue
        line += (f" | {name[:10]:10} {t['median_ms']:9.2f} {t['spread']:5.0%} {t['layout'][:5]:5} "
                 f"{t['speedup_vs_dense']:5.2f}x cpu {t['cpu_speedup_vs_dense']:5.2f}x {t['gflops']:6.1f} GF/s")
    print(line, flush=True)
    for note in benchmark_notes(r):
        print(f"{'':11} note: {note}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--infer-batches", type=int, nargs="*", default=[1, 32, 128])
    parser.add_argument("--train-batches", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--per-layer", action="store_true", help="also time each 1xN layer alone (taichi)")
    parser.add_argument("--out", default="benchmarks/results/network.json")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'config':11} {'mode':5} {'batch':>5} {'dense ms':>9} {'spread':>6} {'fmt':5} {'GF/s':>6} | backend: "
          f"median ms, spread ((max - min) / median), layout, speed-up (wall), speed-up (CPU time), GF/s")
    out = {"threads": torch.get_num_threads(), "load_average_start": load, "runs": [], "layers": {}}
    for config_name in args.configs:
        design = design_for(config_name)
        registry = CONFIGS[config_name][1]
        backends = [b for b in args.backends if b in registry]
        jobs = [("infer", b) for b in args.infer_batches] + [("train", b) for b in args.train_batches]
        for mode, batch in jobs:
            if mode == "train" and batch < 2:  # the classifier's BatchNorm1d cannot train on one sample
                print(f"{config_name:11} train {batch:5d} skipped: BatchNorm1d needs more than one sample")
                continue
            config = BenchConfig(batch_size=batch, repeats=args.repeats, warmup=args.warmup, mode=mode)
            r = bench_design(design, backends, config)
            r["config"] = config_name
            out["runs"].append(r)
            print_row(config_name, r)
        if args.per_layer and config_name == "blocksparse":
            for mode in ("infer", "train"):
                config = BenchConfig(batch_size=32, repeats=args.repeats, warmup=args.warmup, mode=mode)
                rows = bench_layers(design, "taichi", config)
                out["layers"][mode] = rows
                print(f"per layer, taichi vs dense NCHW, batch 32, {mode}:")
                for row in rows:
                    if row["kind"] == "blocksparse":
                        print(f"  {row['name']:20} dense {row['dense_ms']:8.2f} ms  1xN {row['design_ms']:8.2f} ms  "
                              f"{row['speedup_vs_dense']:5.2f}x", flush=True)
    out["load_average_end"] = os.getloadavg()
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"load average at the end {out['load_average_end'][0]:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
