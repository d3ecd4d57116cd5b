"""Driving a sweep on Ray Tune: a local Ray started here, or a cluster by address.

The process that calls run_sweep is the sweep's driver. It
- starts a local Ray inside itself (no address: quiet, offline, loopback only, stopped at the end),
  or connects to an existing cluster (`ray start --head` address host:port, `ray://host:port`, `auto`);
- creates the sweep's inbox, a small actor every trial and Tune's callbacks send their events to,
  and drains it in a thread into the run store (designer.runs.sweeps.writer): trials on any
  machine report through Ray, and only this process writes the store;
- runs the trials with Ray Tune (search: grid or random, BasicVariantGenerator; early stopping:
  ASHAScheduler on test accuracy, in epochs), each trial the project's trainer
  (designer.runs.sweeps.trial.sweep_trial), its experiment in <workspace>/sweeps/<id>/tune;
- resumes a stopped or killed sweep with Tuner.restore: finished trials stay finished,
  unfinished ones continue from their last reported checkpoint.
SIGTERM or SIGINT stops the sweep: Tune saves the experiment and ends the running trials,
which are marked stopped (resumable).
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from designer.errors import DesignError
from designer.runs.store import RunStore
from designer.runs.sweeps.records import get_sweep, mark_trials, update_sweep
from designer.runs.sweeps.spec import SweepSpec, baseline_config, load_spec, make_plan
from designer.runs.sweeps.writer import TrialWriter

NAMESPACE = "kernel-studio"
EXPERIMENT = "tune"  # the Tune experiment's folder inside the sweep's folder
# Before `import ray`: a quiet, offline local Ray (no usage stats or their prompt, no token file, no
# CSV/TensorBoard loggers, the experiment state saved at most every second).
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}
# Only for the processes of a local Ray: its dashboard head probes cloud metadata addresses over HTTP;
# a dead loopback proxy refuses them at once, so a local sweep never reaches outside this machine.
LOCAL_RAY_ENV = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                 "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
LOCAL_OBJECT_STORE = 100 * 2 ** 20


def quiet_ray_env() -> None:
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def inbox_name(store: RunStore, sweep_id: int) -> str:
    """The inbox actor's name: one per sweep and workspace (a shared cluster may serve several)."""
    workspace = hashlib.sha1(str(store.path.resolve()).encode()).hexdigest()[:10]
    return f"sweep-{workspace}-{sweep_id}"


def _ray():
    quiet_ray_env()
    import ray
    return ray


