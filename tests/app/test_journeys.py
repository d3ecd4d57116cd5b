"""The journeys a new user walks, in a real browser (headless Chromium on `streamlit run app.py`).

Each test starts from a fresh workspace, clicks what a person clicks and
checks what a person reads; screenshots land in tests/artifacts/journeys/.
"""
from __future__ import annotations

import time

import pytest

from designer.runs import jobs
from tests.app.browser import (
    ARTIFACTS,
    assert_no_exception,
    body_text,
    choose,
    chromium,
    click_key,
    click_tab,
    click_text,
    main_metric,
    open_page,
    require_browser,
    screenshot,
    selected,
    streamlit_app,
    toggle,
    type_into,
    wait_idle,
    wait_text,
)

SHOTS = ARTIFACTS / "journeys"


@pytest.fixture(autouse=True)
def _browser():
    require_browser()


def sidebar_summary(driver) -> str:
    """The sidebar's one-line summary of the current design (its layer choices)."""
    return driver.find_element("css selector", '[data-testid="stSidebar"] [data-testid="stCaptionContainer"]').text


def _wait_run(home, run_id: int, statuses: tuple[str, ...], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = jobs.open_store(home).get_run(run_id)
        if run and run["status"] in statuses:
            return run
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} never reached {statuses}: {jobs.open_store(home).get_run(run_id)}")


def test_design_journey_data_set_padding_free_every_button_and_reload(tmp_path):
    """ResNet-20 + ASK_5a survives a data-set change; ResNet (proj.) survives the padding-free toggle and every
    selection button after it; a reload keeps the design."""
    with streamlit_app(tmp_path) as url, chromium() as driver:
        driver.get(url)
        wait_text(driver, "Kernel for 13 selected layers")
        wait_idle(driver)
        choose(driver, "net_arch", "ResNet")
        wait_text(driver, "Kernel for 19 selected layers")
        click_tab(driver, "ASK preset")
        click_key(driver, "apply_preset")
        wait_text(driver, "ASK_5a x19")
        wait_idle(driver)
        flops = main_metric(driver, "MACs")

        choose(driver, "net_dataset", "fashion-mnist")
        wait_text(driver, "19 layer choices carried over")
        assert "ResNet-20 · fashion-mnist" in body_text(driver) and "ASK_5a x19" in body_text(driver)
        assert main_metric(driver, "MACs") == flops
        screenshot(driver, SHOTS / "data-set-change.png")

        choose(driver, "net_arch", "ResNet (proj.)")
        wait_text(driver, "Kernel for 22 selected layers")
        click_tab(driver, "ASK preset")
        click_key(driver, "apply_preset")
        wait_text(driver, "ASK_5a x7")
        toggle(driver, "padfree")
        wait_text(driver, "Kernel for 28 selected layers")
        assert "dropped" in body_text(driver)  # the stride-2 convs lose their padding: ASK cannot take them
        for key in ("sel_none", "sel_all", "sel_invert", "sel_full", "sel_all", "undo", "redo"):
            click_key(driver, key)
            wait_idle(driver)
            assert_no_exception(driver)
        type_into(driver, "sel_pattern", "stage2")
        click_key(driver, "sel_match")
        wait_text(driver, "Kernel for 9 selected layers")
        for tab in ("Draw shapes", "ASK preset", "HetConv", "1xN pruning", "Low-rank", "Dense"):
            click_tab(driver, tab)
        click_tab(driver, "Dense")
        click_key(driver, "make_dense")
        wait_idle(driver)
        assert_no_exception(driver)
        for page in ("Analyze", "Benchmark", "Train", "Runs", "Design"):
            open_page(driver, page)
            assert_no_exception(driver)
        screenshot(driver, SHOTS / "padding-free.png")
        summary = sidebar_summary(driver)
        assert "padding-free" in summary and "ASK_5a" in summary

        driver.get(driver.current_url)  # a reload: the design comes back from the address
        wait_text(driver, "Kernel for")
        wait_idle(driver)
        assert "ResNet (proj.)-20 · fashion-mnist" in body_text(driver)
        assert sidebar_summary(driver) == summary
        screenshot(driver, SHOTS / "reloaded.png")


