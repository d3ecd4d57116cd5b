"""designer.analysis.tables: what the Analyze page draws, on every architecture (1x1, depthwise, padding-free)."""
import pytest

from designer.analysis.tables import cost_name, kernel_groups, layer_ranges, tap_usage, totals
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.networks.build import dense_design, design_layers
from designer.networks.editing import apply_preset


@pytest.mark.parametrize("arch, depth", [("resnet_proj", 20), ("mobilenetv2", 0), ("mobilenetv3", 0)])
@pytest.mark.parametrize("padfree", [False, True])
def test_tap_usage_draws_every_dense_conv_of_the_bsconv_networks(arch, depth, padfree):
    """These networks have 1x1 and depthwise convs: tap_usage raised 'kernel size 1 is not supported'."""
    design = dense_design(Network(arch, depth), padfree)
    usage = tap_usage(design)
    assert len(usage) == len(design_layers(design))
    for u, conv in zip(usage, design_layers(design)):
        k = conv.spec.k
        assert u["usage"] == [[1.0] * k] * k and u["k"] == k, u["layer"]


def test_a_1x1_conv_has_one_tap_and_a_depthwise_conv_a_full_kernel_per_channel():
    design = dense_design(Network("mobilenetv3", 0))
    by_kernel = {u["kernel"]: u for u in tap_usage(design)}
    assert by_kernel["1x1"]["usage"] == [[1.0]]
    assert by_kernel["5x5 depthwise"]["usage"] == [[1.0] * 5] * 5
    assert set(by_kernel) == {"1x1", "3x3", "3x3 depthwise", "5x5 depthwise"}


def test_kinds_that_are_not_tap_shapes_have_no_usage_and_ask_draws_its_shapes():
    base = dense_design(Network("resnet", 8))
    design = apply_preset(base.with_layers([base.layers[0], LayerChoice.hetconv(4), *base.layers[2:]]), [2], "ASK_2")
    usage = tap_usage(design)
    assert usage[1]["usage"] is None and usage[1]["kind"] == "hetconv"
    assert usage[2]["usage"] == [[0, 0.25, 0], [0.25, 1.0, 0.25], [0, 0.25, 0]] and len(usage[2]["shapes"]) == 4


def test_equal_kernels_are_drawn_once_with_the_layers_that_share_them():
    vgg = dense_design(Network("vgg", 16))
    design = apply_preset(apply_preset(vgg, range(10), "ASK_5a"), [10, 11, 12], "ASK_2")
    groups = kernel_groups(design)
    assert [(g["choice"], g["layers"]) for g in groups] == [("ASK_5a", "1-10"), ("ASK_2", "11-13")]
    mobile = kernel_groups(dense_design(Network("mobilenetv3", 0)))
    assert len(mobile) == 4 and sum(len(g["indices"]) for g in mobile) == len(design_layers(
        dense_design(Network("mobilenetv3", 0))))


def test_layer_ranges_are_one_based_runs():
    assert layer_ranges([0, 1, 2, 5, 7, 8]) == "1-3, 6, 8-9"
    assert layer_ranges([]) == ""
    assert layer_ranges([0, 2, 4, 6, 8, 10, 12], limit=14) == "1, 3, 5, ..."
    assert layer_ranges([0, 1, 2], limit=14) == "1-3"


@pytest.mark.parametrize("arch, depth", [("resnet_proj", 8), ("mobilenetv3", 0)])
def test_a_padding_free_design_is_compared_with_the_padding_free_dense_network(arch, depth):
    """The dense baseline of the totals was the network without padding-free (another set of convs)."""
    padfree = dense_design(Network(arch, depth), padfree=True)
    for convention in ("macs", "ask", "bsconv"):
        t = totals(padfree, convention)
        assert (t.flops_ratio, t.params_ratio) == (1.0, 1.0)


def test_the_macs_convention_counts_macs_and_the_papers_count_flops():
    assert [cost_name(c) for c in ("macs", "ask", "bsconv")] == ["MACs", "FLOPs", "FLOPs"]
