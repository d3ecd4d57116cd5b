"""CIFAR VGG and ResNet as the ASK paper's code builds them."""
import pytest
import torch
import torch.nn as nn

from models import create_model, list_models
from models.layers.factory import ConvSpec, RecordingFactory
from models.resnet import pad_shortcut


def test_registry_lists_and_builds_the_families():
    assert {"vgg", "resnet"} <= set(list_models())
    assert create_model("vgg_any", 11).classifier[-1].out_features == 10
    assert create_model("resnet", 20, num_classes=100).fc.out_features == 100
    with pytest.raises(KeyError, match="unknown architecture 'alexnet'"):
        create_model("alexnet")


@pytest.mark.parametrize("depth, convs", [(11, 8), (13, 10), (16, 13), (19, 16)])
def test_vgg_layer_order_and_classifier(depth, convs):
    recorder = RecordingFactory()
    model = create_model("vgg", depth, conv_factory=recorder)
    assert len(recorder.specs) == convs
    assert all(s.kernel_size == 3 and not s.bias for s in recorder.specs)
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
    recorder = RecordingFactory()
    model = create_model("resnet", 32, conv_factory=recorder)
    assert len(recorder.specs) == 31
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [5, 5, 5]
    assert [s.stride for s in recorder.specs].count(2) == 2
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


def test_specs_describe_the_convs_the_model_holds():
    recorder = RecordingFactory()
    model = create_model("resnet", 20, conv_factory=recorder)
    assert recorder.specs[0] == ConvSpec(3, 16, 3, role="first")
    assert recorder.built[0] is model.conv1
