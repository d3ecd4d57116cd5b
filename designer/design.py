"""Designs: a network and, for every convolution in forward order, its kernel choice.

A design is plain data with a versioned JSON form. Validation against the
network (number of layers, channel splits) lives in designer.build, which
knows the network's convolutions; this module checks the data itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from designer.data import dataset_info
from designer.errors import DesignError
from designer.shapes import KernelShape, preset_shapes, validate_taps

FORMAT_NAME = "kernel-studio-design"
FORMAT_VERSION = 1  # later kinds (hetconv, blocksparse, lowrank) are optional fields: version 1 files still read
MAX_JSON_BYTES = 1_000_000
KINDS = ("dense", "ask", "hetconv", "blocksparse", "lowrank")
# The JSON fields each kind takes besides "kind".
KIND_FIELDS = {"dense": (), "ask": ("k", "shapes", "preset"), "hetconv": ("part",),
               "blocksparse": ("block_n", "prune_rate", "rearrange"), "lowrank": ("rank",)}
# Why one convolution cannot be two kinds at once (a layer has exactly one kind).
WHY_NOT_BOTH = {
    frozenset(("ask", "hetconv")): "HetConv's 3x3 part is a full grouped kernel, it has no ASK shapes",
    frozenset(("ask", "blocksparse")): "1xN pruning keeps or drops whole kh x kw kernels of a full conv",
    frozenset(("ask", "lowrank")): "the SVD factors of a masked kernel are full kh x 1 and 1 x kw kernels",
    frozenset(("hetconv", "blocksparse")): "1xN blocks span a full kernel, HetConv kernels differ per channel",
    frozenset(("hetconv", "lowrank")): "the factorisation needs one full kh x kw kernel per channel pair",
    frozenset(("blocksparse", "lowrank")): "the factors of a pruned kernel are dense again",
}


@dataclass(frozen=True)
class Network:
    arch: str = "vgg"
    depth: int = 16
    dataset: str = "cifar10"


@dataclass(frozen=True)
class LayerChoice:
    """How one convolution is built.

    dense; ask (shapes split the output channels); hetconv (part P);
    blocksparse (1xN pruning: block_n, prune_rate, rearrange); lowrank (rank).
    """

    kind: str = "dense"
    shapes: tuple[KernelShape, ...] = ()
    part: int = 0
    block_n: int = 0
    prune_rate: float = 0.0
    rearrange: bool = False
    rank: int = 0

    @classmethod
    def ask(cls, shapes) -> "LayerChoice":
        return cls("ask", tuple(shapes))

    @classmethod
    def preset(cls, name: str, where: str | None = None) -> "LayerChoice":
        return cls.ask(preset_shapes(name, where))

    @classmethod
    def hetconv(cls, part: int) -> "LayerChoice":
        return cls("hetconv", part=part)

    @classmethod
    def blocksparse(cls, block_n: int, prune_rate: float, rearrange: bool = False) -> "LayerChoice":
        return cls("blocksparse", block_n=block_n, prune_rate=float(prune_rate), rearrange=rearrange)

    @classmethod
    def lowrank(cls, rank: int) -> "LayerChoice":
        return cls("lowrank", rank=rank)

    def to_json(self) -> dict:
        if self.kind == "ask":
            return {"kind": "ask", "k": self.shapes[0].k, "shapes": [list(s.taps) for s in self.shapes]}
        return {"kind": self.kind, **{name: getattr(self, name) for name in KIND_FIELDS[self.kind]}}


DENSE = LayerChoice()


@dataclass(frozen=True)
class Design:
    network: Network = field(default_factory=Network)
    layers: tuple[LayerChoice, ...] = ()
    padfree: bool = False

    def with_layers(self, layers) -> "Design":
        return Design(self.network, tuple(layers), self.padfree)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "network": {"arch": self.network.arch, "depth": self.network.depth, "dataset": self.network.dataset},
            "padfree": self.padfree,
            "layers": [layer.to_json() for layer in self.layers],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


def _expect(value, types, what: str, where: str):
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise DesignError(f"{what} must be {_type_names(types)}, got {value!r}", where)
    if not isinstance(value, types):
        raise DesignError(f"{what} must be {_type_names(types)}, got {type(value).__name__}", where)
    return value


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({int: "an integer", str: "a string", list: "a list", dict: "an object",
                        bool: "true or false"}.get(t, t.__name__) for t in types)


def parse_shapes(raw, where: str, k: int = 3) -> tuple[KernelShape, ...]:
    """A list of shapes (lists of tap numbers) -> KernelShapes; DesignError naming the shape."""
    _expect(raw, list, "the shapes", where)
    if not raw:
        raise DesignError("an ASK layer needs at least one shape", where)
    shapes = []
    for i, taps in enumerate(raw):
        validate_taps(taps, k, f"{where}, shape {i + 1}")
        shapes.append(KernelShape(tuple(taps), k))
    return tuple(shapes)


def layer_from_json(raw, where: str) -> LayerChoice:
    _expect(raw, dict, "a layer", where)
    kind = raw.get("kind", "dense")
    if kind not in KINDS:
        raise DesignError(f"unknown kind {kind!r} (choose one of {', '.join(KINDS)})", where)
    for key in raw:
        if key != "kind" and key not in KIND_FIELDS[kind]:
            other = next((k for k, fields in KIND_FIELDS.items() if key in fields), None)
            if other is None:
                raise DesignError(f"unknown field {key!r} for a {kind} layer", where)
            why = WHY_NOT_BOTH.get(frozenset((kind, other)), "a layer has exactly one kind")
            raise DesignError(f"{key!r} belongs to {other} layers; a {kind} layer cannot also be {other}: {why}",
                              where)
    if kind == "dense":
        return DENSE
    if kind == "hetconv":
        return LayerChoice.hetconv(_positive(raw.get("part"), "part", where))
    if kind == "blocksparse":
        rate = _expect(raw.get("prune_rate"), (int, float), "prune_rate", where)
        check_prune_rate(rate, where)
        rearrange = _expect(raw.get("rearrange", False), bool, "rearrange", where)
        return LayerChoice.blocksparse(_positive(raw.get("block_n"), "block_n", where), rate, rearrange)
    if kind == "lowrank":
        return LayerChoice.lowrank(_positive(raw.get("rank"), "rank", where))
    if "preset" in raw:
        return LayerChoice.preset(_expect(raw["preset"], str, "preset", where), where)
    k = _expect(raw.get("k", 3), int, "k", where)
    return LayerChoice.ask(parse_shapes(raw.get("shapes"), where, k))


def _positive(value, what: str, where: str) -> int:
    if value is None:
        raise DesignError(f"{what} is missing", where)
    _expect(value, int, what, where)
    if value < 1:
        raise DesignError(f"{what} must be at least 1, got {value}", where)
    return value


def check_prune_rate(rate, where: str) -> None:
    if not 0 <= rate < 1:
        raise DesignError(f"prune_rate must be in [0, 1), got {rate}", where)


def design_from_json(raw) -> Design:
    """A design from its parsed JSON object; checks the data, not the network fit."""
    _expect(raw, dict, "a design", "design")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise DesignError(f"format {raw.get('format')!r} is not a Kernel Studio design", "design")
    version = raw.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DesignError(f"version {version!r} is not supported (this build reads version {FORMAT_VERSION})",
                          "design")
    net = _expect(raw.get("network", {}), dict, "network", "design")
    network = Network(
        arch=_expect(net.get("arch", "vgg"), str, "arch", "network"),
        depth=_expect(net.get("depth", 16), int, "depth", "network"),
        dataset=_expect(net.get("dataset", "cifar10"), str, "dataset", "network"),
    )
    dataset_info(network.dataset)
    layers = _expect(raw.get("layers", []), list, "layers", "design")
    padfree = _expect(raw.get("padfree", False), bool, "padfree", "design")
    return Design(network, tuple(layer_from_json(layer, f"layer {i + 1}") for i, layer in enumerate(layers)), padfree)


def load_json_text(text: str | bytes, where: str):
    """json.loads with a size limit and one clear message on malformed input."""
    if len(text) > MAX_JSON_BYTES:
        raise DesignError(f"the file is {len(text)} bytes; the limit is {MAX_JSON_BYTES}", where)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DesignError(f"malformed JSON: {err}", where) from None


def loads_design(text: str | bytes, where: str = "design") -> Design:
    return design_from_json(load_json_text(text, where))
