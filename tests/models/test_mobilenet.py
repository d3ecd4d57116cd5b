"""BSConv CIFAR MobileNets and ResNet, with and without padding-free downsampling."""
import pytest
import torch

from designer.analysis.counting import count_design
from designer.designs.design import Network
from designer.networks.build import conv_layers, dense_design
from models import create_model


@pytest.mark.parametrize("padfree,params,flops", [(False, 3.0665e6, 68.54e6), (True, 3.0672e6, 54.61e6)])
def test_mobilenetv3_large_bsconv_counts_match_paper(padfree, params, flops):
    count = count_design(dense_design(Network("mobilenetv3", 0, "cifar100"), padfree), "bsconv")
    assert abs(count.params - params) / params < 1e-3
    assert abs(count.flops - flops) / flops < 1e-3


def test_padfree_stage_sizes_and_stem():
    sizes = {c.out_size for c in conv_layers(Network("mobilenetv3", 0, "cifar100"), True)}
    assert {(32, 32), (15, 15), (7, 7), (3, 3)} <= sizes and (16, 16) not in sizes
    names = [c.name for c in conv_layers(Network("mobilenetv3", 0), True)][:3]
    assert names == ["backbone.init_conv.stem_1.conv", "backbone.init_conv.stem_1_1.conv",
                     "backbone.init_conv.stem_3.conv"]


def test_resnet_proj_padfree_blocks():
    layers = conv_layers(Network("resnet_proj", 20), True)
    at_15 = [c for c in layers if c.out_size == (15, 15)]
    assert {c.role for c in at_15} == {"depthwise", "pointwise", "conv"}
    assert any(c.name.endswith(".pool_proj") and c.spec.kernel == (1, 1) for c in at_15)
    assert count_design(dense_design(Network("resnet_proj", 20)), "bsconv").params == 269_722 + 6 + (16 * 32 + 64) + (32 * 64 + 128)  # ASK ResNet-20 + data_bn + projections


@pytest.mark.parametrize("arch,depth", [("mobilenetv2", 0), ("mobilenetv3", 0), ("resnet_proj", 8)])
@pytest.mark.parametrize("padfree", [False, True])
def test_forward_and_backward(arch, depth, padfree):
    model = create_model(arch, depth, num_classes=7, padfree=padfree)
    y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 7)
    y.sum().backward()


def test_mobilenet_depth_is_fixed():
    with pytest.raises(ValueError, match="fixed depth"):
        create_model("mobilenetv3", 16)
