"""Sweeps in the app, through Streamlit's AppTest: the Sweeps page makes a sweep of the current design, launches
it as a background process (a local Ray), shows its trials as they arrive and stops it; the Runs page draws a
sweep's Pareto fronts (accuracy against MACs and against measured latency, the dense baseline marked)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from designer.designs.design import Network
from designer.networks.build import dense_design
from designer.runs import jobs
from designer.runs.sweeps import records
from designer.runs.sweeps.spec import load_spec
from tests.processes import assert_no_processes_left

APP = str(Path(__file__).resolve().parents[2] / "app.py")
SPEC = {"name": "stage 3", "base": {"network": {"source": "paper", "name": "resnet", "depth": 8,
                                                "dataset": "cifar10"}},
        "space": [{"layers": "layer3.*", "choice": ["ASK_5a", "ASK_3b", "ASK_2"]}],
        "recipe": {"epochs": 1, "data": "synthetic"}}


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


def figures(app: AppTest) -> dict[str, dict]:
    """The page's plotly charts by title."""
    charts = [json.loads(e.proto.spec) for e in app.get("plotly_chart")]
    return {c["layout"]["title"]["text"]: c for c in charts if c["layout"].get("title")}


def traces(figure: dict) -> dict[str, dict]:
    return {t["name"]: t for t in figure["data"]}


@pytest.fixture
def swept(tmp_path, monkeypatch):
    """A workspace with a finished sweep of four trials (as its driver would have written them): the dense
    baseline, two ASK trials and one the scheduler stopped early."""
    monkeypatch.setenv("KERNEL_STUDIO_HOME", str(tmp_path))
    store = jobs.open_store(tmp_path)
    spec = load_spec(SPEC)
    sweep_id = records.create_sweep(store, spec, status="finished")
    base = spec.base.to_json()
    ask = {**base, "layers": base["layers"][:5] + [{"kind": "ask", "k": 3, "shapes": [[2, 4, 5, 6, 8]]}] * 2}
    for trial, design, status, acc, macs, latency in [
            ("t0", base, "finished", 60.0, 20_000_000, 2.0),  # the dense baseline
            ("t1", ask, "finished", 58.0, 14_000_000, 1.5),
            ("t2", ask, "finished", 50.0, 16_000_000, 1.2),  # more MACs and less accurate than t1
            ("t3", ask, "pruned", 20.0, 10_000_000, 1.0)]:
        run_id = store.create_run(design, {"epochs": 1}, f"sweep {sweep_id}: {trial}", status, sweep_id=sweep_id,
                                  trial_id=trial, params=1000, flops=macs)
        store.update_run(run_id, best_acc=acc, latency_ms=latency, epoch=1)
    return sweep_id


def test_the_runs_page_draws_a_sweeps_pareto_fronts_with_the_dense_baseline_marked(swept):
    at = AppTest.from_file(APP, default_timeout=60)
    ok(at.run())
    ok(at.switch_page("pages/runs.py").run())
    assert at.selectbox(key="runs_sweep").value == swept
    charts = figures(at)
    by_macs, by_latency = charts["accuracy vs MACs"], charts["accuracy vs latency"]
    macs = traces(by_macs)
    assert macs["Pareto front"]["x"] == [14.0, 20.0] and macs["Pareto front"]["y"] == [58.0, 60.0]
    assert macs["dense baseline"]["x"] == [20.0] and macs["dense baseline"]["marker"]["symbol"] == "star"
    assert sorted(macs["finished"]["y"]) == [50.0, 58.0] and macs["pruned"]["y"] == [20.0]
    latency = traces(by_latency)
    assert latency["Pareto front"]["x"] == [1.2, 1.5, 2.0]  # by latency the 50% trial is the fastest finished
    assert latency["dense baseline"]["y"] == [60.0]


@pytest.fixture
def sweeps_page(tmp_path, monkeypatch) -> AppTest:
    """The Sweeps page with a dense ResNet-8 as the current design (an empty workspace: synthetic data)."""
    monkeypatch.setenv("KERNEL_STUDIO_HOME", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["design"] = dense_design(Network("resnet", 8, "cifar10"))
    ok(at.run())
    return ok(at.switch_page("pages/sweeps.py").run())


def test_a_choice_a_group_cannot_take_is_one_clear_error_and_no_sweep(sweeps_page):
    at = sweeps_page
    assert "No sweeps yet" in at.info[0].value
    at.multiselect(key="sweep_axis_[c]onv1").set_value(["hetconv:4"]).run()
    at.button(key="FormSubmitter:sweep_form-Launch the sweep in the background").click().run()
    assert [e.value.replace("\\", "") for e in at.error] == [  # shown as text: markdown escaped
        "space[0].choice[0]: HetConv P=4 fits no convolution of the group (every full 3x3 conv but the first, "
        "P dividing its channels)"]
    assert not records.list_sweeps(jobs.open_store())


def test_a_stage_of_vgg_is_one_layer_group_of_its_convs(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNEL_STUDIO_HOME", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    ok(at.run())  # the default design: VGG-16, whose stages are runs of convs at one resolution
    ok(at.switch_page("pages/sweeps.py").run())
    assert len(at.multiselect) == 5
    at.multiselect(key="sweep_axis_feature.14,feature.17,feature.20").set_value(["ASK_5a", "ASK_2"]).run()
    spec = json.loads(ok(at).code[0].value)
    assert spec["space"] == [{"layers": ["feature.14", "feature.17", "feature.20"], "choice": ["ASK_5a", "ASK_2"]}]
    assert load_spec(spec).total_trials == 3


def test_launch_a_sweep_of_the_current_design_watch_its_trials_arrive_and_stop_it(sweeps_page):
    at = sweeps_page
    at.multiselect(key="sweep_axis_layer3.*").set_value(["ASK_5a", "ASK_3b"]).run()
    spec = json.loads(at.code[0].value)  # the spec the page shows is the one it launches
    assert spec["space"] == [{"layers": "layer3.*", "choice": ["ASK_5a", "ASK_3b"]}]
    assert spec["recipe"]["data"] == "synthetic" and spec["baseline"]
    at.number_input(key="sweep_epochs").set_value(20)
    at.number_input(key="sweep_latency_batch").set_value(0)
    at.number_input(key="sweep_concurrent").set_value(1)
    at.button(key="FormSubmitter:sweep_form-Launch the sweep in the background").click().run()
    ok(at)
    assert at.success[0].value == "Sweep 1 started: 3 trials."
    store = jobs.open_store()
    pid = records.get_sweep(store, 1)["pid"]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            ok(at.run())
            trials = at.dataframe[0].value
            if len(trials) and (trials["status"] == "running").any():
                break
            time.sleep(1)
        assert len(trials) == 1 and trials["choices"][0] == "dense baseline"  # one at a time, the baseline first
        assert at.metric[0].value == "running"
    finally:
        at.button(key="sweeps_stop").click().run()
        records.kill_group(pid)
    ok(at)
    assert_no_processes_left(pid)  # the sweep's process and its local Ray
    assert at.metric[0].value == "stopped" and records.get_sweep(store, 1)["status"] == "stopped"
    assert [r["status"] for r in store.list_runs(sweep_id=1)] == ["stopped"]
    assert not at.button(key="sweeps_resume").disabled and at.button(key="sweeps_stop").disabled
