"""The job manager: training runs as separate OS processes, a queue, stop/resume/delete.

Everything goes through the run store (designer.runs.store), so the app, the CLI
and any number of browser sessions see and act on the same state:
- start_run validates, records a queued run and calls tick();
- tick() marks runs whose process died as interrupted, then starts queued
  runs while fewer than the concurrency limit are running. It claims slots
  inside one BEGIN IMMEDIATE transaction, so two sessions ticking at once
  never start the same run twice nor exceed the limit. A training process
  calls tick() when it ends, so the queue drains without the app.
- A run process is `python -m designer train --run-id ID --store DB`, no
  shell, in its own session (process group) so stop_run can end it and any
  data-loader worker together; its stdout/stderr go to <run_dir>/train.log.
The workspace of a store is the folder holding runs.db; runs live in its runs/.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from designer.analysis.counting import count_design
from designer.designs.design import Design, design_from_json
from designer.errors import DesignError
from designer.networks.build import build_model, validate
from designer.networks.sources import network_label
from designer.runs.checkpoints import list_checkpoints
from designer.runs.store import ACTIVE, RunStore, StoreError
from designer.runs.train import HParams, train
from designer.workspace import data_root, workspace_home

DEFAULT_CONCURRENCY = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_S = 20.0  # a stopped run checkpoints at its next step, then exits; SIGKILL after this
_children: dict[int, subprocess.Popen] = {}  # processes this process started, reaped by tick()


def open_store(home: str | Path | None = None) -> RunStore:
    """The run store of a workspace (default ./workspace or $KERNEL_STUDIO_HOME)."""
    return RunStore(workspace_home(home).resolve() / "runs.db")


def _store(home_or_store) -> RunStore:
    return home_or_store if isinstance(home_or_store, RunStore) else open_store(home_or_store)


def prepare(design: Design, hp: HParams, home: Path) -> tuple[Design, HParams]:
    """Check both before anything is recorded or started (start weights included: they are
    loaded once here, so a file that does not fit fails now, not in the background); pin the
    data folder, the image folder and the start weights to absolute paths."""
    design = validate(design)
    hp = hp.checked_for(design)
    if hp.data_root is None:
        hp = replace(hp, data_root=str(data_root(home).resolve()))
    if hp.data_dir is not None:  # the image folder, wherever the run process starts
        hp = replace(hp, data_dir=str(Path(hp.data_dir).expanduser().resolve()))
    if hp.init_from:
        hp = replace(hp, init_from=str(Path(hp.init_from).resolve()))
        check_start_weights(design, hp.init_from)
    return design, hp


def check_start_weights(design: Design, path: str) -> None:
    """DesignError when the weights file does not load into the design (designer.networks.weights decides what fits)."""
    if not Path(path).is_file():
        raise DesignError("no such weights file", "--checkpoint")
    from designer.networks.weights import load_start_weights
    load_start_weights(build_model(design), design, path)


def start_run(design: Design, hp: HParams, home: str | Path | None = None, name: str = "") -> int:
    """Queue a training run and start it if a slot is free; returns its id. DesignError on bad input."""
    store = open_store(home)
    home = store.path.parent
    design, hp = prepare(design, hp, home)
    count = count_design(design)
    run_id = store.create_run(design.to_json(), hp.to_json(), name or _default_name(design), "queued",
                              runs_root=home / "runs", params=count.params, flops=count.flops)
    run_dir = Path(store.get_run(run_id)["run_dir"])
    if list_checkpoints(run_dir):  # a folder the store forgot (a repaired store reuses ids): never resume it
        store.delete_run(run_id)
        raise DesignError(f"{run_dir} already holds checkpoints of a run the store does not know: move it away",
                          "run")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "design.json").write_text(design.dumps())
    (run_dir / "hparams.json").write_text(json.dumps(hp.to_json(), indent=1))
    tick(store)
    return run_id


def _default_name(design: Design) -> str:
    kinds = sorted({layer.kind for layer in design.layers})
    return f"{network_label(design.network)} {'+'.join(kinds)} on {design.network.dataset}"


def concurrency(home_or_store=None) -> int:
    return int(_store(home_or_store).get_setting("concurrency", str(DEFAULT_CONCURRENCY)))


def set_concurrency(n: int, home_or_store=None) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DesignError(f"must be an integer >= 1, got {n!r}", "concurrency")
    _store(home_or_store).set_setting("concurrency", str(n))


def tick(home_or_store=None) -> list[int]:
    """Reap, mark dead runs interrupted, start queued runs up to the limit; returns the ids started."""
    store = _store(home_or_store)
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]
    if store.readonly:
        return []  # a read-only workspace is listed as it is
    if not store.list_runs(("queued",)):
        refresh(store)
        return []  # nothing to start: no write lock
    limit = concurrency(store)
    started = []
    with store.connect(immediate=True) as db:
        _mark_dead(db)
        running = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
        free = max(0, limit - running)
        queued = db.execute("SELECT id, run_dir FROM runs WHERE status = 'queued' ORDER BY id LIMIT ?",
                            (free,)).fetchall()
        for run in queued:
            try:
                proc = _spawn(run["id"], Path(run["run_dir"]), store.path)
            except OSError as err:
                db.execute("UPDATE runs SET status = 'failed', error = ?, finished = ? WHERE id = ?",
                           (f"could not start the training process: {err}", time.time(), run["id"]))
                continue
            _children[proc.pid] = proc
            db.execute("UPDATE runs SET status = 'running', pid = ?, started = ?, finished = NULL, error = NULL "
                       "WHERE id = ?", (proc.pid, time.time(), run["id"]))
            started.append(run["id"])
    return started


def _spawn(run_id: int, run_dir: Path, db_path: Path) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The repository, and the folder this was started from: a user's entry-point model imports from there.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.getcwd(), env.get("PYTHONPATH")) if p)
    with open(run_dir / "train.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "designer", "train", "--run-id", str(run_id), "--store", str(db_path)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def designer_argv(pid: int | None) -> list[str] | None:
    """The command line of `pid` if it is a live `python -m designer` process (not a zombie, not a reused pid
    of another program); [] where there is no /proc to read (not Linux: a live pid is the best we know); else
    None. Runs and sweeps both recognise their processes by it."""
    if not pid:
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return []
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError):
        return None
    return argv if state not in ("Z", "X") and "designer" in argv else None


def option_value(argv: list[str], option: str) -> str | None:
    """The value after `option` on a command line ('' when it is last), None when it is absent."""
    if option not in argv:
        return None
    i = argv.index(option)
    return argv[i + 1] if i + 1 < len(argv) else ""


def is_run_process(pid: int | None, run_id: int) -> bool:
    """Is `pid` alive and the training process of this run (not a zombie, not a reused pid)?"""
    argv = designer_argv(pid)
    if not argv:
        return argv == []
    if not {"train", "sweep"} & set(argv):
        return False  # a sweep's trials are runs whose pid is the process driving the sweep
    given = option_value(argv, "--run-id")
    return given is None or given == str(run_id)


def _mark_dead(db) -> list[int]:
    dead = [row["id"] for row in db.execute("SELECT id, pid FROM runs WHERE status = 'running'")
            if not is_run_process(row["pid"], row["id"])]
    for run_id in dead:
        db.execute("UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE id = ?",
                   (time.time(), "the training process ended without reporting (killed or crashed); "
                                 "resume continues from the last checkpoint", run_id))
    return dead


def refresh(home_or_store=None) -> list[int]:
    """Mark runs whose process is gone as interrupted (metrics kept); returns their ids."""
    store = _store(home_or_store)
    if store.readonly or all(is_run_process(run["pid"], run["id"]) for run in store.list_runs(("running",))):
        return []  # the common case: no write lock taken, so readers stay read-only
    with store.connect(immediate=True) as db:
        return _mark_dead(db)


def list_runs(home_or_store=None) -> list[dict]:
    """Every run, newest first (fields: the runs table), after a tick(): dead runs are marked
    interrupted and queued runs start when a slot is free, so a page that lists runs drains the queue.

    Each run's `step` is the newest step logged, `resume_step` the step its newest checkpoint
    holds: where a resume continues (0: from the start)."""
    store = _store(home_or_store)
    tick(store)
    return store.list_runs()


def get_run(run_id: int, home_or_store=None) -> dict:
    """One run (fields as list_runs: `step` logged, `resume_step` where a resume continues); DesignError if none."""
    return _get(_store(home_or_store), run_id)


def _get(store: RunStore, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise DesignError(f"no run with id {run_id}", "run")
    return run


def stop_run(run_id: int, home_or_store=None) -> dict:
    """Stop a queued or running run (status stopped; its process group ends); returns the run."""
    store = _store(home_or_store)
    with store.connect(immediate=True) as db:
        run = db.execute("SELECT status, pid, sweep_id FROM runs WHERE id = ?", (run_id,)).fetchone()
        if run is None:
            raise DesignError(f"no run with id {run_id}", "run")
        _not_a_trial(run_id, run["sweep_id"], "stop")
        if run["status"] not in ("queued", "running"):
            raise DesignError(f"run {run_id} is {run['status']}, not queued or running", "run")
        alive = run["status"] == "running" and is_run_process(run["pid"], run_id)
        db.execute("UPDATE runs SET status = 'stopped', finished = ? WHERE id = ?", (time.time(), run_id))
    if alive:
        _terminate(run["pid"], run_id)
    tick(store)
    return store.get_run(run_id)


def _not_a_trial(run_id: int, sweep_id: int | None, action: str) -> None:
    """A sweep's trial is stopped and resumed with its sweep (Ray Tune drives it), not on its own."""
    if sweep_id is not None:
        raise DesignError(f"run {run_id} is a trial of sweep {sweep_id}: {action} the sweep (Sweeps page, or "
                          f"`python -m designer sweep --{action} {sweep_id}`)", "run")