def test_first_training_journey_default_design_to_a_derived_fine_tuned_1xn_run(tmp_path):
    """Default design -> Train -> Launch trains on Fashion-MNIST (the data set that is here) with live curves;
    then derive a 1xN design from that run and fine-tune it from its weights; both are compared in Runs."""
    with streamlit_app(tmp_path) as url, chromium() as driver:
        driver.get(url)
        wait_text(driver, "Kernel for 13 selected layers")
        choose(driver, "net_arch", "ResNet")  # a small network keeps the journey short; VGG-16 takes minutes
        wait_text(driver, "Kernel for 19 selected layers")
        open_page(driver, "Train")
        wait_text(driver, "trains it on fashion-mnist")
        choose(driver, "train_data", "cifar10 (not here)")
        wait_text(driver, "cifar10 is not in")
        click_text(driver, "Launch in the background")
        wait_text(driver, "data: cifar10 is not in")
        assert jobs.open_store(tmp_path).list_runs() == []  # refused before launch, no failed run
        choose(driver, "train_data", "fashion-mnist")
        type_into(driver, "train_max_steps", "40")
        click_text(driver, "Launch in the background")
        wait_text(driver, "Run 1 queued")
        run = _wait_run(tmp_path, 1, ("finished", "failed"))
        assert run["status"] == "finished", run.get("error")
        wait_text(driver, "finished", timeout=30)
        time.sleep(2.5)  # the live panel redraws every 2 s
        wait_idle(driver)
        assert driver.find_elements("css selector", ".st-key-live_curves, [data-testid='stPlotlyChart']")
        screenshot(driver, SHOTS / "first-run.png", height=1700)

        open_page(driver, "Runs")
        choose(driver, "runs_derive_how", "1xN")
        click_key(driver, "runs_derive")
        wait_text(driver, "starting from run 1's weights")
        assert "1x16 pruned 50%" in body_text(driver)
        open_page(driver, "Train")
        wait_text(driver, "Start from")
        assert selected(driver, "train_start") == "a finished run of this network"
        assert selected(driver, "train_start_run").startswith("1 · ")
        type_into(driver, "train_max_steps", "20")
        type_into(driver, "train_name", "1xN fine-tune")
        click_text(driver, "Launch in the background")
        wait_text(driver, "Run 2 queued")
        run = _wait_run(tmp_path, 2, ("finished", "failed"))
        assert run["status"] == "finished", run.get("error")
        assert run["hparams"]["init_from"].endswith(".pt")
        log = (tmp_path / "runs" / "2" / "train.log").read_text()
        assert "weights of run 1" in log
        open_page(driver, "Runs")
        wait_text(driver, "1xN fine-tune")
        assert_no_exception(driver)
        screenshot(driver, SHOTS / "runs-compare.png", height=1800)


def test_stop_then_resume_continues_from_the_saved_step(tmp_path):
    with streamlit_app(tmp_path) as url, chromium() as driver:
        driver.get(url)
        wait_text(driver, "Kernel for 13 selected layers")
        choose(driver, "net_arch", "ResNet")
        wait_text(driver, "Kernel for 19 selected layers")
        open_page(driver, "Train")
        choose(driver, "train_data", "synthetic (a tiny smoke-test set)")
        type_into(driver, "train_epochs", "12")
        choose(driver, "train_batch", "32")
        type_into(driver, "train_ckpt_s", "10")
        click_text(driver, "Launch in the background")
        wait_text(driver, "Run 1 queued")
        store = jobs.open_store(tmp_path)
        deadline = time.monotonic() + 120
        while (store.get_run(1) or {}).get("resume_step", 0) < 16:  # past the first epoch's checkpoint
            assert time.monotonic() < deadline, store.get_run(1)
            time.sleep(0.3)
        click_key(driver, "stop_1")
        _wait_run(tmp_path, 1, ("stopped",), timeout=30)
        wait_text(driver, "Resume continues from step", timeout=20)
        run = store.get_run(1)  # a stop checkpoints the step it stopped at
        saved = run["resume_step"]
        assert saved >= 16  # at or past the first epoch's checkpoint
        wait_text(driver, f"Resume continues from step {saved}", timeout=20)
        screenshot(driver, SHOTS / "stopped.png")
        click_key(driver, "resume_1")
        run = _wait_run(tmp_path, 1, ("finished", "failed"))
        assert run["status"] == "finished", run.get("error")
        log = (tmp_path / "runs" / "1" / "train.log").read_text()
        assert f"at step {saved}" in log
        steps = [m["step"] for m in store.metrics(1, split="step", name="loss")]
        assert steps == sorted(set(steps))  # no step logged twice


