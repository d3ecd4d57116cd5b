"""Params and FLOPs under the three conventions, against the papers and two independent counters."""
import copy

import pytest
import thop
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from designer.analysis.counting import CONVENTIONS, count_design
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.networks.build import build_model, dense_design
from tests.ask_reference import to_reference_layout


def preset_design(arch: str, depth: int, preset: str | None, dataset: str = "cifar10"):
    base = dense_design(Network(arch, depth, dataset))
    return base if preset is None else base.with_layers([LayerChoice.preset(preset)] * len(base.layers))


@pytest.mark.parametrize("arch, depth, preset, params, flops", [
    ("vgg", 16, None, 14.988e6, 314.42e6),
    ("vgg", 16, "ASK_5a", 8.4497e6, 175.22e6),
    ("resnet", 20, None, 0.2697e6, 41.12e6),
])
def test_ask_convention_matches_the_paper(arch, depth, preset, params, flops):
    count = count_design(preset_design(arch, depth, preset), "ask")
    assert count.params == pytest.approx(params, rel=1e-3)
    assert count.flops == pytest.approx(flops, rel=1e-3)


def test_ask_readme_table_rows_for_other_presets():
    """Rows of the ASK README (3 significant figures there)."""
    rows = {("vgg", 16, "ASK_2"): (3.55e6, 70.8e6), ("resnet", 20, "ASK_4a"): (0.12e6, 18.6e6),
            ("resnet", 56, "ASK_7"): (0.66e6, 99.2e6), ("resnet", 32, None): (0.46e6, 69.8e6)}
    for (arch, depth, preset), (params, flops) in rows.items():
        count = count_design(preset_design(arch, depth, preset), "ask")
        assert count.params == pytest.approx(params, rel=0.01), (arch, depth, preset)
        assert count.flops == pytest.approx(flops, rel=0.01), (arch, depth, preset)


def test_macs_equal_flop_counter_mode_on_the_dense_network():
    design = dense_design(Network("vgg", 11))
    model = build_model(design).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 32))
    assert count_design(design, "macs").flops == counter.get_total_flops() // 2


def test_ask_macs_equal_flop_counter_mode_on_the_reference_layout():
    """The reference layout computes exactly the active taps, so its FLOPs are what we claim."""
    design = preset_design("resnet", 8, "ASK_3a")
    reference = to_reference_layout(build_model(design)).eval()
    with FlopCounterMode(display=False) as counter:
        reference(torch.randn(1, 3, 32, 32))
    assert count_design(design, "macs").flops == counter.get_total_flops() // 2


def test_macs_per_layer_equal_thop_on_the_dense_network():
    design = dense_design(Network("resnet", 20))
    model = build_model(design).eval()
    *_, layer_info = thop.profile(copy.deepcopy(model), inputs=(torch.randn(1, 3, 32, 32),), verbose=False,
                                  ret_layer_info=True)
    thop_ops = {name: int(ops) for name, ops in _flatten(layer_info)
                if isinstance(model.get_submodule(name), (nn.Conv2d, nn.Linear))}
    ours = {layer.name: layer.flops for layer in count_design(design, "macs").layers}
    assert ours == thop_ops


def _flatten(info: dict, prefix: str = ""):
    """thop's nested {name: (ops, params, children)} as (dotted name, ops) pairs."""
    for name, (ops, _params, children) in info.items():
        yield prefix + name, ops
        yield from _flatten(children, prefix + name + ".")


def test_every_convolution_is_one_conv_entry_in_forward_order():
    design = preset_design("resnet", 20, "ASK_5a")
    for convention in CONVENTIONS:
        convs = [layer for layer in count_design(design, convention).layers if layer.kind == "conv"]
        assert [c.name for c in convs][:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
        assert len(convs) == 19


def test_conventions_differ_where_the_papers_do():
    design = dense_design(Network("vgg", 16))
    macs, ask, bsconv = (count_design(design, c) for c in CONVENTIONS)
    assert {layer.kind for layer in macs.layers} == {"conv", "linear"}
    assert macs.flops == 313_463_808
    # bsconv counts BatchNorm1d (2 * 512) where ask does not
    assert bsconv.flops - ask.flops == 1024
    assert macs.params == ask.params == bsconv.params == 14_987_722


def test_a_shared_relu_counts_each_call_under_ask():
    counted = {layer.name: layer.flops for layer in count_design(dense_design(Network("resnet", 20)), "ask").layers}
    assert counted["layer1.0.relu"] == 2 * 16 * 32 * 32
