"""The benchmark times every backend against the dense network in one run, same weights."""
import json
from dataclasses import replace

import pytest

from designer.bench.latency import bench_design, bench_layers, resolve_backends
from designer.bench.timing import BenchConfig, check_config, time_interleaved
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import dense_design, design_layers
from tests.designer.cli.test_commands import designer

TINY = dense_design(Network("resnet", 8)).with_layers([LayerChoice.preset("ASK_4a")] * 7)


def test_result_shape_and_ratios():
    seen = []
    result = bench_design(TINY, ["reference"], BenchConfig(batch_size=2, repeats=3, warmup=1),
                          progress=lambda what, fraction: seen.append((what, fraction)))
    dense = result["dense"]
    assert dense["layout"] in ("nchw", "channels_last") and dense["form"] in ("folded", "as trained")
    assert dense["median_ms"] == min(dense["nchw_ms"], dense["channels_last_ms"], dense["nchw_as_trained_ms"],
                                     dense["channels_last_as_trained_ms"])
    timing = result["backends"]["reference"]
    assert timing["form"] == "folded" and "nchw_as_trained_ms" not in timing  # only the baseline gets both forms
    assert timing["median_ms"] == min(timing["nchw_ms"], timing["channels_last_ms"])
    assert result["fold"] and result["folded"] == {"dense": 7, "reference": 7}  # ResNet-8: 7 convs, each with BN
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
    with pytest.raises(DesignError, match=r"--batch-size: batch size must be an integer in 1\.\.1024, got 0"):
        bench_design(TINY, ["reference"], BenchConfig(batch_size=0))


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, r"--batch-size: batch size must be an integer in 1\.\.1024, got 0"),
    ("batch_size", 10**7, r"--batch-size: batch size must be an integer in 1\.\.1024, got 10000000"),
    ("batch_size", 2.5, r"--batch-size: batch size must be an integer in 1\.\.1024, got 2\.5"),
    ("repeats", 0, r"--repeats: repeats must be an integer in 1\.\.1000, got 0"),
    ("repeats", 1001, r"--repeats: repeats must be an integer in 1\.\.1000, got 1001"),
    ("repeats", True, r"--repeats: repeats must be an integer in 1\.\.1000, got True"),
    ("warmup", -1, r"--warmup: warmup must be an integer in 0\.\.100, got -1"),
    ("warmup", 101, r"--warmup: warmup must be an integer in 0\.\.100, got 101"),
    ("warmup", 10**5000, r"--warmup: warmup must be an integer in 0\.\.100, got an integer of 5001 digits$"),
    ("repeats", 10**15, r"--repeats: repeats must be an integer in 1\.\.1000, got 1000000000000000$"),
    ("mode", "eval", r"--mode: unknown mode 'eval' \(choose one of infer, train\)"),
    ("mode", "x" * 10**6, r"--mode: unknown mode 'xxxxxxxxxxxxxxxxxxx\.\.\. \(choose one of infer, train\)"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 12 else "")
def test_each_config_field_out_of_range_is_one_clear_error_with_the_range(field, value, message):
    with pytest.raises(DesignError, match=message):
        check_config(replace(BenchConfig(), **{field: value}))


def test_a_training_step_at_batch_1_is_refused_with_the_reason_not_a_batchnorm_traceback():
    vgg = dense_design(Network("vgg", 11))  # its classifier's BatchNorm1d cannot train on one image
    with pytest.raises(DesignError, match="--batch-size: a training step needs batch size at least 2: BatchNorm"):
        bench_design(vgg, ["reference"], BenchConfig(batch_size=1, repeats=1, warmup=0, mode="train"))
    assert check_config(BenchConfig(batch_size=2, mode="train")).batch_size == 2
    assert check_config(BenchConfig(batch_size=1, mode="infer")).batch_size == 1


def test_a_call_that_raises_is_its_own_one_line_error_and_the_others_are_still_timed():
    def broken():
        raise RuntimeError("Expected more than 1 value per channel when training\n  (the rest of a long message)")
    timings = time_interleaved({"dense": lambda: None, "design": broken}, BenchConfig(repeats=2, warmup=1))
    assert timings["design"] == {"error": "RuntimeError: Expected more than 1 value per channel when training"}
    assert timings["dense"]["repeats"] == 2


