"""Sweeps in the run store, without Ray: their rows, their trials, the Pareto fronts, and the
processes that drive them in the background (as designer.runs.jobs does for training runs).

A sweep row (table `sweeps`) holds the spec as given, its status (queued |
running | finished | failed | stopped | interrupted), the pid of the process
driving it, the Ray address ('' = a local Ray started by that process) and
the folder Ray Tune keeps its experiment in. Its trials are runs with its
sweep_id and their Tune trial id. Only the driving process writes them; the
app and the CLI read, start, stop and resume.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from designer.designs.design import design_from_json
from designer.errors import DesignError
from designer.runs.jobs import designer_argv, option_value
from designer.runs.store import RunStore, StoreError
from designer.runs.sweeps.spec import SweepSpec, is_dense

SWEEP_STATUSES = ("queued", "running", "finished", "failed", "stopped", "interrupted")
SWEEP_FIELDS = ("name", "spec", "status", "pid", "address", "max_concurrent", "trials", "storage", "started",
                "finished", "wall_s", "error")
STOP_GRACE_S = 90.0  # Ray Tune saves the experiment and ends its trials on SIGINT; SIGKILL after this
REPO_ROOT = Path(__file__).resolve().parents[3]
_children: dict[int, subprocess.Popen] = {}  # sweep processes this process started (reaped on refresh)


# --- rows ------------------------------------------------------------------------------------------------

def create_sweep(store: RunStore, spec: SweepSpec, address: str = "", max_concurrent: int | None = None,
                 status: str = "queued") -> int:
    """A new sweep row; its experiment folder is <workspace>/sweeps/<id> unless given later."""
    with store.connect(immediate=True) as db:
        sweep_id = db.execute(
            "INSERT INTO sweeps (name, spec, status, address, max_concurrent, trials, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (spec.name, json.dumps(spec.raw), status, address or "", max_concurrent, spec.total_trials,
             time.time())).lastrowid
        db.execute("UPDATE sweeps SET storage = ? WHERE id = ?",
                   (str((store.path.parent / "sweeps").resolve() / str(sweep_id)), sweep_id))
    return sweep_id


def update_sweep(store: RunStore, sweep_id: int, only_if_status: tuple[str, ...] | None = None, **fields) -> bool:
    unknown = set(fields) - set(SWEEP_FIELDS)
    if unknown:
        raise KeyError(f"unknown sweep fields: {', '.join(sorted(unknown))}")
    if "status" in fields and fields["status"] not in SWEEP_STATUSES:
        raise ValueError(f"unknown sweep status {fields['status']!r}")
    if not fields:
        return True
    query = f"UPDATE sweeps SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?"
    args = [*fields.values(), sweep_id]
    if only_if_status:
        query += f" AND status IN ({','.join('?' * len(only_if_status))})"
        args += list(only_if_status)
    with store.connect() as db:
        return db.execute(query, args).rowcount > 0


def get_sweep(store: RunStore, sweep_id: int) -> dict:
    """One sweep (spec parsed); DesignError when there is none."""
    with store.connect() as db:
        row = db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
    if row is None:
        raise DesignError(f"no sweep with id {sweep_id}", "sweep")
    return _sweep_dict(row)


def list_sweeps(store: RunStore) -> list[dict]:
    """Every sweep, newest first, after marking those whose process died as interrupted."""
    refresh(store)
    with store.connect() as db:
        return [_sweep_dict(row) for row in db.execute("SELECT * FROM sweeps ORDER BY id DESC")]


def _sweep_dict(row) -> dict:
    sweep = dict(row)
    sweep["spec"] = json.loads(sweep["spec"])
    return sweep


def trial_run(store: RunStore, sweep_id: int, trial_id: str) -> dict | None:
    """The run of one Tune trial of a sweep (a restored sweep finds its trials' runs here)."""
    with store.connect() as db:
        row = db.execute("SELECT id FROM runs WHERE sweep_id = ? AND trial_id = ? ORDER BY id DESC LIMIT 1",
                         (sweep_id, trial_id)).fetchone()
    return store.get_run(row["id"]) if row else None


# --- what a sweep found ------------------------------------------------------------------------------------

def trials_table(store: RunStore, sweep_id: int) -> list[dict]:
    """One row per trial, oldest first: run id, label, status, epoch, best accuracy, params, MACs,
    latency, whether it is the dense baseline and whether it is on the accuracy/MACs or the
    accuracy/latency Pareto front."""
    runs = sorted(store.list_runs(sweep_id=sweep_id), key=lambda r: r["id"])
    rows = [{"run_id": r["id"], "trial_id": r["trial_id"], "label": _label(r), "status": r["status"],
             "epoch": r["epoch"], "epochs": (r["hparams"] or {}).get("epochs"), "step": r["step"],
             "best_accuracy": r["best_acc"], "params": r["params"], "macs": r["flops"],
             "latency_ms": r["latency_ms"], "baseline": is_dense(r["design"]), "design": r["design"],
             "error": r["error"] or ""} for r in runs]
    front_macs = set(pareto_front(rows, "macs"))
    front_latency = set(pareto_front(rows, "latency_ms"))
    for row in rows:
        row["pareto_macs"], row["pareto_latency"] = row["run_id"] in front_macs, row["run_id"] in front_latency
    return rows


def _label(run: dict) -> str:
    name = run.get("name") or ""
    return name.split(": ", 1)[1] if name.startswith("sweep ") and ": " in name else name


def pareto_front(rows: list[dict], cost: str, accuracy: str = "best_accuracy") -> list[int]:
    """Run ids of the finished trials no other finished trial beats: at most the cost (MACs, latency) with
    more accuracy, or less cost with at least the accuracy. Ordered by cost. A trial early stopping
    ended (pruned) or one without the figure takes no part."""
    points = [r for r in rows if r["status"] == "finished" and r.get(cost) is not None
              and r.get(accuracy) is not None]
    points.sort(key=lambda r: (r[cost], -r[accuracy], r["run_id"]))
    front, best = [], None
    for r in points:
        if best is None or r[accuracy] > best:
            front.append(r["run_id"])
            best = r[accuracy]
    return front


def summary(store: RunStore, sweep_id: int) -> dict:
    """What `sweep --json` prints: {sweep_id, status, wall_s, trials: [...], pareto, pareto_latency}."""
    from designer.networks.editing import summarize
    sweep = get_sweep(store, sweep_id)
    rows = trials_table(store, sweep_id)
    trials = []
    for row in rows:
        try:
            design = summarize(design_from_json(row["design"]))
        except DesignError:
            design = row["label"]
        trials.append({"run_id": row["run_id"], "design": design, "choices": row["label"], "status": row["status"],
                       "best_accuracy": row["best_accuracy"], "params": row["params"], "macs": row["macs"],
                       "latency_ms": row["latency_ms"], "baseline": row["baseline"], "epoch": row["epoch"]})
    return {"sweep_id": sweep_id, "name": sweep["name"], "status": sweep["status"], "wall_s": sweep["wall_s"],
            "address": sweep["address"] or "local", "trials": trials,
            "pareto": [r["run_id"] for r in sorted((r for r in rows if r["pareto_macs"]), key=lambda r: r["macs"])],
            "pareto_latency": [r["run_id"] for r in sorted((r for r in rows if r["pareto_latency"]),
                                                           key=lambda r: r["latency_ms"])]}


# --- processes ---------------------------------------------------------------------------------------------

def is_sweep_process(pid: int | None, sweep_id: int) -> bool:
    """Is `pid` alive and a `designer sweep` process of this sweep (not a zombie, not a reused pid)?"""
    argv = designer_argv(pid)
    if not argv:
        return argv == []
    if "sweep" not in argv:
        return False
    for option in ("--sweep-id", "--resume"):
        if (given := option_value(argv, option)) is not None:
            return given == str(sweep_id)
    return True  # `sweep SPEC.json` started by hand: it made its sweep row itself


def refresh(store: RunStore) -> list[int]:
    """Mark sweeps whose process is gone as interrupted, and their running trials too; returns their ids."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]
    if store.readonly:
        return []
    with store.connect() as db:
        active = db.execute("SELECT id, pid, status FROM sweeps WHERE status IN ('running', 'queued')").fetchall()
    dead = [row["id"] for row in active if row["status"] == "running" and not is_sweep_process(row["pid"], row["id"])]
    for sweep_id in dead:
        if update_sweep(store, sweep_id, only_if_status=("running",), status="interrupted", finished=time.time(),
                        error="the sweep's process ended without reporting (killed or crashed): resume it"):
            mark_trials(store, sweep_id, "interrupted", "the sweep's process ended: resume the sweep")
    return dead


def mark_trials(store: RunStore, sweep_id: int, status: str, error: str | None = None) -> None:
    """Set every running trial of the sweep to `status` (the sweep stopped or its process died)."""
    with store.connect() as db:
        db.execute("UPDATE runs SET status = ?, error = ?, finished = ? WHERE sweep_id = ? AND status = 'running'",
                   (status, error, time.time(), sweep_id))


def start_sweep(spec: SweepSpec, home, address: str = "", max_concurrent: int | None = None) -> int:
    """Record a sweep and drive it in a background process (`python -m designer sweep --sweep-id ID`);
    returns its id. The spec is checked first (DesignError)."""
    from designer.runs.jobs import open_store
    store = open_store(home)
    sweep_id = create_sweep(store, spec, address, max_concurrent)
    _launch(store, sweep_id, ["--sweep-id", str(sweep_id)])
    return sweep_id


def resume_sweep(sweep_id: int, home) -> dict:
    """Start a stopped, interrupted or failed sweep's process again: Ray Tune restores it, finished trials stay."""
    from designer.runs.jobs import open_store
    store = open_store(home)
    refresh(store)
    if not update_sweep(store, sweep_id, only_if_status=("stopped", "interrupted", "failed"), status="queued",
                        error=None, finished=None):
        sweep = get_sweep(store, sweep_id)
        raise DesignError(f"sweep {sweep_id} is {sweep['status']}; only stopped, interrupted or failed sweeps "
                          f"resume", "sweep")
    _launch(store, sweep_id, ["--resume", str(sweep_id)])
    return get_sweep(store, sweep_id)


def _launch(store: RunStore, sweep_id: int, args: list[str]) -> None:
    folder = Path(get_sweep(store, sweep_id)["storage"])
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.getcwd(), env.get("PYTHONPATH")) if p)
    try:
        with open(folder / "sweep.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "designer", "sweep", *args, "--home",
                                     str(store.path.parent)], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        update_sweep(store, sweep_id, status="failed", error=f"could not start the sweep's process: {err}")
        raise StoreError(f"could not start the sweep's process: {err}", str(folder)) from None
    _children[proc.pid] = proc
    update_sweep(store, sweep_id, only_if_status=("queued",), status="running", pid=proc.pid)


