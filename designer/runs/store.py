"""The run store: one SQLite file (WAL mode) shared by the app, the CLI and every training process.

Each call opens its own short-lived connection and does one small
transaction, so any number of processes and threads can read while a
training process writes (WAL readers never block the writer); busy_timeout
makes a writer wait for another instead of failing.

Faults are said plainly, naming the file (StoreError): no space left,
read-only, corrupted (with the way out: `runs repair`, see repair_store),
a disk I/O error. A workspace that cannot be written (a read-only mount) is
opened for reading only. The first open of a path in a process runs
`PRAGMA quick_check` (cheap), so a malformed store is never written into.

Tables:
- runs: one row per run; status is queued | running | finished | failed |
  stopped | interrupted. Times are Unix seconds. `step` is the newest step
  logged; `resume_step` is the step of the run's newest checkpoint, where a
  resume continues (0: from the start).
- metrics: (run_id, step, epoch, split, name, value, time). The trainer
  writes split "step" (loss, acc, lr, images_per_s; every logging step),
  "train" and "test" (loss, acc; once per epoch, step = the global step at
  the epoch's end) and "epoch" (time_s, images_per_s). A resumed run first
  drops the rows logged after its checkpoint (write_progress with
  rewrite_after), then logs those steps again; `metrics` returns the latest
  row per (split, name, step) in any case.
- benchmarks: results the Benchmark page saves (design, backend, batch
  size, mode, result JSON).
- settings: key/value (the job queue's concurrency limit).
- sweeps: one row per design sweep (designer.runs.sweeps): its spec, status, the
  process driving it; each trial is a run with the sweep's id and its Ray Tune
  trial id (sweep_id, trial_id). A trial that early stopping ended is "pruned".
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from designer.errors import DesignError

STATUSES = ("queued", "running", "finished", "failed", "stopped", "interrupted", "pruned")
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
    latency_ms REAL,
    resume_step INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    address TEXT NOT NULL DEFAULT '',
    max_concurrent INTEGER,
    trials INTEGER NOT NULL DEFAULT 0,
    storage TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    wall_s REAL,
    error TEXT
);
"""
ADDED_COLUMNS = {"runs": {"resume_step": "INTEGER NOT NULL DEFAULT 0",  # columns newer than some stores
                          "sweep_id": "INTEGER", "trial_id": "TEXT"}}
TABLES = ("runs", "metrics", "benchmarks", "settings", "sweeps")

RUN_FIELDS = ("name", "design", "hparams", "status", "pid", "run_dir", "started", "finished", "error", "epoch",
              "step", "best_acc", "params", "flops", "latency_ms", "resume_step", "sweep_id", "trial_id")
SALVAGE_FAILURES = 20_000  # unreadable rowid ranges tried before giving a table up
_checked: set[Path] = set()  # stores whose quick_check passed in this process


class StoreError(DesignError):
    """The run store cannot do what was asked: no space, read-only, corrupted, an I/O error; names the file."""


def repair_hint(path: Path) -> str:
    return f"run `python -m designer runs repair --home {path.parent}` to salvage its rows into a fresh store"


