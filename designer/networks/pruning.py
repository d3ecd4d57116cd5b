"""1xN block pruning of a network from its current weights (Lin et al., lmbxmu/1xN).

The mask of each pruned layer is computed once from the weights the model
holds now (fresh initialisation, a trained run, an imported checkpoint) and
then stays fixed: the block-sparse layer stores only the kept blocks, so
fine-tuning cannot revive a pruned block. A dense checkpoint loaded into a
block-sparse design gets its masks the same way (see BlockSparseConv2d).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from designer.designs.design import Design
from designer.designs.kinds import layer_from_dense
from designer.errors import DesignError
from designer.networks.build import design_layers, swap_module, validate
from models.layers.blocksparse import BlockSparseConv2d, block_mask, element_mask

__all__ = ["block_mask", "element_mask", "prune_model", "pruned_fraction"]


@torch.no_grad()
def prune_model(model: nn.Module, design: Design) -> nn.Module:
    """Turn the design's 1xN layers of `model` (dense convs or block-sparse) into block-sparse convs.

    The masks come from the layers' current weights; a block-sparse layer is
    re-masked from its kept weights. Other layers are left as they are.
    """
    design = validate(design)
    for layer, choice in zip(design_layers(design), design.layers):
        if choice.kind != "blocksparse":
            continue
        where = f"layer {layer.index + 1} ({layer.name})"
        try:
            current = model.get_submodule(layer.name)
        except AttributeError:
            raise DesignError("the model has no such module: it is not this design's network", where) from None
        if isinstance(current, BlockSparseConv2d):
            weight = current.dense_weight()
        elif isinstance(current, nn.Conv2d) and current.groups == 1:
            weight = current.weight
        else:
            raise DesignError(f"cannot prune a {type(current).__name__}: 1xN needs a dense conv's weights", where)
        swap_module(model, layer.name, layer_from_dense(layer.spec, choice, weight, current.bias,
                                                        getattr(current, "backend", "reference")))
    return model


def pruned_fraction(module: BlockSparseConv2d) -> float:
    """The fraction of the layer's kernels that are pruned."""
    total = module.out_channels * module.in_channels
    return 1 - module.col_indices.numel() * module.block_n / total
