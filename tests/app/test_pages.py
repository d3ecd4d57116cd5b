"""Every page and every control that changes state, through Streamlit's AppTest (no browser)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from designer.networks.editing import summarize
from designer.runs import jobs

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["pages/design.py", "pages/analyze.py", "pages/benchmark.py", "pages/train.py", "pages/runs.py",
         "pages/sweeps.py"]
ASK_MY = "[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3"


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> AppTest:
    """An app that has not run yet (the workspace in a temporary folder)."""
    monkeypatch.setenv("KERNEL_STUDIO_HOME", str(tmp_path))
    return AppTest.from_file(APP, default_timeout=60)


@pytest.fixture
def at(fresh) -> AppTest:
    fresh.run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    return fresh


def metric(app: AppTest, label: str, sidebar: bool = False) -> str:
    # Note: AppTest drops the sidebar's deltas on reruns of an st.navigation app (the browser test sees them),
    # so the sidebar is checked on an app's first run.
    area = app.sidebar if sidebar else app.main
    return next(m.value for m in area.metric if m.label == label)


def design(app: AppTest):
    return app.session_state["design"]


def layer_names(app: AppTest, indices=None) -> list[str]:
    """The module paths of the current design's convolutions (the selection holds these), or of `indices`."""
    from designer.networks.build import design_layers
    names = [c.name for c in design_layers(design(app))]
    return names if indices is None else [names[i] for i in indices]


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_the_sidebar_shows_the_design_with_its_ratios_to_dense(fresh):
    from designer.designs.design import Network
    from designer.networks.build import dense_design
    from designer.networks.editing import apply_preset_to_3x3
    fresh.session_state["design"] = apply_preset_to_3x3(dense_design(Network("vgg", 16, "cifar10")), "ASK_5a")
    ok(fresh.run())
    assert metric(fresh, "MACs", sidebar=True) == metric(fresh, "MACs") == "174.27M"
    assert metric(fresh, "Params", sidebar=True) == "8.4497M"
    assert [m.delta for m in fresh.sidebar.metric] == ["0.564x dense", "0.556x dense"]
    assert "ASK_5a x13" in fresh.sidebar.caption[0].value


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(at, page):
    ok(at.switch_page(page).run())
    assert at.title[0].value == page.split("/")[1][:-3].capitalize()


def test_apply_a_preset_updates_table_metrics_and_sidebar(at):
    at.selectbox(key="preset_name").set_value("ASK_5a").run()
    at.button(key="apply_preset").click().run()
    ok(at)
    assert summarize(design(at)) == "VGG-16 on cifar10: ASK_5a x13"
    assert metric(at, "MACs") == "174.27M"
    assert "0.556x dense" in at.main.metric[1].delta
    rows = at.dataframe[0].value
    assert set(rows["choice"]) == {"ASK_5a"}


def test_draw_a_mask_then_undo_and_redo(at):
    before = metric(at, "MACs")
    at.button(key="tap_0_1").click().run()  # switch tap 1 off on every selected layer
    ok(at)
    assert design(at).layers[0].shapes[0].taps == (2, 3, 4, 5, 6, 7, 8, 9)
    assert metric(at, "MACs") == "278.66M" != before
    at.button(key="tap_0_5").click().run()
    assert design(at).layers[5].shapes[0].taps == (2, 3, 4, 6, 7, 8, 9)
    at.button(key="undo").click().run()
    assert design(at).layers[5].shapes[0].taps == (2, 3, 4, 5, 6, 7, 8, 9)
    at.button(key="undo").click().run()
    assert metric(at, "MACs") == before and at.button(key="undo").disabled
    at.button(key="redo").click().run()
    assert metric(at, "MACs") == "278.66M"


