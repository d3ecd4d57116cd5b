"""The kinds of layer a design can give a convolution: one table, one entry per kind.

A LayerChoice is the data of one convolution's choice. A LayerKind says, in
one place, everything the rest of the code needs to know of a kind: its JSON
fields and how they are read, which convolutions it can replace and why not
(from the conv's own geometry), how to build it in place of a conv, its label,
how it is counted (the conv parts it runs, each with its active weights) and
the backends that run it. A new kind is a new entry here plus its layer in
models/layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from designer.designs.shapes import ASK_PRESETS, KERNEL_SIZES, KernelShape, preset_shapes, validate_taps
from designer.errors import DesignError, shown
from models.layers.ask import ASK_BACKENDS, AskConv2d
from models.layers.blocksparse import BLOCKSPARSE_BACKENDS, BlockSparseConv2d, kept_blocks
from models.layers.hetconv import HETCONV_BACKENDS, HetConv2d
from models.layers.lowrank import LowRankConv2d, max_rank
from models.layers.spec import ConvSpec


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
        return {"kind": self.kind, **{name: getattr(self, name) for name in KINDS[self.kind].fields}}


DENSE = LayerChoice()


@dataclass(frozen=True)
class ConvPart:
    """One convolution a layer runs, as counting sees it: its active weights, and the output it writes."""

    suffix: str  # "" for the layer itself, ".v" / ".h" for the factors of a low-rank pair
    weights: int
    out_pixels: int  # Ho * Wo of this part's output
    out_channels: int
    bias: bool


@dataclass(frozen=True)
class LayerKind:
    name: str
    label: str  # the kind in the app's words
    fields: tuple[str, ...]  # its JSON fields besides "kind"
    read: Callable[[dict, str], LayerChoice]  # its JSON object (fields checked) -> the choice; DesignError if bad
    why_not: Callable[[ConvSpec, LayerChoice], str | None]  # why it cannot replace this conv; None if it can
    build: Callable[[ConvSpec, LayerChoice, str], nn.Module]  # the module in place of such a conv, freshly made
    describe: Callable[[LayerChoice], str]  # a short label of one choice
    parts: Callable[[ConvSpec, tuple, tuple, LayerChoice], list[ConvPart]]  # counting: (spec, in, out size)
    backends: Mapping[str, Callable] | None = None  # name -> forward(module, x); None: plain torch modules
    needs_weights: bool = False  # made from the replaced conv's weights, even fresh (1xN: masks from L1 norms)


# --- reading JSON -------------------------------------------------------------------------------

def _positive(value, what: str, where: str) -> int:
    if value is None:
        raise DesignError(f"{what} is missing", where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DesignError(f"{what} must be an integer, got {shown(value)}", where)
    if value < 1:
        raise DesignError(f"{what} must be at least 1, got {shown(value)}", where)
    return value


def check_prune_rate(rate, where: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise DesignError(f"prune_rate must be a number, got {shown(rate)}", where)
    if not 0 <= rate < 1:
        raise DesignError(f"prune_rate must be in [0, 1), got {shown(rate)}", where)


def parse_shapes(raw, where: str, k: int = 3) -> tuple[KernelShape, ...]:
    """A list of shapes (lists of tap numbers) -> KernelShapes; DesignError naming the shape."""
    if not isinstance(raw, list):
        raise DesignError(f"the shapes must be a list, got {type(raw).__name__}", where)
    if not raw:
        raise DesignError("an ASK layer needs at least one shape", where)
    shapes = []
    for i, taps in enumerate(raw):
        validate_taps(taps, k, f"{where}, shape {i + 1}")
        shapes.append(KernelShape(tuple(taps), k))
    return tuple(shapes)


def _read_ask(raw: dict, where: str) -> LayerChoice:
    if "preset" in raw:
        if "shapes" in raw or raw.get("k", 3) != 3:
            raise DesignError("give either a preset or k and shapes, not both: a preset is its own 3x3 shapes",
                              where)
        if not isinstance(raw["preset"], str):
            raise DesignError(f"preset must be a string, got {type(raw['preset']).__name__}", where)
        return LayerChoice.preset(raw["preset"], where)
    k = raw.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int):
        raise DesignError(f"k must be an integer, got {shown(k)}", where)
    return LayerChoice.ask(parse_shapes(raw.get("shapes"), where, k))


def _read_blocksparse(raw: dict, where: str) -> LayerChoice:
    rate = raw.get("prune_rate")
    if rate is None:
        raise DesignError("prune_rate is missing", where)
    check_prune_rate(rate, where)
    rearrange = raw.get("rearrange", False)
    if not isinstance(rearrange, bool):
        raise DesignError(f"rearrange must be true or false, got {shown(rearrange)}", where)
    return LayerChoice.blocksparse(_positive(raw.get("block_n"), "block_n", where), rate, rearrange)


# --- which convolutions each kind can take -------------------------------------------------------

def _plain(spec: ConvSpec, kind: str) -> str | None:
    """Why a kind that needs a full square conv (one stride, one padding, no dilation) cannot take `spec`."""
    if spec.groups != 1:
        what = "depthwise" if spec.is_depthwise else f"grouped ({spec.groups} groups)"
        return f"{kind} needs a full convolution; this one is {what}"
    if not spec.k:
        return f"{kind} needs a square kernel; this one is {spec.kernel[0]}x{spec.kernel[1]}"
    if spec.dilation != (1, 1):
        return f"{kind} has no dilated form; this conv has dilation {spec.dilation}"
    if spec.stride[0] != spec.stride[1] or spec.padding[0] != spec.padding[1]:
        return f"{kind} needs one stride and one padding for both axes; this conv has stride {spec.stride}, " \
               f"padding {spec.padding}"
    if spec.padding_mode != "zeros":
        return f"{kind} pads with zeros; this conv pads in {spec.padding_mode!r} mode"
    return None


def _ask_why_not(spec: ConvSpec, choice: LayerChoice) -> str | None:
    why = _plain(spec, "ASK")
    if why:
        return why
    k = choice.shapes[0].k
    if spec.k == 1 or spec.k not in KERNEL_SIZES:
        return f"ASK shapes are {', '.join(f'{s}x{s}' for s in KERNEL_SIZES)}; this conv is {spec.k}x{spec.k}"
    if k != spec.k:
        return (f"{k}x{k} ASK shapes cannot replace a {spec.k}x{spec.k} convolution: a shape has the size of "
                f"the kernel it replaces")
    if spec.out_channels % len(choice.shapes):
        return f"{spec.out_channels} output channels cannot be split equally among {len(choice.shapes)} shapes"
    if spec.padding[0] != spec.k // 2:
        return f"ASK layers pad 'same' (k//2 = {spec.k // 2}); this conv has padding {spec.padding[0]} " \
               f"(padding-free downsampling)"
    return None


def _hetconv_why_not(spec: ConvSpec, choice: LayerChoice) -> str | None:
    why = _plain(spec, "HetConv")
    if why:
        return why
    if spec.k != 3 or spec.padding[0] not in (0, 1):
        return f"HetConv replaces 3x3 convs (padding 0 or 1); this one is {spec.k}x{spec.k}, padding {spec.padding[0]}"
    if spec.in_channels % choice.part or spec.out_channels % choice.part:
        return (f"part P = {choice.part} must divide the input ({spec.in_channels}) and output "
                f"({spec.out_channels}) channels")
    return None


def _blocksparse_why_not(spec: ConvSpec, choice: LayerChoice) -> str | None:
    why = _plain(spec, "1xN pruning")
    if why:
        return why
    if spec.out_channels % choice.block_n:
        return f"N = {choice.block_n} must divide the {spec.out_channels} output channels"
    return None


def _lowrank_why_not(spec: ConvSpec, choice: LayerChoice) -> str | None:
    why = _plain(spec, "low-rank")
    if why:
        return why
    top = max_rank(spec.in_channels, spec.out_channels, spec.k)
    if choice.rank > top:
        return (f"rank {choice.rank} is above the largest possible, {top} (min(C*kh, N*kw) for "
                f"{spec.in_channels}->{spec.out_channels}, {spec.k}x{spec.k})")
    return None


# --- building ------------------------------------------------------------------------------------

def _or_reference(backend: str, registry: Mapping) -> str:
    """A backend name only some kinds have (e.g. ASK's 'decomposed') falls back to 'reference'."""
    return backend if backend in registry else "reference"


def _build_ask(spec: ConvSpec, choice: LayerChoice, backend: str) -> nn.Module:
    return AskConv2d(spec.in_channels, spec.out_channels, list(choice.shapes), spec.stride[0], spec.bias,
                     backend=_or_reference(backend, ASK_BACKENDS))


def _build_hetconv(spec: ConvSpec, choice: LayerChoice, backend: str) -> nn.Module:
    return HetConv2d(spec.in_channels, spec.out_channels, choice.part, spec.stride[0], spec.padding[0], spec.bias,
                     backend=_or_reference(backend, HETCONV_BACKENDS))


def _build_blocksparse(spec: ConvSpec, choice: LayerChoice, backend: str) -> nn.Module:
    """Its mask is a placeholder until set_from_dense gives it weights (needs_weights)."""
    return BlockSparseConv2d(spec.in_channels, spec.out_channels, spec.k, choice.block_n, choice.prune_rate,
                             choice.rearrange, spec.stride[0], spec.padding[0], spec.bias,
                             _or_reference(backend, BLOCKSPARSE_BACKENDS))


def _build_lowrank(spec: ConvSpec, choice: LayerChoice, backend: str) -> nn.Module:
    return LowRankConv2d(spec.in_channels, spec.out_channels, spec.k, choice.rank, spec.stride[0],
                         spec.padding[0], spec.bias)


def _build_dense(spec: ConvSpec, choice: LayerChoice, backend: str) -> nn.Module:
    return nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.padding, spec.dilation,
                     spec.groups, spec.bias, spec.padding_mode)


