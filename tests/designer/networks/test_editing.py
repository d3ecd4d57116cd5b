"""Editing a design (designer.networks.editing), the app's views of it (designer.analysis.tables), the paper figures."""
import json

import pytest

from designer.analysis.counting import count_design
from designer.analysis.paper_figures import PAPER_FIGURES, figures_for
from designer.analysis.tables import layer_comparison, layer_table, tap_usage, totals
from designer.designs.design import Network
from designer.designs.kinds import DENSE, LayerChoice
from designer.designs.shapes import KernelShape
from designer.errors import DesignError
from designer.networks import editing
from designer.networks.build import dense_design
from designer.networks.cfglist import design_to_cfglist

VGG16 = Network("vgg", 16, "cifar10")
ASK_MY = "[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3"


@pytest.fixture(scope="module")
def dense():
    return dense_design(VGG16)


def test_set_choice_changes_only_the_selected_layers(dense):
    d = editing.apply_preset(dense, range(10), "ASK_5a")
    d = editing.apply_preset(d, [10, 11, 12], "ASK_2")
    assert [editing.preset_name(c) for c in d.layers] == ["ASK_5a"] * 10 + ["ASK_2"] * 3
    assert dense.layers == (DENSE,) * 13  # designs are values: the old one is untouched
    assert design_to_cfglist(d) == json.loads(json.dumps(eval(ASK_MY)))  # noqa: S307 (test literal)


def test_set_choice_refuses_bad_edits(dense):
    with pytest.raises(DesignError, match="select at least one layer"):
        editing.set_choice(dense, [], DENSE)
    with pytest.raises(DesignError, match="layer 14 does not exist"):
        editing.set_choice(dense, [13], DENSE)
    three = LayerChoice.ask([KernelShape((5,))] * 3)
    with pytest.raises(DesignError, match=r"layer 1 \(feature.0\).*64 output channels cannot be split"):
        editing.set_choice(dense, [0], three)


def test_toggle_and_resize_shapes():
    plus = KernelShape((2, 4, 5, 6, 8))
    assert editing.toggle_tap(plus, 1).taps == (1, 2, 4, 5, 6, 8)
    assert editing.toggle_tap(plus, 5).taps == (2, 4, 6, 8)
    with pytest.raises(DesignError, match="at least one active tap"):
        editing.toggle_tap(KernelShape((5,)), 5)
    with pytest.raises(DesignError, match="out of range"):
        editing.toggle_tap(plus, 10)
    big = editing.resize_shape(plus, 5)
    assert big.k == 5 and big.picture() == ".....\n..#..\n.###.\n..#..\n....."
    assert editing.resize_shape(big, 3) == plus
    corner = editing.resize_shape(KernelShape((1,), 5), 3)
    assert corner.taps == (5,)  # nothing left inside: the centre


def test_channel_split():
    assert editing.channel_split(64, 4) == [16] * 4
    assert editing.channel_split(64, 3) is None


def test_names_and_summary(dense):
    d = editing.apply_preset(dense, range(10), "ASK_5a")
    d = editing.apply_preset(d, [10, 11, 12], "ASK_2")
    assert editing.summarize(d) == "VGG-16 on cifar10: ASK_5a x10, ASK_2 x3"
    assert editing.uniform_preset(d) is None
    assert editing.uniform_preset(dense) == "dense"
    assert editing.uniform_preset(editing.apply_preset_to_3x3(dense, "ASK_3b")) == "ASK_3b"
    custom = LayerChoice.ask([KernelShape((1, 5, 9)), KernelShape((3, 5, 7))])
    assert editing.describe_choice(custom) == "ASK 3x3, 2 shapes (3,3 taps)"


def test_change_network_starts_dense(dense):
    d = editing.apply_preset_to_3x3(dense, "ASK_5a")
    assert editing.change_network(d, VGG16) is d
    r20 = editing.change_network(d, Network("resnet", 20, "cifar10"))
    assert len(r20.layers) == 19 and set(r20.layers) == {DENSE}
    assert editing.depth_choices("vgg") == [11, 13, 16, 19]
    assert 20 in editing.depth_choices("resnet_any")


def test_import_text_cfglist_and_design_json(dense):
    d = editing.import_text(ASK_MY, VGG16)
    assert editing.summarize(d) == "VGG-16 on cifar10: ASK_5a x10, ASK_2 x3"
    again = editing.import_text(d.dumps().encode(), Network("resnet", 20, "cifar10"))
    assert again == d  # a design JSON carries its own network


