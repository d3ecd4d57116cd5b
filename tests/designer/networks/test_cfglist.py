"""The ASK cfglist format, both ways."""
import json
import warnings

import pytest

from designer.designs.design import Network

from designer.designs.kinds import LayerChoice
from designer.designs.shapes import KernelShape
from designer.errors import DesignError
from designer.networks.build import conv_layers, dense_design
from designer.networks.cfglist import cfglist_layers, design_from_cfglist, design_to_cfglist, parse_cfglist_text

VGG16 = Network("vgg", 16)
README_EXAMPLE = "[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3"


def test_readme_example_round_trips():
    cfglist = parse_cfglist_text(README_EXAMPLE)
    design = design_from_cfglist(VGG16, cfglist)
    assert [layer.kind for layer in design.layers] == ["ask"] * 13
    assert design.layers[12].shapes == tuple(KernelShape(t) for t in ([2, 5], [4, 5], [5, 6], [5, 8]))
    assert design_to_cfglist(design) == cfglist
    assert design_to_cfglist(design_from_cfglist(VGG16, json.loads(json.dumps(cfglist)))) == cfglist


def test_python_text_as_in_the_ask_readme():
    text = """any_vgg16_cfglist = [[[2,4,5,6,8]],
          [[2,4,5,6,8]], [[2,4,5,6,8]], [[2,4,5,6,8]], [[2,4,5,6,8]],  # first five
          [[1,2,4,5,6,8,9],[2,3,4,5,6,7,8]]] + [[[5, 2]] for i in range(7)]"""
    cfglist = parse_cfglist_text(text)
    assert len(cfglist) == 13 and cfglist[5] == [[1, 2, 4, 5, 6, 8, 9], [2, 3, 4, 5, 6, 7, 8]]
    design = design_from_cfglist(VGG16, cfglist)
    assert design.layers[12].shapes[0].taps == (5, 2)  # the given tap order is the reference's weight order
    assert design_to_cfglist(design)[12] == [[5, 2]]


def test_dense_layers_are_the_full_shape():
    design = dense_design(Network("resnet", 20))
    design = design.with_layers([LayerChoice.preset("ASK_2")] + list(design.layers[1:]))
    cfglist = design_to_cfglist(design)
    assert len(cfglist) == 19 and cfglist[1] == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert design_from_cfglist(design.network, cfglist) == design


def test_a_5x5_layer_cannot_be_written_as_a_cfglist():
    design = dense_design(VGG16)
    design = design.with_layers([LayerChoice.ask([KernelShape((13,), 5)])] + list(design.layers[1:]))
    with pytest.raises(DesignError, match=r"layer 1 \(feature.0\).*5x5 ASK"):
        design_to_cfglist(design)


@pytest.mark.parametrize("text, message", [
    ("[[[2,4,5,6,8]]]*12", "the cfglist has 12 entries but vgg-16 has 13 3x3 convolutions"),
    ("[[[2,4,5,6,8]]]*12 + [[[2,4,5,6,10]]]", r"entry 13 \(feature.40\), shape 1: tap 10 is out of range"),
    ("[[[2,4,5,6,8]]]*12 + [[[]]]", r"entry 13 \(feature.40\), shape 1: a shape is empty"),
    ("[[[2,4,5,6,8]]]*12 + [[[5,5]]]", "duplicate taps"),
    ("[[[2,4,5,6,8]]]*12 + [[[5]]*3]", "512 output channels cannot be split equally among 3 shapes"),
    ("[[[2,4,5,6,8]]]*1000000000", "the limit is 100000"),
    ("__import__('os').system('true')", "unsupported expression"),
    ("{'a': 1}", "unsupported expression"),
    ("[[[2,4", "neither JSON nor a Python list"),
    ("", "the cfglist is empty"),
    ('"ASK_5a"', "a cfglist must be a list"),
    ("[[['2']]]*13", "tap '2' is not an integer"),
])
def test_bad_cfglists_are_refused_with_the_reason(text, message):
    with pytest.raises(DesignError, match=message):
        design_from_cfglist(VGG16, parse_cfglist_text(text))


@pytest.mark.parametrize("text", [
    "[[5]*100000]*100000",  # each '*' within the limit, the whole 10^10 entries
    "[[[5]] for i in range(1000000000000)]",
    "[[[5]]] * " + "9" * 4000,
    json.dumps([[[5]] * 50_000]),  # JSON: 100,001 entries at all depths
])
def test_the_whole_cfglist_is_bounded_before_it_is_built(text):
    with pytest.raises(DesignError, match="the limit is 100000"):
        parse_cfglist_text(text)


@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, "(" * 200 + "[5]" + ")" * 200, "[" * 17 + "]" * 17,
                                  "x = " + "[" * 17 + "5" + "]" * 17])
def test_nesting_is_bounded_in_both_forms(text):
    with pytest.raises(DesignError, match="nested more than 16 deep"):
        parse_cfglist_text(text)


def test_the_python_form_has_its_own_length_limit():
    with pytest.raises(DesignError, match=r"too long for the Python-list form \(the limit is 65536\)"):
        parse_cfglist_text("[[[5]]] * 13  # " + "." * 70_000)


@pytest.mark.parametrize("text", ["[[[" + "9" * 5000 + "]]]", "[[[" + "9" * 5000 + "]]] * 2"])
def test_a_number_past_the_digit_limit_is_refused_in_both_forms(text):
    with pytest.raises(DesignError, match="a number has more than 4300 digits"):
        parse_cfglist_text(text)


@pytest.mark.parametrize("text, message", [
    ("[[[5]] for i in range(1, 9, 0)]", "range\\(\\) needs a step other than 0"),
    (" + ".join(["[[[5]]]"] * 5000), "too long a chain of '\\+' and '\\*'"),
    ("['\\d'] is 1", "unsupported expression `\\['\\\\\\\\d'\\] is 1`"),
])
def test_odd_python_text_is_one_design_error_and_no_warning(text, message):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(DesignError, match=message):
            parse_cfglist_text(text)
    assert seen == []


def test_a_padfree_cfglist_has_an_entry_for_each_conv_an_ask_layer_can_take():
    net = Network("resnet_proj", 20)
    covered = cfglist_layers(net, padfree=True)
    convs = conv_layers(net, True)
    assert len(convs) == 28 and len(covered) == 17
    assert all(convs[i].spec.groups == 1 and convs[i].spec.padding[0] == 1 for i in covered)
    design = design_from_cfglist(net, [[[2, 4, 5, 6, 8]]] * 17, padfree=True)
    assert design.padfree and [i for i, c in enumerate(design.layers) if c.kind == "ask"] == covered
    assert design_to_cfglist(design) == [[[2, 4, 5, 6, 8]]] * 17
    with pytest.raises(DesignError, match=r"has 19 entries but resnet_proj-20 \(padding-free\) has 17"):
        design_from_cfglist(net, [[[5]]] * 19, padfree=True)


def test_a_huge_repeat_of_an_empty_list_is_empty_at_once():
    assert parse_cfglist_text("cfg = 338190437308 * []") == []
