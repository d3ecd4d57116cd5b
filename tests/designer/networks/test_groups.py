"""Stages and blocks of a network's convolutions, 'all eligible' per kind, the server's models (editing), and
the per-stage tables the Analyze page draws (analysis.tables)."""
from __future__ import annotations

import pytest

from designer.analysis.tables import kernel_groups, layer_rows, stage_comparison, totals
from designer.designs.design import Network
from designer.networks import editing
from designer.networks.build import dense_design, design_layers


def _dense(arch: str, depth: int = 0):
    return dense_design(Network(arch, depth, "cifar10"))


@pytest.mark.parametrize("arch, stages", [
    ("torchvision:resnet50", ["conv1", "layer1", "layer2", "layer3", "layer4"]),
    ("torchvision:densenet121", ["features.conv0", "features.denseblock1", "features.transition1",
                                 "features.denseblock2", "features.transition2", "features.denseblock3",
                                 "features.transition3", "features.denseblock4"]),
    ("resnet", ["conv1", "layer1", "layer2", "layer3"]),
])
def test_stages_follow_the_module_paths(arch, stages):
    d = _dense(arch)
    groups = editing.layer_groups(d)
    assert [g.name for g in groups] == stages
    assert [i for g in groups for i in g.indices] == list(range(len(d.layers)))  # every conv once, in order


def test_blocks_are_the_next_path_component_and_patterns_select_the_stage():
    d = _dense("torchvision:resnet50")
    layer3 = next(g for g in editing.layer_groups(d) if g.name == "layer3")
    assert [b.name for b in layer3.blocks] == [f"layer3.{i}" for i in range(6)]
    assert layer3.pattern == "layer3.*" and editing.layers_matching(d, layer3.pattern) == list(layer3.indices)
    assert layer3.label == "layer3 · 19 convs · 14×14"
    assert editing.stage_of(d)[layer3.indices[0]] == "layer3"
    assert editing.block_of(d)[layer3.indices[-1]] == "layer3.5"


@pytest.mark.parametrize("arch", ["torchvision:mobilenet_v2", "vgg"])
def test_too_many_path_groups_merge_by_resolution(arch):
    d = _dense(arch, 16 if arch == "vgg" else 0)
    groups = editing.layer_groups(d)
    assert 2 <= len(groups) <= editing.MAX_STAGES
    assert len({g.size for g in groups}) == len(groups)  # one stage per resolution
    assert all(len(g.blocks) >= 2 or len(g.indices) == 1 for g in groups)


def test_a_dominant_group_is_split_one_level_further():
    groups = editing.layer_groups(_dense("torchvision:regnet_y_400mf"))
    assert [g.name for g in groups][:3] == ["stem", "trunk_output.block1", "trunk_output.block2"]


def test_all_eligible_per_kind():
    d = _dense("torchvision:resnet18")
    convs = design_layers(d)
    ask = editing.eligible_layers(d, "ask")
    assert ask and all(convs[i].spec.k == 3 and convs[i].spec.groups == 1 for i in ask)
    assert 0 not in editing.eligible_layers(d, "hetconv")  # the stem stays plain (and is 7x7)
    layer3 = editing.layers_matching(d, "layer3.*")
    assert editing.eligible_layers(d, "ask", layer3) == [i for i in layer3 if convs[i].spec.k == 3]
    assert set(editing.eligible_layers(d, "blocksparse")) <= set(editing.eligible_layers(d, "lowrank"))
    with pytest.raises(editing.DesignError, match="unknown kind"):
        editing.eligible_layers(d, "nope")


def test_the_server_setting_lists_entry_points_and_leaves_out_the_rest():
    names, notes = editing.server_models(" a.b:c, torchvision:resnet18,,os:system ,bad name, a.b:c")
    assert names == ["a.b:c", "os:system"]
    assert len(notes) == 2 and "'torchvision:resnet18' is not package.module:callable" in notes[0]
    assert editing.server_models("") == ([], [])


def test_stage_totals_add_up_and_drill_down_rows():
    d = _dense("torchvision:densenet121")
    d = editing.apply_preset(d, editing.eligible_layers(d, "ask"), "ASK_5a")
    stages = stage_comparison(d)
    t = totals(d)
    assert sum(s["FLOPs"] for s in stages) == t.flops and sum(s["dense FLOPs"] for s in stages) == t.dense_flops
    block3 = next(s for s in stages if s["stage"] == "features.denseblock3")
    assert block3["convs"] == 48 and block3["changed"] == 24 and block3["vs dense"] < 1
    assert stages[-1]["stage"] == "classifier" and stages[-1]["convs"] == 0
    group = next(g for g in editing.layer_groups(d) if g.name == "features.denseblock3")
    rows = layer_rows(d, indices=group.indices)
    assert [r["#"] for r in rows] == [i + 1 for i in group.indices]
    top = layer_rows(d, top=5)
    assert len(top) == 5 and top[0]["layer"] == "features.conv0"
    assert [r["dense FLOPs"] for r in top] == sorted((r["dense FLOPs"] for r in top), reverse=True)
    assert len(kernel_groups(d, group.indices)) <= len(kernel_groups(d))
