"""`macs` of torchvision's CNNs and of entry points against an independent count: torch's FlopCounterMode on
the dense model built by torchvision itself (our macs = its FLOPs / 2 for CNNs: convolutions and linear layers,
no bias). Transformers differ on purpose (designer.analysis.counting: functional attention is not counted) and
are left out here."""
import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from designer.analysis.counting import count_design
from designer.designs.design import Network
from designer.networks.build import dense_design, design_layers
from designer.networks.editing import apply_preset_to_3x3
from models.torchvision_models import WITHOUT_AUX

CNNS = ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
        "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_s", "densenet121", "regnet_x_400mf",
        "regnet_y_400mf", "convnext_tiny", "googlenet", "inception_v3", "squeezenet1_0", "shufflenet_v2_x0_5",
        "mnasnet0_5", "vgg11", "alexnet"]


def flop_counter_macs(model: nn.Module, input_shape) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    return counter.get_total_flops() // 2


def torchvision_model(name: str, classes: int) -> nn.Module:
    """Built by torchvision itself: on the meta device where its constructor allows (shapes only), else on CPU."""
    kwargs = WITHOUT_AUX.get(name, {})
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None, num_classes=classes, **kwargs)
    except (NotImplementedError, RuntimeError):  # RegNets compute their widths with tensors
        return torchvision.models.get_model(name, weights=None, num_classes=classes, **kwargs)


@pytest.mark.parametrize("name", CNNS)
def test_macs_of_torchvision_cnns_equal_flop_counter_mode(name):
    network = Network(f"torchvision:{name}", 0, "image-folder", 1000)
    design = dense_design(network)
    shape = design.network.input_shape
    crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    assert shape == (3, crop, crop)  # the size torchvision's own weights are evaluated at (299 for Inception v3)
    assert count_design(design, "macs").flops == flop_counter_macs(torchvision_model(name, 1000), shape)


@pytest.mark.parametrize("name, size", [("resnet18", 64), ("mobilenet_v2", 96), ("densenet121", 40)])
def test_macs_follow_the_input_size_and_the_classes(name, size):
    design = dense_design(Network(f"torchvision:{name}", 0, "cifar100", 0, (3, size, size)))
    assert design.network.num_classes == 100
    assert count_design(design, "macs").flops == flop_counter_macs(torchvision_model(name, 100), (3, size, size))


def test_ask_5a_on_resnet18_counts_five_of_nine_taps_of_each_3x3_conv():
    dense = dense_design(Network("torchvision:resnet18", 0, "image-folder", 1000))
    design = apply_preset_to_3x3(dense, "ASK_5a")
    per_conv = {}
    model = torchvision_model("resnet18", 1000)
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: per_conv.__setitem__(n, o[0].numel() * m.weight[0].numel()))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    total = flop_counter_macs(model, (3, 224, 224))
    for h in hooks:
        h.remove()
    changed = [layer.name for layer, c in zip(design_layers(design), design.layers) if c.kind == "ask"]
    assert len(changed) == 16
    expected = total - sum(per_conv[name] * 4 // 9 for name in changed)
    assert count_design(design, "macs").flops == expected