def test_a_backend_that_fails_when_it_runs_is_reported_and_the_dense_baseline_kept(monkeypatch):
    import models.layers.ask as ask

    def fail(self, x):
        raise RuntimeError("this backend cannot take the input")
    monkeypatch.setitem(ask.ASK_BACKENDS, "decomposed", fail)
    result = bench_design(TINY, ["reference", "decomposed"], BenchConfig(batch_size=2, repeats=1, warmup=0))
    assert result["backends"]["decomposed"]["error"].startswith("RuntimeError: this backend cannot take the input")
    assert result["dense"]["median_ms"] > 0 and result["backends"]["reference"]["median_ms"] > 0


def test_every_timing_has_its_spread_and_the_result_the_machine_load():
    timings = time_interleaved({"a": lambda: None}, BenchConfig(repeats=3, warmup=0))["a"]
    assert timings["spread"] == pytest.approx((timings["max_ms"] - timings["min_ms"]) / timings["median_ms"])
    result = bench_design(TINY, ["reference"], BenchConfig(batch_size=2, repeats=2, warmup=0))
    assert result["cpu_count"] >= 1 and result["load_average"] >= 0
    assert result["backends"]["reference"]["spread"] >= 0 and result["dense"]["spread"] >= 0


def test_a_padding_free_network_is_timed_against_its_padding_free_dense_network():
    """The padding-free MobileNetV2 has a stem of 3 convs the plain one lacks: per-layer timing found no
    dense 'backbone.init_conv.stem_1.conv' and the whole network's ratio was against the other network."""
    padfree = dense_design(Network("mobilenetv2", 0), padfree=True)
    stem = [layer.name for layer in design_layers(padfree)][:3]
    rows = bench_layers(padfree, "reference", BenchConfig(batch_size=2, repeats=1, warmup=0), names=stem)
    assert [r["name"] for r in rows] == stem and all(r["dense_ms"] > 0 and r["design_ms"] > 0 for r in rows)
    assert all(r["dense_min_ms"] <= r["dense_ms"] <= r["dense_max_ms"] for r in rows)
    small = dense_design(Network("resnet_proj", 8), padfree=True)
    result = bench_design(small, ["reference"], BenchConfig(batch_size=2, repeats=1, warmup=0))
    assert result["flop_ratio"] == 1.0  # the dense design against itself


def test_cli_json_contract():
    result = designer("bench", "--arch", "resnet", "--depth", "8", "--anycfg", "ASK_5a", "--batch-size", "2",
                      "--backend", "all", "--repeats", "2", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["batch_size"] == 2 and out["threads"] >= 1 and out["dense"]["median_ms"] > 0
    assert set(out["backends"]) == {"reference", "decomposed", "taichi", "sconv", "auto"}  # and nothing but JSON on stdout
    assert all(timing["speedup_vs_dense"] > 0 for timing in out["backends"].values())
    assert out["fold"] and all(timing["form"] == "folded" for timing in out["backends"].values())


def test_the_cli_times_the_networks_as_trained_with_no_fold():
    result = designer("bench", "--arch", "resnet", "--depth", "8", "--anycfg", "ASK_5a", "--batch-size", "2",
                      "--backend", "sconv", "--repeats", "1", "--no-fold")
    assert result.returncode == 0, result.stderr
    assert "dense (nchw, as trained)" in result.stdout or "dense (channels_last, as trained)" in result.stdout


def test_a_backend_that_cannot_build_gives_every_layer_its_error_instead_of_raising(monkeypatch):
    import designer.bench.latency as bench
    real = bench.build_model

    def no_taichi(design, backend="reference"):
        if backend == "taichi":
            raise ImportError("taichi is not installed")
        return real(design, backend)
    monkeypatch.setattr(bench, "build_model", no_taichi)
    rows = bench_layers(TINY, "taichi", BenchConfig(batch_size=2, repeats=1, warmup=0), names=["conv1"])
    assert rows == [{"name": "conv1", "kind": "ask", "error": "ImportError: taichi is not installed"}]


def test_inference_as_trained_when_folding_is_off_and_training_never_folds():
    as_trained = bench_design(TINY, ["reference"], BenchConfig(batch_size=2, repeats=1, warmup=0, fold=False))
    assert not as_trained["fold"] and as_trained["folded"] == {}
    assert as_trained["dense"]["form"] == as_trained["backends"]["reference"]["form"] == "as trained"
    train = bench_design(TINY, ["reference"], BenchConfig(batch_size=2, repeats=1, warmup=0, mode="train"))
    assert not train["fold"] and train["dense"]["form"] is None and "nchw_as_trained_ms" not in train["dense"]
