"""Designs: a network and, for every convolution in forward order, its kernel choice.

A design is plain data with a versioned JSON form. Validation against the
network (number of layers, channel splits) lives in designer.networks.build, which
knows the network's convolutions; this module checks the data itself.
"""
from __future__ import annotations

import difflib
import json
import math
import sys
from dataclasses import dataclass, field

from designer.designs.datasets import dataset_info
from designer.designs.shapes import KernelShape, preset_shapes, validate_taps
from designer.errors import MAX_ECHO, DesignError, shown

FORMAT_NAME = "kernel-studio-design"
FORMAT_VERSION = 1  # later kinds (hetconv, blocksparse, lowrank) are optional fields: version 1 files still read
MAX_JSON_BYTES = 1_000_000
MAX_NESTING = 16  # lists and objects inside each other; a design needs 5, a cfglist 3
MAX_DEPTH = 1202  # the deepest CIFAR ResNet (He et al.'s 6n+2 with n = 200); VGG takes 11..19, MobileNets 0
DESIGN_KEYS = ("format", "version", "network", "padfree", "layers")
NETWORK_KEYS = ("arch", "depth", "dataset")
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


def check_keys(raw: dict, allowed, what: str, where: str, other_level: tuple = (), other_name: str = "") -> None:
    """DesignError naming the first key not in `allowed`, with the close match: a typo must not pass unseen.

    A key that belongs one level up or down (other_level) is named with where it goes."""
    for key in raw:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            if key in other_level:
                hint = f"; {key!r} is a key of {other_name}"
            elif not hint and did_you_mean(key, other_level):
                hint = did_you_mean(key, other_level)[:-1] + f", a key of {other_name}?"
            raise DesignError(f"unknown key {shown(key)} in {what}{hint} (the keys are {', '.join(allowed)})", where)


def did_you_mean(word: str, choices) -> str:
    """'; did you mean ...?' for the closest of `choices`, else ''."""
    close = difflib.get_close_matches(str(word)[:MAX_ECHO], list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def layer_from_json(raw, where: str) -> LayerChoice:
    _expect(raw, dict, "a layer", where)
    kind = raw.get("kind", "dense")
    if kind not in KINDS:
        raise DesignError(f"unknown kind {shown(kind)} (choose one of {', '.join(KINDS)})", where)
    for key in raw:
        if key != "kind" and key not in KIND_FIELDS[kind]:
            other = next((k for k, fields in KIND_FIELDS.items() if key in fields), None)
            if other is None:
                raise DesignError(f"unknown field {shown(key)} for a {kind} layer"
                                  f"{did_you_mean(key, ('kind',) + KIND_FIELDS[kind])}", where)
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
        if "shapes" in raw or raw.get("k", 3) != 3:
            raise DesignError("give either a preset or k and shapes, not both: a preset is its own 3x3 shapes",
                              where)
        return LayerChoice.preset(_expect(raw["preset"], str, "preset", where), where)
    k = _expect(raw.get("k", 3), int, "k", where)
    return LayerChoice.ask(parse_shapes(raw.get("shapes"), where, k))


def _positive(value, what: str, where: str) -> int:
    if value is None:
        raise DesignError(f"{what} is missing", where)
    _expect(value, int, what, where)
    if value < 1:
        raise DesignError(f"{what} must be at least 1, got {shown(value)}", where)
    return value


def check_prune_rate(rate, where: str) -> None:
    if not 0 <= rate < 1:
        raise DesignError(f"prune_rate must be in [0, 1), got {shown(rate)}", where)


def check_depth(depth, where: str) -> int:
    """A depth the network registry can be asked about in well under a second (the family checks the rest)."""
    _expect(depth, int, "depth", where)
    if not 0 <= depth <= MAX_DEPTH:
        raise DesignError(f"depth must be in 0..{MAX_DEPTH} (VGG 11/13/16/19, ResNet 6n+2 up to {MAX_DEPTH}, "
                          f"MobileNets 0), got {shown(depth)}", where)
    return depth


def design_from_json(raw) -> Design:
    """A design from its parsed JSON object; checks the data, not the network fit."""
    _expect(raw, dict, "a design", "design")
    check_keys(raw, DESIGN_KEYS, "a design", "design", NETWORK_KEYS, "the network")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise DesignError(f"format {shown(raw.get('format'))} is not a Kernel Studio design", "design")
    version = raw.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DesignError(f"version {shown(version)} is not supported (this build reads version {FORMAT_VERSION})",
                          "design")
    net = _expect(raw.get("network", {}), dict, "network", "design")
    check_keys(net, NETWORK_KEYS, "the network", "network", DESIGN_KEYS, "the design, not of the network")
    network = Network(
        arch=_expect(net.get("arch", "vgg"), str, "arch", "network"),
        depth=check_depth(net.get("depth", 16), "network"),
        dataset=_expect(net.get("dataset", "cifar10"), str, "dataset", "network"),
    )
    dataset_info(network.dataset)
    layers = _expect(raw.get("layers", []), list, "layers", "design")
    padfree = _expect(raw.get("padfree", False), bool, "padfree", "design")
    return Design(network, tuple(layer_from_json(layer, f"layer {i + 1}") for i, layer in enumerate(layers)), padfree)


def parse_json(text: str | bytes, where: str):
    """Strict json.loads: no duplicate keys, no NaN or infinities, at most MAX_NESTING deep; DesignError for
    each. A syntax error stays a json.JSONDecodeError, so a caller can try another form (the cfglist's)."""
    try:
        value = json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, where),
                           parse_constant=lambda name: _not_finite(name, where),
                           parse_float=lambda number: _finite(number, where))
    except (DesignError, json.JSONDecodeError):
        raise
    except RecursionError:
        raise DesignError(f"nested more than {MAX_NESTING} deep", where) from None
    except UnicodeDecodeError:
        raise DesignError("the text is not UTF-8", where) from None
    except ValueError:  # json.loads refuses integers past Python's int-to-str limit
        raise DesignError(f"a number has more than {sys.get_int_max_str_digits()} digits", where) from None
    check_nesting(value, where)
    return value


def _unique_keys(pairs: list, where: str) -> dict:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DesignError(f"the key {shown(twice)} is given twice in one object", where)
    return value


def _not_finite(name: str, where: str):
    raise DesignError(f"{name} is not a number JSON allows", where)


def _finite(number: str, where: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise DesignError(f"the number {shown(number)} is too large", where)
    return value


def check_nesting(value, where: str) -> None:
    """DesignError if lists and objects nest deeper than MAX_NESTING (checked without recursion)."""
    level, depth = [value], 0
    while True:
        containers = [item for item in level if isinstance(item, (list, tuple, dict))]
        if not containers:
            return
        depth += 1
        if depth > MAX_NESTING:
            raise DesignError(f"nested more than {MAX_NESTING} deep", where)
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]


def load_json_text(text: str | bytes, where: str):
    """parse_json with a size limit and one clear message on malformed input."""
    if len(text) > MAX_JSON_BYTES:
        raise DesignError(f"the file is {len(text)} bytes; the limit is {MAX_JSON_BYTES}", where)
    try:
        return parse_json(text, where)
    except json.JSONDecodeError as err:
        raise DesignError(f"malformed JSON: {err}", where) from None


def loads_design(text: str | bytes, where: str = "design") -> Design:
    return design_from_json(load_json_text(text, where))
