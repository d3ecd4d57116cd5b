"""Design sweeps: the spec and its one clear error, the plan, the driver's writer, the Pareto front (no Ray);
then real sweeps on Ray: a local Ray started by the sweep's own process, a Ray head node on 127.0.0.1
started by the test, early stopping of a clearly worse trial, and a killed sweep that resumes without
rerunning its finished trials. Every Ray process a test starts is stopped before it ends."""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from designer.errors import DesignError
from designer.runs import jobs
from designer.runs.store import RunStore
from designer.runs.sweeps import records
from designer.runs.sweeps.spec import (
    baseline_config,
    design_for,
    grid_configs,
    load_spec,
    loads_spec,
    make_plan,
    read_spec,
)
from designer.runs.sweeps.writer import TrialWriter
from tests.processes import assert_no_processes_left, wait_for

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("sweep-*.json"))

# 4 tiny trials: ResNet-8 on the synthetic set, 3 epochs of 8 steps. The layer axis varies fastest
# (Tune's grid order), so both lr 0.1 trials start first; the two at lr 1e-6 never learn (about 10%
# against about 50% after one epoch) and reach ASHA's first rung after a good one: clearly worse.
TINY = {
    "format": "kernel-studio-sweep", "version": 1, "name": "tiny",
    "base": {"network": {"source": "paper", "name": "resnet", "depth": 8, "dataset": "cifar10"}},
    "space": [{"layers": "layer3.*", "choice": ["dense", "ASK_5a"]},
              {"hparam": "lr", "choice": [0.1, 0.000001]}],
    "recipe": {"epochs": 3, "batch_size": 64, "data": "synthetic", "warmup_epochs": 0, "log_every": 4},
    "search": "grid", "baseline": True,
    "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
    "measure": {"latency_batch_size": 1, "latency_repeats": 3, "latency_backend": "best"},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
}


def tiny(**changes) -> dict:
    spec = copy.deepcopy(TINY)
    spec.update(changes)
    return spec


# --- the spec: plain data, one clear error ------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_example_specs_load(path):
    spec = read_spec(path)
    assert spec.total_trials >= 5 and spec.base.network.dataset == "fashion-mnist"


def test_a_spec_resolves_to_every_combination_with_the_dense_baseline_once():
    spec = load_spec(tiny())
    assert (spec.search, spec.trials, spec.baseline) == ("grid", 4, False)  # (dense, lr 0.1) is the baseline
    plan = make_plan(spec)
    configs = grid_configs(plan)
    assert [(c["a0"], c["a1"]) for c in configs] == [("dense", "0.1"), ("ASK_5a", "0.1"), ("dense", "1e-06"),
                                                     ("ASK_5a", "1e-06")]
    design, hp, label = design_for(plan, configs[3])
    assert [layer.kind for layer in design.layers] == ["dense"] * 5 + ["ask"] * 2 and hp.lr == 1e-6
    assert label == "layer3.*=ASK_5a lr=1e-06"
    spec = load_spec(tiny(space=[{"layers": "layer2.*", "choice": ["ASK_3b", {"hetconv": 2}]}]))
    assert spec.baseline and spec.total_trials == 3  # no combination is dense: the baseline is added
    plan = make_plan(spec)
    dense, _, label = design_for(plan, baseline_config(plan))
    assert label == "dense baseline" and {layer.kind for layer in dense.layers} == {"dense"}


