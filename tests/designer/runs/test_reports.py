"""designer.runs.reports: the app's views over the run store (pure functions of store rows)."""
from designer.designs.design import Network
from designer.networks.build import dense_design
from designer.networks.editing import apply_preset_to_3x3
from designer.runs.reports import auto_shortfall, benchmark_bars, benchmark_notes, best_backend, latency_for, runs_table

DESIGN = apply_preset_to_3x3(dense_design(Network("resnet", 20, "cifar10")), "ASK_5a").to_json()
RESULT = {"batch_size": 1, "mode": "infer", "threads": 2, "flop_ratio": 1.8,
          "dense": {"median_ms": 10.0, "layout": "nchw"},
          "backends": {"reference": {"median_ms": 20.0, "speedup_vs_dense": 0.5},
                       "decomposed": {"median_ms": 5.0, "speedup_vs_dense": 2.0},
                       "taichi": {"error": "no taichi"}}}


def test_bars_and_best_backend():
    rows = benchmark_bars(RESULT)
    assert [r["what"] for r in rows] == ["dense (nchw)", "reference", "decomposed", "taichi"]
    assert rows[2]["speedup"] == 2.0 and rows[3]["median_ms"] is None and rows[3]["error"] == "no taichi"
    assert best_backend(RESULT)[0] == "decomposed"


def test_latency_is_the_newest_inference_benchmark_of_the_same_design():
    benches = [{"design": DESIGN, "mode": "train", "batch_size": 1, "result": RESULT},
               {"design": DESIGN, "mode": "infer", "batch_size": 32, "result": RESULT},
               {"design": {"other": 1}, "mode": "infer", "batch_size": 1, "result": RESULT}]
    assert latency_for(DESIGN, benches) == {"median_ms": 5.0, "backend": "decomposed", "batch_size": 32,
                                            "speedup": 2.0}
    assert latency_for(DESIGN, benches, batch_size=1) is None


def test_runs_table():
    run = {"id": 7, "name": "r", "status": "finished", "design": DESIGN, "hparams": {"epochs": 1}, "epoch": 1,
           "step": 30, "best_acc": 81.5, "params": 150_000, "flops": 23_000_000, "latency_ms": None, "error": None}
    row = runs_table([run], [{"design": DESIGN, "mode": "infer", "batch_size": 1, "result": RESULT}])[0]
    assert row["design"] == "ResNet-20 on cifar10: ASK_5a x19" and row["epoch"] == "1/1"
    assert row["latency (ms)"] == 5.0 and row["latency from"] == "decomposed, batch 1"
    assert row["params (M)"] == 0.15 and row["FLOPs (M)"] == 23.0
    assert row["ONNX latency (ms)"] is None


def test_a_run_shows_its_exported_latency_in_onnxruntime_beside_its_torch_latency():
    onnx = {**RESULT, "runtime": "onnxruntime", "dense": {"median_ms": 8.0, "layout": "onnx"},
            "backends": {"onnxruntime": {"median_ms": 4.0, "speedup_vs_dense": 2.0, "layout": "onnx"}}}
    run = {"id": 7, "name": "r", "status": "finished", "design": DESIGN, "hparams": {}, "params": 1, "flops": 1}
    benches = [{"design": DESIGN, "mode": "infer", "batch_size": 32, "result": onnx},
               {"design": DESIGN, "mode": "infer", "batch_size": 1, "result": RESULT}]
    row = runs_table([run], benches)[0]
    assert (row["latency (ms)"], row["latency from"]) == (5.0, "decomposed, batch 1")  # not the ONNX one
    assert (row["ONNX latency (ms)"], row["ONNX from"]) == (4.0, "onnxruntime, batch 32")


def test_a_benchmark_saved_with_a_version_1_design_still_belongs_to_its_run():
    old = {"format": "kernel-studio-design", "version": 1, "network": {"arch": "resnet", "depth": 20,
                                                                      "dataset": "cifar10"},
           "padfree": False, "layers": DESIGN["layers"]}
    assert latency_for(DESIGN, [{"design": old, "mode": "infer", "batch_size": 1, "result": RESULT}])["median_ms"] == 5.0


def timed(median, low, high, repeats=5, **extra):
    return {"median_ms": median, "min_ms": low, "max_ms": high, "spread": (high - low) / median,
            "repeats": repeats, **extra}


QUIET = {"batch_size": 1, "mode": "infer", "threads": 2, "flop_ratio": 1.8, "load_average": 0.3, "cpu_count": 2,
         "dense": {**timed(10.0, 9.8, 10.2), "layout": "nchw"},
         "backends": {"decomposed": timed(5.0, 4.9, 5.1, speedup_vs_dense=2.0),
                      "auto": timed(4.8, 4.7, 4.9, speedup_vs_dense=10 / 4.8)}}


def test_each_median_comes_with_its_min_max_and_a_quiet_run_has_no_warning():
    rows = benchmark_bars(QUIET)
    assert [(r["what"], r["min_ms"], r["median_ms"], r["max_ms"]) for r in rows] == [
        ("dense (nchw)", 9.8, 10.0, 10.2), ("decomposed", 4.9, 5.0, 5.1), ("auto", 4.7, 4.8, 4.9)]
    assert not any(r["noisy"] or r["note"] for r in rows)
    assert benchmark_notes(QUIET) == [] and auto_shortfall(QUIET) is None


def test_a_busy_machine_and_repeats_that_disagree_by_more_than_10_percent_are_warned():
    busy = {**QUIET, "load_average": 3.5, "dense": {**timed(10.0, 9.0, 11.5), "layout": "nchw"}}
    notes = benchmark_notes(busy)
    assert notes[0].startswith("The machine was busy: load average 3.5 on 2 cores")
    assert notes[1].startswith("Repeats disagree by more than 10% (max - min over the median): "
                               "dense (nchw) 25% (9.00..11.50 ms). ")
    assert len(notes) == 2  # 10% apart is not "more than 10%"
    assert benchmark_bars({**QUIET, "dense": {**timed(10.0, 9.5, 10.5), "layout": "nchw"}})[0]["noisy"] is False


def test_auto_slower_than_the_best_fixed_backend_is_marked_with_its_real_number():
    lost = {**QUIET, "backends": {**QUIET["backends"], "auto": timed(6.0, 5.9, 6.1, speedup_vs_dense=10 / 6)}}
    auto = benchmark_bars(lost)[-1]
    assert auto["median_ms"] == 6.0  # never replaced by the faster backend's number
    assert auto["note"] == "auto's choice was 20% slower than decomposed in this run"
    assert any(n.startswith("auto's choice was 20% slower than decomposed in this run") for n in benchmark_notes(lost))
    alone = {**lost, "backends": {"auto": lost["backends"]["auto"]}}  # nothing fixed to compare with
    assert auto_shortfall(alone) is None and benchmark_bars(alone)[-1]["note"] is None


def test_results_saved_before_spreads_were_kept_still_show():
    rows = benchmark_bars(RESULT)
    assert rows[1]["min_ms"] is None and rows[1]["noisy"] is False
    assert benchmark_notes(RESULT) == []