# --- labels ---------------------------------------------------------------------------------------

def preset_name(choice: LayerChoice) -> str | None:
    """'dense', the ASK preset this choice is exactly, or None."""
    if choice.kind == "dense":
        return "dense"
    if choice.kind != "ask" or any(s.k != 3 for s in choice.shapes):
        return None
    taps = [tuple(s.taps) for s in choice.shapes]
    return next((name for name, shapes in ASK_PRESETS.items() if taps == [tuple(s) for s in shapes]), None)


def _describe_ask(choice: LayerChoice) -> str:
    name = preset_name(choice)
    if name is not None:
        return name
    k, n = choice.shapes[0].k, len(choice.shapes)
    sizes = ",".join(str(len(s)) for s in choice.shapes)
    return f"ASK {k}x{k}, {n} shape{'s' if n > 1 else ''} ({sizes} taps)"


def describe_choice(choice: LayerChoice) -> str:
    """A short label: 'dense', 'ASK_5a', 'ASK 3x3, 2 shapes (5,5 taps)', 'HetConv P=4', '1x16 pruned 50%',
    'low-rank r=9'."""
    return KINDS[choice.kind].describe(choice)


# --- counting -------------------------------------------------------------------------------------

def _one_part(weights: int, spec: ConvSpec, out_size: tuple) -> list[ConvPart]:
    return [ConvPart("", weights, out_size[0] * out_size[1], spec.out_channels, spec.bias)]


