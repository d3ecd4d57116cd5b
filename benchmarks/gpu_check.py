"""`make gpu-check`: the kernel and backend tests on CUDA, then VGG-16 ASK_5a and HetConv P=4 against cuDNN.

The suite never needs a GPU; this is the one place that runs the backends
there. Without CUDA it says so and exits 0. With it: pytest of
tests/kernels_taichi and tests/models with KERNEL_STUDIO_DEVICE=cuda (every
tensor a test makes is on the GPU; Taichi starts on ti.cuda, never ti.gpu;
the CPU-only C++ kernel's own tests skip), then each configuration's
inference at batch 1, 32 and 128: the dense network on cuDNN
(cudnn.benchmark, channels-last) against each backend of the layer kind
(sconv left out: it is a CPU kernel and would run its torch form), timed
interleaved with a CUDA synchronise around every call. A table, then the
JSON on stdout and in benchmarks/results/gpu_check.json. Exit status 1 when
a test failed. About 2-4 minutes on one GPU.

    python benchmarks/gpu_check.py [--repeats 10] [--batches 1 32 128] [--skip-tests]
"""
# isort: off
import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)
# isort: on
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from bench_network import CONFIGS, design_for

from designer.bench.latency import inputs, step
from designer.bench.timing import BenchConfig, time_interleaved
from designer.networks.build import build_model, dense_design

ROOT = Path(__file__).resolve().parents[1]
TEST_TIMEOUT_S = 180
CPU_ONLY = ("sconv",)


def run_tests() -> bool:
    """The kernel and backend tests with every tensor on the GPU; True when they pass."""
    env = {**os.environ, "KERNEL_STUDIO_DEVICE": "cuda", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels_taichi", "tests/models"]
    print("$ KERNEL_STUDIO_DEVICE=cuda " + " ".join(cmd[1:]), flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, timeout=TEST_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:
        print(f"the tests took over {TEST_TIMEOUT_S} s: stopped", flush=True)
        return False


def synced(fn):
    """A call that has finished on the GPU when it returns (CUDA kernels run asynchronously)."""
    def call():
        fn()
        torch.cuda.synchronize()
    return call


def bench(config: str, batch: int, repeats: int) -> dict:
    """One configuration's inference on the GPU: cuDNN dense against each backend, same weights and input."""
    design = design_for(config)
    x, target = inputs(design, batch)
    x = x.cuda().contiguous(memory_format=torch.channels_last)
    weights = build_model(design).state_dict()
    models = {"cudnn": build_model(dense_design(design.network, design.padfree), device="cuda")}
    for name in CONFIGS[config][1]:
        if name not in CPU_ONLY:
            models[name] = build_model(design, backend=name, device="cuda")
            models[name].load_state_dict(weights)
    calls = {name: synced(step(model.to(memory_format=torch.channels_last), x, target.cuda(), "infer"))
             for name, model in models.items()}
    timings = time_interleaved(calls, BenchConfig(batch_size=batch, repeats=repeats, warmup=3))
    dense = timings["cudnn"]["median_ms"]
    return {"config": config, "batch": batch, "timings": timings,
            "speedup_vs_cudnn": {name: dense / t["median_ms"] for name, t in timings.items() if "error" not in t}}


def print_row(r: dict) -> None:
    line = f"{r['config']:8} {r['batch']:5d}"
    for name, t in r["timings"].items():
        if "error" in t:
            line += f" | {name} n/a: {t['error']}"
        else:
            line += f" | {name} {t['median_ms']:8.3f} ms {t['spread']:4.0%} {r['speedup_vs_cudnn'][name]:5.2f}x"
    print(line, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_check.json"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU: skipped (torch sees no CUDA device)")
        return 0
    torch.backends.cudnn.benchmark = True
    passed = True if args.skip_tests else run_tests()
    print(f"{torch.cuda.get_device_name()}; inference, channels-last, median ms, spread, speed-up vs cuDNN dense",
          flush=True)
    rows = []
    for config in ("ask", "hetconv"):
        for batch in args.batches:
            rows.append(bench(config, batch, args.repeats))
            print_row(rows[-1])
    out = {"device": torch.cuda.get_device_name(), "tests_passed": passed, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