def test_shapes_and_channel_split(at):
    at.button(key="tap_0_1").click().run()
    at.button(key="add_shape").click().run()
    ok(at)
    assert [len(s.shapes) for s in design(at).layers] == [2] * 13
    assert "64 → 32 + 32" in at.markdown[-1].value or any("64 → 32 + 32" in m.value for m in at.markdown)
    at.button(key="tap_1_9").click().run()
    assert design(at).layers[0].shapes[1].taps == (2, 3, 4, 5, 6, 7, 8)
    at.button(key="remove_shape_0").click().run()
    assert design(at).layers[0].shapes == (design(at).layers[0].shapes[0],)
    assert not at.error


def test_a_shape_cannot_become_empty(at):
    at.multiselect(key="sel_layers").set_value(layer_names(at, [0])).run()
    at.selectbox(key="preset_name").set_value("ASK_2").run()
    at.button(key="apply_preset").click().run()
    for tap in (2, 5):
        at.button(key=f"tap_0_{tap}").click().run()
    ok(at)
    assert design(at).layers[0].shapes[0].taps == (5,)
    assert any("at least one active tap" in e.value for e in at.error)


def test_select_a_range_and_give_two_presets(at):
    at.slider(key="sel_range").set_value((1, 10)).run()
    assert at.multiselect(key="sel_layers").value == layer_names(at, range(10))
    at.selectbox(key="preset_name").set_value("ASK_5a").run()
    at.button(key="apply_preset").click().run()
    at.button(key="sel_invert").click().run()
    assert at.multiselect(key="sel_layers").value == layer_names(at, [10, 11, 12])
    assert at.slider(key="sel_range").value == (11, 13)  # the range follows Invert
    at.selectbox(key="preset_name").set_value("ASK_2").run()
    at.button(key="apply_preset").click().run()
    ok(at)
    assert summarize(design(at)) == "VGG-16 on cifar10: ASK_5a x10, ASK_2 x3"
    at.button(key="sel_none").click().run()
    assert "Select one or more layers" in at.info[0].value
    at.button(key="sel_all").click().run()
    at.button(key="make_dense").click().run()
    assert metric(at, "MACs") == "313.46M"


def test_import_a_bad_cfglist_shows_the_message_and_keeps_the_design(at):
    at.text_area(key="import_text").input("[[[2,4,5,6,8]]]*12").run()
    at.button(key="import_paste").click().run()
    ok(at)
    assert len(at.error) == 1
    assert at.error[0].value.startswith("pasted text: the cfglist has 12 entries but vgg-16 has 13 3x3 convolutions")
    assert summarize(design(at)) == "VGG-16 on cifar10: dense x13"
    at.text_area(key="import_text").input(ASK_MY).run()
    at.button(key="import_paste").click().run()
    ok(at)
    assert not at.error
    assert summarize(design(at)) == "VGG-16 on cifar10: ASK_5a x10, ASK_2 x3"
    assert at.code[-1].value == ASK_MY.replace(" ", "") or "[[2, 4, 5, 6, 8]]" in at.code[-1].value


def test_upload_a_design_json_and_a_bad_file(at, tmp_path):
    at.file_uploader(key="import_file").set_value(("bad.json", b'{"layers": [{"kind": "ask", "shapes": [[0]]}]}',
                                                   "application/json")).run()
    at.button(key="import_upload").click().run()
    ok(at)
    assert "tap 0 is out of range 1..9" in at.error[0].value
    from designer.designs.design import Network
    from designer.networks.build import dense_design
    from designer.networks.editing import apply_preset_to_3x3
    good = apply_preset_to_3x3(dense_design(Network("resnet", 20, "fashion-mnist")), "ASK_3b")
    at.file_uploader(key="import_file").set_value(("good.json", good.dumps().encode(), "application/json")).run()
    at.button(key="import_upload").click().run()
    ok(at)
    assert design(at) == good and not at.error
    assert at.selectbox(key="net_arch").value == "resnet" and at.selectbox(key="net_dataset").value == "fashion-mnist"


