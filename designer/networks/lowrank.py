"""accnn low-rank decomposition: rank selection for a speed-up ratio, config JSON, decomposing a model.

As MXNet's tools/accnn (Tai et al. 2015): a conv W (N, C, kh, kw) becomes
V (K, C, kh, 1) then H (N, K, 1, kw) from the SVD of W permuted to
(C*kh, N*kw). Costs are the MACs each form really takes on the network's
input sizes: V (vertical stride) costs K*C*kh*Ho*Wi, H costs N*K*kw*Ho*Wo,
the original N*C*kh*kw*Ho*Wo (accnn's formulas, which use the input size X*Y
for all three, agree at stride 1 and overstate a strided layer; the tool
also hard-coded 224). A rank that costs at least the original saves nothing:
such a layer stays dense (`lowrank_saves`, the one home of that rule).
Rank selection: budget = total original cost / R; each layer is either a
saving rank or dense (its full value at its full cost); maximise the sum of
log(cumulative singular values) by a knapsack DP over the real integer
costs, as the tool's exact DP (a dict over every reachable cost, too slow in
Python at CIFAR sizes): ours keeps only the (cost, value) pairs that no cheaper
one matches and drops what a Lagrangian bound shows cannot win, exact and
well under a second on CIFAR networks. Past MAX_STATES pairs (ResNet-1202 at 1.5x) it
says so and buckets the costs into a grid of the budget (rounded up, so the
ranks never exceed it, though they may fall a little short of the best).
"""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch
import torch.nn as nn

from designer.designs.design import Design, load_json_text
from designer.designs.kinds import LayerChoice, layer_from_dense
from designer.errors import DesignError
from designer.networks.build import design_layers, swap_module, validate
from designer.networks.convs import ConvLayer
from models.layers.lowrank import max_rank

GRID = 10_000  # cost buckets over the budget of the bucketed DP (the fallback)
MAX_STATES = 4_000_000  # (cost, value) pairs the exact DP may weigh in all (well under a second)
EPS = 1e-9  # slack on the bound: float sums of logs must not drop a choice that ties the best


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
    """(MACs of one unit of rank, MACs of the original layer) per image, on the layer's real sizes."""
    s = layer.spec
    (ho, wo), wi = layer.out_size, layer.in_size[1]
    return s.k * (s.in_channels * ho * wi + s.out_channels * ho * wo), \
        s.k * s.k * s.out_channels * s.in_channels * ho * wo


def lowrank_saves(layer: ConvLayer, rank: int) -> bool:
    """Whether the low-rank pair at `rank` costs fewer MACs than the dense conv (else the layer stays dense)."""
    unit, dense = layer_costs(layer)
    return rank * unit < dense


def why_not_lowrank(layer: ConvLayer, rank: int) -> str | None:
    """None when `rank` saves MACs on this layer; otherwise why not, with the ranks that would."""
    if lowrank_saves(layer, rank):
        return None
    top = largest_saving_rank(layer)
    hint = f"rank {top} or less saves MACs" if top else "no rank saves MACs on it"
    return (f"rank {rank} on {layer.name} costs {choice_cost(layer, rank):,} MACs, not fewer than the dense conv's "
            f"{choice_cost(layer, 0):,}: {hint}, or leave the layer dense")


