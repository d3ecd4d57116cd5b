"""The benchmark times every backend against the dense network in one run, same weights."""
import json

import pytest

from designer.bench import BenchConfig, bench_design, bench_layers, resolve_backends, time_interleaved
from designer.build import dense_design
from designer.design import LayerChoice, Network
from designer.errors import DesignError
from tests.designer.test_core_cli import designer

TINY = dense_design(Network("resnet", 8)).with_layers([LayerChoice.preset("ASK_4a")] * 7)


def test_result_shape_and_ratios():
    seen = []
    result = bench_design(TINY, ["reference"], BenchConfig(batch_size=2, repeats=3, warmup=1),
                          progress=lambda what, fraction: seen.append((what, fraction)))
    dense = result["dense"]
    assert dense["layout"] in ("nchw", "channels_last")
    assert dense["median_ms"] == min(dense["nchw_ms"], dense["channels_last_ms"])
    timing = result["backends"]["reference"]
    assert timing["median_ms"] == min(timing["nchw_ms"], timing["channels_last_ms"])
    assert timing["repeats"] == 3 and timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"]
    assert timing["speedup_vs_dense"] == pytest.approx(dense["median_ms"] / timing["median_ms"])
    assert result["flop_ratio"] == pytest.approx(9 / 4, rel=0.05)
    assert seen[-1] == ("done", 1.0) and [f for _, f in seen] == sorted(f for _, f in seen)


def test_timed_calls_are_interleaved_each_after_an_untimed_call_of_its_own():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("dense", "design")}
    timings = time_interleaved(calls, BenchConfig(repeats=3, warmup=1))
    assert order == ["dense", "dense", "design", "design"] + ["dense", "dense", "design", "design"] * 3
    assert all(t["repeats"] == 3 and t["min_ms"] <= t["median_ms"] <= t["max_ms"] for t in timings.values())


def test_training_step_and_per_layer_timings():
    config = BenchConfig(batch_size=2, repeats=1, warmup=0, mode="train")
    assert bench_design(TINY, ["reference"], config)["mode"] == "train"
    rows = bench_layers(TINY, "reference", config)
    assert [r["name"] for r in rows][:2] == ["conv1", "layer1.0.conv1"]
    assert all(r["kind"] == "ask" and r["dense_ms"] > 0 and r["design_ms"] > 0 for r in rows)


def test_bad_options_are_refused():
    with pytest.raises(DesignError, match="--backend: unknown backend 'cudnn'"):
        resolve_backends("cudnn")
    with pytest.raises(DesignError, match="--batch-size: batch size must be at least 1"):
        bench_design(TINY, ["reference"], BenchConfig(batch_size=0))


def test_cli_json_contract():
    result = designer("bench", "--arch", "resnet", "--depth", "8", "--anycfg", "ASK_5a", "--batch-size", "2",
                      "--backend", "all", "--repeats", "2", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["batch_size"] == 2 and out["threads"] >= 1 and out["dense"]["median_ms"] > 0
    assert set(out["backends"]) == {"reference", "decomposed", "taichi", "auto"}  # and nothing but JSON on stdout
    assert all(timing["speedup_vs_dense"] > 0 for timing in out["backends"].values())