def _terminate(pid: int, run_id: int) -> None:
    """SIGTERM the run's process (it checkpoints at its next step and exits), then SIGKILL
    its process group (its own session: data-loader workers and all) after it ends or a grace period."""
    try:
        group = os.getpgid(pid) == pid  # else a `train` started by hand, not by us: only that process
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if pid in _children and _children[pid].poll() is not None:
            break
        if not is_run_process(pid, run_id):
            break
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def resume_run(run_id: int, home_or_store=None) -> dict:
    """Queue a stopped, interrupted or failed run again; it continues from its newest good checkpoint."""
    store = _store(home_or_store)
    refresh(store)
    _not_a_trial(run_id, _get(store, run_id)["sweep_id"], "resume")
    if not store.update_run(run_id, only_if_status=("stopped", "interrupted", "failed"), status="queued",
                            error=None, finished=None, pid=None):
        run = _get(store, run_id)
        raise DesignError(f"run {run_id} is {run['status']}; only stopped, interrupted or failed runs resume", "run")
    tick(store)
    return store.get_run(run_id)


def delete_run(run_id: int, home_or_store=None, force: bool = False) -> None:
    """Delete a run's rows and, when it lives in the workspace's runs/, its folder.

    A queued or running run is refused (stop it first) unless force=True:
    then it is stopped, its process waited for, and deleted."""
    store = _store(home_or_store)
    run = _get(store, run_id)
    if run["status"] in ACTIVE:
        if not force:
            raise DesignError(f"run {run_id} is {run['status']}: stop it first (or delete with force)", "run")
        stop_run(run_id, store)
    store.delete_run(run_id)
    run_dir = Path(run["run_dir"]) if run["run_dir"] else None
    if run_dir and run_dir.resolve().parent == (store.path.parent / "runs").resolve():
        shutil.rmtree(run_dir, ignore_errors=True)


