"""How Kernel Studio times anything: interleaved rounds, medians, and how far to trust them.

The timed calls are interleaved, one call of every candidate per round, so
that load changes on a shared machine hit all candidates alike; each timed
call follows an untimed one of the same candidate, so it runs with its own
weights in cache (at batch 1 VGG-16 reads 60 MB of weights, and a cold cache
costs it 20%); medians after warm-up. The first call of each candidate
(Taichi compiles there, `auto` measures its choices there) is reported as
`first_call_ms` and never enters a median.

Trust: every timing carries its min and max over the repeats and their
spread, (max - min) / median; a spread above NOISY (10%) means the repeats
disagree, which the app and the CLI say next to the number (the simple
max-min rule rather than an IQR: it is what the min..max shown beside each
median reads as, and with 5 repeats quartiles are interpolated guesses). The
1-minute load average is recorded before the first call (so the benchmark's
own threads do not count) with the machine's core count: a load above the
cores means other work shared the CPUs.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Hashable

from designer.errors import DesignError

MODES = ("infer", "train")
LIMITS = {"batch_size": (1, 1024, "--batch-size"), "repeats": (1, 1000, "--repeats"), "warmup": (0, 100, "--warmup")}
NOISY = 0.10  # a spread (max - min) / median above this: the repeats disagree
RUN_ERRORS = (TypeError, ValueError, RuntimeError, ImportError, NotImplementedError)  # a candidate that cannot run


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int = 1
    repeats: int = 10
    warmup: int = 2
    mode: str = "infer"  # infer: eval forward; train: forward + backward of a cross-entropy loss
    fold: bool = True  # infer: time both networks in their inference form (models.fold); train ignores it


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
