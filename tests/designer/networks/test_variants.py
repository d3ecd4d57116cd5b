"""Designs with HetConv, 1xN, low-rank and padding-free: JSON round trip, fit checks, mixing, pruning a model."""
import json

import pytest
import torch

from designer.analysis.counting import count_design
from designer.designs.design import Design, Network, loads_design
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import build_model, dense_design, design_layers, validate
from designer.networks.pruning import prune_model, pruned_fraction
from designer.networks.variants import pruning_layers
from models.layers.blocksparse import BlockSparseConv2d


def mixed_vgg() -> Design:
    base = dense_design(Network("vgg", 11))
    layers = list(base.layers)
    layers[1] = LayerChoice.preset("ASK_4a")
    layers[2] = LayerChoice.hetconv(4)
    layers[3] = LayerChoice.blocksparse(8, 0.5, rearrange=True)
    layers[4] = LayerChoice.lowrank(40)
    return base.with_layers(layers)


def test_json_round_trip_is_exact():
    for design in (mixed_vgg(), dense_design(Network("mobilenetv3", 0, "cifar100"), padfree=True)):
        text = design.dumps()
        again = loads_design(text)
        assert again == design and again.dumps() == text
    raw = json.loads(mixed_vgg().dumps())
    assert raw["version"] == 2
    assert raw["layers"][3] == {"kind": "blocksparse", "block_n": 8, "prune_rate": 0.5, "rearrange": True}


def test_mixed_design_builds_runs_and_counts():
    design = validate(mixed_vgg())
    model = build_model(design)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    names = [layer.name for layer in count_design(design, "macs").layers if layer.kind == "conv"]
    pair = [name for name in names if name.endswith((".v", ".h"))]
    assert len(pair) == 2 and pair[0][:-2] == pair[1][:-2]  # a low-rank pair counts as two convs


def set_layer(design, index, raw_layer):
    raw = json.loads(design.dumps())
    raw["layers"][index] = raw_layer
    return json.dumps(raw)


@pytest.mark.parametrize("layer,message", [
    ({"kind": "hetconv", "part": 4, "shapes": [[5]]}, "a hetconv layer cannot also be ask: HetConv's 3x3 part"),
    ({"kind": "ask", "shapes": [[5]], "rank": 3}, "cannot also be lowrank"),
    ({"kind": "blocksparse", "block_n": 4, "prune_rate": 0.5, "part": 2}, "cannot also be hetconv"),
    ({"kind": "lowrank", "rank": 3, "colour": 1}, "unknown field 'colour'"),
    ({"kind": "hetconv"}, "part is missing"),
    ({"kind": "hetconv", "part": 0}, "part must be at least 1"),
    ({"kind": "blocksparse", "block_n": 4, "prune_rate": 1.0}, r"prune_rate must be in \[0, 1\)"),
    ({"kind": "blocksparse", "block_n": 4, "prune_rate": "half"}, "prune_rate must be"),
    ({"kind": "blocksparse", "block_n": 4, "prune_rate": 0.5, "rearrange": 1}, "rearrange must be true or false"),
    ({"kind": "lowrank", "rank": 2.5}, "rank must be an integer"),
])
def test_bad_layer_json_names_the_layer(layer, message):
    with pytest.raises(DesignError, match=message) as err:
        loads_design(set_layer(dense_design(Network("vgg", 11)), 2, layer))
    assert err.value.where == "layer 3"


@pytest.mark.parametrize("network,padfree,index,choice,message", [
    (Network("vgg", 11), False, 0, LayerChoice.hetconv(4), r"part P = 4 must divide the input \(3\)"),
    (Network("vgg", 11), False, 1, LayerChoice.blocksparse(3, 0.5), "N = 3 must divide the 128"),
    (Network("vgg", 11), False, 1, LayerChoice.lowrank(10_000), "rank 10000 is above the largest possible, 192"),
    (Network("mobilenetv3", 0), False, 2, LayerChoice.hetconv(2), "needs a full convolution"),
    (Network("mobilenetv3", 0), False, 1, LayerChoice.hetconv(2), "HetConv replaces 3x3 convs"),
    (Network("resnet_proj", 20), True, 11, LayerChoice.preset("ASK_5a"), "has padding 0"),
])
def test_choices_that_do_not_fit(network, padfree, index, choice, message):
    base = dense_design(network, padfree)
    layers = list(base.layers)
    layers[index] = choice
    with pytest.raises(DesignError, match=message) as err:
        validate(base.with_layers(layers))
    assert err.value.where.startswith(f"layer {index + 1} (")


def test_padfree_only_where_defined():
    with pytest.raises(DesignError, match="padding-free downsampling is defined for mobilenetv2, mobilenetv3"):
        validate(Design(Network("vgg", 16), dense_design(Network("vgg", 16)).layers, True))


def test_prune_model_from_trained_weights():
    torch.manual_seed(0)
    base = dense_design(Network("resnet_proj", 8))
    dense = build_model(base)
    layers = list(base.layers)
    indices = pruning_layers(design_layers(base), 4)
    for i in indices:
        layers[i] = LayerChoice.blocksparse(4, 0.5)
    design = base.with_layers(layers)
    x = torch.randn(2, 3, 32, 32)
    pruned = prune_model(dense, design).eval()
    sparse = [m for m in pruned.modules() if isinstance(m, BlockSparseConv2d)]
    assert len(sparse) == len(indices)
    assert all(abs(pruned_fraction(m) - 0.5) < 0.02 for m in sparse)
    again = prune_model(pruned, design)(x)  # re-masking a pruned model keeps its weights at the same rate
    assert again.shape == (2, 10)
    roles = {design_layers(base)[i].role for i in indices}
    assert roles == {"conv", "pointwise"}  # 3x3 convs and the 1x1 projections: not the first conv, nor the classifier
