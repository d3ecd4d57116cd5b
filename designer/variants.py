"""Which convolutions each kernel family replaces by default, and applying a family to them.

The defaults follow the papers: HetConv replaces every full 3x3 conv but the
first (irvinxav's VGG keeps conv 1 plain); 1xN prunes every full conv but the
first, the depthwise ones and the classifier (lmbxmu/1xN keeps the last layer
dense unless asked; convs N does not divide stay dense); accnn decomposes every full conv (its config lists
conv1_1 too) but not the classifier (fc_params stays empty by default).
A design JSON overrides any of this per layer.
"""
from __future__ import annotations

from designer.build import ConvLayer, design_layers
from designer.design import Design, LayerChoice
from designer.errors import DesignError


def hetconv_layers(layers: tuple[ConvLayer, ...]) -> list[int]:
    return [c.index for c in layers if c.spec.kernel_size == 3 and c.spec.groups == 1 and c.spec.role != "first"]


def pruning_layers(layers: tuple[ConvLayer, ...], block_n: int) -> list[int]:
    """Also skips convs whose width N does not divide (BSConv's SE squeezes to C/4, e.g. 18)."""
    return [c.index for c in layers if c.spec.groups == 1 and c.spec.role not in ("first", "classifier")
            and c.spec.out_channels % block_n == 0]


def lowrank_layers(layers: tuple[ConvLayer, ...]) -> list[int]:
    return [c.index for c in layers if c.spec.groups == 1 and c.spec.role != "classifier"]


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
