"""From a design to an nn.Module: build the plain network, then swap each convolution the design changes.

One mechanism for every source (paper families, torchvision, entry points),
as torch.ao.pruning, Torch-Pruning and NNI do it: each convolution the
design gives another kind is replaced, by module path, with that kind's
layer (designer.designs.kinds). A dense layer keeps the network's own conv,
so names, parameters and checkpoint layout stay those of the original.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from designer.designs.design import Design, Network
from designer.designs.kinds import DENSE, KINDS, LayerChoice, build_layer, layer_from_dense, why_not
from designer.errors import DesignError
from designer.networks.convs import ConvLayer, conv_layers
from designer.networks.sources import plain_network, resolve


def check_network(network: Network, padfree: bool = False) -> Network:
    """The network with its defaults filled; DesignError if it cannot be built."""
    return resolve(network, padfree)


def design_layers(design: Design) -> tuple[ConvLayer, ...]:
    """The convolutions a design chooses for (its network, padding-free or not)."""
    return conv_layers(design.network, design.padfree)


def dense_design(network: Network, padfree: bool = False) -> Design:
    """The all-dense design of a network: the baseline every ratio is against."""
    return Design(resolve(network, padfree), tuple(DENSE for _ in conv_layers(network, padfree)), padfree)


def why_not_layer(choice: LayerChoice, layer: ConvLayer) -> str | None:
    """Why `choice` cannot replace this convolution (None: it can)."""
    if choice.kind != "dense" and layer.calls > 1:
        return f"the forward runs this conv {layer.calls} times (one module, shared): it stays as it is"
    return why_not(layer.spec, choice)


def check_layer_fits(choice: LayerChoice, layer: ConvLayer, where: str) -> None:
    """DesignError unless `choice` can replace this convolution."""
    why = why_not_layer(choice, layer)
    if why:
        raise DesignError(why, where)


def can_take(choice: LayerChoice, layer: ConvLayer) -> bool:
    return why_not_layer(choice, layer) is None


def validate(design: Design) -> Design:
    """The design, checked against its network (defaults filled): DesignError naming the first bad layer."""
    network = resolve(design.network, design.padfree)
    layers = conv_layers(network, design.padfree)
    if len(design.layers) != len(layers):
        raise DesignError(f"the design has {len(design.layers)} layers but {network.arch}"
                          f"{'-' + str(network.depth) if network.depth else ''} has {len(layers)} convolutions",
                          "design")
    for choice, layer in zip(design.layers, layers):
        check_layer_fits(choice, layer, f"layer {layer.index + 1} ({layer.name})")
    return Design(network, design.layers, design.padfree)


def swap_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put `module` at the dotted module path `path` of `model`."""
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attribute, module)


def build_model(design: Design, backend: str = "reference", device: str = "cpu") -> nn.Module:
    """The network a design describes, freshly initialised: each changed conv is its kind's new layer."""
    design = validate(design)
    model = plain_network(design.network, design.padfree, device)
    for layer, choice in zip(design_layers(design), design.layers):
        if choice.kind == "dense":
            continue
        conv = model.get_submodule(layer.name)
        if KINDS[choice.kind].needs_weights and not conv.weight.is_meta:
            new = layer_from_dense(layer.spec, choice, conv.weight, conv.bias, backend)
        else:
            with torch.device(conv.weight.device):
                new = build_layer(layer.spec, choice, backend)
        swap_module(model, layer.name, new)
    return model
