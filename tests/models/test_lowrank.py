"""accnn low-rank pair: exact at full rank (stride kept), network-level decomposition, rank budget."""
import pytest
import torch
import torch.nn.functional as F

from designer.build import build_model, dense_design, design_layers
from designer.design import Network
from designer.errors import DesignError
from designer.lowrank import (config_json, decompose_model, design_from_config, layer_costs, lowrank_design,
                              ranks_cost, select_ranks)
from designer.variants import lowrank_layers
from models.layers.lowrank import LowRankConv2d, max_rank


@pytest.mark.parametrize("cin,cout,k,stride,pad", [(5, 7, 3, 1, 1), (6, 4, 3, 2, 1), (4, 6, 5, 2, 2), (3, 8, 3, 2, 0)])
def test_full_rank_equals_conv(cin, cout, k, stride, pad):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, k, stride, pad, bias=True)
    pair = LowRankConv2d(cin, cout, k, max_rank(cin, cout, k), stride, pad, bias=True)
    pair.set_from_dense(conv.weight, conv.bias)
    x = torch.randn(2, cin, 11, 9)
    assert torch.allclose(pair(x), conv(x), atol=1e-4)
    assert torch.allclose(pair.dense_weight(), conv.weight, atol=1e-5)


def test_dense_checkpoint_loads_as_factors():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True)
    pair = LowRankConv2d(4, 6, 3, 12, bias=True)
    pair.load_state_dict(conv.state_dict())
    x = torch.randn(1, 4, 8, 8)
    assert torch.allclose(pair(x), conv(x), atol=1e-4)


def test_full_rank_network_equals_original():
    torch.manual_seed(1)
    base = dense_design(Network("resnet", 8))
    model = build_model(base).eval()
    layers = design_layers(base)
    full = base.with_layers(base.layers[0].__class__.lowrank(max_rank(c.spec.in_channels, c.spec.out_channels, 3))
                            for c in layers)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = decompose_model(model, full)(x)
    assert any(isinstance(m, LowRankConv2d) for m in model.modules())
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("ratio", [1.5, 2.0, 4.0])
def test_selected_ranks_fit_the_budget(ratio):
    torch.manual_seed(2)
    base = dense_design(Network("resnet", 14))
    model = build_model(base)
    indices = lowrank_layers(design_layers(base))
    design = lowrank_design(base, indices, model, ratio)
    layers = [design_layers(base)[i] for i in indices]
    ranks = [design.layers[i].rank for i in indices]
    assert ranks_cost(layers, ranks) <= sum(layer_costs(c)[1] for c in layers) / ratio
    assert all(1 <= r <= c.spec.out_channels for r, c in zip(ranks, layers))
    loose = select_ranks(layers, [model.get_submodule(c.name).weight for c in layers], max(1.0, ratio / 2))
    assert sum(loose) >= sum(ranks)  # more budget, no fewer ranks


def test_ratio_out_of_reach():
    base = dense_design(Network("resnet", 8))
    with pytest.raises(DesignError, match="out of reach"):
        lowrank_design(base, lowrank_layers(design_layers(base)), build_model(base), 1000)


def test_config_json_both_ways():
    base = dense_design(Network("resnet", 8))
    config = {"conv_params": {"conv1": 5, "layer2.0.conv1": 20}, "fc_params": {}}
    import json
    design = design_from_config(base, json.dumps(config))
    assert config_json(design) == config
    with pytest.raises(DesignError, match="no convolution named 'conv9'"):
        design_from_config(base, '{"conv_params": {"conv9": 3}}')
    with pytest.raises(DesignError, match="positive integer"):
        design_from_config(base, '{"conv_params": {"conv1": 0}}')
    with pytest.raises(DesignError, match="fc_params"):
        design_from_config(base, '{"conv_params": {}, "fc_params": {"fc": 3}}')
    with pytest.raises(DesignError, match="rank 99 is above"):
        design_from_config(base, '{"conv_params": {"conv1": 99}}')
