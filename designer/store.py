"""The run store: one SQLite file (WAL mode) shared by the app, the CLI and every training process.

Each call opens its own short-lived connection and does one small
transaction, so any number of processes and threads can read while a
training process writes (WAL readers never block the writer); busy_timeout
makes a writer wait for another instead of failing.

Tables:
- runs: one row per run; status is queued | running | finished | failed |
  stopped | interrupted. Times are Unix seconds.
- metrics: (run_id, step, epoch, split, name, value, time). The trainer
  writes split "step" (loss, acc, lr, images_per_s; every logging step),
  "train" and "test" (loss, acc; once per epoch, step = the global step at
  the epoch's end) and "epoch" (time_s, images_per_s). A resumed run writes
  the steps after its checkpoint again; `metrics` returns the latest row per
  (split, name, step), so curves stay clean and nothing is deleted.
- benchmarks: results the Benchmark page saves (design, backend, batch
  size, mode, result JSON).
- settings: key/value (the job queue's concurrency limit).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

STATUSES = ("queued", "running", "finished", "failed", "stopped", "interrupted")
ACTIVE = ("queued", "running")
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL DEFAULT '',
    design TEXT NOT NULL,
    hparams TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    run_dir TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    best_acc REAL,
    params INTEGER,
    flops INTEGER,
    latency_ms REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, split, name, step);
CREATE TABLE IF NOT EXISTS benchmarks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    design TEXT NOT NULL,
    backend TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    mode TEXT NOT NULL,
    result TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

RUN_FIELDS = ("name", "design", "hparams", "status", "pid", "run_dir", "started", "finished", "error", "epoch",
              "step", "best_acc", "params", "flops", "latency_ms")


class RunStore:
    """Plain methods over one runs.db; safe to create anywhere, in any process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file, outside a transaction
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def connect(self, immediate: bool = False):
        """A connection in one transaction: committed on success, rolled back on error, always closed.

        immediate=True takes the write lock at once (BEGIN IMMEDIATE): for
        read-then-write decisions such as claiming a queue slot.
        """
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes, one fsync per checkpoint
            db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # --- runs ---------------------------------------------------------------
    def create_run(self, design: dict, hparams: dict, name: str = "", status: str = "queued",
                   runs_root: Path | None = None, **fields) -> int:
        """A new run row; with runs_root its run_dir is runs_root/<id>, set in the same transaction."""
        with self.connect() as db:
            cur = db.execute("INSERT INTO runs (name, design, hparams, status, created) VALUES (?, ?, ?, ?, ?)",
                             (name, json.dumps(design), json.dumps(hparams), status, time.time()))
            run_id = cur.lastrowid
            if runs_root is not None:
                fields["run_dir"] = str(Path(runs_root).resolve() / str(run_id))
            _update(db, run_id, fields)
        return run_id

    def update_run(self, run_id: int, only_if_status: tuple[str, ...] | None = None, **fields) -> bool:
        """Set fields; with only_if_status, only when the run's status is one of those. True if it changed."""
        with self.connect() as db:
            return _update(db, run_id, fields, only_if_status)

    def get_run(self, run_id: int) -> dict | None:
        with self.connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run_dict(row) if row else None

    def find_run_by_dir(self, run_dir: str | Path) -> dict | None:
        with self.connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_dir = ? ORDER BY id DESC LIMIT 1",
                             (str(Path(run_dir).resolve()),)).fetchone()
        return _run_dict(row) if row else None

    def list_runs(self, statuses: tuple[str, ...] | None = None) -> list[dict]:
        """Runs, newest first; only the given statuses if any."""
        query, args = "SELECT * FROM runs", ()
        if statuses:
            query += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args = tuple(statuses)
        with self.connect() as db:
            return [_run_dict(row) for row in db.execute(query + " ORDER BY id DESC", args)]

    def delete_run(self, run_id: int) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # --- metrics ------------------------------------------------------------
    def log_metrics(self, run_id: int, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        now = time.time()
        with self.connect() as db:
            db.executemany("INSERT INTO metrics (run_id, step, epoch, split, name, value, time) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(run_id, step, epoch, split, name, float(v), now) for name, v in values.items()])
            # progress for `runs list` and the Runs page while the run is between checkpoints
            db.execute("UPDATE runs SET step = ? WHERE id = ? AND step < ?", (step, run_id, step))

    def metrics(self, run_id: int, split: str | None = None, name: str | None = None,
                all_rows: bool = False) -> list[dict]:
        """Metric rows of a run ordered by step: {step, epoch, split, name, value, time}.

        By default only the latest row per (split, name, step) (see the module
        note on resume); all_rows=True returns every row ever written.
        """
        where, args = ["run_id = ?"], [run_id]
        if split is not None:
            where.append("split = ?")
            args.append(split)
        if name is not None:
            where.append("name = ?")
            args.append(name)
        cond = " AND ".join(where)
        query = f"SELECT step, epoch, split, name, value, time FROM metrics WHERE {cond}"
        if not all_rows:
            query += f" AND rowid IN (SELECT MAX(rowid) FROM metrics WHERE {cond} GROUP BY split, name, step)"
            args = args + args
        with self.connect() as db:
            return [dict(row) for row in db.execute(query + " ORDER BY step, rowid", args)]

    # --- benchmarks ---------------------------------------------------------
    def add_benchmark(self, design: dict, backend: str, batch_size: int, mode: str, result: dict) -> int:
        with self.connect() as db:
            return db.execute("INSERT INTO benchmarks (design, backend, batch_size, mode, result, time) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (json.dumps(design), backend, batch_size, mode, json.dumps(result),
                               time.time())).lastrowid

    def benchmarks(self, limit: int = 100) -> list[dict]:
        """Saved benchmark results, newest first, with design and result parsed."""
        with self.connect() as db:
            rows = db.execute("SELECT * FROM benchmarks ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{**dict(r), "design": json.loads(r["design"]), "result": json.loads(r["result"])} for r in rows]

    # --- settings -----------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self.connect() as db:
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def _update(db: sqlite3.Connection, run_id: int, fields: dict, only_if_status=None) -> bool:
    unknown = set(fields) - set(RUN_FIELDS)
    if unknown:
        raise KeyError(f"unknown run fields: {', '.join(sorted(unknown))}")
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"unknown status {fields['status']!r}")
    if not fields:
        return True
    values = [json.dumps(v) if k in ("design", "hparams") else v for k, v in fields.items()]
    query = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?"
    args = [*values, run_id]
    if only_if_status:
        query += f" AND status IN ({','.join('?' * len(only_if_status))})"
        args += list(only_if_status)
    return db.execute(query, args).rowcount > 0


def _run_dict(row: sqlite3.Row) -> dict:
    run = dict(row)
    run["design"] = json.loads(run["design"])
    run["hparams"] = json.loads(run["hparams"])
    return run
