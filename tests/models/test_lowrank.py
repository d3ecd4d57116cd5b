"""accnn low-rank pair: exact at full rank (stride kept), network-level decomposition, rank budget."""
import itertools

import pytest
import torch

from designer.analysis.counting import count_design
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks import lowrank
from designer.networks.build import ConvLayer, build_model, dense_design, design_layers
from designer.networks.lowrank import (
    choice_cost,
    config_json,
    decompose_model,
    design_from_config,
    largest_saving_rank,
    layer_costs,
    lowrank_design,
    lowrank_saves,
    ranks_cost,
    select_ranks,
    singular_values,
)
from designer.networks.variants import lowrank_layers
from models.layers.spec import ConvSpec
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
    assert all(r == 0 or (1 <= r <= c.spec.out_channels and lowrank_saves(c, r)) for r, c in zip(ranks, layers))
    weights = [model.get_submodule(c.name).weight for c in layers]
    loose = select_ranks(layers, weights, max(1.0, ratio / 2))
    assert kept_energy(weights, loose) >= kept_energy(weights, ranks)  # more budget, no less of the spectrum


def kept_energy(weights, ranks) -> float:
    """accnn's objective: sum over layers of log(sum of the singular values kept); rank 0 (dense) keeps all."""
    total = 0.0
    for weight, r in zip(weights, ranks):
        s = singular_values(weight)
        total += float(s.sum().log() if r == 0 else s[:r].sum().log())
    return total


def test_a_layer_whose_low_rank_costs_more_than_dense_stays_dense():
    """VGG's first conv (3 -> 64) at rank 9 takes 1,852,416 MACs against the dense 1,769,472."""
    base = dense_design(Network("vgg", 11))
    first = design_layers(base)[0]
    assert [lowrank_saves(first, r) for r in (8, 9)] == [True, False] and largest_saving_rank(first) == 8
    assert choice_cost(first, 9) == count_design(base.with_layers([LayerChoice.lowrank(9), *base.layers[1:]]),
                                                 "macs").layers[1].flops + 82_944 == 1_852_416
    torch.manual_seed(3)
    model = build_model(base)
    design = lowrank_design(base, [0, 1], model, 1.05)  # a loose budget: rank 9 would have the most value
    assert design.layers[0].kind == "dense" or lowrank_saves(first, design.layers[0].rank)
    with pytest.raises(DesignError, match="rank 9 on feature.0 costs 1,852,416 MACs, not fewer than the dense "
                                          "conv's 1,769,472: rank 8 or less saves MACs"):
        design_from_config(base, '{"conv_params": {"feature.0": 9}}')


def test_costs_are_the_counted_macs_of_each_form_also_on_strided_layers():
    base = dense_design(Network("resnet", 8))
    for layer in design_layers(base):
        rank = max(1, largest_saving_rank(layer))
        lowrank = base.with_layers(LayerChoice.lowrank(rank) if i == layer.index else c
                                   for i, c in enumerate(base.layers))
        counted = sum(e.flops for e in count_design(lowrank, "macs").layers if e.name.startswith(layer.name + "."))
        assert counted == choice_cost(layer, rank), layer.name
        assert count_design(base, "macs").layers[layer.index].flops == choice_cost(layer, 0)


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


def tiny_layers(seed: int, count: int) -> tuple[list, list]:
    """`count` small 3x3 convs (3..7 channels, 3x3..5x5 maps): each has a few saving ranks besides dense."""
    g = torch.Generator().manual_seed(seed)
    layers, weights = [], []
    for i in range(count):
        cin, cout, size = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((3, 8), (3, 8), (3, 6)))
        layers.append(ConvLayer(i, f"c{i}", ConvSpec(cin, cout), (size, size), (size, size)))
        weights.append(torch.randn(cout, cin, 3, 3, generator=g) * torch.rand(cout, 1, 1, 1, generator=g))
    return layers, weights


def brute_force_best(layers, weights, ratio) -> float:
    """The best objective over every combination of dense and saving ranks within the budget."""
    budget = sum(layer_costs(c)[1] for c in layers) / ratio
    tables = []  # per layer: (rank, MACs, value) of dense and each saving rank
    for c, weight in zip(layers, weights):
        s = singular_values(weight)
        tables.append([(r, choice_cost(c, r), float(s[:r].sum().log() if r else s.sum().log()))
                       for r in range(min(largest_saving_rank(c), c.spec.out_channels) + 1)])
    return max(sum(value for _, _, value in combo) for combo in itertools.product(*tables)
               if sum(cost for _, cost, _ in combo) <= budget)


@pytest.mark.parametrize("seed,count,ratio", [
    (0, 2, 1.3), (1, 3, 2.0), (2, 3, 3.5), (3, 4, 1.3), (4, 4, 2.0), (5, 4, 3.5),
    (11, 4, 2.0), (24, 4, 2.0), (25, 4, 3.5), (40, 3, 2.0),  # where costs bucketed into 10,000 steps miss it
])
def test_selected_ranks_are_the_exact_optimum_of_every_rank_combination(seed, count, ratio):
    layers, weights = tiny_layers(seed, count)
    if sum(min(choice_cost(c, 1), choice_cost(c, 0)) for c in layers) > sum(layer_costs(c)[1] for c in layers) / ratio:
        pytest.skip("out of reach")
    ranks = select_ranks(layers, weights, ratio)
    assert ranks_cost(layers, ranks) <= sum(layer_costs(c)[1] for c in layers) / ratio
    assert kept_energy(weights, ranks) == pytest.approx(brute_force_best(layers, weights, ratio), abs=1e-9)


def test_too_many_choices_for_the_exact_selection_take_the_bucketed_one_and_say_so(monkeypatch, capsys):
    layers, weights = tiny_layers(3, 4)
    exact = select_ranks(layers, weights, 2.0)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(lowrank, "MAX_STATES", 0)
    bucketed = select_ranks(layers, weights, 2.0)
    assert "warning: the exact rank selection would weigh more than 0 choices" in capsys.readouterr().err
    options = [lowrank.rank_options(c, w) for c, w in zip(layers, weights)]
    assert bucketed == lowrank.bucketed_ranks(options, sum(layer_costs(c)[1] for c in layers) / 2.0)
    assert ranks_cost(layers, bucketed) <= sum(layer_costs(c)[1] for c in layers) / 2.0
    assert kept_energy(weights, exact) >= kept_energy(weights, bucketed) - 1e-12
