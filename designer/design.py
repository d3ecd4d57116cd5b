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
FORMAT_VERSION = 1
MAX_JSON_BYTES = 1_000_000
KINDS = ("dense", "ask")


@dataclass(frozen=True)
class Network:
    arch: str = "vgg"
    depth: int = 16
    dataset: str = "cifar10"


@dataclass(frozen=True)
class LayerChoice:
    """How one convolution is built: 'dense' or 'ask' (shapes split the output channels)."""

    kind: str = "dense"
    shapes: tuple[KernelShape, ...] = ()

    @classmethod
    def ask(cls, shapes) -> "LayerChoice":
        return cls("ask", tuple(shapes))

    @classmethod
    def preset(cls, name: str, where: str | None = None) -> "LayerChoice":
        return cls.ask(preset_shapes(name, where))

    def to_json(self) -> dict:
        if self.kind == "ask":
            return {"kind": "ask", "k": self.shapes[0].k, "shapes": [list(s.taps) for s in self.shapes]}
        return {"kind": self.kind}


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
    if kind == "dense":
        return DENSE
    if "preset" in raw:
        return LayerChoice.preset(_expect(raw["preset"], str, "preset", where), where)
    k = _expect(raw.get("k", 3), int, "k", where)
    return LayerChoice.ask(parse_shapes(raw.get("shapes"), where, k))


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
