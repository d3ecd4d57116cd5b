"""Which convolutions each kernel family replaces by default, and applying a family to them.

The defaults follow the papers: HetConv replaces every full 3x3 conv but the
first (irvinxav's VGG keeps conv 1 plain); 1xN prunes every full conv but the
first, the depthwise ones and the classifier (lmbxmu/1xN keeps the last layer
dense unless asked; convs N does not divide stay dense); accnn decomposes every full conv (its config lists
conv1_1 too) but not the classifier (fc_params stays empty by default).
Filter rearrangement is per layer too: `--rearrange` sorts the filters of
the layers lmbxmu/1xN sorts (`rearranged_layers`), `--rearrange all` of
every pruned layer. A design JSON overrides any of this per layer. Each
default set holds only the convolutions the kind can take (designer.designs.kinds);
`--layers PATTERN` narrows any of them to the module paths it matches.
"""
from __future__ import annotations

import fnmatch

from designer.designs.design import Design
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import can_take, design_layers
from designer.networks.convs import ConvLayer

REARRANGE = ("paper", "all")  # --rearrange: the original's layers (the default), or every pruned layer


def matching_layers(layers: tuple[ConvLayer, ...], pattern: str) -> list[int]:
    """Convolutions whose module path matches a shell-style pattern (`*` any text, e.g. `layer3.*.conv2`);
    a pattern without wildcards matches as a substring."""
    pattern = pattern.strip()
    if not pattern:
        raise DesignError("type a name pattern first, e.g. *conv2* or layer3.*", "pattern")
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return [c.index for c in layers if fnmatch.fnmatchcase(c.name, pattern)]


def hetconv_layers(layers: tuple[ConvLayer, ...], part: int = 1) -> list[int]:
    """Full 3x3 convs but the first (and, for a given P, those P divides)."""
    return [c.index for c in layers if c.spec.k == 3 and c.role != "first" and can_take(LayerChoice.hetconv(part), c)]


def pruning_layers(layers: tuple[ConvLayer, ...], block_n: int) -> list[int]:
    """Also skips convs whose width N does not divide (BSConv's SE squeezes to C/4, e.g. 18)."""
    choice = LayerChoice.blocksparse(block_n, 0.5)
    return [c.index for c in layers if c.role not in ("first", "classifier") and can_take(choice, c)]


# Networks whose filter rearrangement follows lmbxmu/1xN's MobileNet rule (imagenet.py, main's mask loop).
MOBILENETS = ("mobilenetv2", "mobilenetv3", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
              "torchvision:mobilenet_v3_small")


def rearranged_layers(arch: str, layers: tuple[ConvLayer, ...]) -> list[int]:
    """The convs whose filters `--rearrange` sorts, as lmbxmu/1xN chooses them.

    On its MobileNets the original sorts the expansion 1x1 convs and the final
    conv and gives the projection and SE convs the plain mask; here that is a
    1x1 conv that feeds a depthwise conv or the classifier (BSConv's first unit
    keeps a 1x1 where the original's t=1 block has none: it sits where an
    expansion does and is sorted like one; torchvision's MobileNets classify
    with a Linear, so their final conv is the last). On other networks (the
    original's MobileNetV1) every conv.
    """
    if arch not in MOBILENETS:
        return [c.index for c in layers]
    return [c.index for c, after in zip(layers, [*layers[1:], None])
            if c.role == "pointwise" and (after is None or after.role in ("depthwise", "classifier"))]


def pruning_choices(design: Design, block_n: int, rate: float, rearrange: str | None) -> dict[int, LayerChoice]:
    """The 1xN choice of each default layer; `rearrange` None (no sorting), "paper" or "all" (every one sorted)."""
    layers = design_layers(design)
    sort = set() if rearrange is None else {c.index for c in layers} if rearrange == "all" else \
        set(rearranged_layers(design.network.arch, layers))
    return {i: LayerChoice.blocksparse(block_n, rate, i in sort) for i in pruning_layers(layers, block_n)}


def lowrank_layers(layers: tuple[ConvLayer, ...]) -> list[int]:
    return [c.index for c in layers if c.role != "classifier" and can_take(LayerChoice.lowrank(1), c)]


def apply_to(design: Design, choices: dict[int, LayerChoice], option: str) -> Design:
    """`design` with layer i set to choices[i]; DesignError if another option already chose layer i."""
    if not choices:
        raise DesignError(f"{design.network.arch} has no convolution that {option} applies to", option)
    layers = list(design.layers)
    names = design_layers(design)
    for i, choice in choices.items():
        if layers[i].kind != "dense":
            raise DesignError(f"{option} and the {layers[i].kind} choice both claim this convolution; "
                              f"a layer has one kind (mix them per layer in a design JSON)",
                              f"layer {i + 1} ({names[i].name})")
        layers[i] = choice
    return design.with_layers(layers)
