"""Small models for the app's tests, named as a server names its own: tests.app.models_for_tests:tiny_cnn."""
from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn


def tiny_cnn(num_classes: int = 10, width: int = 8) -> nn.Module:
    """Four convolutions (3x3 stem, a block of two 3x3, a 1x1 head), global pooling and a linear classifier."""
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, width, 3, padding=1, bias=False),
        block=nn.Sequential(OrderedDict(conv1=nn.Conv2d(width, width, 3, padding=1, bias=False), relu=nn.ReLU(),
                                        conv2=nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False))),
        head=nn.Conv2d(2 * width, 4 * width, 1, bias=False),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        fc=nn.Linear(4 * width, num_classes),
    ))