def test_each_family_goes_to_the_convs_of_its_group_that_take_it():
    spec = load_spec(tiny(space=[
        {"layers": "layer1.*", "choice": ["keep", "ASK_5a"]},
        {"layers": "layer2.*", "choice": [{"hetconv": 4}, {"block_n": 4, "prune_rate": 0.5},
                                           {"lowrank_ratio": 2}, {"kind": "lowrank", "rank": 4}]}]))
    plan = make_plan(spec)
    kinds = {label: [layer.kind for layer in design_for(plan, {"a0": "keep", "a1": label})[0].layers]
             for label in plan["axes"][1]["labels"]}
    ratio = kinds.pop("lowrank:2x")  # accnn spends the group's 2x budget where it costs least accuracy
    assert ratio[:3] + ratio[5:] == ["dense"] * 5 and "lowrank" in ratio[3:5]
    assert kinds == {"hetconv:4": ["dense"] * 3 + ["hetconv"] * 2 + ["dense"] * 2,
                     "1x4:0.5": ["dense"] * 3 + ["blocksparse"] * 2 + ["dense"] * 2,
                     "low-rank r=4": ["dense"] * 3 + ["lowrank"] * 2 + ["dense"] * 2}
    assert [layer.kind for layer in design_for(plan, {"a0": "ASK_5a", "a1": "hetconv:4"})[0].layers] == \
        ["dense", "ask", "ask", "hetconv", "hetconv", "dense", "dense"]


def test_a_layer_axis_may_list_several_patterns_and_takes_their_union():
    spec = load_spec(tiny(space=[{"layers": ["[c]onv1", "layer3.0.conv2"], "choice": ["dense", {"kind": "lowrank",
                                                                                          "rank": 2}]}]))
    plan = make_plan(spec)
    design, _, label = design_for(plan, {"a0": "low-rank r=2"})
    assert [layer.kind for layer in design.layers] == ["lowrank"] + ["dense"] * 5 + ["lowrank"]
    assert label == "[c]onv1,layer3.0.conv2=low-rank r=2"


@pytest.mark.parametrize("change, where, words", [
    ({"space": [{"layers": "layer9.*", "choice": ["dense"]}]}, "space[0].layers", "matches no convolution"),
    ({"space": [{"layers": [], "choice": ["dense"]}]}, "space[0].layers", "1 to 64 patterns, got 0"),
    ({"space": [{"layers": ["layer3.*", 3], "choice": ["dense"]}]}, "space[0].layers[1]", "a pattern must be"),
    ({"space": [{"layers": "layer3.*", "choice": ["ASK_5", "dense"]}]}, "space[0].choice[0]", "did you mean"),
    ({"space": [{"layers": "layer3.*", "choice": [{"hetconv": 3}]}]}, "space[0].choice[0]", "HetConv P=3 fits no"),
    ({"space": [{"layers": "[c]onv1", "choice": [{"hetconv": 2}]}]}, "space[0].choice[0]", "but the first"),
    ({"space": [{"layers": "layer3.*", "choice": ["dense", "dense"]}]}, "space[0].choice[1]", "listed twice"),
    ({"space": [{"layers": "layer3.*", "choice": ["dense"]}, {"layers": "layer3.0.*", "choice": ["ASK_5a"]}]},
     "space[1].layers", "belongs to one layer axis"),
    ({"space": [{"hparam": "lr", "choice": [0.1, -1]}]}, "space[0].choice[1]", "(0, 10], got -1"),
    ({"space": [{"hparam": "epochs", "choice": [1, 2]}]}, "space[0].hparam", "cannot sweep"),
    ({"space": [{"layer": "layer3.*", "choice": ["dense"]}]}, "space[0]", "did you mean 'layers'"),
    ({"space": []}, "space", "no axis"),
    ({"recipe": {"epochs": 0}}, "recipe.epochs", "[1, 100000]"),
    ({"recipe": {"epocs": 2}}, "recipe", "did you mean 'epochs'"),
    ({"recipe": {"start_from": "/nonexistent/w.pt"}}, "recipe.start_from", "no such weights file"),
    ({"recipe": {"batch_size": 4096, "data": "synthetic"}}, "recipe.batch_size", "512 training images"),
    ({"search": "bayes"}, "search", "grid, random"),
    ({"trials": 3}, "trials", "every combination once: 4 here (2 x 2)"),
    ({"search": "random"}, "trials", "needs its number of trials"),
    ({"scheduler": {"kind": "asha", "grace_period": 0}}, "scheduler.grace_period", "1..100000"),
    ({"scheduler": {"kind": "pbt"}}, "scheduler.kind", "asha, fifo"),
    ({"measure": {"latency_backend": "cuda"}}, "measure.latency_backend", "unknown backend"),
    ({"base": {"network": {"source": "paper", "name": "resnet", "depth": 9}}}, "base", "depth"),
    ({"base": None}, "base", "missing"),
    ({"version": 7}, "sweep", "version 7"),
    ({"layers": []}, "sweep", "a design (put it under \"base\")"),
])
def test_a_bad_spec_is_one_clear_error_naming_where(change, where, words):
    spec = tiny(**change)
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(DesignError) as err:
        load_spec(spec)
    assert err.value.where == where, str(err.value)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_malformed_json_is_one_error():
    with pytest.raises(DesignError, match="malformed JSON"):
        loads_spec('{"space": [')