def connect(address: str = "", cpus: int | None = None):
    """ray.init: a new local Ray (address '') or the cluster at `address`; DesignError when it cannot."""
    ray = _ray()
    if address:
        try:
            if address.startswith("ray://"):
                ray.init(address=address, namespace=NAMESPACE, logging_level="WARNING")
            else:
                ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise DesignError(f"cannot connect to the Ray cluster: {str(err).strip().splitlines()[0][:200]}",
                              "--ray-address") from None
        return ray
    saved = {key: os.environ.get(key) for key in LOCAL_RAY_ENV}
    os.environ.update(LOCAL_RAY_ENV)  # inherited by the Ray processes started now, then put back
    try:
        ray.init(address="local", namespace=NAMESPACE, num_cpus=cpus, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE, log_to_driver=False, logging_level="WARNING",
                 _temp_dir=os.path.join(tempfile.gettempdir(), f"kernel-studio-ray-{os.getuid()}"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return ray


ACK_POLL_S = 0.02


def _inbox_class():
    ray = _ray()

    @ray.remote(num_cpus=0, max_restarts=0)
    class Inbox:
        """Events from trials and Tune's callbacks, numbered in arrival order, until the driver takes them.
        A sender may wait until the driver has applied its event to the store (`wait`): a trial sends
        its epoch's metrics before writing the checkpoint a resume continues from, so a kill between
        the two loses nothing."""

        def __init__(self):
            self.items, self.sent, self.applied = collections.deque(), 0, 0

        async def put(self, item) -> int:
            self.sent += 1
            self.items.append((self.sent, item))
            return self.sent

        async def take(self, limit: int = 500, timeout: float = 0.5) -> list:
            import asyncio
            waited = 0.0
            while not self.items and waited < timeout:
                await asyncio.sleep(ACK_POLL_S)
                waited += ACK_POLL_S
            return [self.items.popleft() for _ in range(min(limit, len(self.items)))]

        async def done(self, seq: int) -> None:
            self.applied = max(self.applied, seq)

        async def wait(self, seq: int, timeout: float) -> bool:
            import asyncio
            waited = 0.0
            while self.applied < seq and waited < timeout:
                await asyncio.sleep(ACK_POLL_S)
                waited += ACK_POLL_S
            return self.applied >= seq

    return Inbox


class Drain(threading.Thread):
    """The driver's thread that moves the inbox's events into the store (TrialWriter), in order, and tells
    the inbox which it has applied."""

    def __init__(self, inbox, writer: TrialWriter):
        super().__init__(name="sweep-drain", daemon=True)
        self.inbox, self.writer, self.stopping, self.error = inbox, writer, threading.Event(), None

    def run(self) -> None:
        ray = _ray()
        while True:
            try:
                events = ray.get(self.inbox.take.remote())
            except Exception as err:  # the inbox is gone (Ray shutting down)
                self.error = err
                return
            for seq, event in events:
                try:
                    self.writer.apply(event)
                except Exception as err:  # one bad event must not stop the others reaching the store
                    print(f"warning: could not record {event.get('kind')} of trial {event.get('trial_id')}: "
                          f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
            if events:
                with contextlib.suppress(Exception):
                    ray.get(self.inbox.done.remote(events[-1][0]))
            elif self.stopping.is_set():
                return

    def finish(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


try:  # the callback class must be importable by name: Tune pickles it into the experiment for restore
    quiet_ray_env()
    from ray import tune as _tune

    class ForwardCallback(_tune.Callback):
        """Tune's trial events to the sweep's inbox (wherever Tune's controller runs: the driver, or with
        ray:// a process on the cluster). Pickles as the inbox's name only, so a restored experiment
        finds the new driver's inbox."""

        def __init__(self, inbox: dict):
            self.inbox, self._actor = inbox, None

        def __getstate__(self):
            return {"inbox": self.inbox, "_actor": None}

        def _put(self, kind: str, trial, **fields) -> None:
            import ray
            if self._actor is None:
                self._actor = ray.get_actor(self.inbox["name"], namespace=self.inbox["namespace"])
            ray.get(self._actor.put.remote({"kind": kind, "trial_id": trial.trial_id, **fields}))

        def on_trial_start(self, iteration, trials, trial, **info):
            self._put("start", trial, config=trial.config)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._put("complete", trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._put("error", trial, error=_trial_error(trial))
except ImportError:  # Ray is not installed: designer works without sweeps
    ForwardCallback = None


def _trial_error(trial) -> str:
    try:
        path = trial.error_file
        text = Path(path).read_text() if path and Path(path).exists() else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "the trial failed")[:2000]


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default puts the whole config in them)."""
    return trial.trial_id


def _param_space(plan: dict, spec: SweepSpec) -> dict:
    from ray import tune
    pick = tune.grid_search if spec.search == "grid" else tune.choice
    return {"plan": plan, "baseline": False, **{axis["key"]: pick(list(axis["labels"])) for axis in plan["axes"]}}


def _tuner(trainable, plan: dict, spec: SweepSpec, storage: Path, inbox: dict, max_concurrent: int | None):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    points = [baseline_config(plan)] if spec.baseline else []
    search = BasicVariantGenerator(points_to_evaluate=points, random_state=spec.seed,
                                   max_concurrent=max_concurrent or 0)
    samples = (1 if spec.search == "grid" else spec.trials) + len(points)
    if spec.scheduler.kind == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=spec.recipe.epochs, grace_period=spec.scheduler.grace_period,
                                  reduction_factor=spec.scheduler.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        trainable,
        param_space=_param_space(plan, spec),
        tune_config=tune.TuneConfig(metric="test_acc", mode="max", search_alg=search, scheduler=scheduler,
                                    num_samples=samples, reuse_actors=False,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(storage), verbose=0,
                                  callbacks=[JsonLoggerCallback(), ForwardCallback(inbox)],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


@contextlib.contextmanager
def _stop_signals(stopped: threading.Event):
    """SIGTERM (the app's Stop) becomes the SIGINT Tune listens for; either marks the sweep stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        stopped.set()
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep(store: RunStore, sweep_id: int, address: str | None = None, max_concurrent: int | None = None,
              resume: bool = False) -> dict:
    """Drive sweep `sweep_id` (a row of the store) to its end here; returns records.summary()."""
    from designer.runs.data import missing_data
    from designer.runs.sweeps.records import refresh, summary
    from designer.workspace import data_root

    sweep = get_sweep(store, sweep_id)
    spec = load_spec(sweep["spec"])
    address = sweep["address"] if address is None else address
    max_concurrent = max_concurrent or sweep["max_concurrent"] or spec.max_concurrent
    home = store.path.parent
    root = data_root(home).resolve()
    missing = missing_data(spec.recipe.data or spec.base.network.dataset,
                           Path(spec.recipe.data_root) if spec.recipe.data_root else root)
    if missing:
        raise DesignError(missing, "recipe.data")
    refresh(store)
    if sweep["status"] == "running" and sweep["pid"] != os.getpid():
        from designer.runs.sweeps.records import is_sweep_process
        if is_sweep_process(sweep["pid"], sweep_id):
            raise DesignError(f"sweep {sweep_id} is already running (pid {sweep['pid']})", "sweep")
    storage = Path(sweep["storage"])
    storage.mkdir(parents=True, exist_ok=True)
    inbox = {"name": inbox_name(store, sweep_id), "namespace": NAMESPACE}
    plan = {**make_plan(spec, root), "sweep_id": sweep_id, "runs_root": str((home / "runs").resolve()),
            "inbox": inbox}
    update_sweep(store, sweep_id, status="running", pid=os.getpid(), error=None, finished=None,
                 address=address or "", max_concurrent=max_concurrent,
                 **({} if resume and sweep["started"] else {"started": time.time()}))
    began, stopped, drain = time.monotonic(), threading.Event(), None
    ray = None
    status, error = "failed", None
    try:
        ray = connect(address, cpus=None)
        from ray import tune

        from designer.runs.sweeps.trial import sweep_trial
        actor = _inbox_class().options(name=inbox["name"], namespace=NAMESPACE).remote()
        drain = Drain(actor, TrialWriter(store, sweep_id, plan))
        drain.start()
        trainable = tune.with_resources(sweep_trial, {"cpu": spec.cpus_per_trial})
        experiment = storage / EXPERIMENT
        if resume and tune.Tuner.can_restore(str(experiment)):
            print(f"sweep {sweep_id}: restoring {experiment}", file=sys.stderr, flush=True)
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            if experiment.exists():  # killed before Tune saved its first state: start the search again
                shutil.rmtree(experiment)
            tuner = _tuner(trainable, plan, spec, storage, inbox, max_concurrent)
        print(f"sweep {sweep_id}: {spec.total_trials} trials on "
              f"{'the Ray cluster at ' + address if address else 'a local Ray'} "
              f"({ray.cluster_resources().get('CPU', 0):g} CPUs)", file=sys.stderr, flush=True)
        with _stop_signals(stopped):
            results = tuner.fit()
        complete = results.num_terminated + results.num_errors == len(results) and len(results) > 0
        status = "finished" if complete and not stopped.is_set() else "stopped"
    except KeyboardInterrupt:  # a second Ctrl+C, or one before Tune listens
        status = "stopped"
    except Exception as err:
        lines = str(err).strip().splitlines()
        kind = "" if isinstance(err, DesignError) else f"{type(err).__name__}: "
        error = f"{kind}{lines[0] if lines else ''}"[:2000]
        raise
    finally:
        if drain is not None:
            drain.finish()
        if ray is not None:
            with contextlib.suppress(Exception):
                ray.shutdown()
        mark_trials(store, sweep_id, "stopped" if status != "failed" else "failed",
                    "the sweep was stopped: resume the sweep" if status != "failed" else error)
        previous = get_sweep(store, sweep_id)["wall_s"] or 0.0 if resume else 0.0
        update_sweep(store, sweep_id, status=status, finished=time.time(), error=error,
                     wall_s=previous + time.monotonic() - began)
    return summary(store, sweep_id)