@pytest.mark.parametrize("text, message", [
    ("", "nothing to import"),
    ("[[[2,4,5,6,8]]]*12", "the cfglist has 12 entries but vgg-16 has 13 3x3 convolutions"),
    ("[[[2,4,5,6,10]]]*13", "tap 10 is out of range"),
    ("[[[2,4,4]]]*13", "duplicate taps"),
    ("[[[5]], [[]]] + [[[5]]]*11", "entry 2 .*a shape is empty"),
    ("__import__('os').system('true')", "unsupported expression"),
    ('{"network": {"arch": "vgg", "depth": 16}, "layers": []}', "the design has 0 layers"),
    ('{"format": "kernel-studio-design", "layers": [', "malformed JSON"),
    ('{"foo": 1}', "must be a Kernel Studio design"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_import_text_bad_input_gives_one_clear_message(text, message):
    with pytest.raises(DesignError, match=message):
        editing.import_text(text, VGG16)


def test_history_undo_redo(dense):
    h = editing.History(limit=3)
    d1 = editing.apply_preset(dense, [0], "ASK_5a")
    d2 = editing.apply_preset(d1, [1], "ASK_5a")
    h.record(dense, "one")
    h.record(d1, "two")
    assert h.last_label() == "two"
    assert h.undo(d2) == d1 and h.undo(d1) == dense and not h.can_undo
    assert h.redo(dense) == d1 and h.can_redo
    h.record(d1, "three")
    assert not h.can_redo  # a new edit drops the redo list
    for i in range(5):
        h.record(dense, str(i))
    assert len(h.past) == 3
    with pytest.raises(DesignError, match="nothing to redo"):
        h.redo(dense)


def test_layer_table_and_totals(dense):
    d = editing.apply_preset_to_3x3(dense, "ASK_5a")
    rows = layer_table(d, "macs")
    assert len(rows) == 13 and rows[0]["layer"] == "feature.0" and rows[0]["Cin"] == 3
    assert rows[1]["FLOPs"] == 32 * 32 * 64 * 64 * 5 and rows[1]["choice"] == "ASK_5a"
    assert rows[1]["vs dense"] == pytest.approx(5 / 9)
    t = totals(d, "macs")
    count = count_design(d, "macs")
    assert (t.params, t.flops) == (count.params, count.flops)
    assert sum(r["FLOPs"] for r in rows) + 512 * 512 + 512 * 10 == t.flops
    comparison = layer_comparison(d, "macs")
    assert [r["layer"] for r in comparison][-2:] == ["classifier.0", "classifier.3"]
    assert comparison[1]["dense FLOPs"] == 32 * 32 * 64 * 64 * 9


def test_tap_usage(dense):
    d = editing.apply_preset(dense, [0], "ASK_2")
    usage = tap_usage(d)
    assert usage[0]["usage"] == [[0, 0.25, 0], [0.25, 1.0, 0.25], [0, 0.25, 0]]
    assert usage[1]["usage"] == [[1.0] * 3] * 3 and len(usage[0]["shapes"]) == 4


@pytest.mark.parametrize("preset", ["dense", "ASK_5a"])
def test_paper_figures_beside_ours(dense, preset):
    d = editing.apply_preset_to_3x3(dense, preset)
    figures = figures_for(d, "ask")
    assert {f.source for f in figures} == {"ASK README (lgzz/ASKs), CIFAR-10", "ASK paper's compute_flops.py, exact"}
    ours = totals(d, "ask")
    for f in figures:
        tolerance = 1e-3 if "exact" in f.source else 0.02  # the README rounds to 3 digits
        assert ours.params / 1e6 == pytest.approx(f.params_m, rel=tolerance)
        assert ours.flops / 1e6 == pytest.approx(f.flops_m, rel=tolerance)


def test_every_readme_figure_matches_our_ask_count():
    for f in PAPER_FIGURES:
        d = editing.apply_preset_to_3x3(dense_design(Network(f.arch, f.depth, f.dataset), f.padfree), f.kernel)
        ours = totals(d, f.convention)
        assert ours.flops / 1e6 == pytest.approx(f.flops_m, rel=0.02), f
        assert ours.params / 1e6 == pytest.approx(f.params_m, abs=0.006, rel=0.02), f


def test_no_paper_figure_for_a_mixed_design(dense):
    assert figures_for(editing.import_text(ASK_MY, VGG16)) == []


def test_the_rearrange_switch_sorts_only_the_layers_lmbxmu_1xn_sorts_on_a_mobilenet():
    from designer.networks.variants import rearranged_layers
    d = dense_design(Network("mobilenetv2", 0, "cifar10"))
    convs = editing.design_layers(d)
    pointwise = [c.index for c in convs if c.spec.k == 1 and c.spec.groups == 1
                 and c.spec.out_channels % 8 == 0 and c.role != "classifier"]
    pruned = editing.apply_blocksparse(d, pointwise, 8, 0.5, rearrange=True)
    sorted_ = {i for i, choice in enumerate(pruned.layers) if choice.kind == "blocksparse" and choice.rearrange}
    assert sorted_ == set(pointwise) & set(rearranged_layers("mobilenetv2", convs))
    assert 0 < len(sorted_) < len(pointwise)  # the projections keep the plain mask
    assert not any(c.rearrange for c in editing.apply_blocksparse(d, pointwise, 8, 0.5, False).layers)