def run_training(run_id: int, home_or_store=None, resume: bool = True) -> dict:
    """The body of a run process: claim the run, train, record the outcome, start the next queued run."""
    store = _store(home_or_store)
    run = _get(store, run_id)
    if run["status"] == "running" and run["pid"] != os.getpid() and is_run_process(run["pid"], run_id):
        raise DesignError(f"run {run_id} is already running (pid {run['pid']})", "--run-id")
    design = validate(design_from_json(run["design"]))
    hp = HParams.from_json(run["hparams"])
    run_dir = Path(run["run_dir"])
    if not store.update_run(run_id, only_if_status=("queued", "running", "interrupted", "stopped", "failed", "finished"),
                            status="running", pid=os.getpid(), started=time.time(), finished=None, error=None):
        raise DesignError(f"run {run_id} is {run['status']}", "--run-id")
    stop = threading.Event()
    with _stop_on_sigterm(stop):
        try:
            result = train(design, hp, run_dir, store, run_id, resume=resume, stop=stop)
        except BaseException as err:
            stopped = isinstance(err, KeyboardInterrupt)  # RunStopped too: a stop asked for
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            with contextlib.suppress(StoreError):  # a store that failed the run may fail this too
                store.update_run(run_id, only_if_status=("running",), status="stopped" if stopped else "failed",
                                 finished=time.time(), error=None if stopped else f"{type(err).__name__}: {message}"[:2000])
                tick(store)
            raise
    store.update_run(run_id, only_if_status=("running",), status="finished", finished=time.time(),
                     best_acc=result["best_acc"])
    tick(store)
    return {**result, "status": store.get_run(run_id)["status"]}


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event):
    """SIGTERM sets `stop` (the trainer then checkpoints and ends) instead of killing at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_foreground(design: Design, hp: HParams, home: str | Path | None = None, save: str | Path | None = None,
                     resume: bool = False, name: str = "") -> dict:
    """`train` on the CLI: record a run (or reuse the one of --save DIR with --resume) and train here."""
    if resume and not save:
        raise DesignError("--resume continues the run in a --save DIR: pass the folder (a background run "
                          "resumes with `runs resume ID`)", "--resume")
    store = open_store(home)
    home = store.path.parent
    design, hp = prepare(design, hp, home)
    existing = _save_folder_run(store, Path(save), resume) if save else None
    if save and not resume and list_checkpoints(Path(save)):
        raise DesignError(f"{save} holds checkpoints of an earlier run: pass --resume to continue it, "
                          f"or choose another --save folder", "--save")
    if existing:
        if validate(design_from_json(existing["design"])) != design:
            raise DesignError(f"the model options describe another design than run {existing['id']} in {save}; "
                              f"pass the same options as when it started", "--resume")
        run_id = existing["id"]
        store.update_run(run_id, hparams=hp.to_json())
    else:
        count = count_design(design)
        fields = {"run_dir": str(Path(save).resolve())} if save else {}
        run_id = store.create_run(design.to_json(), hp.to_json(), name or _default_name(design), "running",
                                  runs_root=None if save else home / "runs", pid=os.getpid(),
                                  params=count.params, flops=count.flops, **fields)
    run_dir = Path(store.get_run(run_id)["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "design.json").write_text(design.dumps())
    (run_dir / "hparams.json").write_text(json.dumps(hp.to_json(), indent=1))
    return run_training(run_id, store, resume=resume)


def _save_folder_run(store: RunStore, save: Path, resume: bool) -> dict | None:
    """The run that `--save DIR --resume` continues (None: a new run); DesignError when DIR is
    another run's (a run folder belongs to one run: deleting one must not remove the other's)."""
    owner = store.folder_owner(save)
    if owner is None:
        if save.resolve().is_relative_to((store.path.parent / "runs").resolve()):
            raise DesignError(f"{save} is inside the workspace's runs/ folder, whose folders the store names "
                              f"by run id: choose a folder outside it", "--save")
        return None
    if resume and Path(owner["run_dir"]) == save.resolve():
        return owner
    how = "pass --resume to continue it, or choose another folder" if not resume and \
        Path(owner["run_dir"]) == save.resolve() else "choose another folder"
    raise DesignError(f"the folder belongs to run {owner['id']} ({owner['status']}, {owner['run_dir']}): {how}",
                      "--save")


def log_tail(run_id: int, home_or_store=None, max_bytes: int = 20_000) -> str:
    """The end of a run's train.log (what the process printed), for the app's run page."""
    run = _get(_store(home_or_store), run_id)
    path = Path(run["run_dir"] or "") / "train.log"
    if not run["run_dir"] or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        return f.read().decode(errors="replace")
