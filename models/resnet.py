"""CIFAR ResNet-(6n+2) with the parameter-free shortcut, as in the ASK paper's code.

conv1 3x3 3->16, BN, ReLU; three stages of n BasicBlocks (16, 32, 64
channels; stages 2 and 3 start with stride 2); AvgPool2d(8), Linear(64, classes).
The downsampling shortcut is AvgPool2d(2) of the input with zero channels
appended. The reference code detaches it (a bug); here the gradient flows.
Module names match the reference checkpoints: conv1, bn1, layer1..3, fc.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import register_model

RESNET_DEPTHS = (20, 32, 44, 56, 110)  # the depths the app offers; any 6n+2 builds


def pad_shortcut(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """Parameter-free downsampling: 2x2 average pool, then zero channels appended."""
    x = F.avg_pool2d(x, 2)
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = pad_shortcut(x, self.planes) if self.downsample else x
        return self.relu(out + residual)


class ResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        planes_in = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(planes_in, planes, stride if i == 0 else 1))
                planes_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n_fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n_fan))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


@register_model("resnet", label="ResNet", depths=RESNET_DEPTHS, default_depth=20, aliases=("resnet_any",))
def resnet(depth: int = 20, **kwargs) -> ResNet:
    return ResNet(depth=depth, **kwargs)
