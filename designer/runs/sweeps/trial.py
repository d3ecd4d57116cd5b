"""One trial of a sweep, as Ray Tune runs it on any node: the project's trainer, its store sent to the driver.

The trainer (designer.runs.train.train) writes to a store; here that store is
a TrialStore, which sends every write through Ray to the sweep's inbox (the
driver applies them to the run store: designer.runs.sweeps.writer). When the
trainer records an epoch's end (its checkpoint written, `best_acc` among the
fields) the trial reports the epoch's test accuracy to Tune, with that
checkpoint, so the scheduler can stop a trial that falls behind and a
restored sweep continues each trial from its last reported epoch.

A trial trains in its run folder (<workspace>/runs/sweep<id>-<trial id>, the
same path as on the driver: shared storage in a cluster), or, where that
path cannot be made, in Tune's trial folder on its node.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

from designer.errors import DesignError
from designer.runs.checkpoints import digest_path, list_checkpoints
from designer.runs.store import StoreError
from designer.runs.sweeps.spec import design_for, is_dense
from designer.runs.sweeps.writer import trial_dir

MEASURED = "measured.json"


ACK_TIMEOUT_S = 30.0


class Outbox:
    """Sends a trial's events to the sweep's inbox actor and waits until the driver has written them to the
    store: in order, and on disk before the trainer writes the checkpoint that follows them."""

    def __init__(self, inbox: dict, trial_id: str):
        self.name, self.namespace, self.trial_id, self.actor = inbox["name"], inbox["namespace"], trial_id, None

    def send(self, kind: str, **fields) -> None:
        import ray
        if self.actor is None:
            self.actor = ray.get_actor(self.name, namespace=self.namespace)
        seq = ray.get(self.actor.put.remote({"kind": kind, "trial_id": self.trial_id, **fields}))
        if not ray.get(self.actor.wait.remote(seq, ACK_TIMEOUT_S)):
            raise TimeoutError(f"the sweep's driver did not write the {kind} event within {ACK_TIMEOUT_S:.0f} s")


class TrialStore:
    """The store a trial's trainer writes to: each write goes to the driver; an epoch's end goes to Tune."""

    def __init__(self, outbox: Outbox, run_dir: Path, measured: dict):
        self.outbox, self.run_dir, self.measured = outbox, run_dir, measured
        self.test_acc = None

    def write_progress(self, run_id, rows, fields=None, rewrite_after=None) -> None:
        fields = dict(fields or {})
        for row in rows:
            if row[2] == "test" and row[3] == "acc":
                self.test_acc = row[4]
        try:
            self.outbox.send("progress", rows=[list(row) for row in rows], fields=fields, rewrite_after=rewrite_after)
        except Exception as err:  # the driver or the inbox is gone: the trainer keeps the rows and retries
            raise StoreError(f"the sweep's driver did not take the metrics ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})", "ray") from None
        if "best_acc" in fields and self.test_acc is not None:
            self.report(fields)

    def report(self, fields: dict) -> None:
        """The epoch's test accuracy to Tune, with the checkpoint just written (and what was measured)."""
        from ray import tune
        metrics = {"test_acc": self.test_acc, "best_acc": fields["best_acc"], "epoch": fields.get("epoch", 0),
                   "step": fields.get("resume_step", 0),
                   **{k: v for k, v in self.measured.items() if isinstance(v, (int, float)) and v is not None}}
        newest = list_checkpoints(self.run_dir)
        with tempfile.TemporaryDirectory(prefix="ks-trial-") as tmp:
            (Path(tmp) / MEASURED).write_text(json.dumps(self.measured))
            if newest:
                for path in (newest[0], digest_path(newest[0])):
                    shutil.copy2(path, Path(tmp) / path.name)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def measure(design, measure: dict) -> dict:
    """Params and MACs, and the latency at the batch size (0: none) with the backend, against the dense
    network timed in the same run (designer.bench.latency); on this node, with this trial's threads."""
    from designer.analysis.counting import count_design
    count = count_design(design)
    out = {"params": count.params, "macs": count.flops}
    batch = measure.get("latency_batch_size", 0)
    if not batch:
        return out
    from designer.bench.latency import bench_design
    from designer.bench.timing import BenchConfig
    from designer.runs.sweeps.spec import BEST_OF
    wanted = measure.get("latency_backend", "best")
    result = bench_design(design, list(BEST_OF) if wanted == "best" else [wanted],
                          BenchConfig(batch_size=batch, repeats=measure.get("latency_repeats", 10), warmup=2))
    dense = result["dense"]["median_ms"]
    ran = {name: t["median_ms"] for name, t in result["backends"].items() if "median_ms" in t}
    backend = min(ran, key=ran.get) if ran else wanted
    latency = dense if is_dense(design.to_json()) else ran.get(backend)
    out.update({"latency_ms": latency, "dense_latency_ms": dense, "latency_batch_size": batch,
                "latency_backend": "dense" if is_dense(design.to_json()) else backend,
                "load_average": result.get("load_average")})
    if not ran:
        out["latency_error"] = next(iter(result["backends"].values()), {}).get("error", "no backend ran")
    return out


def _run_dir(plan: dict, trial_id: str) -> Path:
    folder = trial_dir(plan, trial_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return folder
    except OSError:
        from ray import tune
        folder = Path(tune.get_context().get_trial_dir()) / "run"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _restore(run_dir: Path) -> dict | None:
    """A restored trial: its reported checkpoint into the run folder (unless the folder holds a newer one);
    what it measured before. None for a fresh trial."""
    from ray import tune
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        folder = Path(folder)
        have = list_checkpoints(run_dir)
        for path in list_checkpoints(folder)[:1]:
            if not have or have[0].name < path.name:  # ckpt-<8-digit step>.pt: names sort by step
                shutil.copy2(digest_path(path), run_dir / digest_path(path).name)
                shutil.copy2(path, run_dir / path.name)
        measured = folder / MEASURED
        return json.loads(measured.read_text()) if measured.exists() else None


def sweep_trial(config: dict) -> None:
    """The Ray Tune trainable of every sweep: config = {"plan": ..., "baseline": bool, "a0": label, ...}."""
    import torch
    from ray import tune

    from designer.runs.train import train
    plan = config["plan"]
    trial_id = tune.get_context().get_trial_id()
    outbox = Outbox(plan["inbox"], trial_id)
    outbox.send("begin", config=config, host=socket.gethostname(), pid=os.getpid())
    try:
        torch.set_num_threads(max(1, int(plan.get("cpus_per_trial", 1))))
        design, hp, _label = design_for(plan, config)
        run_dir = _run_dir(plan, trial_id)
        measured = _restore(run_dir)
        if measured is None:
            measured = measure(design, plan["measure"])
        outbox.send("measured", **measured)
        with open(run_dir / "train.log", "a") as log, contextlib.redirect_stderr(log):
            result = train(design, hp, run_dir, TrialStore(outbox, run_dir, measured), run_id=0, resume=True)
    except Exception as err:
        lines = str(err).strip().splitlines()
        kind = "" if isinstance(err, DesignError) else f"{type(err).__name__}: "
        outbox.send("failed", error=f"{kind}{lines[0] if lines else type(err).__name__}"[:2000])
        raise
    outbox.send("finished", best_acc=result["best_acc"], test_acc=result["test_acc"], steps=result["steps"],
                wall_s=result["wall_s"])