def test_change_the_network(at):
    at.selectbox(key="net_arch").set_value("resnet").run()
    ok(at)
    assert design(at).network.depth == 20 and len(design(at).layers) == 19
    at.selectbox(key="net_depth").set_value(32).run()
    assert len(design(at).layers) == 31 and at.multiselect(key="sel_layers").value == layer_names(at)
    at.button(key="undo").click().run()
    assert len(design(at).layers) == 19 and at.selectbox(key="net_depth").value == 20


def test_export_downloads(at):
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Design JSON", "ASK cfglist JSON"]


def test_analyze_convention_switch_and_paper_figures(at):
    at.selectbox(key="preset_name").set_value("ASK_5a").run()
    at.button(key="apply_preset").click().run()
    at.switch_page("pages/analyze.py").run()
    ok(at)
    assert metric(at, "MACs") == "174.27M"  # the macs convention labels its count MACs
    at.segmented_control(key="analyze_convention").set_value("ask").run()
    ok(at)
    assert metric(at, "FLOPs") == "175.22M" and metric(at, "Params") == "8.4497M"
    assert at.session_state["convention"] == "ask"  # shared by every page and the sidebar
    paper = at.dataframe[0].value
    assert set(paper["paper FLOPs (M)"]) == {175.0, 175.22}
    at.segmented_control(key="analyze_metric").set_value("params").run()
    ok(at)
    at.switch_page("pages/design.py").run()
    assert metric(at, "FLOPs") == "175.22M"


def test_hetconv_1xn_and_low_rank_on_the_selection(at):
    at.slider(key="sel_range").set_value((2, 13)).run()
    assert at.select_slider(key="het_part").options == ["2", "4", "8", "16", "32", "64"]
    at.select_slider(key="het_part").set_value(4).run()
    at.button(key="apply_hetconv").click().run()
    ok(at)
    assert {c.kind for c in design(at).layers[1:]} == {"hetconv"} and design(at).layers[1].part == 4
    at.selectbox(key="block_n").set_value(16).run()
    at.slider(key="prune_rate").set_value(0.5).run()
    at.button(key="apply_1xn").click().run()
    ok(at)
    assert design(at).layers[5].kind == "blocksparse" and design(at).layers[5].block_n == 16
    at.number_input(key="lowrank_rank").set_value(32).run()
    at.button(key="apply_rank").click().run()
    ok(at)
    assert design(at).layers[12].rank == 32
    at.slider(key="sel_range").set_value((1, 13)).run()  # conv 1 has 3 input channels: HetConv leaves it out
    assert any("HetConv keeps the first convolution plain" in c.value for c in at.caption)
    assert at.button(key="apply_hetconv").label == "Apply HetConv P=4 to 12 layers"
    at.number_input(key="lowrank_rank").set_value(9).run()  # the most conv 1 (3 -> 64) takes


def test_padding_free_switch(at):
    at.selectbox(key="net_arch").set_value("mobilenetv3").run()
    at.selectbox(key="net_dataset").set_value("cifar100").run()
    ok(at)
    at.switch_page("pages/analyze.py").run()
    at.segmented_control(key="analyze_convention").set_value("bsconv").run()
    assert metric(at, "FLOPs") == "68.54M"
    at.switch_page("pages/design.py").run()
    at.toggle(key="padfree").set_value(True).run()
    ok(at)
    assert design(at).padfree and metric(at, "FLOPs") == "54.61M"
    at.switch_page("pages/analyze.py").run()
    assert set(at.dataframe[0].value["paper FLOPs (M)"]) == {54.61}


def test_benchmark_runs_with_a_progress_bar_and_is_saved(at):
    at.selectbox(key="net_arch").set_value("resnet").run()
    at.button(key="apply_preset").click().run()
    at.switch_page("pages/benchmark.py").run()
    ok(at)
    assert "None yet." in [c.value for c in at.caption]
    at.multiselect(key="bench_backends").set_value(["reference"]).run()
    at.number_input(key="bench_repeats").set_value(1).run()
    at.button(key="run_bench").click().run()
    ok(at)
    labels = [m.label for m in at.main.metric]
    assert labels[1] == "reference" and labels[0] in [f"dense ({layout}, {form})" for layout in ("nchw", "channels_last")
                                                      for form in ("folded", "as trained")]
    assert "x vs dense" in at.main.metric[1].delta
    saved = at.dataframe[0].value
    assert list(saved["backend"])[1] == "reference" and saved["batch"].iloc[0] == 1


