"""Whole-network benchmark: each fast backend against the dense torch network, same run.

Configurations: CIFAR-10 VGG-16 with ASK_5a on every 3x3 conv; ResNet-20
with ASK_5a; VGG-16 with HetConv P=4 on every conv but the first; VGG-16 with
1xN N=16 rate 0.5 on every conv but the first (its pruned layers alone:
bench_layers_auto.py). For each batch size and mode (eval inference; one
training step = forward + backward of a cross-entropy loss) the dense
network is timed in NCHW and channels-last (the faster is the baseline), and
each backend in both layouts (the faster is reported), all by
designer.bench.latency.bench_design: medians after warm-up, timed calls interleaved
across candidates (one call of each per round), wall clock and process CPU
time (the machine is shared); achieved GFLOP/s count 2 FLOPs per MAC of the
design (x3 for a training step). The first call (Taichi start-up and
compile, auto's measured choices) is reported separately and never enters a
median. Each run with a Speed II target (TARGETS) says whether its best
backend meets it.

    python benchmarks/bench_network.py [--configs ask resnet20 hetconv blocksparse] [--infer-batches 1 32 128]
        [--train-batches 32 64 128] [--repeats 5] [--out FILE]
"""
# isort: off
import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)
# isort: on
import argparse
import json
import os
from pathlib import Path

import torch

from designer.bench.latency import BACKENDS, bench_design
from designer.bench.timing import BenchConfig
from designer.cli import build_parser
from designer.cli.options import design_from_args
from designer.runs.reports import benchmark_notes
from models.layers.ask import ASK_BACKENDS
from models.layers.blocksparse import BLOCKSPARSE_BACKENDS
from models.layers.hetconv import HETCONV_BACKENDS

CONFIGS = {  # name -> (CLI model options, the backends registry of its layers)
    "ask": (["--arch", "vgg", "--depth", "16", "--anycfg", "ASK_5a"], ASK_BACKENDS),
    "resnet20": (["--arch", "resnet", "--depth", "20", "--anycfg", "ASK_5a"], ASK_BACKENDS),
    "hetconv": (["--arch", "vgg", "--depth", "16", "--hetconv", "4"], HETCONV_BACKENDS),
    "blocksparse": (["--arch", "vgg", "--depth", "16", "--block-n", "16", "--prune-rate", "0.5"],
                    BLOCKSPARSE_BACKENDS),
}
TARGETS = {  # (config, mode, batch) -> the best backend's speed-up over dense that issue 14 asks for
    **{("ask", "infer", b): 1.6 for b in (1, 32, 128)}, ("ask", "train", 64): 1.45,
    ("resnet20", "infer", 128): 1.4, ("hetconv", "infer", 32): 2.5,
    **{("hetconv", "train", b): 2.0 for b in (32, 64, 128)},
}


def target_note(config: str, r: dict) -> str | None:
    """'target 1.60x: met by sconv (1.75x)' for a run with a target; None for one without."""
    target = TARGETS.get((config, r["mode"], r["batch_size"]))
    if target is None:
        return None
    done = {name: t["speedup_vs_dense"] for name, t in r["backends"].items() if "error" not in t}
    if not done:
        return f"target {target:.2f}x: no backend ran"
    best = max(done, key=done.get)
    return f"target {target:.2f}x: {'met' if done[best] >= target else 'MISSED'} by {best} ({done[best]:.2f}x)"


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
                 f"{t['speedup_vs_dense']:5.2f}x min {d['min_ms'] / t['min_ms']:5.2f}x cpu "
                 f"{t['cpu_speedup_vs_dense']:5.2f}x {t['gflops']:6.1f} GF/s")
    print(line, flush=True)
    for note in benchmark_notes(r):
        print(f"{'':11} note: {note}", flush=True)
    if target_note(config, r):
        print(f"{'':11} {target_note(config, r)}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--infer-batches", type=int, nargs="*", default=[1, 32, 128])
    parser.add_argument("--train-batches", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/network.json")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'config':11} {'mode':5} {'batch':>5} {'dense ms':>9} {'spread':>6} {'fmt':5} {'GF/s':>6} | backend: "
          f"median ms, spread ((max - min) / median), layout, speed-up (wall medians; minima: steadier when "
          f"the machine is shared; CPU time), GF/s")
    out = {"threads": torch.get_num_threads(), "load_average_start": load, "runs": []}
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
            r["target"] = target_note(config_name, r)
            out["runs"].append(r)
            print_row(config_name, r)
    out["load_average_end"] = os.getloadavg()
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"load average at the end {out['load_average_end'][0]:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
