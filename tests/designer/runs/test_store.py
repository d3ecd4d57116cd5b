"""The run store: WAL mode, runs, metrics (latest row per step), benchmarks, concurrent readers, faults said plainly."""
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from designer.runs.store import SCHEMA, RunStore, StoreError, repair_store

ROOT = Path(__file__).resolve().parents[3]


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
    from designer.runs.store import SCHEMA, RunStore, StoreError, repair_store
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


def test_an_older_store_gains_the_resume_step_column(tmp_path):
    path = tmp_path / "runs.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.replace(",\n    resume_step INTEGER NOT NULL DEFAULT 0", ""))
    db.execute("INSERT INTO runs (design, hparams, status, created) VALUES ('{}', '{}', 'stopped', 0)")
    db.commit()
    db.close()
    assert RunStore(path).get_run(1)["resume_step"] == 0


def corrupt_a_page(path: Path, at: float = 0.2) -> None:
    """Overwrite one page's cells (its header kept): the first table leaf with rows from a fraction of the file
    on (a metrics leaf, in a store of mostly metrics; an empty page would go unnoticed)."""
    data = bytearray(path.read_bytes())
    page = 4096
    middle = int(len(data) // page * at) * page
    while data[middle] != 0x0D or int.from_bytes(data[middle + 3:middle + 5], "big") < 10:  # a leaf holding rows
        middle += page
    data[middle + 16:middle + page] = b"\xa5" * (page - 16)
    path.write_bytes(bytes(data))


def test_a_corrupted_store_is_refused_with_the_way_out_and_repair_salvages_what_is_readable(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    store = RunStore(path)
    run_id = store.create_run({"network": {}}, {"lr": 0.1}, "kept", status="finished")
    store.write_progress(run_id, [(step, 1, "step", "loss", 1.0 / step, 0.0) for step in range(1, 3001)])
    corrupt_a_page(path)
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] != "ok"
    monkeypatch.setattr("designer.runs.store._checked", set())  # as a new process: the check runs once per process
    with pytest.raises(StoreError, match="corrupted .*runs repair --home"):
        RunStore(path)
    repaired = repair_store(path)
    assert Path(repaired["corrupt_copy"]).exists() and ".corrupt-" in repaired["corrupt_copy"]
    fresh = RunStore(path)
    run = fresh.get_run(run_id)
    assert run["name"] == "kept" and run["hparams"] == {"lr": 0.1}
    salvaged = fresh.metrics(run_id)
    assert 0 < len(salvaged) <= 3000 and repaired["rows"]["metrics"] == len(salvaged)
    assert len(salvaged) + repaired["unreadable"]["metrics"] >= 3000  # what was lost is counted
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert fresh.create_run({}, {}) == run_id + 1  # ids go on after the salvaged ones


def test_a_store_that_is_not_a_database_is_said_to_be_corrupted(tmp_path):
    (tmp_path / "runs.db").write_bytes(b"x" * 8192)
    with pytest.raises(StoreError, match="runs.db: the run store is corrupted"):
        RunStore(tmp_path / "runs.db")


def test_a_removed_wal_is_said_plainly_and_writes_work_again_once_it_is_closed(store):
    run_id = store.create_run({}, {})
    reader = sqlite3.connect(store.path)  # another process's connection keeps the -wal in use
    reader.execute("SELECT COUNT(*) FROM runs").fetchone()
    store.log_metrics(run_id, 1, 1, "step", {"loss": 1.0})
    Path(f"{store.path}-wal").unlink()
    with pytest.raises(StoreError, match="disk I/O error .*-wal or -shm file removed"):
        store.log_metrics(run_id, 2, 1, "step", {"loss": 1.0})
    reader.close()  # the last holder writes its -wal back on close
    store.log_metrics(run_id, 2, 1, "step", {"loss": 1.0})
    assert [m["step"] for m in store.metrics(run_id)] == [1, 2]


def test_a_resume_rewrites_from_its_checkpoint_step_so_the_run_shows_where_it_really_is(store):
    run_id = store.create_run({}, {})
    store.write_progress(run_id, [(step, 1, "step", "loss", 1.0, 0.0) for step in range(1, 151)],
                         {"resume_step": 100})
    assert store.get_run(run_id)["step"] == 150
    store.write_progress(run_id, [], {"resume_step": 100}, rewrite_after=100)  # resumed from step 100
    run = store.get_run(run_id)
    assert run["step"] == 100 and run["resume_step"] == 100
    assert max(m["step"] for m in store.metrics(run_id, all_rows=True)) == 100
