"""designer.reports: the app's views over the run store (pure functions of store rows)."""
from designer.build import dense_design
from designer.design import Network
from designer.editing import apply_preset_to_3x3
from designer.reports import benchmark_bars, best_backend, latency_for, runs_table

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
