"""Per layer: every backend, `auto` and the dense conv on the same input, interleaved.

Two Speed II targets are per layer: `auto` within 3% of the best single
backend of each layer at every batch size (it times its candidates once, on
its first call, and must pick right), and 1xN N=16 rate 0.5 at 1.4x the dense
conv on the pruned layers. For each configuration of bench_network.py, batch
size and mode, each changed conv of the network runs alone in channels-last
(the faster layout on this CPU for the dense conv and every fast backend; the
whole-network benchmark judges both layouts): the dense conv of the dense
network, each backend of the layer's kind and `auto`, all with the same
weights, timed by designer.bench.timing.time_interleaved. A row gives the
best single backend and its speed-up over dense, and auto's time over that
best (at most 1.03 is the target) with the backend it chose, and that
backend's own time over the best: on a loaded machine the noise between two
calls of the same kernel exceeds 3%, and auto's own cost is a dict look-up,
so the choice is the steadier measure. Each median comes with the minimum
(less sensitive to other work on the machine). The timings here are warm
(each timed call follows an untimed one of the same candidate); auto times
its candidates back to back, colder, as a layer runs inside a network whose
weights do not stay in cache (VGG-16 at batch 1: 60 MB). Where the two
disagree, at batch 1 mostly, the whole network (bench_network.py) judges.

    python benchmarks/bench_layers_auto.py [--configs blocksparse ask] [--batches 1 32 128]
        [--modes infer train] [--repeats 5] [--out FILE]
"""
# isort: off
import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)
# isort: on
import argparse
import json
import os
from pathlib import Path

import torch
from bench_network import CONFIGS, design_for

from designer.bench.latency import module_step
from designer.bench.timing import BenchConfig, time_interleaved
from designer.networks.build import build_model, dense_design, design_layers
from models.layers.autotune import AUTO

AUTO_SLACK = 1.03  # auto's time over the best single backend's
PRUNED_TARGET = 1.4  # 1xN's best backend over the dense conv, inference


def models_by_backend(design, registry) -> dict[str, dict]:
    """name -> {module path: module} for the dense network and the design on each backend, shared weights."""
    weights = build_model(design).state_dict()
    models = {"dense": build_model(dense_design(design.network, design.padfree))}
    for name in registry:
        model = build_model(design, backend=name)
        model.load_state_dict(weights)
        models[name] = model
    return {name: dict(model.to(memory_format=torch.channels_last).named_modules()) for name, model in models.items()}


def bench_layer(modules: dict[str, dict], layer, batch: int, mode: str, repeats: int) -> dict:
    x = torch.randn(batch, layer.spec.in_channels, *layer.in_size).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(mode == "train")
    calls = {name: module_step(by_path[layer.name], x, mode) for name, by_path in modules.items()}
    timings = time_interleaved(calls, BenchConfig(batch_size=batch, repeats=repeats, warmup=2, mode=mode))
    ms = {name: t["median_ms"] for name, t in timings.items() if "error" not in t}
    singles = {name: t for name, t in ms.items() if name not in ("dense", AUTO)}
    best = min(singles, key=singles.get)
    choices = modules[AUTO][layer.name].__dict__.get("auto_choices", {})  # (shape, ..., wants grad) -> name
    chosen = sorted({name for key, name in choices.items() if key[0] == tuple(x.shape) and key[-1] == x.requires_grad})
    return {"layer": layer.name, "batch": batch, "mode": mode, "ms": ms,
            "min_ms": {name: t["min_ms"] for name, t in timings.items() if "error" not in t},
            "spread": {name: t["spread"] for name, t in timings.items() if "error" not in t},
            "errors": {name: t["error"] for name, t in timings.items() if "error" in t},
            "best": best, "best_speedup": ms["dense"] / ms[best], "auto_over_best": ms[AUTO] / ms[best],
            "auto_chose": chosen, "choice_over_best": max(ms[name] for name in chosen) / ms[best]}


def print_row(config: str, r: dict) -> None:
    times = " ".join(f"{name} {ms:8.3f}" for name, ms in r["ms"].items())
    flag = "" if r["choice_over_best"] <= AUTO_SLACK else "  CHOICE OVER 3%"
    print(f"{config:11} {r['mode']:5} {r['batch']:5d} {r['layer']:12} {times} | best {r['best']:10} "
          f"{r['best_speedup']:5.2f}x | auto/best {r['auto_over_best']:5.3f}, chose {','.join(r['auto_chose'])} "
          f"{r['choice_over_best']:5.3f}{flag}", flush=True)


def _together(rows: list[dict], key: str) -> float:
    """The layers' dense time over their best backend's, summed over the layers."""
    return sum(r[key]["dense"] for r in rows) / sum(r[key][r["best"]] for r in rows)


def summary(config: str, rows: list[dict]) -> list[str]:
    """Auto's worst layer per batch and mode; for 1xN inference, the pruned layers' best speed-up."""
    lines = []
    for mode in sorted({r["mode"] for r in rows}):
        for batch in sorted({r["batch"] for r in rows if r["mode"] == mode}):
            these = [r for r in rows if r["mode"] == mode and r["batch"] == batch]
            worst = max(these, key=lambda r: r["choice_over_best"])
            line = (f"{config} {mode} batch {batch}: auto's choice / best at most {worst['choice_over_best']:.3f} "
                    f"({worst['layer']}; target {AUTO_SLACK}); auto / best, all layers: "
                    f"{sum(r['ms'][AUTO] for r in these) / sum(r['ms'][r['best']] for r in these):.3f}")
            if config == "blocksparse" and mode == "infer":
                low = min(these, key=lambda r: r["best_speedup"])
                line += (f"; pruned layers together {_together(these, 'ms'):.2f}x dense (minima "
                         f"{_together(these, 'min_ms'):.2f}x), the lowest {low['best_speedup']:.2f}x "
                         f"({low['layer']}; target {PRUNED_TARGET}x)")
            lines.append(line)
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["blocksparse", "ask", "hetconv"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--modes", nargs="+", choices=["infer", "train"], default=["infer", "train"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/layers_auto.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    load = os.getloadavg()
    print(f"threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"channels-last, median ms per backend")
    out = {"threads": torch.get_num_threads(), "load_average_start": load, "rows": {}, "summary": []}
    for config in args.configs:
        design = design_for(config)
        modules = models_by_backend(design, CONFIGS[config][1])
        changed = [layer for layer, choice in zip(design_layers(design), design.layers) if choice.kind != "dense"]
        rows = out["rows"][config] = []
        for mode in args.modes:
            for batch in args.batches:
                if mode == "train" and batch < 2:
                    continue
                for layer in changed:
                    rows.append(bench_layer(modules, layer, batch, mode, args.repeats))
                    print_row(config, rows[-1])
        for line in summary(config, rows):
            out["summary"].append(line)
            print(line, flush=True)
    out["load_average_end"] = os.getloadavg()
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"load average at the end {out['load_average_end'][0]:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
