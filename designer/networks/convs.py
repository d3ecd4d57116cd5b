"""A network's convolutions as a design sees them: forward order, module path, sizes and role.

The plain network is traced once on the meta device (no memory, no
arithmetic) with a hook on every nn.Conv2d; the list is cached, so the UI
can ask on every redraw. The index of a convolution in this list is its
layer index in the design (the ASK cfglist's order).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch.nn as nn

from designer.designs.design import Network
from designer.networks.sources import meta_forward, resolve, traced_network
from models.layers.spec import ConvSpec

ROLES = ("first", "depthwise", "pointwise", "classifier", "conv")


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a network, as the design sees it."""

    index: int
    name: str  # its module path, e.g. layer3.0.conv2
    spec: ConvSpec
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    role: str = "conv"  # first (takes the input) | depthwise | pointwise (1x1) | classifier (1x1 to the logits) | conv
    calls: int = 1  # times one forward runs it; a conv run twice is one module that a swap would change twice

    def describe(self) -> str:
        return self.spec.describe()


def _role(index: int, spec: ConvSpec, out_size: tuple[int, int], last: bool, num_classes: int) -> str:
    if index == 0:
        return "first"
    if spec.is_depthwise:
        return "depthwise"
    if spec.kernel == (1, 1) and spec.groups == 1:
        if last and out_size == (1, 1) and spec.out_channels == num_classes:
            return "classifier"
        return "pointwise"
    return "conv"


def conv_layers(network: Network, padfree: bool = False) -> tuple[ConvLayer, ...]:
    """Every convolution the network's forward runs, in the order it first runs them."""
    return _conv_layers(resolve(network, padfree), padfree)  # one trace per network, however it is written


@lru_cache(maxsize=64)
def _conv_layers(network: Network, padfree: bool) -> tuple[ConvLayer, ...]:
    with traced_network(network, padfree) as model:
        return _trace_convs(network, model)


conv_layers.cache_clear = _conv_layers.cache_clear  # as when conv_layers was the cached function itself


def _trace_convs(network: Network, model: nn.Module) -> tuple[ConvLayer, ...]:
    names = {module: name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    seen: dict[nn.Module, list] = {}  # conv -> [in size, out size, calls], in first-call order

    def hook(module, inputs, output):
        entry = seen.setdefault(module, [tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]), 0])
        entry[2] += 1

    meta_forward(model, network.input_shape, hook, names)
    order = list(seen)
    layers = []
    for i, conv in enumerate(order):
        in_size, out_size, calls = seen[conv]
        spec = ConvSpec.of(conv)
        role = _role(i, spec, out_size, i == len(order) - 1, network.num_classes)
        layers.append(ConvLayer(i, names[conv], spec, in_size, out_size, role, calls))
    return tuple(layers)
