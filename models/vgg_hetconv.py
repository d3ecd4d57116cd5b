"""The HetConv paper's CIFAR VGG with BatchNorm (irvinxav's public code, vgg16bn).

Differs from the ASK VGG: the first conv has a bias, a max-pool follows the
last block too (five pools, 2x2 -> 1x1), and there is no inline average
pool. Classifier Linear(512, 512) -> BN1d -> ReLU -> Linear(512, classes).
The first conv stays a plain conv in the paper; the design chooses the rest.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.registry import register_model
from models.vgg import VGG_CHANNELS, make_features


class VGGHet(nn.Module):
    def __init__(self, depth: int = 16, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers, channels = make_features(depth, in_channels, first_bias=True, final_pool=True)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, num_classes)
        )
        for m in self.modules():  # as the public code: kaiming normal fan_out, BN 1/0, Linear N(0, 0.01)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("vgg_hetconv", label="VGG (HetConv)", depths=tuple(VGG_CHANNELS), default_depth=16)
def vgg_hetconv(depth: int = 16, **kwargs) -> VGGHet:
    return VGGHet(depth=depth, **kwargs)
