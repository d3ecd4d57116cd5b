"""Your own network (issue 12): how fast a torchvision network is counted and re-counted, and what ASK_5a on
every full 3x3 conv buys at 224 x 224 against the dense network, in torch, same run.

Counting: ResNet-152 (155 convolutions; the default, --count-arch to change) counted with every cache
cleared (target < 1 s), then a mask edit's recount, designer.networks.editing.set_choice +
designer.analysis.counting.count_design with the network's trace cached as the app has it (target < 0.5 s);
best and median of --count-repeats.

Latency: designer.bench.latency.bench_design (dense and every backend in NCHW and channels-last, each its
faster layout, interleaved rounds, medians) for ResNet-18, ResNet-50 and MobileNetV2 at 3x224x224 with
`--anycfg ASK_5a` (ResNets: every 3x3 conv, the 7x7 stem stays dense; MobileNetV2: its only full 3x3 conv is
the stem, the depthwise convs cannot take ASK), backends reference, decomposed, auto (and sconv when
designer.bench.latency.BACKENDS has it), inference at batch 1 and 32 and a training step at batch 2 (a
training step at batch 1 is refused: BatchNorm needs two images) and 32. The 1-minute load average is
recorded with every row: the machine is shared.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_own_network.py [--networks resnet18 resnet50 mobilenet_v2]
        [--batches 1 32] [--modes infer train] [--repeats 5] [--out bench_own_network.json]
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path

import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)

import torch

from designer.analysis import counting
from designer.bench.latency import BACKENDS, bench_design
from designer.bench.timing import BenchConfig
from designer.cli import build_parser
from designer.cli.options import design_from_args
from designer.designs.kinds import LayerChoice
from designer.networks import convs, sources, weights
from designer.networks.build import dense_design, design_layers
from designer.networks.editing import set_choice

NETWORKS = ("resnet18", "resnet50", "mobilenet_v2")
WANTED_BACKENDS = ("reference", "decomposed", "auto", "sconv")
COUNT_TARGET_S, RECOUNT_TARGET_S = 1.0, 0.5


def clear_caches() -> None:
    """Every cache a count goes through: the next count traces the network from nothing."""
    sources.clear_caches()  # resolved networks and their shared meta builds
    for fn in (convs.conv_layers, counting.count_network, counting.count_design, weights.classifier_head):
        fn.cache_clear()


def design_of(options: str):
    return design_from_args(build_parser().parse_args(["count", *options.split()]))


def bench_counting(arch: str, repeats: int) -> dict:
    """Seconds to count the dense network uncached, and to recount after one mask edit (trace cached)."""
    options = f"--arch torchvision:{arch}"
    design = design_of(options)
    n_convs = len(design_layers(design))
    uncached = []
    for _ in range(repeats):
        clear_caches()
        start = time.perf_counter()
        counting.count_design(dense_design(design.network))
        uncached.append(time.perf_counter() - start)
    base = dense_design(design.network)
    counting.count_design(base)  # the app's state: the network traced, this design counted
    eligible = [layer.index for layer in design_layers(base) if layer.spec.k == 3 and layer.spec.groups == 1]
    recount = []
    for r in range(repeats):
        index = eligible[r % len(eligible)]
        start = time.perf_counter()
        edited = set_choice(base, [index], LayerChoice.preset("ASK_5a"))
        counting.count_design(edited)
        recount.append(time.perf_counter() - start)
    return {"arch": f"torchvision:{arch}", "convs": n_convs, "uncached_s": min(uncached),
            "uncached_median_s": statistics.median(uncached), "recount_s": min(recount),
            "recount_median_s": statistics.median(recount), "uncached_target_s": COUNT_TARGET_S,
            "recount_target_s": RECOUNT_TARGET_S, "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--modes", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--count-arch", default="resnet152")
    parser.add_argument("--count-repeats", type=int, default=5)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", default="bench_own_network.json")
    args = parser.parse_args()
    backends = [b for b in WANTED_BACKENDS if b in BACKENDS]
    report = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "backends": backends,
              "load_average_start": os.getloadavg(), "counting": None, "latency": []}

    c = report["counting"] = bench_counting(args.count_arch, args.count_repeats)
    print(f"counting {c['arch']} ({c['convs']} convs): uncached {c['uncached_s']:.3f} s "
          f"(median {c['uncached_median_s']:.3f}, target < {COUNT_TARGET_S} s), mask edit + recount "
          f"{c['recount_s'] * 1e3:.1f} ms (median {c['recount_median_s'] * 1e3:.1f}, target < "
          f"{RECOUNT_TARGET_S * 1e3:.0f} ms); load {c['load_average']:.2f}", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if args.skip_latency:
        return

    print(f"\n{'network':13} {'ASK convs':>9} {'mode':5} {'batch':>5} {'dense ms':>9} "
          + " ".join(f"{b + ' ms':>14}" for b in backends) + f" {'best':>10} {'speed-up':>8} {'FLOP ratio':>10} "
                                                               f"{'load':>5}")
    for arch in args.networks:
        design = design_of(f"--arch torchvision:{arch} --anycfg ASK_5a")
        changed = sum(choice.kind == "ask" for choice in design.layers)
        for mode in args.modes:
            for batch in args.batches:
                batch_size = max(batch, 2) if mode == "train" else batch
                config = BenchConfig(batch_size=batch_size, repeats=args.repeats, warmup=args.warmup, mode=mode)
                result = bench_design(design, backends, config)
                timed = {b: t for b, t in result["backends"].items() if "error" not in t}
                best = min(timed, key=lambda b: timed[b]["median_ms"]) if timed else None
                row = {"arch": f"torchvision:{arch}", "ask_convs": changed, "convs": len(design.layers),
                       "best": best, **result}
                report["latency"].append(row)
                cells = " ".join(f"{timed[b]['median_ms']:14.2f}" if b in timed else f"{'error':>14}"
                                 for b in backends)
                speedup = timed[best]["speedup_vs_dense"] if best else float("nan")
                print(f"{arch:13} {changed:4d}/{len(design.layers):<4d} {mode:5} {batch_size:5d} "
                      f"{result['dense']['median_ms']:9.2f} {cells} {best or '-':>10} {speedup:8.2f} "
                      f"{result['flop_ratio']:10.2f} {result['load_average']:5.2f}", flush=True)
                for b, t in result["backends"].items():
                    if "error" in t:
                        print(f"    {b}: {t['error']}")
                Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