def _dense_parts(spec, in_size, out_size, choice) -> list[ConvPart]:
    kh, kw = spec.kernel
    return _one_part(spec.out_channels * spec.in_channels // spec.groups * kh * kw, spec, out_size)


def _ask_parts(spec, in_size, out_size, choice) -> list[ConvPart]:
    group_out = spec.out_channels // len(choice.shapes)
    return _one_part(sum(len(s) for s in choice.shapes) * spec.in_channels * group_out, spec, out_size)


def _hetconv_parts(spec, in_size, out_size, choice) -> list[ConvPart]:
    cin, p = spec.in_channels, choice.part
    return _one_part(spec.out_channels * (9 * cin // p + cin - cin // p), spec, out_size)


def _blocksparse_parts(spec, in_size, out_size, choice) -> list[ConvPart]:
    blocks = kept_blocks(spec.out_channels // choice.block_n, spec.in_channels, choice.prune_rate)
    return _one_part(blocks * choice.block_n * spec.k * spec.k, spec, out_size)


def _lowrank_parts(spec, in_size, out_size, choice) -> list[ConvPart]:
    """V (rank x C x k x 1, vertical stride) writes Ho x Wi; H (N x rank x 1 x k) writes Ho x Wo."""
    k, r = spec.k, choice.rank
    return [ConvPart(".v", r * spec.in_channels * k, out_size[0] * in_size[1], r, False),
            ConvPart(".h", spec.out_channels * r * k, out_size[0] * out_size[1], spec.out_channels, spec.bias)]


KINDS: dict[str, LayerKind] = {kind.name: kind for kind in (
    LayerKind("dense", "dense", (), lambda raw, where: DENSE, lambda spec, choice: None, _build_dense,
              lambda choice: "dense", _dense_parts),
    LayerKind("ask", "ASK shapes", ("k", "shapes", "preset"), _read_ask, _ask_why_not, _build_ask, _describe_ask,
              _ask_parts, ASK_BACKENDS),
    LayerKind("hetconv", "HetConv", ("part",),
              lambda raw, where: LayerChoice.hetconv(_positive(raw.get("part"), "part", where)),
              _hetconv_why_not, _build_hetconv, lambda choice: f"HetConv P={choice.part}", _hetconv_parts,
              HETCONV_BACKENDS),
    LayerKind("blocksparse", "1xN pruning", ("block_n", "prune_rate", "rearrange"), _read_blocksparse,
              _blocksparse_why_not, _build_blocksparse,
              lambda c: f"1x{c.block_n} pruned {c.prune_rate:.0%}" + (", rearranged" if c.rearrange else ""),
              _blocksparse_parts, BLOCKSPARSE_BACKENDS, needs_weights=True),
    LayerKind("lowrank", "low-rank", ("rank",),
              lambda raw, where: LayerChoice.lowrank(_positive(raw.get("rank"), "rank", where)),
              _lowrank_why_not, _build_lowrank, lambda choice: f"low-rank r={choice.rank}", _lowrank_parts),
)}

# Why one convolution cannot be two kinds at once (a layer has exactly one kind): said when a design JSON
# gives one kind's field to another kind's layer.
WHY_NOT_BOTH = {
    frozenset(("ask", "hetconv")): "HetConv's 3x3 part is a full grouped kernel, it has no ASK shapes",
    frozenset(("ask", "blocksparse")): "1xN pruning keeps or drops whole kh x kw kernels of a full conv",
    frozenset(("ask", "lowrank")): "the SVD factors of a masked kernel are full kh x 1 and 1 x kw kernels",
    frozenset(("hetconv", "blocksparse")): "1xN blocks span a full kernel, HetConv kernels differ per channel",
    frozenset(("hetconv", "lowrank")): "the factorisation needs one full kh x kw kernel per channel pair",
    frozenset(("blocksparse", "lowrank")): "the factors of a pruned kernel are dense again",
}


def why_not(spec: ConvSpec, choice: LayerChoice) -> str | None:
    """Why `choice` cannot replace a conv of this geometry (None: it can)."""
    return KINDS[choice.kind].why_not(spec, choice)


def build_layer(spec: ConvSpec, choice: LayerChoice, backend: str = "reference") -> nn.Module:
    """A fresh module of this choice for a conv of this geometry (a kind that needs weights: a placeholder)."""
    return KINDS[choice.kind].build(spec, choice, backend)


@torch.no_grad()
def layer_from_dense(spec: ConvSpec, choice: LayerChoice, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     backend: str = "reference") -> nn.Module:
    """The module of this choice made from a dense conv's weights: ASK keeps the active taps, HetConv its
    parts, 1xN its masks from their L1 norms, low-rank the SVD factors (each layer's set_from_dense)."""
    with torch.device(weight.device):
        module = build_layer(spec, choice, backend).to(weight.dtype)
    if choice.kind == "dense":
        module.weight.copy_(weight)
        if module.bias is not None:
            module.bias.copy_(bias if bias is not None else torch.zeros_like(module.bias))
    else:
        module.set_from_dense(weight, bias)
    return module
