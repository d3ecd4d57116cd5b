"""CIFAR VGG and ResNet as the ASK paper's code builds them."""
import pytest
import torch
import torch.nn as nn

from models import create_model, list_models, model_info, register_model
from models.layers.spec import ConvSpec
from models.resnet import pad_shortcut


def convs(model: nn.Module) -> list[ConvSpec]:
    return [ConvSpec.of(m) for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_registry_lists_and_builds_the_families():
    assert {"vgg", "resnet"} <= set(list_models())
    assert create_model("vgg_any", 11).classifier[-1].out_features == 10
    assert create_model("resnet", 20, num_classes=100).fc.out_features == 100
    with pytest.raises(KeyError, match="unknown architecture 'alexnet'"):
        create_model("alexnet")


def test_each_family_knows_its_depths_input_and_padding_free_variant():
    vgg, resnet, v3 = model_info("vgg_any"), model_info("resnet"), model_info("mobilenetv3")
    assert (vgg.name, vgg.depths, vgg.default_depth, vgg.input_shape) == ("vgg", (11, 13, 16, 19), 16, (3, 32, 32))
    assert resnet.default_depth == 20 and 110 in resnet.depths and not resnet.padfree
    assert v3.depths == () and v3.padfree and v3.any_input_size and v3.label == "MobileNetV3-large"


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="'resnet' is registered twice"):
        register_model("resnet", label="another ResNet")(lambda **kwargs: nn.Identity())
    with pytest.raises(ValueError, match="'vgg_any' is registered twice"):
        register_model("my_vgg", label="mine", aliases=("vgg_any",))(lambda **kwargs: nn.Identity())
    assert "my_vgg" not in list_models()


@pytest.mark.parametrize("depth, n_convs", [(11, 8), (13, 10), (16, 13), (19, 16)])
def test_vgg_layer_order_and_classifier(depth, n_convs):
    model = create_model("vgg", depth)
    specs = convs(model)
    assert len(specs) == n_convs
    assert all(s.kernel == (3, 3) and s.padding == (1, 1) and not s.bias for s in specs)
    first = list(model.feature)[:3]
    assert [type(m) for m in first] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.feature) == 4
    assert [type(m) for m in model.classifier] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_initialisation_follows_the_reference():
    torch.manual_seed(0)
    model = create_model("vgg", 16)
    conv = model.feature[3]  # 64 -> 64: std sqrt(2 / (9 * 64))
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.05)
    assert torch.all(model.feature[1].weight == 0.5) and torch.all(model.feature[1].bias == 0)
    assert model.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(model.classifier[0].bias == 0)


def test_resnet_structure():
    model = create_model("resnet", 32)
    specs = convs(model)
    assert len(specs) == 31
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [5, 5, 5]
    assert [s.stride for s in specs].count((2, 2)) == 2
    assert isinstance(model.avgpool, nn.AvgPool2d) and model.fc.in_features == 64 and model.fc.bias is not None
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())
    with pytest.raises(ValueError, match="6n\\+2"):
        create_model("resnet", 22)


def test_parameter_free_shortcut_pads_zero_channels_and_passes_gradient():
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    y = pad_shortcut(x, 32)
    assert y.shape == (2, 32, 4, 4)
    assert torch.all(y[:, 16:] == 0)
    torch.testing.assert_close(y[:, :16], nn.functional.avg_pool2d(x, 2))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.25))


def test_the_downsampling_block_passes_gradient_through_its_shortcut():
    block = create_model("resnet", 8).layer2[0].eval()
    assert block.downsample
    with torch.no_grad():
        block.conv2.weight.zero_()  # the conv path now outputs a constant: only the shortcut carries x
    x = torch.rand(2, 16, 8, 8, requires_grad=True)
    block(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.25))


def test_a_spec_reads_every_attribute_of_the_conv_that_decides_what_can_replace_it():
    model = create_model("resnet", 20)
    assert ConvSpec.of(model.conv1) == ConvSpec(3, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, False, "zeros")
    odd = nn.Conv2d(8, 4, (1, 7), stride=(2, 1), padding=(0, 3), groups=2, bias=True, padding_mode="reflect")
    spec = ConvSpec.of(odd)
    assert (spec.kernel, spec.stride, spec.padding, spec.groups, spec.bias, spec.k, spec.square) == \
        ((1, 7), (2, 1), (0, 3), 2, True, 0, False)
    assert spec.describe() == "8->4, 1x7, stride 2x1, pad 0x3, 2 groups, reflect padding"
    assert ConvSpec.of(nn.Conv2d(4, 4, 5, padding="same", dilation=2)).padding == (4, 4)
