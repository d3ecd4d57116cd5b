"""Designs: the versioned JSON format, its round trip and every bad input."""
import json

import pytest

from designer.build import conv_layers, dense_design, validate
from designer.design import Design, LayerChoice, Network, loads_design
from designer.errors import DesignError
from designer.shapes import KernelShape

VGG16 = Network("vgg", 16, "cifar10")


def mixed_vgg16() -> Design:
    base = dense_design(VGG16)
    layers = [LayerChoice.preset("ASK_5a")] * 10 + [LayerChoice.preset("ASK_2")] * 3
    layers[1] = LayerChoice.ask([KernelShape((1, 7, 13, 19, 25), 5), KernelShape((13,), 5)])
    layers[2] = base.layers[2]
    return base.with_layers(layers)


def test_json_round_trip_is_exact():
    design = mixed_vgg16()
    text = design.dumps()
    assert loads_design(text) == design
    assert json.loads(text)["version"] == 1
    assert json.loads(text)["layers"][1] == {"kind": "ask", "k": 5, "shapes": [[1, 7, 13, 19, 25], [13]]}


def test_a_design_lists_every_convolution_in_forward_order():
    assert [c.name for c in conv_layers(VGG16)][:3] == ["feature.0", "feature.3", "feature.7"]
    resnet = conv_layers(Network("resnet", 20))
    assert len(resnet) == 19
    assert [c.name for c in resnet][:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert resnet[7].spec.stride == 2 and resnet[7].name == "layer2.0.conv1"
    assert resnet[7].in_size == (32, 32) and resnet[7].out_size == (16, 16)


def test_aliases_of_the_ask_reference_are_accepted():
    assert validate(dense_design(Network("vgg_any", 16))).network.arch == "vgg"


def layer_json(**kw):
    return {"kind": "ask", "shapes": [[2, 4, 5, 6, 8]], **kw}


def design_text(layers, **network) -> str:
    return json.dumps({"format": "kernel-studio-design", "version": 1,
                       "network": {"arch": "resnet", "depth": 20, "dataset": "cifar10", **network},
                       "layers": layers})


@pytest.mark.parametrize("layers, network, message", [
    ([{"kind": "dense"}] * 18, {}, "the design has 18 layers but resnet-20 has 19 convolutions"),
    ([layer_json(shapes=[[2, 10]])] + [{"kind": "dense"}] * 18, {}, "layer 1, shape 1: tap 10 is out of range"),
    ([{"kind": "dense"}, layer_json(shapes=[[5, 5]])] + [{"kind": "dense"}] * 17, {}, "layer 2, shape 1: duplicate"),
    ([{"kind": "dense"}] * 2 + [layer_json(shapes=[[5], []])] + [{"kind": "dense"}] * 16, {},
     "layer 3, shape 2: a shape is empty"),
    ([layer_json(shapes=[[5]] * 3)] + [{"kind": "dense"}] * 18, {},
     r"layer 1 \(conv1\): 16 output channels cannot be split equally among 3 shapes"),
    ([{"kind": "ask", "preset": "ASK_1"}] + [{"kind": "dense"}] * 18, {}, "layer 1: unknown preset 'ASK_1'"),
    ([{"kind": "sparse"}] * 19, {}, "layer 1: unknown kind 'sparse'"),
    ([layer_json(shapes="2,4,5")] + [{"kind": "dense"}] * 18, {}, "layer 1: the shapes must be a list"),
    ([layer_json(k="3")] + [{"kind": "dense"}] * 18, {}, "layer 1: k must be an integer"),
    ([{"kind": "dense"}] * 19, {"depth": 21}, "depth must be 6n\\+2"),
    ([{"kind": "dense"}] * 19, {"arch": "alexnet"}, "unknown architecture 'alexnet'"),
    ([{"kind": "dense"}] * 19, {"dataset": "mnist"}, "unknown data set 'mnist'"),
    ([{"kind": "dense"}] * 19, {"depth": "20"}, "depth must be an integer"),
])
def test_bad_designs_name_the_layer_and_the_problem(layers, network, message):
    with pytest.raises(DesignError, match=message):
        validate(loads_design(design_text(layers, **network)))


def test_malformed_and_oversized_json_are_refused():
    with pytest.raises(DesignError, match="malformed JSON"):
        loads_design('{"layers": [')
    with pytest.raises(DesignError, match="the limit is 1000000"):
        loads_design(" " * 1_000_001)
    with pytest.raises(DesignError, match="a design must be an object"):
        loads_design("[1, 2]")
    with pytest.raises(DesignError, match="version 7 is not supported"):
        loads_design('{"version": 7}')