def test_the_cli_refuses_a_bad_spec_in_one_line_before_ray(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tiny(space=[{"layers": "layer9.*", "choice": ["dense"]}])))
    done = subprocess.run([sys.executable, "-m", "designer", "sweep", str(bad), "--home", str(tmp_path / "ws"),
                           "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: space[0].layers: 'layer9.*' matches no convolution of this network (its convs are named like "
        "conv1, layer1.0.conv1, layer1.0.conv2, ...)"]
    assert not (tmp_path / "ws" / "sweeps").exists()


# --- the driver's writer and the fronts, with plain events --------------------------------------------------

def test_the_writer_makes_one_run_per_trial_and_records_what_the_trials_send(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    spec = load_spec(tiny())
    sweep_id = records.create_sweep(store, spec)
    plan = {**make_plan(spec), "sweep_id": sweep_id, "runs_root": str(tmp_path / "runs")}
    lines = []
    writer = TrialWriter(store, sweep_id, plan, pid=4242, echo=lines.append)
    config = {"plan": plan, "baseline": False, "a0": "ASK_5a", "a1": "0.1"}
    writer.apply({"kind": "begin", "trial_id": "t_00001", "config": config})
    writer.apply({"kind": "start", "trial_id": "t_00001", "config": config})  # Tune's, after the trial's own
    writer.apply({"kind": "measured", "trial_id": "t_00001", "latency_ms": 1.5, "params": 1})
    writer.apply({"kind": "progress", "trial_id": "t_00001", "rows": [[8, 1, "test", "acc", 50.0, 1.0]],
                  "fields": {"epoch": 1, "best_acc": 50.0, "resume_step": 8}, "rewrite_after": None})
    (run,) = store.list_runs(sweep_id=sweep_id)
    assert (run["trial_id"], run["status"], run["pid"], run["epoch"], run["best_acc"], run["latency_ms"]) == \
        ("t_00001", "running", 4242, 1, 50.0, 1.5)
    assert run["name"] == f"sweep {sweep_id}: layer3.*=ASK_5a lr=0.1" and run["flops"] > 0
    assert Path(run["run_dir"]) == (tmp_path / "runs" / f"sweep{sweep_id}-t_00001").resolve()
    assert json.loads((Path(run["run_dir"]) / "design.json").read_text())["layers"][-1]["kind"] == "ask"
    writer.apply({"kind": "complete", "trial_id": "t_00001"})  # before its last epoch: the scheduler stopped it
    assert store.get_run(run["id"])["status"] == "pruned" and "after epoch 1 of 3" in store.get_run(run["id"])["error"]
    writer.apply({"kind": "start", "trial_id": "t_00002", "config": {**config, "a0": "dense"}})
    writer.apply({"kind": "progress", "trial_id": "t_00002", "rows": [[24, 3, "test", "acc", 70.0, 1.0]],
                  "fields": {"epoch": 3, "best_acc": 70.0, "resume_step": 24}, "rewrite_after": 0})
    writer.apply({"kind": "complete", "trial_id": "t_00002"})  # ASHA ends every trial at max_t: finished
    writer.apply({"kind": "start", "trial_id": "t_00003", "config": {**config, "a1": "1e-06"}})
    writer.apply({"kind": "failed", "trial_id": "t_00003", "error": "RuntimeError: boom"})
    writer.apply({"kind": "error", "trial_id": "t_00003", "error": "ignored: already failed"})
    rows = {r["trial_id"]: r for r in records.trials_table(store, sweep_id)}
    assert {t: (r["status"], r["best_accuracy"]) for t, r in rows.items()} == {
        "t_00001": ("pruned", 50.0), "t_00002": ("finished", 70.0), "t_00003": ("failed", None)}
    assert store.get_run(rows["t_00003"]["run_id"])["error"] == "RuntimeError: boom"
    writer.apply({"kind": "start", "trial_id": "t_00001", "config": config})  # a restored sweep restarts it
    assert store.get_run(run["id"])["status"] == "running" and len(store.list_runs(sweep_id=sweep_id)) == 3
    assert any("continues" in line for line in lines)
    writer.apply({"kind": "progress", "trial_id": "t_09999", "rows": [], "fields": {}})  # unknown: ignored


def test_the_pareto_front_keeps_the_finished_trials_nothing_beats():
    rows = [{"run_id": 1, "status": "finished", "best_accuracy": 90.0, "macs": 100, "latency_ms": 5.0},
            {"run_id": 2, "status": "finished", "best_accuracy": 88.0, "macs": 60, "latency_ms": 6.0},
            {"run_id": 3, "status": "finished", "best_accuracy": 85.0, "macs": 80, "latency_ms": 1.0},  # 2 beats it
            {"run_id": 4, "status": "pruned", "best_accuracy": 95.0, "macs": 10, "latency_ms": 0.5},
            {"run_id": 5, "status": "finished", "best_accuracy": 90.0, "macs": 100, "latency_ms": None},  # tie: 1
            {"run_id": 6, "status": "running", "best_accuracy": None, "macs": 5, "latency_ms": 0.1}]
    assert records.pareto_front(rows, "macs") == [2, 1]
    assert records.pareto_front(rows, "latency_ms") == [3, 1]


def test_a_sweeps_trial_is_stopped_and_resumed_with_its_sweep(tmp_path):
    store = jobs.open_store(tmp_path)
    run_id = store.create_run({"layers": []}, {}, "trial", "stopped", sweep_id=3, trial_id="x_00000")
    for action in (jobs.stop_run, jobs.resume_run):
        with pytest.raises(DesignError, match="trial of sweep 3"):
            action(run_id, store)


def test_the_cli_lists_and_deletes_a_sweep_with_its_trials(tmp_path, capsys):
    from designer.cli import main
    store = jobs.open_store(tmp_path)
    sweep_id = records.create_sweep(store, load_spec(tiny()), status="finished")
    folder = Path(records.get_sweep(store, sweep_id)["storage"])
    (folder / "tune").mkdir(parents=True)
    run_dir = tmp_path / "runs" / f"sweep{sweep_id}-t_00000"
    run_dir.mkdir(parents=True)
    store.create_run({"layers": []}, {}, f"sweep {sweep_id}: a", "finished", run_dir=str(run_dir), sweep_id=sweep_id,
                     trial_id="t_00000")
    other = store.create_run({"layers": []}, {}, "not a trial", "finished")
    assert main(["sweep", "--list", "--json", "--home", str(tmp_path)]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)["sweeps"]] == [sweep_id]
    assert main(["sweep", "--delete", str(sweep_id), "--home", str(tmp_path)]) == 0
    assert not records.list_sweeps(store) and [r["id"] for r in store.list_runs()] == [other]
    assert not folder.exists() and not run_dir.exists()


# --- real sweeps on Ray -------------------------------------------------------------------------------------

def wait_until_done(store: RunStore, sweep_id: int, home: Path, timeout: float = 300.0) -> None:
    """Until the sweep's process has recorded its end and exited; stopped (and its group killed) if not."""
    pid = records.get_sweep(store, sweep_id)["pid"]
    try:
        wait_for(lambda: records.get_sweep(store, sweep_id)["status"] != "running", timeout, 0.5)
        wait_for(lambda: not records.is_sweep_process(pid, sweep_id), 60, 0.2)
    finally:
        if records.get_sweep(store, sweep_id)["status"] == "running":
            records.stop_sweep(sweep_id, home)
        elif records.is_sweep_process(pid, sweep_id):
            records.kill_group(pid)


def check_the_tiny_sweep(store: RunStore, sweep_id: int, status: str = "finished") -> list[dict]:
    sweep = records.get_sweep(store, sweep_id)
    assert sweep["status"] == status, sweep
    rows = records.trials_table(store, sweep_id)
    assert len(rows) == 4 and all(r["run_id"] for r in rows)
    by_label = {r["label"]: r for r in rows}
    for label in ("layer3.*=dense lr=1e-06", "layer3.*=ASK_5a lr=1e-06"):  # clearly worse: stopped by ASHA
        assert (by_label[label]["status"], by_label[label]["epoch"]) == ("pruned", 1), by_label[label]
        assert by_label[label]["best_accuracy"] < 25
    good = [by_label[label] for label in ("layer3.*=dense lr=0.1", "layer3.*=ASK_5a lr=0.1")]
    assert {r["status"] for r in good} <= {"finished", "pruned"} and any(r["status"] == "finished" for r in good)
    assert all(r["epoch"] == 3 for r in good if r["status"] == "finished")
    assert all(r["params"] and r["macs"] for r in rows) and by_label["layer3.*=dense lr=0.1"]["baseline"]
    for r in rows:
        run = store.get_run(r["run_id"])
        assert run["sweep_id"] == sweep_id and run["pid"] == sweep["pid"]
        tests = store.metrics(r["run_id"], "test", "acc")
        assert [m["epoch"] for m in tests] == list(range(1, r["epoch"] + 1))  # every evaluation reached the store
        assert store.metrics(r["run_id"], "step", "loss")
    summary = records.summary(store, sweep_id)
    assert summary["pareto"] and set(summary["pareto"]) <= {r["run_id"] for r in good}
    return rows


@pytest.fixture
def ray_env(monkeypatch):
    from designer.runs.sweeps.engine import LOCAL_RAY_ENV, RAY_ENV
    for key, value in {**RAY_ENV, **LOCAL_RAY_ENV}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return dict(os.environ)


def test_a_sweep_on_a_local_ray_started_in_the_background_like_the_app(tmp_path, ray_env):
    home = tmp_path / "ws"
    sweep_id = records.start_sweep(load_spec(tiny()), home)
    store = jobs.open_store(home)
    sweep = records.get_sweep(store, sweep_id)
    assert sweep["status"] == "running" and records.is_sweep_process(sweep["pid"], sweep_id)
    wait_until_done(store, sweep_id, home)
    rows = check_the_tiny_sweep(store, sweep_id)
    assert all(r["latency_ms"] and r["latency_ms"] > 0 for r in rows if r["epoch"] >= 1)
    assert "trials on a local Ray" in records.log_tail(sweep_id, home)
    records.refresh(store)
    assert_no_processes_left(sweep["pid"])
    assert [run["id"] for run in jobs.list_runs(home)] == sorted((r["run_id"] for r in rows), reverse=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node(ray_env, tmp_path_factory):
    """`ray start --head` on 127.0.0.1 with 2 CPUs, in its own session; stopped (SIGTERM, then whatever is
    left of its session killed) at the end."""
    port = free_port()
    log = tmp_path_factory.mktemp("head") / "head.log"
    temp = f"/tmp/ks-ray-head-{os.getpid()}"
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", str(port),
         "--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
         "--disable-usage-stats", "--ray-client-server-port", str(free_port()), "--temp-dir", temp],
        cwd=REPO, env=ray_env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Ray runtime started" in log.read_text() or head.poll() is not None, 120, 0.2)
        assert head.poll() is None, log.read_text()
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        assert_no_processes_left(head.pid, timeout=20)
        subprocess.run(["rm", "-rf", temp])


def test_the_same_sweep_on_a_ray_head_node_by_address(tmp_path, head_node, ray_env):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(tiny(measure={"latency_batch_size": 0})))
    home = tmp_path / "ws"
    done = subprocess.run([sys.executable, "-m", "designer", "sweep", str(spec), "--ray-address", head_node,
                           "--max-concurrent", "2", "--home", str(home), "--json"],
                          cwd=REPO, env=ray_env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert set(result) >= {"sweep_id", "trials", "pareto"} and result["address"] == head_node
    assert {t["status"] for t in result["trials"]} <= {"finished", "pruned"}
    assert set(result["trials"][0]) >= {"run_id", "design", "status", "best_accuracy", "params", "macs",
                                        "latency_ms"}
    store = jobs.open_store(home)
    rows = check_the_tiny_sweep(store, result["sweep_id"])
    assert result["pareto"] == records.summary(store, result["sweep_id"])["pareto"]
    assert [t["run_id"] for t in result["trials"]] == [r["run_id"] for r in rows]
    assert f"on the Ray cluster at {head_node}" in done.stderr


def test_a_killed_sweep_resumes_without_rerunning_its_finished_trials(tmp_path, ray_env):
    home = tmp_path / "ws"
    spec = tiny(space=[{"hparam": "lr", "choice": [0.1, 0.05, 0.02]}], scheduler={"kind": "fifo"},
                recipe={**TINY["recipe"], "epochs": 4}, measure={"latency_batch_size": 0},
                resources={"cpus_per_trial": 1, "max_concurrent": 1})
    sweep_id = records.start_sweep(load_spec(spec), home)
    store = jobs.open_store(home)
    pid = records.get_sweep(store, sweep_id)["pid"]

    def one_done_one_midway():
        runs = store.list_runs(sweep_id=sweep_id)
        finished = [r for r in runs if r["status"] == "finished"]
        midway = [r for r in runs if r["status"] == "running" and 1 <= r["epoch"] < 4]
        return (finished, midway) if finished and midway else None

    try:
        finished, midway = wait_for(one_done_one_midway, timeout=300, every=0.05)
    finally:
        records.kill_group(pid)  # SIGKILL: the driver, its local Ray, the trials
    assert_no_processes_left(pid)
    (done_before,) = finished
    metrics_before = store.metrics(done_before["id"], all_rows=True)
    killed_at = store.get_run(midway[0]["id"])
    assert records.refresh(store) == [sweep_id]
    assert records.get_sweep(store, sweep_id)["status"] == "interrupted"
    assert store.get_run(killed_at["id"])["status"] == "interrupted"

    records.resume_sweep(sweep_id, home)
    pid = records.get_sweep(store, sweep_id)["pid"]
    wait_until_done(store, sweep_id, home)
    assert_no_processes_left(pid)
    assert records.get_sweep(store, sweep_id)["status"] == "finished", records.log_tail(sweep_id, home)
    runs = {r["trial_id"]: r for r in store.list_runs(sweep_id=sweep_id)}
    assert len(runs) == 3 and {r["status"] for r in runs.values()} == {"finished"}
    after = runs[done_before["trial_id"]]
    assert (after["id"], after["started"], after["finished"]) == (done_before["id"], done_before["started"],
                                                                  done_before["finished"])  # not rerun
    assert store.metrics(after["id"], all_rows=True) == metrics_before  # nothing lost, nothing added
    resumed = runs[killed_at["trial_id"]]
    assert resumed["id"] == killed_at["id"] and resumed["epoch"] == 4
    log = (Path(resumed["run_dir"]) / "train.log").read_text()
    assert "resumed from ckpt-" in log  # it continued from its checkpoint
    tests = store.metrics(resumed["id"], "test", "acc")
    assert [m["epoch"] for m in tests] == [1, 2, 3, 4]
    assert [m["step"] for m in store.metrics(resumed["id"], "step", "loss")][-1] == 32
