"""A module no app test may import: a design from a link or an upload names it, and the server does not."""
import torch.nn as nn


def build(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
