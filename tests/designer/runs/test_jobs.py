"""The job manager with real processes and the real store: queue, kill, resume, stop, delete."""
import dataclasses
import functools
import os
import signal
import time

import pytest

from designer.designs.design import Design, Network
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import dense_design
from designer.runs import jobs
from designer.runs.checkpoints import list_checkpoints
from designer.runs.store import RunStore
from designer.runs.train import HParams
from tests import processes

DESIGN = dense_design(Network("resnet", 8, "cifar10"))
HP = HParams(epochs=3, batch_size=64, data="synthetic", log_every=1, checkpoint_every=2, warmup_epochs=0)


wait_for = functools.partial(processes.wait_for, timeout=90.0, every=0.02)  # one job's states: poll often


def status(store, run_id):
    return store.get_run(run_id)["status"]


@pytest.fixture
def home(tmp_path):
    return tmp_path / "ws"


def test_bad_design_or_hyper_parameter_is_refused_before_any_process(home):
    children = dict(jobs._children)  # other tests' processes may still be ending
    bad_design = DESIGN.with_layers([LayerChoice.preset("ASK_5a")] * 3)  # ResNet-8 has 7 convolutions
    with pytest.raises(DesignError, match="has 7 convolutions"):
        jobs.start_run(bad_design, HP, home)
    with pytest.raises(DesignError) as err:
        jobs.start_run(DESIGN, dataclasses.replace(HP, lr=-1.0), home)
    assert err.value.where == "--lr"
    with pytest.raises(DesignError, match="unknown architecture"):
        jobs.start_run(Design(Network("alexnet", 8)), HP, home)
    assert jobs.list_runs(home) == [] and set(jobs._children) <= set(children)
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_two_runs_at_once_both_finish_one_at_a_time_while_readers_poll(home):
    hp = dataclasses.replace(HP, epochs=1, checkpoint_every=0)
    store = jobs.open_store(home)
    first, second = jobs.start_run(DESIGN, hp, home), jobs.start_run(DESIGN, hp, home)
    assert status(store, first) == "running" and status(store, second) == "queued"
    most_running, reads = 0, 0
    while {status(store, first), status(store, second)} != {"finished"}:
        runs = jobs.list_runs(home)  # a reader, as the app is, while the runs write
        store.metrics(first), store.metrics(second)
        reads += 1
        most_running = max(most_running, sum(r["status"] == "running" for r in runs))
        assert not {r["status"] for r in runs} & {"failed", "interrupted"}, runs
        time.sleep(0.05)
    assert most_running == 1 and reads > 5
    a, b = store.get_run(first), store.get_run(second)
    assert a["finished"] <= b["started"]  # the second started when the first freed the slot
    assert a["epoch"] == b["epoch"] == 1 and len(store.metrics(second, "test", "acc")) == 1
    assert "test: loss=" in jobs.log_tail(second, home)


def test_sigkill_mid_epoch_is_detected_keeps_metrics_and_resumes_to_the_end(home):
    store = jobs.open_store(home)
    run_id = jobs.start_run(DESIGN, HP, home)  # 8 steps per epoch, 24 in all
    pid = store.get_run(run_id)["pid"]
    wait_for(lambda: any(m["step"] >= 11 for m in store.metrics(run_id, "step", "loss")))
    os.kill(pid, signal.SIGSTOP)  # freeze it, count what it wrote, then kill it
    written = store.metrics(run_id, all_rows=True)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not jobs.is_run_process(pid, run_id))
    assert [r["status"] for r in jobs.list_runs(home)] == ["interrupted"]
    run = store.get_run(run_id)
    assert "ended without reporting" in run["error"]
    assert store.metrics(run_id, all_rows=True) == written  # every metric written before the kill is kept
    killed_at = max(m["step"] for m in written)
    assert 8 < killed_at < 24  # mid-run, after the first epoch's checkpoint

    jobs.resume_run(run_id, home)
    wait_for(lambda: status(store, run_id) in ("finished", "failed", "interrupted"))
    run = store.get_run(run_id)
    assert run["status"] == "finished", (home / "runs" / str(run_id) / "train.log").read_text()
    assert run["epoch"] == 3 and run["step"] == 24
    assert [m["epoch"] for m in store.metrics(run_id, "test", "acc")] == [1, 2, 3]
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == list(range(1, 25))
    log = (home / "runs" / str(run_id) / "train.log").read_text()
    assert "resumed from ckpt-" in log


def test_stop_checkpoints_where_it_stopped_ends_the_process_group_then_resume_and_delete(home):
    store = jobs.open_store(home)
    no_periodic = dataclasses.replace(HP, epochs=50, checkpoint_every=0, checkpoint_every_s=0)
    run_id = jobs.start_run(DESIGN, no_periodic, home)
    queued = jobs.start_run(DESIGN, HP, home)
    pid = store.get_run(run_id)["pid"]
    wait_for(lambda: store.metrics(run_id, "step", "loss"))
    run = jobs.stop_run(run_id, home)
    assert run["status"] == "stopped" and not jobs.is_run_process(pid, run_id)
    newest = list_checkpoints(home / "runs" / str(run_id))[0]
    assert run["resume_step"] == int(newest.stem.split("-")[1]) >= 1  # the stop itself checkpointed
    assert run["resume_step"] >= max(m["step"] for m in store.metrics(run_id, "step", "loss"))
    assert status(store, queued) == "running"  # the freed slot went to the queued run
    jobs.stop_run(queued, home)
    with pytest.raises(DesignError, match="is stopped"):
        jobs.stop_run(run_id, home)
    jobs.resume_run(run_id, home)
    assert status(store, run_id) == "running"
    with pytest.raises(DesignError, match="only stopped, interrupted or failed"):
        jobs.resume_run(run_id, home)
    with pytest.raises(DesignError, match="is running: stop it first"):
        jobs.delete_run(run_id, home)
    assert status(store, run_id) == "running"
    run_dir = home / "runs" / str(run_id)
    jobs.delete_run(run_id, home, force=True)
    assert store.get_run(run_id) is None and not run_dir.exists() and store.metrics(run_id) == []
    assert not jobs.is_run_process(store.get_run(queued)["pid"], queued)


def test_a_run_folder_belongs_to_one_run(home, tmp_path):
    store = jobs.open_store(home)
    owner = store.create_run({}, {}, status="running", runs_root=home / "runs")
    with pytest.raises(DesignError, match=f"belongs to run {owner}"):
        store.create_run({}, {}, run_dir=home / "runs" / str(owner))
    with pytest.raises(DesignError, match=f"belongs to run {owner}"):
        store.create_run({}, {}, run_dir=home / "runs" / str(owner) / "inside")
    outside = store.create_run({}, {}, run_dir=tmp_path / "elsewhere" / "mine")
    with pytest.raises(DesignError, match=f"belongs to run {outside}"):
        store.create_run({}, {}, run_dir=tmp_path / "elsewhere")  # a folder that holds another run's folder
    assert [r["id"] for r in store.list_runs()] == [outside, owner]


def test_concurrency_setting_and_bad_ids(home):
    jobs.set_concurrency(2, home)
    assert jobs.concurrency(home) == 2
    with pytest.raises(DesignError):
        jobs.set_concurrency(0, home)
    with pytest.raises(DesignError, match="no run with id 42"):
        jobs.stop_run(42, home)
    assert isinstance(jobs.open_store(home), RunStore)
