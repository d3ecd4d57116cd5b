"""Designs: a network and, for every convolution in forward order, its kernel choice.

A design is plain data with a versioned JSON form. Validation against the
network (number of layers, what each convolution can take) lives in
designer.networks.build, which knows the network's convolutions; this module
checks the data itself. Each layer kind's fields are read by its entry in
designer.designs.kinds.

Version 2 records where the network comes from (a paper family, torchvision,
or a user's entry point), its keyword arguments, input shape and number of
classes; version 1 files (arch, depth, dataset) still read.
"""
from __future__ import annotations

import difflib
import json
import math
import sys
from dataclasses import dataclass, field

from designer.designs.datasets import dataset_info
from designer.designs.kinds import KINDS, WHY_NOT_BOTH, LayerChoice
from designer.errors import MAX_ECHO, DesignError, shown

FORMAT_NAME = "kernel-studio-design"
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)
MAX_JSON_BYTES = 1_000_000
MAX_NESTING = 16  # lists and objects inside each other; a design needs 5, a cfglist 3
MAX_DEPTH = 1202  # the deepest CIFAR ResNet (He et al.'s 6n+2 with n = 200); VGG takes 11..19, MobileNets 0
MAX_CLASSES = 100_000
MAX_INPUT = 4096  # pixels per side, and input channels
DESIGN_KEYS = ("format", "version", "network", "padfree", "layers")
NETWORK_KEYS_V1 = ("arch", "depth", "dataset")
NETWORK_KEYS = ("source", "name", "depth", "dataset", "num_classes", "input_shape", "kwargs")
SOURCES = ("paper", "torchvision", "entry_point")
TORCHVISION = "torchvision:"


@dataclass(frozen=True)
class Network:
    """The network a design is for.

    arch: a paper family ('vgg', 'resnet', ...), 'torchvision:NAME', or a user's 'package.module:callable'.
    depth: the paper families' depth (0: the family's default; always 0 for other sources).
    dataset: what it trains on. num_classes and input_shape (C, H, W): 0 and () stand for the defaults, which
    designer.networks.sources fills in (every validated design carries them filled). kwargs: the builder's
    keyword arguments as canonical JSON text ('' for none), so a Network stays hashable.
    """

    arch: str = "vgg"
    depth: int = 0
    dataset: str = "cifar10"
    num_classes: int = 0
    input_shape: tuple[int, ...] = ()
    kwargs: str = ""

    @property
    def source(self) -> str:
        if self.arch.startswith(TORCHVISION):
            return "torchvision"
        return "entry_point" if ":" in self.arch else "paper"

    @property
    def name(self) -> str:
        return self.arch[len(TORCHVISION):] if self.source == "torchvision" else self.arch

    @property
    def kwargs_dict(self) -> dict:
        return json.loads(self.kwargs) if self.kwargs else {}

    def to_json(self) -> dict:
        return {"source": self.source, "name": self.name, "depth": self.depth, "dataset": self.dataset,
                "num_classes": self.num_classes, "input_shape": list(self.input_shape), "kwargs": self.kwargs_dict}


def canonical_kwargs(kwargs: dict | None) -> str:
    """The JSON text a Network keeps its keyword arguments as: sorted keys, no spaces; '' for none."""
    return json.dumps(kwargs, sort_keys=True, separators=(",", ":")) if kwargs else ""


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
            "network": self.network.to_json(),
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
    if not isinstance(kind, str) or kind not in KINDS:
        raise DesignError(f"unknown kind {shown(kind)} (choose one of {', '.join(KINDS)})", where)
    fields = KINDS[kind].fields
    for key in raw:
        if key != "kind" and key not in fields:
            other = next((k for k, entry in KINDS.items() if key in entry.fields), None)
            if other is None:
                raise DesignError(f"unknown field {shown(key)} for a {kind} layer"
                                  f"{did_you_mean(key, ('kind',) + fields)}", where)
            why = WHY_NOT_BOTH.get(frozenset((kind, other)), "a layer has exactly one kind")
            raise DesignError(f"{key!r} belongs to {other} layers; a {kind} layer cannot also be {other}: {why}",
                              where)
    return KINDS[kind].read(raw, where)