class RunStore:
    """Plain methods over one runs.db; safe to create anywhere, in any process.

    readonly: True when the file or its folder cannot be written (then every
    write is a StoreError saying so, and reads go through SQLite's read-only
    or immutable mode).
    """

    def __init__(self, path: str | Path, check: bool = True):
        self.path = Path(path)
        self.readonly = not _writable(self.path)
        if self.readonly:
            if not self.path.is_file():
                raise StoreError("no run store here, and the folder is read-only", str(self.path))
        else:
            self._setup()
        if check:
            self.check()

    def _setup(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        except OSError as err:
            raise StoreError(f"cannot create the run store: {err.strerror}", str(self.path)) from None
        except sqlite3.Error as err:
            raise self._explain(err) from None
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file, outside a transaction
            db.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, decl in columns.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        except sqlite3.Error as err:
            raise self._explain(err) from None
        finally:
            db.close()

    def check(self) -> None:
        """PRAGMA quick_check, once per path and process: StoreError with the way out when malformed."""
        key = self.path.resolve()
        if key in _checked:
            return
        with self.connect() as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            first = " ".join(" ".join(problems).split())[:160]  # one line: SQLite's report has newlines
            raise StoreError(f"the run store is corrupted (SQLite's check: {first}): {repair_hint(self.path)}",
                             str(self.path))
        _checked.add(key)

    def _open(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        uri = "file:" + quote(str(self.path.resolve()))
        try:  # read-only with locking: works while a -shm exists (a writer elsewhere)
            db = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            return db
        except sqlite3.OperationalError:  # nobody can write here: read the file as it is
            return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None)

    @contextlib.contextmanager
    def connect(self, immediate: bool = False):
        """A connection in one transaction: committed on success, rolled back on error, always closed.

        immediate=True takes the write lock at once (BEGIN IMMEDIATE): for
        read-then-write decisions such as claiming a queue slot. Any SQLite
        error comes out as a StoreError saying what is wrong.
        """
        if immediate and self.readonly:
            raise StoreError("the workspace is read-only: runs can be listed, not changed", str(self.path))
        try:
            db = self._open()
        except sqlite3.Error as err:
            raise self._explain(err) from None
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not self.readonly:
                db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
            db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as err:
            _rollback(db)
            raise self._explain(err) from None
        except BaseException:
            _rollback(db)
            raise
        finally:
            db.close()

    def _explain(self, err: sqlite3.Error) -> StoreError:
        """One plain StoreError for an SQLite error (by its code, not its wording)."""
        code = getattr(err, "sqlite_errorcode", 0) & 0xFF
        text = str(err)
        if code == sqlite3.SQLITE_FULL:
            message = "no space left on the device: the run store cannot grow"
        elif code == sqlite3.SQLITE_READONLY or self.readonly and code == sqlite3.SQLITE_CANTOPEN:
            message = "the run store is read-only: runs can be listed, not changed"
        elif code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            message = f"the run store is corrupted ({' '.join(text.split())[:160]}): {repair_hint(self.path)}"
        elif code == sqlite3.SQLITE_IOERR:
            message = (f"disk I/O error ({text}): was its -wal or -shm file removed while in use, or is the "
                       f"disk failing? Writers retry; it clears once every process has closed the store")
        elif code == sqlite3.SQLITE_BUSY:
            message = f"busy: another process held the write lock for over {BUSY_TIMEOUT_MS // 1000} s"
        elif code == sqlite3.SQLITE_CANTOPEN:
            message = f"cannot open the run store ({text})"
        else:
            message = f"SQLite error: {text}"
        return StoreError(message, str(self.path))

    # --- runs ---------------------------------------------------------------
    def create_run(self, design: dict, hparams: dict, name: str = "", status: str = "queued",
                   runs_root: Path | None = None, **fields) -> int:
        """A new run row; with runs_root its run_dir is runs_root/<id>, set in the same transaction.

        A run folder belongs to one run: StoreError when the folder (given or
        made) is, holds or lies in another run's folder.
        """
        with self.connect(immediate=True) as db:
            cur = db.execute("INSERT INTO runs (name, design, hparams, status, created) VALUES (?, ?, ?, ?, ?)",
                             (name, json.dumps(design), json.dumps(hparams), status, time.time()))
            run_id = cur.lastrowid
            if runs_root is not None:
                fields["run_dir"] = str(Path(runs_root).resolve() / str(run_id))
            if fields.get("run_dir"):
                fields["run_dir"] = str(Path(fields["run_dir"]).resolve())
                owner = _folder_owner(db, fields["run_dir"], run_id)
                if owner:
                    raise StoreError(f"the folder belongs to run {owner['id']} ({owner['run_dir']}): "
                                     f"choose another", fields["run_dir"])
            _update(db, run_id, fields)
        return run_id

    def folder_owner(self, run_dir: str | Path) -> dict | None:
        """The run whose folder is run_dir, holds it or lies inside it; None when the folder is free."""
        with self.connect() as db:
            owner = _folder_owner(db, str(Path(run_dir).resolve()), None)
        return self.get_run(owner["id"]) if owner else None

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

    def list_runs(self, statuses: tuple[str, ...] | None = None, sweep_id: int | None = None) -> list[dict]:
        """Runs, newest first; only the given statuses if any, only one sweep's trials if given."""
        where, args = [], []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        if sweep_id is not None:
            where.append("sweep_id = ?")
            args.append(sweep_id)
        query = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self.connect() as db:
            return [_run_dict(row) for row in db.execute(query + " ORDER BY id DESC", args)]

    def delete_run(self, run_id: int) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # --- metrics ------------------------------------------------------------
    def log_metrics(self, run_id: int, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        now = time.time()
        self.write_progress(run_id, [(step, epoch, split, name, float(v), now) for name, v in values.items()])

    def write_progress(self, run_id: int, rows: list[tuple], fields: dict | None = None,
                       rewrite_after: int | None = None) -> None:
        """In one transaction: metric rows (step, epoch, split, name, value, time) and run fields.

        rewrite_after=S first deletes the run's rows after step S and sets its
        step to S: a resume from a checkpoint at S, or a trainer rewriting
        every row it logged after the store lost some.
        """
        with self.connect() as db:
            if rewrite_after is not None:
                db.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, rewrite_after))
                db.execute("UPDATE runs SET step = ? WHERE id = ?", (rewrite_after, run_id))
            db.executemany("INSERT INTO metrics (run_id, step, epoch, split, name, value, time) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *row) for row in rows])
            if rows:  # progress for `runs list` and the Runs page while the run is between checkpoints
                step = max(row[0] for row in rows)
                db.execute("UPDATE runs SET step = ? WHERE id = ? AND step < ?", (step, run_id, step))
            _update(db, run_id, fields or {})

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


def repair_store(path: str | Path) -> dict:
    """Salvage every readable row of a (corrupted) store into a fresh one at the same path.

    The old file (with its -wal and -shm) is kept as runs.db.corrupt-<time>;
    returns {store, corrupt_copy, rows: {table: rows kept}, unreadable: {table: rows lost, where known}}.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError("no run store to repair", str(path))
    if not _writable(path):
        raise StoreError("the run store is read-only: cannot repair it here", str(path))
    copy = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{copy}{suffix}")
    _checked.discard(path.resolve())
    fresh = RunStore(path)
    kept, lost = {}, {}
    old = sqlite3.connect(f"file:{quote(str(copy.resolve()))}?mode=ro", uri=True)
    try:
        with fresh.connect() as db:
            for table in TABLES:
                columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                rows, missing = _salvage(old, table, columns)
                if rows:
                    names = ", ".join(rows[0].keys())
                    db.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(rows[0]))})",
                                   [tuple(r.values()) for r in rows])
                kept[table], lost[table] = len(rows), missing
    finally:
        old.close()
    return {"store": str(path), "corrupt_copy": str(copy), "rows": kept, "unreadable": lost}


def _salvage(db: sqlite3.Connection, table: str, columns: list[str]) -> tuple[list[dict], int | None]:
    """Readable rows of one table (the columns both stores have), bisecting rowid ranges around bad pages.

    Returns (rows, how many rowids could not be read; None when the table itself cannot be read)."""
    db.row_factory = sqlite3.Row
    try:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return [], None
    wanted = [c for c in columns if c in have]
    if not wanted:
        return [], None
    try:
        top = db.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = 2 ** 31
    select = f"SELECT {', '.join(wanted)} FROM {table} WHERE rowid BETWEEN ? AND ?"
    rows, unreadable, todo, budget = [], 0, [(0, top)], SALVAGE_FAILURES
    while todo and budget:
        low, high = todo.pop()
        try:
            rows += [dict(r) for r in db.execute(select, (low, high))]
        except sqlite3.DatabaseError:
            budget -= 1
            if low == high:
                unreadable += 1
            else:
                middle = (low + high) // 2
                todo += [(middle + 1, high), (low, middle)]
    if todo:
        return rows, None
    try:  # a broken interior page can hide rows without an error: an index may still count them
        counted = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        counted = 0
    return rows, max(unreadable, counted - len(rows))


def _writable(path: Path) -> bool:
    """Can this process write the store file and its folder (a read-only mount says no, even to root)?"""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK)


def _rollback(db: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if db.in_transaction:
            db.execute("ROLLBACK")


def _folder_owner(db: sqlite3.Connection, run_dir: str, run_id: int | None):
    """Another run whose folder is run_dir, lies inside it or holds it (deleting one would remove the other)."""
    new = Path(run_dir)
    for row in db.execute("SELECT id, run_dir FROM runs WHERE run_dir IS NOT NULL AND id IS NOT ?", (run_id,)):
        other = Path(row["run_dir"])
        if other == new or other.is_relative_to(new) or new.is_relative_to(other):
            return row
    return None


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