def largest_saving_rank(layer: ConvLayer) -> int:
    """The largest rank that still saves MACs on this layer (and that the layer takes); 0 if none does."""
    unit, dense = layer_costs(layer)
    s = layer.spec
    return min((dense - 1) // unit, max_rank(s.in_channels, s.out_channels, s.k))


def choice_cost(layer: ConvLayer, rank: int) -> int:
    """MACs of a layer at `rank`; rank 0 is the dense layer."""
    unit, dense = layer_costs(layer)
    return rank * unit if rank else dense


def select_ranks(layers: list[ConvLayer], weights: list[torch.Tensor], ratio: float) -> list[int]:
    """One rank per layer (0: stays dense) maximising sum(log cumsum(singular values)) with cost <= total / ratio.

    Only ranks that save MACs compete with dense, which keeps every singular value at the original's cost.
    The exact optimum over the real MACs (`exact_ranks`); where that would weigh too many choices (networks far
    larger than CIFAR's), the bucketed DP, said on stderr.
    """
    if ratio < 1:
        raise DesignError(f"the speed-up ratio must be at least 1, got {ratio}", "--lowrank-ratio")
    budget = sum(layer_costs(layer)[1] for layer in layers) / ratio
    cheapest = sum(min(choice_cost(layer, 1), choice_cost(layer, 0)) for layer in layers)
    if cheapest > budget:
        raise DesignError(f"ratio {ratio} is out of reach: rank 1 everywhere already costs "
                          f"{cheapest / budget:.2f}x the budget", "--lowrank-ratio")
    options = [rank_options(layer, weight) for layer, weight in zip(layers, weights)]
    ranks = exact_ranks(options, budget)
    if ranks is None:
        print(f"warning: the exact rank selection would weigh more than {MAX_STATES:,} choices; the ranks "
              f"come from costs bucketed into {GRID:,} steps of the budget (within it, possibly a little short of the "
              f"best)", file=sys.stderr, flush=True)
        ranks = bucketed_ranks(options, budget)
    return ranks


def rank_options(layer: ConvLayer, weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ranks, MACs, values) of a layer's choices: dense (rank 0, all its singular values), then each saving rank."""
    s = singular_values(weight).numpy()
    values = np.log(np.maximum(np.cumsum(s), 1e-300))  # value of rank r: values[r - 1]
    top = min(len(s), layer.spec.out_channels, largest_saving_rank(layer))
    ranks = np.arange(top + 1)
    costs = np.array([choice_cost(layer, int(r)) for r in ranks], dtype=np.int64)
    return ranks, costs, np.concatenate([values[-1:], values[:top]])


def exact_ranks(options: list[tuple], budget: float) -> list[int] | None:
    """The ranks of the best total value within `budget` over the real integer MACs; None past MAX_STATES pairs.

    A DP over the (cost, value) pairs that no cheaper pair matches, layer by layer. A Lagrangian bound keeps it
    small and exact: with lam >= 0, no choice set within budget is worth more than lam + sum of each layer's
    max(value - lam * cost / budget), so choices (and partial sums) that cannot reach the value of a known
    feasible set are dropped before the DP weighs them.
    """
    lam, bound, lower = lagrangian_bound(options, budget)
    best = [np.max(v - lam * c / budget) for _, c, v in options]
    kept = [np.flatnonzero(b - (v - lam * c / budget) <= bound - lower + EPS) for b, (_, c, v) in zip(best, options)]
    after = np.concatenate([np.cumsum(best[::-1])[::-1][1:], [0.0]])  # bound of the layers still to come
    cheap_after = np.concatenate([np.cumsum([c.min() for _, c, _ in options][::-1])[::-1][1:], [0]])
    cost, value, trail, weighed = np.zeros(1, np.int64), np.zeros(1), [], 0
    for (_, c, v), keep, rest, cheap in zip(options, kept, after, cheap_after):
        weighed += cost.size * keep.size
        if weighed > MAX_STATES:
            return None
        pair_cost, pair_value = (cost[:, None] + c[keep]).ravel(), (value[:, None] + v[keep]).ravel()
        fits = (pair_cost <= budget - cheap) & (pair_value + rest + lam * (1 - pair_cost / budget) >= lower - EPS)
        at = np.flatnonzero(fits)
        at = at[np.lexsort((-pair_value[at], pair_cost[at]))]
        front = np.concatenate([[True], pair_value[at][1:] > np.maximum.accumulate(pair_value[at])[:-1]])
        at = at[front]
        cost, value = pair_cost[at], pair_value[at]
        trail.append((at // keep.size, keep[at % keep.size]))
    state, ranks = int(np.argmax(value)), []
    for (parent, choice), (r, _, _) in zip(reversed(trail), reversed(options)):
        ranks.append(int(r[choice[state]]))
        state = int(parent[state])
    return ranks[::-1]


def lagrangian_bound(options: list[tuple], budget: float) -> tuple[float, float, float]:
    """(lam, the bound at lam, the value of a feasible choice set): lam by bisection on the budget's price.

    Any lam gives a true bound; bisection only makes it tight. The feasible set is each layer's pick at the
    price that fits, then filled greedily with what the budget leaves.
    """
    def picks(lam: float) -> list[int]:
        return [int(np.argmax(v - lam * c / budget)) for _, c, v in options]

    def spent(choice: list[int]) -> int:
        return sum(int(c[i]) for (_, c, _), i in zip(options, choice))

    low, high = 0.0, 1.0
    while spent(picks(high)) > budget:
        low, high = high, high * 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (low, mid) if spent(picks(mid)) <= budget else (mid, high)
    choice = picks(high)
    for i, (_, c, v) in enumerate(options):  # greedy fill: the best choice the rest of the budget affords
        room = budget - spent(choice) + c[choice[i]]
        choice[i] = int(np.argmax(np.where(c <= room, v, -np.inf)))
    lower = sum(float(v[i]) for (_, _, v), i in zip(options, choice))
    bounds = [(lam, lam + sum(float(np.max(v - lam * c / budget)) for _, c, v in options)) for lam in (low, high)]
    lam, bound = min(bounds, key=lambda pair: pair[1])
    return lam, bound, lower


def bucketed_ranks(options: list[tuple], budget: float) -> list[int]:
    """The knapsack on costs rounded up to GRID steps of the budget: never over it, maybe short of the best."""
    scale = GRID / budget
    best = np.full(GRID + 1, -np.inf)
    best[0] = 0.0
    choice = []
    for ranks, costs, values in options:
        new = np.full(GRID + 1, -np.inf)
        pick = np.zeros(GRID + 1, dtype=np.int64)
        for r, cost, value in zip(ranks, costs, values):
            step = math.ceil(cost * scale)
            if step > GRID:
                continue
            cand = np.full(GRID + 1, -np.inf)
            cand[step:] = best[:GRID + 1 - step] + value
            better = cand > new
            new[better], pick[better] = cand[better], r
        best = new
        choice.append((pick, dict(zip(ranks.tolist(), costs.tolist()))))
    ranks, at = [], int(np.argmax(best))
    for pick, cost_of in reversed(choice):
        r = int(pick[at])
        ranks.append(r)
        at -= math.ceil(cost_of[r] * scale)
    return ranks[::-1]


def ranks_cost(layers: list[ConvLayer], ranks: list[int]) -> int:
    """MACs of the layers at these ranks (0: dense)."""
    return sum(choice_cost(layer, r) for layer, r in zip(layers, ranks))


def lowrank_design(design: Design, indices: list[int], model: nn.Module, ratio: float) -> Design:
    """`design` with the layers `indices` decomposed at the ranks chosen for `ratio` from `model`'s weights;
    a layer whose every saving rank loses to the budget's best use stays as it is (dense)."""
    layers = [design_layers(design)[i] for i in indices]
    weights = [model.get_submodule(layer.name).weight for layer in layers]
    ranks = dict(zip(indices, select_ranks(layers, weights, ratio)))
    return design.with_layers(LayerChoice.lowrank(ranks[i]) if ranks.get(i) else choice
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
    convs = {layer.name: layer for layer in design_layers(design)}
    layers = list(design.layers)
    for name, rank in raw["conv_params"].items():
        if name not in convs:
            raise DesignError(f"no convolution named {name!r} (have {', '.join(list(convs)[:6])}, ...)", where)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise DesignError(f"the rank of {name} must be a positive integer, got {rank!r}", where)
        layer = convs[name]
        costlier = why_not_lowrank(layer, rank)
        if costlier and layer.spec.groups == 1 and rank <= max_rank(layer.spec.in_channels, layer.spec.out_channels,
                                                                    layer.spec.k):
            raise DesignError(costlier, where)  # (grouped convs and too-high ranks: validate says why)
        layers[layer.index] = LayerChoice.lowrank(rank)
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
        swap_module(model, layer.name, layer_from_dense(layer.spec, choice, current.weight, current.bias))
    return model


def dumps_config(design: Design) -> str:
    return json.dumps(config_json(design), indent=2)