def test_benchmark_times_the_deployed_form_unless_told_to_time_both_networks_as_trained(at):
    at.selectbox(key="net_arch").set_value("resnet").run()
    at.button(key="apply_preset").click().run()
    at.switch_page("pages/benchmark.py").run()
    at.multiselect(key="bench_backends").set_value(["sconv"]).run()
    at.number_input(key="bench_repeats").set_value(1).run()
    assert at.checkbox(key="bench_fold").value
    at.button(key="run_bench").click().run()
    ok(at)
    assert "deployed form" in at.subheader[0].value and at.main.metric[1].label == "sconv"
    at.checkbox(key="bench_fold").uncheck().run()
    at.button(key="run_bench").click().run()
    ok(at)
    assert "deployed form" not in at.subheader[0].value and "as trained" in at.main.metric[0].label
    at.selectbox(key="bench_mode").set_value("train").run()
    assert at.checkbox(key="bench_fold").disabled  # a training step has no folded form


def _wait_finished(run_id: int, timeout: float = 150) -> dict:
    """The run once it has ended, and its training process gone (reaped: no test sees another's child)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = next(r for r in jobs.list_runs() if r["id"] == run_id)
        if run["status"] not in ("queued", "running"):
            for proc in list(jobs._children.values()):
                proc.wait(timeout=60)
            jobs.tick()
            return run
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not finish")


def test_launch_a_tiny_training_run_and_see_it_in_runs(at):
    at.selectbox(key="net_arch").set_value("resnet").run()
    at.selectbox(key="preset_name").set_value("ASK_5a").run()
    at.button(key="apply_preset").click().run()
    at.switch_page("pages/train.py").run()
    ok(at)
    assert "No runs yet" in at.info[0].value
    at.selectbox(key="train_data").set_value("synthetic")
    at.number_input(key="train_max_steps").set_value(3)
    at.selectbox(key="train_batch").set_value(32)
    at.text_input(key="train_name").input("tiny")
    at.get("form_submit_button")[0].click().run()
    ok(at)
    assert at.success[0].value.startswith("Run 1 queued")
    run = _wait_finished(1)
    assert run["status"] == "finished", run.get("error")
    at.run()
    ok(at)
    assert at.main.metric[0].value == "finished" and at.main.metric[2].value == "3"
    at.switch_page("pages/runs.py").run()
    ok(at)
    table = at.dataframe[0].value
    assert list(table["name"]) == ["tiny"] and list(table["status"]) == ["finished"]
    assert table["design"].iloc[0] == "ResNet-20 on cifar10: ASK_5a x19"
    assert table["best acc (%)"].iloc[0] is not None
    assert [b.label for b in at.get("download_button")] == ["design JSON", "cfglist JSON"]
    at.button(key="prep_weights").click().run()
    ok(at)
    weights = next(b for b in at.get("download_button") if b.label.startswith("run1-weights.pt"))
    assert weights
    at.button(key="runs_open").click().run()
    assert summarize(design(at)) == "ResNet-20 on cifar10: ASK_5a x19"
    at.button(key="runs_delete").click().run()  # one click only asks
    ok(at)
    assert jobs.list_runs() and "Delete run 1" in at.warning[0].value
    at.button(key="runs_delete_cancel").click().run()
    assert jobs.list_runs() and not at.warning
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    ok(at)
    assert "No runs yet" in at.info[0].value and not jobs.list_runs()


def test_the_default_train_form_offers_the_data_set_that_is_here_and_refuses_a_missing_one(at, tmp_path):
    at.switch_page("pages/train.py").run()  # the design is VGG-16 on cifar10, which this workspace lacks
    ok(at)
    assert at.selectbox(key="train_data").value == "fashion-mnist"  # cifar10 is not here: what is
    assert "trains it on fashion-mnist" in " ".join(c.value for c in at.caption)
    at.selectbox(key="train_data").set_value("cifar10").run()
    assert "cifar10 is not in" in at.warning[0].value
    at.get("form_submit_button")[0].click().run()
    ok(at)
    assert at.error[0].value.startswith("data: cifar10 is not in") and not jobs.list_runs()


def test_the_live_panel_follows_each_new_launch(at):
    at.selectbox(key="net_arch").set_value("resnet").run()
    at.switch_page("pages/train.py").run()
    for run_id in (1, 2):
        at.selectbox(key="train_data").set_value("synthetic")
        at.number_input(key="train_max_steps").set_value(2)
        at.get("form_submit_button")[0].click().run()
        ok(at)
        assert at.selectbox(key="train_watch").value == run_id
    for run_id in (1, 2):
        _wait_finished(run_id)


def test_train_form_values_survive_a_change_of_page(at):
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_data").set_value("cifar10").run()  # not in this workspace: the launch is refused
    at.number_input(key="train_epochs").set_value(3)
    assert at.selectbox(key="train_backend").value == "auto"  # the trainer's default: each layer its fastest
    at.selectbox(key="train_backend").set_value("decomposed")
    at.get("form_submit_button")[0].click().run()
    assert at.error and not jobs.list_runs()
    at.switch_page("pages/design.py").run()
    at.switch_page("pages/train.py").run()
    ok(at)
    assert at.number_input(key="train_epochs").value == 3
    assert at.selectbox(key="train_backend").value == "decomposed"


def test_user_text_is_shown_as_text_not_markdown(at):
    from designer.designs.design import Network
    from designer.networks.build import dense_design
    from designer.runs.train import HParams
    from pages.state import plain
    evil = "[x](http://127.0.0.1:9/a) ![i](http://127.0.0.1:9/i.png) <b>bold</b> :red[red]"
    assert plain(evil) == (r"\[x\]\(http://127.0.0.1:9/a\) \!\[i\]\(http://127.0.0.1:9/i.png\) "
                           r"\<b\>bold\</b\> :red\[red\]")
    run_id = jobs.start_run(dense_design(Network("resnet", 8)), HParams(max_steps=1, batch_size=32, data="synthetic"),
                            name=evil)
    _wait_finished(run_id)
    at.switch_page("pages/runs.py").run()
    at.button(key="runs_delete").click().run()
    ok(at)
    assert plain(evil) in at.warning[0].value


def test_the_design_travels_in_the_address_and_a_bad_address_falls_back(fresh):
    from designer.designs.design import Network
    from designer.networks.build import dense_design
    from designer.networks.editing import apply_preset_to_3x3
    from pages.state import decode_design, encode_design
    wanted = apply_preset_to_3x3(dense_design(Network("resnet", 32, "cifar100")), "ASK_3b")
    assert decode_design(encode_design(wanted)) == wanted
    fresh.query_params["design"] = encode_design(wanted)
    ok(fresh.run())
    assert design(fresh) == wanted
    bad = AppTest.from_file(APP, default_timeout=60)
    bad.query_params["design"] = "not-a-design"
    ok(bad.run())
    assert summarize(design(bad)) == "VGG-16 on cifar10: dense x13"
    assert "not readable" in bad.sidebar.warning[0].value


def test_a_preset_on_a_mixed_selection_goes_to_the_convs_that_take_it(at):
    at.selectbox(key="net_arch").set_value("resnet_proj").run()  # 19 full 3x3 convs and 3 1x1 ones
    at.button(key="apply_preset").click().run()
    ok(at)
    assert not at.error and summarize(design(at)).count("ASK_5a") == 3
    assert {c.kind for c in design(at).layers} == {"ask", "dense"}
    assert sum(c.kind == "ask" for c in design(at).layers) == 19
    assert any("3 selected layers cannot take 3x3 shapes" in c.value for c in at.caption)