def stop_sweep(sweep_id: int, home, wait: bool = True) -> dict:
    """Stop a running sweep: SIGTERM its process (Ray Tune saves the experiment, running trials stop with
    their checkpoints, the process marks them stopped), SIGKILL its process group after a grace period."""
    from designer.runs.jobs import open_store
    store = open_store(home)
    sweep = get_sweep(store, sweep_id)
    if sweep["status"] not in ("queued", "running"):
        raise DesignError(f"sweep {sweep_id} is {sweep['status']}, not running", "sweep")
    pid = sweep["pid"]
    if not is_sweep_process(pid, sweep_id):
        refresh(store)
        update_sweep(store, sweep_id, only_if_status=("queued", "running"), status="stopped", finished=time.time())
        return get_sweep(store, sweep_id)
    os.kill(pid, signal.SIGTERM)
    if wait:
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and is_sweep_process(pid, sweep_id):
            if pid in _children and _children[pid].poll() is not None:
                break
            time.sleep(0.1)
        kill_group(pid)
        mark_trials(store, sweep_id, "stopped", "the sweep was stopped: resume the sweep")
        update_sweep(store, sweep_id, only_if_status=("queued", "running"), status="stopped", finished=time.time())
    return get_sweep(store, sweep_id)


def kill_group(pid: int) -> None:
    """SIGKILL what is left of a sweep process's group (a local Ray's services are in it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if pid in _children:
        _children.pop(pid).wait()


def delete_sweep(sweep_id: int, home) -> None:
    """Delete a sweep that is not running: its trials' runs (and their folders) and its experiment folder."""
    from designer.runs import jobs
    store = jobs.open_store(home)
    sweep = get_sweep(store, sweep_id)
    refresh(store)
    if get_sweep(store, sweep_id)["status"] in ("queued", "running"):
        raise DesignError(f"sweep {sweep_id} is running: stop it first", "sweep")
    for run in store.list_runs(sweep_id=sweep_id):
        jobs.delete_run(run["id"], store)
    with store.connect() as db:
        db.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,))
    folder = Path(sweep["storage"] or "")
    if sweep["storage"] and folder.resolve().parent == (store.path.parent / "sweeps").resolve():
        shutil.rmtree(folder, ignore_errors=True)


def log_tail(sweep_id: int, home, max_bytes: int = 20_000) -> str:
    """The end of the sweep process's log (what it printed)."""
    from designer.runs.jobs import open_store
    sweep = get_sweep(open_store(home), sweep_id)
    path = Path(sweep["storage"] or "") / "sweep.log"
    if not sweep["storage"] or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        return f.read().decode(errors="replace")
