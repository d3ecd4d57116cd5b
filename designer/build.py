"""From a design to an nn.Module, and what a network's convolutions look like.

`conv_layers` traces a network once on the meta device (no memory, no
compute) to list its convolutions in forward order with their sizes; it is
cached, so the UI can ask on every redraw. `build_model` passes a factory
to the model that turns each ConvSpec into the design's choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn as nn

from designer.data import dataset_info
from designer.design import DENSE, Design, LayerChoice, Network
from designer.errors import DesignError
from models import canonical_arch, create_model, list_models
from models.layers.ask import AskConv2d
from models.layers.factory import ConvSpec, RecordingFactory, dense_conv


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a network, as the design sees it."""

    index: int
    name: str
    spec: ConvSpec
    in_size: tuple[int, int]
    out_size: tuple[int, int]


def check_network(network: Network) -> Network:
    """The network with its canonical arch name; DesignError if it cannot be built."""
    arch = canonical_arch(network.arch)
    if arch not in list_models():
        raise DesignError(f"unknown architecture {network.arch!r} (choose one of {', '.join(list_models())})",
                          "network")
    dataset_info(network.dataset)
    try:
        with torch.device("meta"):
            create_model(arch, network.depth)
    except ValueError as err:
        raise DesignError(str(err), "network") from None
    return Network(arch, network.depth, network.dataset)


@lru_cache(maxsize=64)
def conv_layers(network: Network) -> tuple[ConvLayer, ...]:
    """Every convolution of the network in forward order, with input/output sizes."""
    network = check_network(network)
    info = dataset_info(network.dataset)
    recorder = RecordingFactory()
    with torch.device("meta"):
        model = create_model(network.arch, network.depth, num_classes=info.num_classes, conv_factory=recorder)
    convs = recorder.built
    names = {id(m): name for name, m in model.named_modules()}
    sizes: dict[int, tuple] = {}

    def hook(module, inputs, output):
        sizes[id(module)] = (tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))

    model.eval()
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.no_grad():
        model(torch.empty(1, info.in_channels, info.input_size, info.input_size, device="meta"))
    for h in handles:
        h.remove()
    return tuple(
        ConvLayer(i, names[id(m)], spec, *sizes[id(m)]) for i, (m, spec) in enumerate(zip(convs, recorder.specs))
    )


def dense_design(network: Network) -> Design:
    """The all-dense design of a network: the baseline every ratio is against."""
    return Design(check_network(network), tuple(DENSE for _ in conv_layers(network)))


def check_layer_fits(choice: LayerChoice, layer: ConvLayer, where: str) -> None:
    """DesignError unless `choice` can replace this convolution."""
    spec = layer.spec
    if choice.kind == "ask":
        if spec.groups != 1:
            raise DesignError(f"ASK shapes need a full convolution; {layer.name} is grouped ({spec.groups} groups)",
                              where)
        if spec.out_channels % len(choice.shapes):
            raise DesignError(f"{spec.out_channels} output channels cannot be split equally among "
                              f"{len(choice.shapes)} shapes", where)


def validate(design: Design) -> Design:
    """The design, checked against its network: DesignError naming the first bad layer."""
    network = check_network(design.network)
    layers = conv_layers(network)
    if len(design.layers) != len(layers):
        raise DesignError(f"the design has {len(design.layers)} layers but {network.arch}-{network.depth} "
                          f"has {len(layers)} convolutions", "design")
    for choice, layer in zip(design.layers, layers):
        check_layer_fits(choice, layer, f"layer {layer.index + 1} ({layer.name})")
    return Design(network, design.layers, design.padfree)


class DesignFactory:
    """The conv factory of a design: the i-th call builds the design's i-th layer."""

    def __init__(self, design: Design, backend: str = "reference"):
        self.layers = design.layers
        self.backend = backend
        self.calls = 0

    def __call__(self, spec: ConvSpec) -> nn.Module:
        choice = self.layers[self.calls]
        self.calls += 1
        if choice.kind == "ask":
            return AskConv2d(spec.in_channels, spec.out_channels, list(choice.shapes), spec.stride,
                             backend=self.backend)
        return dense_conv(spec)


def build_model(design: Design, backend: str = "reference") -> nn.Module:
    """The network a design describes, on the CPU, freshly initialised."""
    design = validate(design)
    info = dataset_info(design.network.dataset)
    return create_model(design.network.arch, design.network.depth, num_classes=info.num_classes,
                        conv_factory=DesignFactory(design, backend))
