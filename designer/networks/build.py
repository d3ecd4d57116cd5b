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

from designer.designs.datasets import dataset_info
from designer.designs.design import DENSE, Design, LayerChoice, Network
from designer.errors import DesignError
from models import canonical_arch, create_model, list_models, padfree_archs, supports_padfree
from models.layers.ask import AskConv2d
from models.layers.blocksparse import BLOCKSPARSE_BACKENDS, BlockSparseConv2d
from models.layers.factory import ConvSpec, RecordingFactory, dense_conv
from models.layers.hetconv import HETCONV_BACKENDS, HetConv2d
from models.layers.lowrank import LowRankConv2d, max_rank


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a network, as the design sees it."""

    index: int
    name: str
    spec: ConvSpec
    in_size: tuple[int, int]
    out_size: tuple[int, int]


@lru_cache(maxsize=64)
def check_network(network: Network, padfree: bool = False) -> Network:
    """The network with its canonical arch name; DesignError if it cannot be built."""
    arch = canonical_arch(network.arch)
    if arch not in list_models():
        raise DesignError(f"unknown architecture {network.arch!r} (choose one of {', '.join(list_models())})",
                          "network")
    if padfree and not supports_padfree(arch):
        raise DesignError(f"padding-free downsampling is defined for {', '.join(padfree_archs())}, not {arch}",
                          "padfree")
    dataset_info(network.dataset)
    try:
        with torch.device("meta"):
            create_model(arch, network.depth)
    except ValueError as err:
        raise DesignError(str(err), "network") from None
    return Network(arch, network.depth, network.dataset)


def _create(network: Network, padfree: bool, **kwargs) -> nn.Module:
    """create_model with the padding-free switch passed only to the families that take it."""
    if padfree:
        kwargs["padfree"] = True
    return create_model(network.arch, network.depth, num_classes=dataset_info(network.dataset).num_classes,
                        **kwargs)


@lru_cache(maxsize=64)
def conv_layers(network: Network, padfree: bool = False) -> tuple[ConvLayer, ...]:
    """Every convolution of the network in forward order, with input/output sizes."""
    network = check_network(network, padfree)
    info = dataset_info(network.dataset)
    recorder = RecordingFactory()
    with torch.device("meta"):
        model = _create(network, padfree, conv_factory=recorder)
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


def design_layers(design: Design) -> tuple[ConvLayer, ...]:
    """The convolutions a design chooses for (its network, padding-free or not)."""
    return conv_layers(design.network, design.padfree)


def dense_design(network: Network, padfree: bool = False) -> Design:
    """The all-dense design of a network: the baseline every ratio is against."""
    return Design(check_network(network, padfree), tuple(DENSE for _ in conv_layers(network, padfree)), padfree)


def check_layer_fits(choice: LayerChoice, layer: ConvLayer, where: str) -> None:
    """DesignError unless `choice` can replace this convolution."""
    spec = layer.spec
    if choice.kind != "dense" and spec.groups != 1:
        raise DesignError(f"{choice.kind} needs a full convolution; {layer.name} is grouped ({spec.groups} groups)",
                          where)
    if choice.kind == "ask":
        k = choice.shapes[0].k
        if k != spec.kernel_size:
            raise DesignError(f"{k}x{k} ASK shapes cannot replace the {spec.kernel_size}x{spec.kernel_size} "
                              f"convolution {layer.name}: a shape has the size of the kernel it replaces", where)
        if spec.out_channels % len(choice.shapes):
            raise DesignError(f"{spec.out_channels} output channels cannot be split equally among "
                              f"{len(choice.shapes)} shapes", where)
        if spec.pad != spec.kernel_size // 2:
            raise DesignError(f"ASK layers pad 'same' (k//2); {layer.name} is a padding-free layer with padding "
                              f"{spec.pad}", where)
    elif choice.kind == "hetconv":
        if spec.kernel_size != 3 or spec.pad not in (0, 1):
            raise DesignError(f"HetConv replaces 3x3 convs; {layer.name} is {spec.kernel_size}x{spec.kernel_size}",
                              where)
        if spec.in_channels % choice.part or spec.out_channels % choice.part:
            raise DesignError(f"part P = {choice.part} must divide the input ({spec.in_channels}) and output "
                              f"({spec.out_channels}) channels", where)
    elif choice.kind == "blocksparse":
        if spec.out_channels % choice.block_n:
            raise DesignError(f"N = {choice.block_n} must divide the {spec.out_channels} output channels", where)
    elif choice.kind == "lowrank":
        top = max_rank(spec.in_channels, spec.out_channels, spec.kernel_size)
        if choice.rank > top:
            raise DesignError(f"rank {choice.rank} is above the largest possible, {top} "
                              f"(min(C*kh, N*kw) for {spec.in_channels}->{spec.out_channels}, "
                              f"{spec.kernel_size}x{spec.kernel_size})", where)


def validate(design: Design) -> Design:
    """The design, checked against its network: DesignError naming the first bad layer."""
    network = check_network(design.network, design.padfree)
    layers = conv_layers(network, design.padfree)
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
        if choice.kind == "hetconv":
            return HetConv2d(spec.in_channels, spec.out_channels, choice.part, spec.stride, spec.pad, spec.bias,
                             backend=_or_reference(self.backend, HETCONV_BACKENDS))
        if choice.kind == "blocksparse":
            return blocksparse_conv(spec, choice, _or_reference(self.backend, BLOCKSPARSE_BACKENDS))
        if choice.kind == "lowrank":
            return LowRankConv2d(spec.in_channels, spec.out_channels, spec.kernel_size, choice.rank, spec.stride,
                                 spec.pad, spec.bias)
        return dense_conv(spec)


def _or_reference(backend: str, registry: dict) -> str:
    """A backend name only some layer kinds have (e.g. ASK's 'decomposed') falls back to 'reference'."""
    return backend if backend in registry else "reference"


def blocksparse_conv(spec: ConvSpec, choice: LayerChoice, backend: str = "reference") -> BlockSparseConv2d:
    """A 1xN block-sparse conv whose mask comes from a freshly initialised dense weight.

    On the meta device (tracing, counting) no weights exist; the mask's size
    is fixed by the rule, so the layer is left with its placeholder pattern.
    """
    module = BlockSparseConv2d(spec.in_channels, spec.out_channels, spec.kernel_size, choice.block_n,
                               choice.prune_rate, choice.rearrange, spec.stride, spec.pad, spec.bias, backend)
    if not module.values.is_meta:
        weight = torch.empty(spec.out_channels, spec.in_channels, spec.kernel_size, spec.kernel_size,
                             device=module.values.device)
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
        module.set_from_dense(weight)
    return module


def build_model(design: Design, backend: str = "reference") -> nn.Module:
    """The network a design describes, on the CPU, freshly initialised."""
    design = validate(design)
    return _create(design.network, design.padfree, conv_factory=DesignFactory(design, backend))
