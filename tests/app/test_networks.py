"""Every network source through the app (AppTest, no browser): torchvision models, the server's own models
(KERNEL_STUDIO_MODELS) and no other, and networks of 50-150 convolutions grouped by stage and block."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from designer.analysis.tables import totals
from designer.designs.design import Design, Network
from designer.networks import editing
from designer.networks.build import dense_design, design_layers

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["pages/design.py", "pages/analyze.py", "pages/benchmark.py", "pages/train.py", "pages/runs.py"]
TINY = "tests.app.models_for_tests:tiny_cnn"
TRAP = "tests.app.import_trap"


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("KERNEL_STUDIO_HOME", str(tmp_path))
    monkeypatch.delenv("KERNEL_STUDIO_MODELS", raising=False)
    return AppTest.from_file(APP, default_timeout=120)


@pytest.fixture
def at(fresh) -> AppTest:
    return ok(fresh.run())


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


def design(app: AppTest) -> Design:
    return app.session_state["design"]


def metric(app: AppTest, label: str, sidebar: bool = False) -> str:
    return next(m.value for m in (app.sidebar if sidebar else app.main).metric if m.label == label)


def captions(app: AppTest) -> str:
    return "\n".join(c.value for c in app.caption)


def names(app: AppTest, indices=None) -> list[str]:
    convs = design_layers(design(app))
    return [c.name for c in convs] if indices is None else [convs[i].name for i in indices]


def test_a_torchvision_network_with_ask_5a_on_layer3_and_the_counts_follow(at):
    at.segmented_control(key="net_source").set_value("torchvision").run()
    ok(at)
    assert design(at).network.arch == "torchvision:resnet18" and len(design(at).layers) == 20
    assert design(at).network.input_shape == (3, 224, 224) and design(at).network.num_classes == 10
    assert at.number_input(key="net_input").value == 224 and at.number_input(key="net_classes").disabled
    dense_macs = metric(at, "MACs")
    at.text_input(key="sel_pattern").input("layer3.*").run()
    assert "Showing 5 of 20 convolutions" in captions(at)
    assert len(at.dataframe[0].value) == 5
    at.button(key="sel_match").click().run()
    assert at.multiselect(key="sel_layers").value == names(at, range(10, 15))
    at.selectbox(key="preset_name").set_value("ASK_5a").run()
    at.button(key="apply_preset").click().run()
    ok(at)
    assert [i for i, c in enumerate(design(at).layers) if c.kind == "ask"] == [10, 11, 13, 14]
    assert "1 selected layer cannot take 3x3 shapes" in captions(at)  # layer3.0.downsample.0 is a 1x1
    t = totals(design(at))
    assert metric(at, "MACs") == f"{t.flops / 1e6:.2f}M" != dense_macs
    assert metric(at, "Convolutions") == "20"

    at.selectbox(key="net_tv_model").set_value("resnet34").run()  # layer3.0 and layer3.1 are there, same shapes
    ok(at)
    assert design(at).network.arch == "torchvision:resnet34"
    assert sum(c.kind == "ask" for c in design(at).layers) == 4
    assert any("4 layer choices carried over" in i.value for i in at.info)
    at.number_input(key="net_input").set_value(160).run()
    ok(at)
    assert design(at).network.input_shape == (3, 160, 160) and sum(c.kind == "ask" for c in design(at).layers) == 4
    at.button(key="undo").click().run()
    assert design(at).network.input_shape == (3, 224, 224) and at.number_input(key="net_input").value == 224

    shown = AppTest.from_file(APP, default_timeout=120)  # the sidebar, on a first run (see test_pages.metric)
    shown.session_state["design"] = design(at)
    ok(shown.run())
    assert "torchvision resnet34" in shown.sidebar.markdown[0].value and "3×224×224" in shown.sidebar.markdown[0].value
    assert metric(shown, "MACs", sidebar=True) == metric(shown, "MACs") == f"{totals(design(at)).flops / 1e6:.2f}M"
    assert "ASK_5a x" in shown.sidebar.caption[0].value


def test_a_refused_network_change_keeps_the_design_and_says_why(at):
    at.segmented_control(key="net_source").set_value("torchvision").run()
    at.selectbox(key="net_tv_model").set_value("inception_v3").run()
    ok(at)
    assert design(at).network.input_shape == (3, 299, 299)  # the source's default input
    at.number_input(key="net_input").set_value(32).run()
    ok(at)
    assert design(at).network.input_shape == (3, 299, 299)
    assert "does not run on a 3x32x32 input" in at.error[0].value


def test_all_eligible_and_the_view_buttons(fresh):
    fresh.session_state["design"] = dense_design(Network("torchvision:resnet18", 0, "cifar10"))
    at = ok(fresh.run())
    assert at.button(key="sel_eligible").label == "Select 16 eligible"  # every 3x3 conv (the 7x7 stem is not)
    at.button(key="sel_eligible").click().run()
    assert at.multiselect(key="sel_layers").value == names(at, editing.eligible_layers(design(at), "ask"))
    at.selectbox(key="view_stage").set_value("layer2").run()
    assert at.selectbox(key="view_block").options == ["all blocks", "layer2.0 · 3 convs", "layer2.1 · 2 convs"]
    at.selectbox(key="sel_kind").set_value("hetconv").run()
    assert at.button(key="sel_eligible").label == "Select 4 eligible"
    at.button(key="sel_eligible").click().run()
    assert at.multiselect(key="sel_layers").value == names(at, [5, 6, 8, 9])
    at.selectbox(key="view_block").set_value("layer2.0").run()
    assert len(at.dataframe[0].value) == 3 and "Showing 3 of 20 convolutions (layer2 / layer2.0)" in captions(at)
    at.button(key="sel_remove").click().run()
    assert at.multiselect(key="sel_layers").value == names(at, [8, 9])
    at.button(key="sel_add").click().run()
    assert at.multiselect(key="sel_layers").value == names(at, [5, 6, 7, 8, 9])
    at.text_input(key="sel_pattern").input("*nothing*").run()
    at.button(key="sel_match").click().run()
    ok(at)
    assert "no convolution matches" in at.error[0].value
    assert at.multiselect(key="sel_layers").value == names(at, [5, 6, 7, 8, 9])
    at.selectbox(key="view_stage").set_value("").run()
    at.text_input(key="sel_pattern").input("").run()
    at.selectbox(key="sel_kind").set_value("blocksparse").run()
    at.button(key="sel_eligible").click().run()
    at.button(key="apply_1xn").click().run()
    ok(at)
    assert {c.kind for c in design(at).layers[1:]} == {"blocksparse"} and design(at).layers[0].kind == "dense"


def test_the_servers_own_models_only_when_it_names_them(fresh, monkeypatch):
    at = ok(fresh.run())
    at.segmented_control(key="net_source").set_value("entry_point").run()
    ok(at)
    assert "offers no models of its own" in at.info[0].value and "KERNEL_STUDIO_MODELS" in at.info[0].value
    assert design(at).network.arch == "vgg"

    monkeypatch.setenv("KERNEL_STUDIO_MODELS", f"{TINY}, not a model")
    at = ok(AppTest.from_file(APP, default_timeout=120).run())
    at.segmented_control(key="net_source").set_value("entry_point").run()
    ok(at)
    assert design(at).network.arch == TINY and len(design(at).layers) == 4
    assert design(at).network.input_shape == (3, 224, 224) and design(at).network.num_classes == 10
    assert at.selectbox(key="net_entry").options == [TINY]
    at.text_input(key="net_kwargs").input('{"width": 16}').run()
    ok(at)
    assert design(at).network.kwargs_dict == {"width": 16}
    assert design_layers(design(at))[0].spec.out_channels == 16
    at.text_input(key="net_kwargs").input("[16]").run()
    ok(at)
    assert "must be a JSON object" in at.error[0].value and design(at).network.kwargs_dict == {"width": 16}
    at.button(key="apply_preset").click().run()  # ASK_5a on the three 3x3 convs
    ok(at)
    assert [c.kind for c in design(at).layers] == ["ask", "ask", "ask", "dense"]
    for page in PAGES:
        ok(at.switch_page(page).run())


def test_a_link_or_an_upload_naming_another_model_is_refused_and_never_imported(fresh, monkeypatch):
    from pages.state import encode_design

    monkeypatch.setenv("KERNEL_STUDIO_MODELS", TINY)
    assert TRAP not in sys.modules
    foreign = Design(Network(f"{TRAP}:build", 0, "cifar10"), ())
    fresh.query_params["design"] = encode_design(foreign)
    ok(fresh.run())
    assert "not one of this server's models" in fresh.sidebar.warning[0].value
    assert design(fresh).network.arch == "vgg"
    fresh.file_uploader(key="import_file").set_value(("foreign.json", foreign.dumps().encode(),
                                                       "application/json")).run()
    fresh.button(key="import_upload").click().run()
    ok(fresh)
    assert "not one of this server's models" in fresh.error[0].value and design(fresh).network.arch == "vgg"
    assert TRAP not in sys.modules

    named = AppTest.from_file(APP, default_timeout=120)  # the model the server names opens from a link
    mine = dense_design(Network(TINY, 0, "cifar10"))
    named.query_params["design"] = encode_design(mine)
    ok(named.run())
    assert design(named) == mine and not named.sidebar.warning


@pytest.mark.parametrize("arch", ["torchvision:densenet121", "torchvision:efficientnet_b0"])
def test_a_network_of_many_convolutions_renders_every_page_and_view(fresh, arch):
    dense = dense_design(Network(arch, 0, "cifar10"))
    fresh.session_state["design"] = editing.apply_preset(dense, editing.eligible_layers(dense, "ask"), "ASK_5a")
    at = ok(fresh.run())
    n = len(dense.layers)
    assert metric(at, "Convolutions") == str(n)
    assert at.multiselect(key="sel_layers").value == names(at)  # everything selected: the chips stay one row
    stages = at.selectbox(key="view_stage").options
    assert 5 <= len(stages) <= editing.MAX_STAGES + 1 and stages[0] == f"All stages ({n} convs)"
    biggest = max(editing.layer_groups(dense), key=lambda g: len(g.indices))
    at.selectbox(key="view_stage").set_value(biggest.name).run()
    ok(at)
    assert len(at.dataframe[0].value) == len(biggest.indices)
    if biggest.blocks:
        at.selectbox(key="view_block").set_value(biggest.blocks[1].name).run()
        ok(at)
        assert len(at.dataframe[0].value) == len(biggest.blocks[1].indices)
    at.button(key="sel_match").click().run()
    ok(at)
    at.switch_page("pages/analyze.py").run()
    ok(at)
    assert at.selectbox(key="analyze_scope").value == "top"  # a long network starts on its costliest layers
    for scope in ("all", biggest.name, "top"):
        at.selectbox(key="analyze_scope").set_value(scope).run()
        ok(at)
    at.segmented_control(key="analyze_metric").set_value("params").run()
    ok(at)
    for page in PAGES[2:]:
        ok(at.switch_page(page).run())


def test_the_train_page_asks_for_an_image_folder(at, tmp_path):
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_data").set_value("image-folder").run()
    ok(at)
    assert at.text_input(key="train_data_dir")
    assert at.warning  # no folder given yet (or this build cannot load one): said before launch
    at.text_input(key="train_data_dir").input(str(tmp_path / "nowhere")).run()
    at.get("form_submit_button")[0].click().run()
    ok(at)
    assert at.error[0].value.startswith("data: ")
    from designer.runs import jobs
    assert not jobs.list_runs()
