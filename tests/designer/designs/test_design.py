"""Designs: the versioned JSON format, its round trip and every bad input."""
import json

import pytest

from designer.designs.design import Design, Network, loads_design

from designer.designs.kinds import LayerChoice
from designer.designs.shapes import KernelShape
from designer.errors import DesignError
from designer.networks.build import conv_layers, dense_design, validate

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
    assert json.loads(text)["version"] == 2
    assert json.loads(text)["network"] == {"source": "paper", "name": "vgg", "depth": 16, "dataset": "cifar10",
                                           "num_classes": 10, "input_shape": [3, 32, 32], "kwargs": {}}
    assert json.loads(text)["layers"][1] == {"kind": "ask", "k": 5, "shapes": [[1, 7, 13, 19, 25], [13]]}


def test_a_version_1_file_still_reads_and_fills_the_network_it_implies():
    design = dense_design(VGG16).with_layers([LayerChoice.preset("ASK_5a")] * 10 + [LayerChoice.preset("ASK_2")] * 3)
    old = {"format": "kernel-studio-design", "version": 1, "network": {"arch": "vgg", "depth": 16, "dataset": "cifar10"},
           "padfree": False, "layers": [layer.to_json() for layer in design.layers]}
    assert validate(loads_design(json.dumps(old))) == design
    del old["version"]  # written by hand: its network's keys tell the version
    assert validate(loads_design(json.dumps(old))) == design


def test_version_2_records_where_the_network_comes_from():
    text = json.dumps({"version": 2, "network": {"source": "torchvision", "name": "resnet18", "dataset": "image-folder",
                                                 "num_classes": 5, "input_shape": [3, 64, 64]}})
    network = loads_design(text).network
    assert (network.arch, network.num_classes, network.input_shape) == ("torchvision:resnet18", 5, (3, 64, 64))
    entry = loads_design(json.dumps({"network": {"source": "entry_point", "name": "my.nets:build",
                                                 "kwargs": {"width": 2, "a": [1]}}})).network
    assert (entry.arch, entry.kwargs_dict, entry.kwargs) == ("my.nets:build", {"width": 2, "a": [1]},
                                                            '{"a":[1],"width":2}')
    with pytest.raises(DesignError, match="'resnet18' is not a entry_point name"):
        loads_design(json.dumps({"network": {"source": "entry_point", "name": "resnet18"}}))
    with pytest.raises(DesignError, match="unknown source 'timm'"):
        loads_design(json.dumps({"network": {"source": "timm", "name": "resnet18"}}))
    with pytest.raises(DesignError, match=r"input_shape must be \[C, H, W\]"):
        loads_design(json.dumps({"network": {"source": "paper", "name": "vgg", "input_shape": [32, 32]}}))


def test_a_design_lists_every_convolution_in_forward_order():
    assert [c.name for c in conv_layers(VGG16)][:3] == ["feature.0", "feature.3", "feature.7"]
    resnet = conv_layers(Network("resnet", 20))
    assert len(resnet) == 19
    assert [c.name for c in resnet][:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert resnet[7].spec.stride[0] == 2 and resnet[7].name == "layer2.0.conv1"
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


@pytest.mark.parametrize("raw, message", [
    ({"datset": "cifar100"}, r"design: unknown key 'datset' in a design; did you mean 'dataset', a key of the network"),
    ({"padfre": True}, r"design: unknown key 'padfre' in a design; did you mean 'padfree'\?"),
    ({"network": {"padfre": True}}, r"network: unknown key 'padfre' in the network; did you mean 'padfree', a key of "
                                    r"the design"),
    ({"network": {"datset": "cifar100"}}, r"network: unknown key 'datset' in the network; did you mean 'dataset'\?"),
    ({"layers": [{"kind": "ask", "shaps": [[5]]}]}, r"layer 1: unknown field 'shaps' for a ask layer; did you mean "
                                                    r"'shapes'\?"),
])
def test_an_unknown_key_is_refused_with_the_close_match(raw, message):
    with pytest.raises(DesignError, match=message):
        loads_design(json.dumps(raw))


@pytest.mark.parametrize("text, message", [
    ('{"network": {"depth": 8, "depth": 20}}', "design: the key 'depth' is given twice in one object"),
    ('{"layers": [{"kind": "ask", "preset": "ASK_5a", "shapes": [[5]]}]}',
     "layer 1: give either a preset or k and shapes, not both"),
    ('{"layers": [{"kind": "ask", "preset": "ASK_5a", "k": 5}]}', "give either a preset or k and shapes"),
    ('{"layers": [{"kind": "blocksparse", "block_n": 4, "prune_rate": NaN}]}', "NaN is not a number JSON allows"),
    ('{"version": Infinity}', "Infinity is not a number JSON allows"),
    ('{"version": 1e999}', "the number '1e999' is too large"),
    ('{"network": ' + "[" * 3000 + "]" * 3000 + "}", "nested more than 16 deep"),
    ('{"layers": ' + "[" * 16 + "]" * 16 + "}", "nested more than 16 deep"),
    ('{"network": {"depth": ' + "9" * 5000 + "}}", "a number has more than 4300 digits"),
    ('{"network": {"arch": "resnet", "depth": 6002}}', r"depth must be in 0\.\.1202 \(VGG 11/13/16/19, ResNet 6n\+2"),
    ('{"network": {"depth": -1}}', r"depth must be in 0\.\.1202"),
])
def test_ambiguous_or_unbounded_json_is_refused(text, message):
    with pytest.raises(DesignError, match=message):
        loads_design(text)


def test_an_echoed_value_is_cut_short():
    with pytest.raises(DesignError) as err:
        loads_design('{"network": {"depth": ' + "9" * 4000 + "}}")
    assert len(str(err.value)) < 250 and str(err.value).endswith("99...")
    with pytest.raises(DesignError) as err:
        loads_design(json.dumps({"layers": [{"kind": "x" * 100_000}]}))
    assert len(str(err.value)) < 250 and "xxx..." in str(err.value)
