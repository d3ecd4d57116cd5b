"""Faithful to the originals where they make a per-layer choice: which layers 1xN rearrangement sorts.

lmbxmu/1xN (commit dd323d4), imagenet.py, main(): the loop `for name, module in
model.named_modules(): if hasattr(module, "mask"):` that builds the masks. With
--rearrange and BlockL1Conv, mobilenet_v1 sorts every layer, resnet50 every one
but conv3, and the MobileNets V2/V3 take the `else` branch: `flag` starts True;
a module met with flag False gets get_rearr_mask (sorted) and sets flag True; one
met with flag True gets get_mask (plain) and sets flag False, unless 'fc' is in
its name (the SE convs SELayer.fc.0 / fc.2), which keeps the next module plain.
Walked over the masked convs of its models/mobilenet_v2.py and mobilenet_v3.py,
that sorts the expansion 1x1 convs (InvertedResidual.conv.0) and the final 1x1
conv, and leaves the projections (conv.3 of a t=1 block, else conv.6 in V2 and
conv.4 / conv.7 in V3) and the SE convs plain. The lists below are that walk,
each of the original's modules beside the layer of ours it is (same block order:
V2's 17 InvertedResiduals are our 17 units, V3-large's 15 are our 15).
"""
import pytest

from designer.cli import build_parser
from designer.cli.options import design_from_args
from designer.networks.build import design_layers

# Sorted by the original, in forward order: (the original's module, our layer).
ORIGINAL_SORTED = {
    "mobilenetv2": [  # models/mobilenet_v2.py
        (None, "stage1.unit1.conv1"),  # the original's t=1 block has no expansion; BSConv's 1x1 sits in its place
        ("features.2.conv.0", "stage2.unit1.conv1"),
        ("features.3.conv.0", "stage2.unit2.conv1"),
        ("features.4.conv.0", "stage3.unit1.conv1"),
        ("features.5.conv.0", "stage3.unit2.conv1"),
        ("features.6.conv.0", "stage3.unit3.conv1"),
        ("features.7.conv.0", "stage4.unit1.conv1"),
        ("features.8.conv.0", "stage4.unit2.conv1"),
        ("features.9.conv.0", "stage4.unit3.conv1"),
        ("features.10.conv.0", "stage4.unit4.conv1"),
        ("features.11.conv.0", "stage4.unit5.conv1"),
        ("features.12.conv.0", "stage4.unit6.conv1"),
        ("features.13.conv.0", "stage4.unit7.conv1"),
        ("features.14.conv.0", "stage5.unit1.conv1"),
        ("features.15.conv.0", "stage5.unit2.conv1"),
        ("features.16.conv.0", "stage5.unit3.conv1"),
        ("features.17.conv.0", "stage5.unit4.conv1"),
        ("features.18.0", "final_conv"),
    ],
    "mobilenetv3": [  # models/mobilenet_v3.py, mobilenet_v3_large
        (None, "stage1.unit1.conv1"),  # inp == hidden_dim: the original's block 1 has no expansion conv
        ("features.2.conv.0", "stage2.unit1.conv1"),
        ("features.3.conv.0", "stage2.unit2.conv1"),
        ("features.4.conv.0", "stage3.unit1.conv1"),
        ("features.5.conv.0", "stage3.unit2.conv1"),
        ("features.6.conv.0", "stage3.unit3.conv1"),
        ("features.7.conv.0", "stage4.unit1.conv1"),
        ("features.8.conv.0", "stage4.unit2.conv1"),
        ("features.9.conv.0", "stage4.unit3.conv1"),
        ("features.10.conv.0", "stage4.unit4.conv1"),
        ("features.11.conv.0", "stage4.unit5.conv1"),
        ("features.12.conv.0", "stage4.unit6.conv1"),
        ("features.13.conv.0", "stage5.unit1.conv1"),
        ("features.14.conv.0", "stage5.unit2.conv1"),
        ("features.15.conv.0", "stage5.unit3.conv1"),
        ("conv.0", "final_conv"),
    ],
}


def pruned(arch: str, *options: str) -> dict[str, bool]:
    """{short layer name: rearranged} of the 1xN layers `count --arch arch --block-n 8 --prune-rate 0.5 ...` makes."""
    design = design_from_args(build_parser().parse_args(["count", "--arch", arch, "--block-n", "8", "--prune-rate",
                                                         "0.5", *options]))
    short = (layer.name.removeprefix("backbone.").removesuffix(".conv") for layer in design_layers(design))
    return {name: c.rearrange for name, c in zip(short, design.layers) if c.kind == "blocksparse"}


@pytest.mark.parametrize("arch", sorted(ORIGINAL_SORTED))
@pytest.mark.parametrize("padfree", [[], ["--padfree"]])
def test_rearrange_on_a_mobilenet_sorts_the_layers_the_original_sorts(arch, padfree):
    layers = pruned(arch, "--rearrange", *padfree)
    assert [name for name, rearranged in layers.items() if rearranged] == [ours for _, ours in ORIGINAL_SORTED[arch]]
    plain = [name for name, rearranged in layers.items() if not rearranged]
    assert plain and all(name.endswith(".conv3") or ".se_unit." in name or name.startswith("init_conv.")
                         for name in plain)  # projections, SE convs, the padding-free stem's 1x1


def test_rearrange_all_sorts_every_pruned_layer_and_no_option_none():
    assert all(pruned("mobilenetv3", "--rearrange", "all").values())
    assert not any(pruned("mobilenetv3").values())


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_rearrange_elsewhere_sorts_every_pruned_layer(arch):
    """As the original's mobilenet_v1 (every layer); its resnet50 rule spares conv3, which CIFAR ResNets lack."""
    layers = pruned(arch, "--rearrange")
    assert layers and all(layers.values())
