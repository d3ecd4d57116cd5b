"""Per-layer ASK benchmark on VGG-16's CIFAR layer shapes, every backend against dense torch.

For each layer and batch size: the dense 3x3 conv and each ASK backend,
in NCHW and in channels-last (the faster layout of each is reported; the
dense one is the baseline), for inference and for one forward + backward.
Timed calls interleaved across candidates (designer.bench.timing.time_interleaved),
medians after warm-up, GFLOP/s achieved; Taichi start-up and compile time
are measured first and kept out of the medians.

    python benchmarks/bench_ask_layers.py [--batches 1 32 128] [--out FILE]
"""
import argparse
import json
import time
from pathlib import Path

import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)

import torch
import torch.nn as nn

from designer.bench.timing import BenchConfig, time_interleaved

from designer.bench.latency import module_step
from designer.designs.shapes import preset_shapes
from models.layers.ask import AskConv2d

VGG16_LAYERS = [  # (Cin, Cout, H=W) of every distinct 3x3 conv in CIFAR VGG-16
    (3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8),
    (256, 256, 8), (256, 512, 4), (512, 512, 4), (512, 512, 2),
]
BACKENDS = ["decomposed", "taichi", "auto"]


def taichi_compile_seconds() -> dict[str, float]:
    """Taichi start-up plus first compile of each kernel, timed on tiny inputs."""
    conv = AskConv2d(8, 8, preset_shapes("ASK_5a"), backend="taichi")
    x = torch.randn(1, 8, 8, 8, requires_grad=True)
    t0 = time.perf_counter()
    from kernels_taichi.runtime import taichi
    taichi()
    t1 = time.perf_counter()
    y = conv(x)
    t2 = time.perf_counter()
    y.sum().backward()
    t3 = time.perf_counter()
    with torch.no_grad():
        conv(torch.randn(1, 8, 2, 2))  # the small-image variant of the forward kernel
    t4 = time.perf_counter()
    return {"init_s": t1 - t0, "forward_s": (t2 - t1) + (t4 - t3), "backward_s": t3 - t2}


def bench_layer(cin: int, cout: int, size: int, batch: int, mode: str, repeats: int) -> dict:
    train = mode == "train"
    dense = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    dense_cl = nn.Conv2d(cin, cout, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(batch, cin, size, size, requires_grad=train and cin != 3)
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(x.requires_grad)
    inputs = {"nchw": x, "channels_last": x_cl}
    calls = {("dense", "nchw"): module_step(dense, x, mode),
             ("dense", "channels_last"): module_step(dense_cl, x_cl, mode)}
    ask = {}
    for backend in BACKENDS:
        for layout, inp in inputs.items():
            ask[backend, layout] = AskConv2d(cin, cout, preset_shapes("ASK_5a"), backend=backend)
            calls[backend, layout] = module_step(ask[backend, layout], inp, mode)
    timings = time_interleaved(calls, BenchConfig(repeats=repeats, warmup=2))
    passes = (3 if x.requires_grad else 2) if train else 1
    dense_flop = 2 * batch * size * size * cin * cout * 9 * passes
    ask_flop = dense_flop * 5 / 9
    row = {"cin": cin, "cout": cout, "size": size, "batch": batch, "mode": mode}
    layout = min(inputs, key=lambda lay: timings["dense", lay]["median_ms"])
    base = timings["dense", layout]["median_ms"]
    row["dense"] = {"nchw_ms": timings["dense", "nchw"]["median_ms"],
                    "channels_last_ms": timings["dense", "channels_last"]["median_ms"], "baseline_ms": base,
                    "gflops": dense_flop / base / 1e6}
    for backend in BACKENDS:
        layout = min(inputs, key=lambda lay: timings[backend, lay]["median_ms"])
        ms = timings[backend, layout]["median_ms"]
        row[backend] = {"ms": ms, "format": layout, "speedup": base / ms, "gflops": ask_flop / ms / 1e6}
    return row


def print_header() -> None:
    head = f"{'mode':5} {'batch':>5} {'layer':>12} {'dense ms':>9} {'GF/s':>6}"
    for b in BACKENDS:
        head += f" | {b[:10]:>10} ms {'GF/s':>6} {'x':>5}"
    print(head)


def print_row(r: dict) -> None:
    line = (f"{r['mode']:5} {r['batch']:5d} {r['cin']:>4}/{r['cout']}/{r['size']:<2} "
            f"{r['dense']['baseline_ms']:9.3f} {r['dense']['gflops']:6.1f}")
    for b in BACKENDS:
        line += f" | {r[b]['ms']:13.3f} {r[b]['gflops']:6.1f} {r[b]['speedup']:5.2f}"
    print(line, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--modes", nargs="+", choices=["infer", "train"], default=["infer", "train"])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--out", default="benchmarks/results/ask_layers.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    compile_s = taichi_compile_seconds()
    print(f"threads {torch.get_num_threads()}; Taichi compile (excluded below): "
          + ", ".join(f"{k} {v:.2f}" for k, v in compile_s.items()))
    print_header()
    rows = []
    for mode in args.modes:
        for batch in args.batches:
            for cin, cout, size in VGG16_LAYERS:
                rows.append(bench_layer(cin, cout, size, batch, mode, args.repeats))
                print_row(rows[-1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "preset": "ASK_5a",
                               "taichi_compile_s": compile_s, "layers": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
