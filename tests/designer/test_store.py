"""The run store: WAL mode, runs, metrics (latest row per step), benchmarks, concurrent readers."""
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from designer.store import RunStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.db")


def test_wal_mode_and_tables(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "metrics", "benchmarks", "settings"} <= tables


def test_run_lifecycle_and_conditional_update(store, tmp_path):
    run_id = store.create_run({"network": {}}, {"lr": 0.1}, "r", runs_root=tmp_path / "runs", params=5)
    run = store.get_run(run_id)
    assert run["status"] == "queued" and run["hparams"] == {"lr": 0.1} and run["params"] == 5
    assert run["run_dir"] == str((tmp_path / "runs" / str(run_id)).resolve())
    assert store.find_run_by_dir(tmp_path / "runs" / str(run_id))["id"] == run_id
    assert store.update_run(run_id, status="running", pid=123)
    assert not store.update_run(run_id, only_if_status=("queued",), status="failed")
    assert store.get_run(run_id)["status"] == "running"
    assert [r["id"] for r in store.list_runs(("running",))] == [run_id]
    with pytest.raises(ValueError):
        store.update_run(run_id, status="exploded")
    with pytest.raises(KeyError):
        store.update_run(run_id, colour="red")
    store.delete_run(run_id)
    assert store.get_run(run_id) is None


def test_metrics_return_the_latest_row_per_step_but_keep_all(store):
    run_id = store.create_run({}, {})
    for step in (1, 2, 3):
        store.log_metrics(run_id, step, 1, "step", {"loss": 3.0 - step, "acc": 10.0 * step})
    store.log_metrics(run_id, 2, 1, "step", {"loss": 9.0})  # a resumed run writes step 2 again
    losses = store.metrics(run_id, "step", "loss")
    assert [(m["step"], m["value"]) for m in losses] == [(1, 2.0), (2, 9.0), (3, 0.0)]
    assert len(store.metrics(run_id, all_rows=True)) == 7
    assert {m["name"] for m in store.metrics(run_id)} == {"loss", "acc"}


def test_benchmarks_and_settings(store):
    bench_id = store.add_benchmark({"network": {"arch": "vgg"}}, "decomposed", 32, "latency", {"median_ms": 1.5})
    saved = store.benchmarks()
    assert saved[0]["id"] == bench_id and saved[0]["result"] == {"median_ms": 1.5}
    assert store.get_setting("concurrency", "1") == "1"
    store.set_setting("concurrency", "2")
    store.set_setting("concurrency", "3")
    assert store.get_setting("concurrency") == "3"


WRITER = textwrap.dedent("""
    import sys
    from designer.store import RunStore
    store = RunStore(sys.argv[1])
    for step in range(300):
        store.log_metrics(int(sys.argv[2]), step, 1, "step", {"loss": 1.0, "acc": 2.0})
        store.update_run(int(sys.argv[2]), step=step)
""")


def test_readers_never_fail_while_another_process_writes(store):
    run_id = store.create_run({}, {})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path), str(run_id)], cwd=ROOT)
    reads, seen = 0, []
    while writer.poll() is None or reads < 5:
        seen.append(len(store.metrics(run_id, "step", "loss")))
        store.list_runs()
        reads += 1
        time.sleep(0.005)
    assert writer.wait() == 0
    assert seen == sorted(seen)  # readers saw a growing, consistent prefix
    assert len(store.metrics(run_id, "step", "loss")) == 300 and store.get_run(run_id)["step"] == 299


def test_a_runs_step_follows_its_metrics_between_checkpoints(store, tmp_path):
    run_id = store.create_run({"network": {}}, {}, "r", runs_root=tmp_path / "runs")
    store.log_metrics(run_id, 40, 1, "step", {"loss": 1.0})
    assert store.get_run(run_id)["step"] == 40
    store.log_metrics(run_id, 20, 1, "step", {"loss": 1.0})  # a resumed run re-logs older steps
    assert store.get_run(run_id)["step"] == 40