def sidebar_metric(driver, label: str) -> str:
    for metric in driver.find_elements("css selector", '[data-testid="stSidebar"] [data-testid="stMetric"]'):
        if metric.find_element("css selector", '[data-testid="stMetricLabel"]').text.strip() == label:
            return metric.find_element("css selector", '[data-testid="stMetricValue"]').text.strip()
    raise AssertionError(f"no sidebar metric {label!r}")


def test_torchvision_resnet18_with_ask_5a_on_layer3(tmp_path):
    """A torchvision network from the Design page: ResNet-18, the layers of layer3.* by name pattern, ASK_5a on
    them (the 1x1 downsample keeps its kernel); the sidebar's counts follow and the Analyze page reads well."""
    from designer.analysis.tables import totals
    from designer.designs.design import Network
    from designer.networks.build import dense_design
    from designer.networks.editing import apply_preset

    dense = dense_design(Network("torchvision:resnet18", 0, "cifar10"))
    want, base = totals(apply_preset(dense, [10, 11, 13, 14], "ASK_5a")), totals(dense)
    with streamlit_app(tmp_path) as url, chromium(1400, 1100) as driver:
        driver.get(url)
        wait_text(driver, "Kernel for 13 selected layers")
        wait_idle(driver)
        click_text(driver, "torchvision")
        wait_text(driver, "Kernel for 20 selected layers")
        assert selected(driver, "net_tv_model") == "resnet18"
        assert "torchvision resnet18 · cifar10 · 3×224×224" in body_text(driver)
        assert sidebar_metric(driver, "MACs") == f"{base.flops / 1e6:.2f}M"

        type_into(driver, "sel_pattern", "layer3.*")
        wait_text(driver, "Showing 5 of 20 convolutions ('layer3.*')")
        click_key(driver, "sel_match")
        wait_text(driver, "Kernel for 5 selected layers")
        click_tab(driver, "ASK preset")
        click_key(driver, "apply_preset")
        wait_text(driver, "ASK_5a x2, dense x1, ASK_5a x2")
        wait_idle(driver)
        assert_no_exception(driver)
        assert sidebar_metric(driver, "MACs") == main_metric(driver, "MACs") == f"{want.flops / 1e6:.2f}M"
        assert sidebar_metric(driver, "Params") == f"{want.params / 1e6:.4f}M"
        assert f"{want.flops_ratio:.3f}x dense" in body_text(driver)
        screenshot(driver, SHOTS / "torchvision-resnet18-design.png", height=1900)

        open_page(driver, "Analyze")
        wait_text(driver, "Per stage, against the dense network")
        assert_no_exception(driver)
        screenshot(driver, SHOTS / "torchvision-resnet18-analyze.png", height=2100)
        for page in ("Benchmark", "Train", "Runs", "Design"):
            open_page(driver, page)
            assert_no_exception(driver)

        driver.get(driver.current_url)  # a reload: the torchvision design comes back from the address
        wait_text(driver, "Kernel for")
        wait_idle(driver)
        assert "torchvision resnet18 · cifar10" in body_text(driver)
        assert sidebar_metric(driver, "MACs") == f"{want.flops / 1e6:.2f}M"
