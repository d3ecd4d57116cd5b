"""CIFAR VGG with BatchNorm, as in the ASK paper's code (vgg_any).

conv3x3 (no bias) -> BN -> ReLU per entry, 'M' = MaxPool2d(2, 2); no pooling
module after the last block: forward applies a 2x2 average pool inline, then
Linear(512, 512) -> BN1d -> ReLU -> Linear(512, classes).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import register_model

VGG_CHANNELS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


def make_features(depth: int, in_channels: int = 3, first_bias: bool = False,
                  final_pool: bool = False) -> tuple[list[nn.Module], int]:
    """conv3x3 -> BN -> ReLU per channel entry, MaxPool2d(2, 2) per 'M'; and the last width.

    The feature stacks of the ASK and HetConv VGGs differ only in the first conv's bias and a pool after
    the last block.
    """
    if depth not in VGG_CHANNELS:
        raise ValueError(f"VGG depth must be one of {sorted(VGG_CHANNELS)}, got {depth}")
    layers: list[nn.Module] = []
    channels = in_channels
    for v in VGG_CHANNELS[depth] + (["M"] if final_pool else []):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(channels, v, 3, padding=1, bias=first_bias and not layers)
        layers += [conv, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
        channels = v
    return layers, channels


class VGG(nn.Module):
    def __init__(self, depth: int = 16, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers, channels = make_features(depth, in_channels)
        self.feature = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, num_classes)
        )
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature(x)
        x = F.avg_pool2d(x, 2)
        return self.classifier(torch.flatten(x, 1))


@register_model("vgg", label="VGG", depths=tuple(VGG_CHANNELS), default_depth=16, aliases=("vgg_any",))
def vgg(depth: int = 16, **kwargs) -> VGG:
    return VGG(depth=depth, **kwargs)