def check_depth(depth, where: str) -> int:
    """A depth the network registry can be asked about in well under a second (the family checks the rest)."""
    _expect(depth, int, "depth", where)
    if not 0 <= depth <= MAX_DEPTH:
        raise DesignError(f"depth must be in 0..{MAX_DEPTH} (VGG 11/13/16/19, ResNet 6n+2 up to {MAX_DEPTH}, "
                          f"MobileNets 0), got {shown(depth)}", where)
    return depth


def check_count(value, what: str, high: int, where: str) -> int:
    """A positive integer of at most `high` (0 stands for the default)."""
    _expect(value, int, what, where)
    if not 0 <= value <= high:
        raise DesignError(f"{what} must be in 0..{high}, got {shown(value)}", where)
    return value


def check_input_shape(value, where: str) -> tuple[int, ...]:
    """(C, H, W) of positive integers (or empty for the default)."""
    _expect(value, (list, tuple), "input_shape", where)
    if value and (len(value) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_INPUT
                                         for v in value)):
        raise DesignError(f"input_shape must be [C, H, W] of integers in 1..{MAX_INPUT}, got {shown(value)}", where)
    return tuple(value)


def network_from_json(net: dict, version: int) -> Network:
    if version == 1:
        check_keys(net, NETWORK_KEYS_V1, "the network", "network", DESIGN_KEYS, "the design, not of the network")
        arch = _expect(net.get("arch", "vgg"), str, "arch", "network")
    else:
        check_keys(net, NETWORK_KEYS, "the network", "network", DESIGN_KEYS, "the design, not of the network")
        source = _expect(net.get("source", "paper"), str, "source", "network")
        if source not in SOURCES:
            raise DesignError(f"unknown source {shown(source)} (choose one of {', '.join(SOURCES)})", "network")
        name = _expect(net.get("name", "vgg"), str, "name", "network")
        arch = TORCHVISION + name if source == "torchvision" else name
        if (source == "entry_point") != (":" in name):
            raise DesignError(f"{shown(name)} is not a {source} name (an entry point is package.module:callable, "
                              f"other names have no ':')", "network")
    kwargs = _expect(net.get("kwargs", {}), dict, "kwargs", "network")
    network = Network(
        arch=arch,
        depth=check_depth(net.get("depth", 16 if version == 1 else 0), "network"),  # v2: 0 = the family's default
        dataset=_expect(net.get("dataset", "cifar10"), str, "dataset", "network"),
        num_classes=check_count(net.get("num_classes", 0), "num_classes", MAX_CLASSES, "network"),
        input_shape=check_input_shape(net.get("input_shape", []), "network"),
        kwargs=canonical_kwargs(kwargs),
    )
    dataset_info(network.dataset)
    return network


def design_from_json(raw) -> Design:
    """A design from its parsed JSON object (version 1 or 2); checks the data, not the network fit."""
    _expect(raw, dict, "a design", "design")
    check_keys(raw, DESIGN_KEYS, "a design", "design", NETWORK_KEYS + NETWORK_KEYS_V1, "the network")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise DesignError(f"format {shown(raw.get('format'))} is not a Kernel Studio design", "design")
    net = _expect(raw.get("network", {}), dict, "network", "design")
    version = raw.get("version", 1 if "arch" in net else FORMAT_VERSION)  # no version: read by its network's keys
    if version not in READS_VERSIONS:
        raise DesignError(f"version {shown(version)} is not supported (this build reads versions "
                          f"{', '.join(map(str, READS_VERSIONS))})", "design")
    network = network_from_json(net, version)
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


def read_text(path: str, what: str, limit: int = MAX_JSON_BYTES) -> str:
    """A text file of at most `limit` bytes, read no further than that (`--design /dev/zero` is refused)."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as err:
        raise DesignError(f"cannot read {what}: {err.strerror}", path) from None
    if len(data) > limit:
        raise DesignError(f"{what} is larger than the limit of {limit} bytes", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DesignError(f"{what} is not UTF-8 text", path) from None
