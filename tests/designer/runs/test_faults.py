"""Faults a training run survives: SIGKILL at several points, a removed -wal, a full disk, a read-only workspace.

Each test makes the fault for real (a killed process, a deleted file, a
small tmpfs, a read-only bind mount) and checks that nothing is lost and
that what cannot work is said plainly. Mounting needs root (CAP_SYS_ADMIN):
where mount fails, those tests skip and say why.
"""
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from designer.cli import main
from designer.designs.design import Network
from designer.errors import DesignError
from designer.networks.build import dense_design
from designer.runs import jobs
from designer.runs.checkpoints import CheckpointError, list_checkpoints, load_checkpoint
from designer.runs.store import RunStore, StoreError
from designer.runs.train import HParams, train
from tests import processes

ROOT = Path(__file__).resolve().parents[3]
DESIGN = dense_design(Network("resnet", 8, "cifar10"))
HP = HParams(epochs=1, batch_size=64, data="synthetic", log_every=1, warmup_epochs=0, checkpoint_every=0,
             checkpoint_every_s=0)  # 8 steps; one checkpoint, at the end


wait_for = functools.partial(processes.wait_for, timeout=90.0, every=0.02)  # one job's states: poll often


def finish(store, run_id):
    wait_for(lambda: store.get_run(run_id)["status"] in ("finished", "failed", "interrupted"))
    run = store.get_run(run_id)
    assert run["status"] == "finished", (Path(run["run_dir"]) / "train.log").read_text()
    return run


def kill(store, run_id):
    pid = store.get_run(run_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not jobs.is_run_process(pid, run_id))
    jobs.refresh(store)
    assert store.get_run(run_id)["status"] == "interrupted"


@contextlib.contextmanager
def mounted(target: Path, *options: str):
    """mount(8) with options on target, unmounted after; skip (with the reason) where mounting is not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or 'mount failed'}): needs root with CAP_SYS_ADMIN")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "ws"


def test_sigkill_before_the_first_checkpoint_resumes_from_zero_and_says_so(home):
    store = jobs.open_store(home)
    run_id = jobs.start_run(DESIGN, HP, home)
    wait_for(lambda: store.metrics(run_id, "step", "loss"))
    kill(store, run_id)
    assert not list_checkpoints(home / "runs" / str(run_id)) and store.get_run(run_id)["resume_step"] == 0
    jobs.resume_run(run_id, home)
    run = finish(store, run_id)
    assert run["step"] == 8 and run["resume_step"] == 8
    steps = [m["step"] for m in store.metrics(run_id, "step", "loss", all_rows=True)]
    assert steps == list(range(1, 9))  # the killed attempt's rows were dropped, not doubled


KILL_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    from designer.runs import checkpoints
    from designer.networks.build import dense_design
    from designer.designs.design import Network
    from designer.runs.train import HParams, train
    writes, real = [], checkpoints._write_synced
    def write(path, data):
        writes.append(path)
        if len(writes) == 3:  # the second checkpoint's data file: half of it, then a kill
            with open(path, "wb") as f:
                f.write(bytes(data)[:len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, data)
    checkpoints._write_synced = write
    hp = HParams(epochs=2, batch_size=128, data="synthetic", checkpoint_every=3, checkpoint_every_s=0)
    train(dense_design(Network("resnet", 8, "cifar10")), hp, sys.argv[1])
""")


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(run_dir)], cwd=ROOT, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert [p.name for p in list_checkpoints(run_dir)] == ["ckpt-00000003.pt"]
    assert list(run_dir.glob(".ckpt-00000004.pt.*.tmp"))  # the half-written file the kill left
    hp = HParams(epochs=2, batch_size=128, data="synthetic", checkpoint_every=3, checkpoint_every_s=0)
    result = train(DESIGN, hp, run_dir, resume=True)
    assert result["resumed_from_step"] == 3 and result["steps"] == 8
    assert not list(run_dir.glob(".*.tmp")) and load_checkpoint(run_dir / "ckpt-00000008.pt")["step"] == 8


def test_a_wal_removed_during_a_run_loses_no_metric_row_and_the_run_finishes(home):
    store = jobs.open_store(home)
    run_id = jobs.start_run(DESIGN, HP, home)
    reader = sqlite3.connect(store.path)  # another process's connection keeps the -wal open (the app, say)
    reader.execute("SELECT COUNT(*) FROM metrics").fetchone()
    wait_for(lambda: store.metrics(run_id, "step", "loss"))
    Path(f"{store.path}-wal").unlink()
    log = home / "runs" / str(run_id) / "train.log"
    wait_for(lambda: "the metrics wait in memory" in log.read_text())
    reader.close()
    run = finish(store, run_id)
    assert "the run store works again" in log.read_text()
    assert [m["step"] for m in store.metrics(run_id, "step", "loss", all_rows=True)] == list(range(1, 9))
    assert run["step"] == 8 and [m["epoch"] for m in store.metrics(run_id, "test", "acc")] == [1]


def test_a_full_disk_under_the_run_folder_says_no_space_and_keeps_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / "small"
    with mounted(run_dir, "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
        hp = dataclasses.replace(HP, epochs=2, batch_size=128, checkpoint_every=1)  # ~0.7 MB a checkpoint
        with pytest.raises(CheckpointError, match="no space left on the device") as err:
            train(DESIGN, hp, run_dir)
        assert "unexpected pos" not in str(err.value)
        assert [p.name for p in list_checkpoints(run_dir)] == ["ckpt-00000001.pt"]
        assert load_checkpoint(run_dir / "ckpt-00000001.pt")["step"] == 1 and not list(run_dir.glob(".*.tmp"))


def test_a_full_disk_under_the_store_says_no_space_and_the_store_stays_readable(tmp_path):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=256k", "tmpfs") as small:
        store = RunStore(small / "runs.db")
        run_id = store.create_run({}, {}, "filling")
        with pytest.raises(StoreError, match="runs.db: no space left on the device"):
            for step in range(1, 100_000):
                store.log_metrics(run_id, step, 1, "step", {"loss": 1.0, "acc": 2.0, "lr": 0.1})
        assert store.get_run(run_id)["name"] == "filling" and len(store.metrics(run_id, "step", "loss")) > 100
        assert RunStore(small / "runs.db").list_runs()[0]["id"] == run_id


def test_a_read_only_workspace_is_listed_and_refuses_changes_plainly(tmp_path, capsys):
    source = tmp_path / "ws"
    store = RunStore(source / "runs.db")
    run_id = store.create_run({}, {}, "done", status="finished")
    store.log_metrics(run_id, 5, 1, "step", {"loss": 0.5})
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", str(source)) as ro:
        if os.access(ro, os.W_OK):
            pytest.skip("this kernel ignores the read-only bind option")
        assert main(["runs", "list", "--home", str(ro), "--json"]) == 0
        out, err = capsys.readouterr()
        assert [r["name"] for r in json.loads(out)["runs"]] == ["done"], err
        read_only = jobs.open_store(ro)
        assert read_only.readonly and [m["value"] for m in read_only.metrics(run_id)] == [0.5]
        with pytest.raises(StoreError, match="read-only"):
            read_only.update_run(run_id, name="renamed")
        code = main(["runs", "start", "--arch", "resnet", "--depth", "8", "--data", "synthetic", "--home", str(ro)])
        assert code == 2 and "read-only" in capsys.readouterr().err
        with pytest.raises(DesignError, match="read-only"):
            jobs.delete_run(run_id, ro)
