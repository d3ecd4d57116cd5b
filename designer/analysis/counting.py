"""Parameters and FLOPs per layer under the conventions of the original papers.

The one home of the counting conventions. A plain network is traced once on
the meta device (shapes only, no memory, no arithmetic) with a forward hook on
every module the convention counts; a design's changed convolutions are then
counted by their kind's rule (designer.designs.kinds), so an edit costs no
trace and the app can recount on every edit.

Conventions:
- macs: multiply-accumulates of convolutions and linear layers over active
  weights only (no bias, no BN, no activations); a linear layer counts once
  per token, nn.MultiheadAttention its projections and QK^T, AV products;
  the app's default.
- ask: the ASK paper's compute_flops.py with multiply_adds=False: conv
  (+bias), linear (+bias), BatchNorm2d 2*numel, ReLU numel, MaxPool2d /
  AvgPool2d modules kernel_area*numel of the output, per call; BatchNorm1d
  and functional pools are not counted; params = every parameter.
- bsconv: the BSConv profiler: conv (+bias), linear (+bias), BatchNorm 2*numel,
  nn.ReLU numel (ReLU6, h-swish, h-sigmoid: 0), any pooling numel of its
  input, each module counted once; params = parameters requiring grad.
A convolution costs Ho*Wo*(its active weights): a module is a convolution
when it is an nn.Conv2d (weight.numel() weights) or exposes `active_weights`
(the conv variants of models.layers).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torch.nn as nn

from designer.designs.design import Design, Network
from designer.designs.kinds import KINDS
from designer.networks.build import design_layers, validate
from designer.networks.sources import resolve, traced_network

CONVENTIONS = ("macs", "ask", "bsconv")

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.GELU)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class LayerCount:
    name: str
    kind: str  # conv | linear | attention | bn | act | pool | other
    params: int
    flops: int


@dataclass(frozen=True)
class Count:
    convention: str
    params: int
    flops: int
    layers: tuple[LayerCount, ...]

    def to_json(self) -> dict:
        return {"params": self.params, "flops": self.flops, "convention": self.convention,
                "layers": [asdict(layer) for layer in self.layers]}


def kind_of(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d) or hasattr(module, "active_weights"):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(module, ACTIVATIONS):
        return "act"
    if isinstance(module, POOLS):
        return "pool"
    return None


def active_weights(module: nn.Module) -> int:
    if hasattr(module, "active_weights"):
        return int(module.active_weights)
    return module.weight.numel()


def _spatial(t: torch.Tensor) -> int:
    return t.shape[-1] * t.shape[-2]


def _bias_flops(module, output) -> int:
    return output[0].numel() if getattr(module, "bias", None) is not None else 0


def _kernel_area(pool: nn.Module) -> int:
    k = pool.kernel_size
    return k * k if isinstance(k, int) else k[0] * k[1]


def module_flops(convention: str, module: nn.Module, kind: str, x: torch.Tensor, y: torch.Tensor) -> int | None:
    """FLOPs of one call of `module` (batch 1) under `convention`; None if not counted."""
    if kind == "conv":
        flops = _spatial(y) * active_weights(module)
        return flops if convention == "macs" else flops + _bias_flops(module, y)
    if kind == "linear":  # once per token: a (1, tokens, in) input (transformers, ConvNeXt's NHWC MLPs) costs tokens x
        flops = module.in_features * module.out_features * (y[0].numel() // module.out_features)
        return flops if convention == "macs" else flops + _bias_flops(module, y)
    if kind == "attention":  # nn.MultiheadAttention (batch_first or not): in- and out-projections, QK^T and AV
        tokens, embed = (x.shape[1], x.shape[2]) if module.batch_first else (x.shape[0], x.shape[2])
        return tokens * embed * embed * 4 + 2 * tokens * tokens * embed
    if convention == "macs":
        return None
    if kind == "bn":
        if convention == "ask":
            return 2 * y[0].numel() if isinstance(module, nn.BatchNorm2d) else 0
        return x[0].numel() * (2 if module.affine else 1)
    if kind == "act":
        if type(module) is nn.ReLU:
            return y[0].numel()
        return None if convention == "ask" else 0
    if kind == "pool":
        if convention == "ask":
            return _kernel_area(module) * y[0].numel() if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) else None
        return x[0].numel()
    return None


def count_model(model: nn.Module, convention: str, input_shape: tuple[int, ...]) -> Count:
    """Trace `model` (any device; meta is cheapest) and count it under `convention`."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r} (choose one of {', '.join(CONVENTIONS)})")
    device = next(model.parameters()).device
    counted: dict[int, list] = {}  # id(module) -> [name, kind, params, flops]
    handles = []

    def add_hook(name: str, module: nn.Module, kind: str):
        def hook(mod, inputs, output):
            flops = module_flops(convention, mod, kind, inputs[0], output)
            if flops is None:
                return
            entry = counted.setdefault(id(mod), [name, kind, _params(mod, convention), 0])
            entry[3] = flops if convention == "bsconv" else entry[3] + flops
        handles.append(module.register_forward_hook(hook))

    skip: set[str] = set()
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in skip):
            continue
        kind = kind_of(module)
        if kind is not None:
            add_hook(name, module, kind)
            skip.add(name)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers = tuple(LayerCount(name, kind, int(params), int(flops)) for name, kind, params, flops in counted.values())
    return Count(convention, _params(model, convention), sum(layer.flops for layer in layers), layers)


def _params(module: nn.Module, convention: str) -> int:
    return sum(p.numel() for p in module.parameters() if convention != "bsconv" or p.requires_grad)


@lru_cache(maxsize=64)
def count_network(network: Network, padfree: bool, convention: str) -> Count:
    """The plain network's count, traced once (cached): the base every design of it is counted from."""
    with traced_network(network, padfree) as model:  # the meta build the network's other traces share
        return count_model(model, convention, (1, *resolve(network, padfree).input_shape))


@lru_cache(maxsize=256)
def count_design(design: Design, convention: str = "macs") -> Count:
    """Params and FLOPs of a design per image, under `convention` (cached).

    The plain network is traced once; each convolution the design changes is then counted by its kind's
    rule (designer.designs.kinds: the conv parts it runs and their active weights), so an edit costs no
    trace. tests/designer/analysis check the rule against a trace of the built design.
    """
    design = validate(design)
    base = count_network(design.network, design.padfree, convention)
    changed = {layer.name: (layer, choice) for layer, choice in zip(design_layers(design), design.layers)
               if choice.kind != "dense"}
    if not changed:
        return base
    params, layers = base.params, []
    for entry in base.layers:
        if entry.name not in changed:
            layers.append(entry)
            continue
        layer, choice = changed[entry.name]
        params -= entry.params
        for part in KINDS[choice.kind].parts(layer.spec, layer.in_size, layer.out_size, choice):
            bias = part.out_channels if part.bias else 0
            flops = part.weights * part.out_pixels + (bias * part.out_pixels if convention != "macs" else 0)
            layers.append(LayerCount(entry.name + part.suffix, "conv", part.weights + bias, flops))
            params += part.weights + bias
    return Count(convention, params, sum(layer.flops for layer in layers), tuple(layers))
