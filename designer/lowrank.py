"""accnn low-rank decomposition: rank selection for a speed-up ratio, config JSON, decomposing a model.

As MXNet's tools/accnn (Tai et al. 2015): a conv W (N, C, kh, kw) becomes
V (K, C, kh, 1) then H (N, K, 1, kw) from the SVD of W permuted to
(C*kh, N*kw). Rank selection: one unit of rank costs kw*(N + C)*X*Y and the
original layer kh*kw*N*C*X*Y (X, Y its input size, here the network's real
input, not the tool's hard-coded 224); budget = total original cost / R;
maximise the sum of log(cumulative singular values) by a knapsack DP. The DP
works on costs rounded up to a grid of the budget, so the chosen ranks never
exceed it (the tool kept exact costs in a dict, too slow in Python at CIFAR
sizes).
"""
from __future__ import annotations

import json
import math

import numpy as np
import torch
import torch.nn as nn

from designer.build import ConvLayer, design_layers, validate
from designer.design import Design, LayerChoice, load_json_text
from designer.errors import DesignError
from models.layers.lowrank import LowRankConv2d

GRID = 10_000  # DP cost buckets over the budget


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) of W permuted to (C*kh, N*kw), the matrix accnn factorises.

    Taken as square roots of the eigenvalues of the smaller Gram matrix: a few
    times faster than an SVD on the CPU, and only their log-sums are used.
    """
    n, c, kh, kw = weight.shape
    m = weight.detach().double().permute(1, 2, 0, 3).reshape(c * kh, n * kw)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0).sqrt()


def layer_costs(layer: ConvLayer) -> tuple[int, int]:
    """(cost of one unit of rank, cost of the original layer), accnn's formulas on the input size."""
    s = layer.spec
    area = layer.in_size[0] * layer.in_size[1]
    return s.kernel_size * (s.out_channels + s.in_channels) * area, \
        s.kernel_size * s.kernel_size * s.out_channels * s.in_channels * area


def select_ranks(layers: list[ConvLayer], weights: list[torch.Tensor], ratio: float) -> list[int]:
    """One rank per layer maximising sum(log cumsum(singular values)) with cost <= total / ratio."""
    if ratio < 1:
        raise DesignError(f"the speed-up ratio must be at least 1, got {ratio}", "--lowrank-ratio")
    units = [layer_costs(layer)[0] for layer in layers]
    budget = sum(layer_costs(layer)[1] for layer in layers) / ratio
    if sum(units) > budget:
        raise DesignError(f"ratio {ratio} is out of reach: rank 1 everywhere already costs "
                          f"{sum(units) / budget:.2f}x the budget", "--lowrank-ratio")
    scale = GRID / budget
    best = np.full(GRID + 1, -np.inf)
    best[0] = 0.0
    choice = []
    for unit, weight, layer in zip(units, weights, layers):
        spec = layer.spec
        s = singular_values(weight).numpy()
        values = np.log(np.maximum(np.cumsum(s), 1e-300))[:min(len(s), spec.out_channels)]  # ranks 1..min(#s, N)
        new = np.full(GRID + 1, -np.inf)
        pick = np.zeros(GRID + 1, dtype=np.int64)
        for r, value in enumerate(values, start=1):
            step = math.ceil(r * unit * scale)
            if step > GRID:
                break
            cand = np.full(GRID + 1, -np.inf)
            cand[step:] = best[:GRID + 1 - step] + value
            better = cand > new
            new[better], pick[better] = cand[better], r
        best = new
        choice.append(pick)
    ranks, at = [], int(np.argmax(best))
    for layer_pick, unit in zip(reversed(choice), reversed(units)):
        r = int(layer_pick[at])
        ranks.append(r)
        at -= math.ceil(r * unit * scale)
    return ranks[::-1]


def ranks_cost(layers: list[ConvLayer], ranks: list[int]) -> int:
    return sum(r * layer_costs(layer)[0] for layer, r in zip(layers, ranks))


def lowrank_design(design: Design, indices: list[int], model: nn.Module, ratio: float) -> Design:
    """`design` with the layers `indices` decomposed at the ranks chosen for `ratio` from `model`'s weights."""
    layers = [design_layers(design)[i] for i in indices]
    weights = [model.get_submodule(layer.name).weight for layer in layers]
    ranks = select_ranks(layers, weights, ratio)
    return design.with_layers(LayerChoice.lowrank(ranks[indices.index(i)]) if i in indices else choice
                              for i, choice in enumerate(design.layers))


def config_json(design: Design) -> dict:
    """The accnn config of a design: {"conv_params": {layer name: rank}, "fc_params": {}}."""
    layers = design_layers(design)
    return {"conv_params": {layers[i].name: c.rank for i, c in enumerate(design.layers) if c.kind == "lowrank"},
            "fc_params": {}}


def design_from_config(design: Design, text: str | bytes, where: str = "accnn config") -> Design:
    """`design` with the ranks of an accnn config JSON applied to the named layers."""
    raw = load_json_text(text, where)
    if not isinstance(raw, dict) or not isinstance(raw.get("conv_params"), dict):
        raise DesignError('expected {"conv_params": {layer: rank}, "fc_params": {}}', where)
    if raw.get("fc_params"):
        raise DesignError("fc_params: decomposing fully connected layers is not supported; leave it empty", where)
    index = {layer.name: layer.index for layer in design_layers(design)}
    layers = list(design.layers)
    for name, rank in raw["conv_params"].items():
        if name not in index:
            raise DesignError(f"no convolution named {name!r} (have {', '.join(list(index)[:6])}, ...)", where)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise DesignError(f"the rank of {name} must be a positive integer, got {rank!r}", where)
        layers[index[name]] = LayerChoice.lowrank(rank)
    return validate(design.with_layers(layers))


@torch.no_grad()
def decompose_model(model: nn.Module, design: Design) -> nn.Module:
    """Replace the design's low-rank layers of `model` (dense convs) by their SVD factors at the design's ranks."""
    design = validate(design)
    for layer, choice in zip(design_layers(design), design.layers):
        if choice.kind != "lowrank":
            continue
        current = model.get_submodule(layer.name)
        if not isinstance(current, nn.Conv2d):
            raise DesignError(f"cannot decompose a {type(current).__name__}: accnn needs a dense conv's weights",
                              f"layer {layer.index + 1} ({layer.name})")
        s = layer.spec
        pair = LowRankConv2d(s.in_channels, s.out_channels, s.kernel_size, choice.rank, s.stride, s.pad, s.bias)
        pair.to(current.weight.device, current.weight.dtype)
        pair.set_from_dense(current.weight, current.bias)
        model.set_submodule(layer.name, pair)
    return model


def dumps_config(design: Design) -> str:
    return json.dumps(config_json(design), indent=2)
