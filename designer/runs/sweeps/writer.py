"""The driver's side of a sweep's store: trial events in, run rows and metrics out.

Every event a sweep produces (Ray Tune's trial callbacks; each trial's
metrics, measurements and outcome) reaches the process driving the sweep
through Ray (designer.runs.sweeps.engine's inbox) and is applied here, in that
one process, in arrival order: the driver is the only writer of the store,
wherever the trials run. This module knows nothing of Ray, so it is tested
with plain events.

Events (dicts with "kind" and "trial_id"):
- start (a trial starts or restarts; from Tune) and begin (from the trial itself), both with its
  config: the trial's run is made on first sight (design and hyper-parameters from the plan,
  params and MACs counted) or, for a restored trial, found and marked running again;
- measured: {params, macs, latency_ms, ...} measured on the trial's node;
- progress: rows, fields, rewrite_after: what the trainer gave its store (RunStore.write_progress);
- finished: the trainer returned (the run is finished, with its best accuracy);
- failed: the trainer raised (error); error: Tune saw the trial fail;
- complete: Tune ended the trial; one still running then was stopped by the scheduler: pruned before
  its last epoch, finished at it (ASHA stops every trial that reaches max_t, before it returns).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from designer.analysis.counting import count_design
from designer.runs.store import RunStore
from designer.runs.sweeps.records import trial_run
from designer.runs.sweeps.spec import design_for


def trial_dir(plan: dict, trial_id: str) -> Path:
    """Where a trial trains (its run folder): <workspace>/runs/sweep<id>-<trial id>."""
    return Path(plan["runs_root"]) / f"sweep{plan['sweep_id']}-{trial_id}"


class TrialWriter:
    def __init__(self, store: RunStore, sweep_id: int, plan: dict, pid: int | None = None, echo=None):
        self.store, self.sweep_id, self.plan = store, sweep_id, plan
        self.pid = pid if pid is not None else os.getpid()
        self.echo = echo if echo is not None else (lambda line: print(line, file=sys.stderr, flush=True))
        self.runs: dict[str, int] = {}  # trial id -> run id

    def apply(self, event: dict) -> None:
        kind, trial_id = event["kind"], event["trial_id"]
        if kind in ("start", "begin"):
            self._open(trial_id, event["config"], restart=kind == "start")
            return
        run_id = self._run_id(trial_id)
        if run_id is None:
            return  # an event of a trial whose start was never seen (it cannot make a run without its config)
        if kind == "progress":
            self.store.write_progress(run_id, [tuple(row) for row in event["rows"]], event.get("fields") or {},
                                      event.get("rewrite_after"))
        elif kind == "measured":
            self.store.update_run(run_id, latency_ms=event.get("latency_ms"))
        elif kind == "finished":
            if self.store.update_run(run_id, status="finished", finished=time.time(), error=None,
                                     best_acc=event.get("best_acc")):
                self.echo(f"trial {trial_id} (run {run_id}) finished: best test accuracy "
                          f"{event.get('best_acc') or 0:.2f}%")
        elif kind == "failed":
            self.store.update_run(run_id, status="failed", finished=time.time(), error=event.get("error", "")[:2000])
            self.echo(f"trial {trial_id} (run {run_id}) failed: {event.get('error', '')}")
        elif kind == "error":
            self.store.update_run(run_id, only_if_status=("running",), status="failed", finished=time.time(),
                                  error=(event.get("error") or "the trial failed (see the sweep's log)")[:2000])
        elif kind == "complete":
            run = self.store.get_run(run_id)
            if not run or run["status"] != "running":
                return
            epochs = (run["hparams"] or {}).get("epochs") or 0
            if run["epoch"] >= epochs:  # ASHA also ends every trial at its last epoch (max_t), before it returns
                self.store.update_run(run_id, only_if_status=("running",), status="finished", finished=time.time())
                self.echo(f"trial {trial_id} (run {run_id}) finished: best test accuracy {run['best_acc'] or 0:.2f}%")
                return
            self.store.update_run(run_id, only_if_status=("running",), status="pruned", finished=time.time(),
                                  error=f"stopped early by the scheduler after epoch {run['epoch']} of {epochs}: "
                                        f"its test accuracy fell behind the other trials'")
            self.echo(f"trial {trial_id} (run {run_id}) stopped early after epoch {run['epoch']} "
                      f"(best {run['best_acc'] or 0:.2f}%)")

    def _run_id(self, trial_id: str) -> int | None:
        if trial_id not in self.runs:
            run = trial_run(self.store, self.sweep_id, trial_id)
            if run is None:
                return None
            self.runs[trial_id] = run["id"]
        return self.runs[trial_id]

    def _open(self, trial_id: str, config: dict, restart: bool) -> None:
        plan = config.get("plan") or self.plan
        run_id = self._run_id(trial_id)
        if run_id is not None:
            run = self.store.get_run(run_id)
            if run["status"] != "running":
                self.store.update_run(run_id, status="running", pid=self.pid, finished=None, error=None)
                self.echo(f"trial {trial_id} (run {run_id}) continues from step {run['resume_step']}")
            return
        design, hp, label = design_for(plan, config)
        count = count_design(design)
        folder = trial_dir(plan, trial_id)
        run_id = self.store.create_run(design.to_json(), hp.to_json(), f"sweep {self.sweep_id}: {label}", "running",
                                       run_dir=str(folder), pid=self.pid, started=time.time(), params=count.params,
                                       flops=count.flops, sweep_id=self.sweep_id, trial_id=trial_id)
        self.runs[trial_id] = run_id
        try:  # the run's design beside its checkpoints, as for any run (a remote trial's folder may be elsewhere)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "design.json").write_text(design.dumps())
            (folder / "hparams.json").write_text(json.dumps(hp.to_json(), indent=1))
        except OSError:
            pass
        self.echo(f"trial {trial_id} (run {run_id}) started: {label}")
