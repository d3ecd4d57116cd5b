"""Editing a design: pure functions the app (and scripts) use to change one.

Everything here takes a Design and returns a new one (designs are frozen),
or describes one in words; nothing here draws or imports Streamlit. The app
keeps an undo History of designs; a failed edit raises DesignError naming
the layer and the problem and leaves the design as it was.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from designer.designs.datasets import dataset_info
from designer.designs.design import Design, Network, design_from_json, load_json_text
from designer.designs.kinds import DENSE, LayerChoice, describe_choice, preset_name
from designer.designs.shapes import KERNEL_SIZES, KernelShape, preset_shapes, tap_number, tap_position
from designer.errors import DesignError
from designer.networks.build import ConvLayer, can_take, check_layer_fits, dense_design, design_layers, validate
from designer.networks.convs import conv_layers
from designer.networks.cfglist import cfglist_layers, design_from_cfglist, parse_cfglist_text
from designer.networks.sources import network_label
from models import list_models, model_info, padfree_archs, supports_padfree
from models.layers.lowrank import max_rank

HISTORY_LIMIT = 100


# --- changing layers ---------------------------------------------------------------------------

def set_choice(design: Design, indices, choice: LayerChoice) -> Design:
    """The design with `choice` on the layers at `indices` (0-based), validated.

    DesignError (naming the first layer it does not fit) if the choice cannot
    replace one of them; the design passed in is untouched either way.
    """
    indices = sorted(set(indices))
    if not indices:
        raise DesignError("select at least one layer first", "selection")
    n = len(design.layers)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DesignError(f"layer {bad[0] + 1} does not exist (the network has {n} convolutions)", "selection")
    layers = list(design.layers)
    for i in indices:
        layers[i] = choice
    return validate(design.with_layers(layers))


def apply_preset(design: Design, indices, name: str) -> Design:
    """An ASK preset (or 'dense') on the layers at `indices`."""
    return set_choice(design, indices, DENSE if name == "dense" else LayerChoice.preset(name))


def apply_preset_to_3x3(design: Design, name: str) -> Design:
    """A preset on every full 3x3 convolution (what `--anycfg` does); other layers keep their choice."""
    return apply_preset(design, cfglist_layers(design.network, design.padfree), name)


def apply_blocksparse(design: Design, indices, block_n: int, rate: float, rearrange: bool) -> Design:
    """1xN pruning on the layers at `indices`; with `rearrange`, filters are sorted on the layers the
    original sorts (designer.networks.variants.rearranged_layers), the others get the plain block mask."""
    from designer.networks.variants import rearranged_layers

    pruned = set_choice(design, indices, LayerChoice.blocksparse(block_n, rate))
    if not rearrange:
        return pruned
    sort = set(indices) & set(rearranged_layers(design.network.arch, design_layers(design)))
    return pruned.with_layers(LayerChoice.blocksparse(block_n, rate, True) if i in sort else choice
                              for i, choice in enumerate(pruned.layers))


def change_network(design: Design, network: Network) -> Design:
    """The design on another network (architecture, depth or data set), keeping every layer choice that fits."""
    return carry_over(design, network, design.padfree and supports_padfree(network.arch))[0]


def with_dataset(network: Network, dataset: str) -> Network:
    """The network for another data set: same architecture, input and keyword arguments; the classes follow the
    data set (an image folder keeps the network's)."""
    classes = 0 if dataset_info(dataset).num_classes else network.num_classes
    return Network(network.arch, network.depth, dataset, classes, network.input_shape, network.kwargs)


def set_padfree(design: Design, on: bool) -> Design:
    """The padding-free switch, keeping every layer choice that still fits (see carry_over)."""
    if on and not supports_padfree(design.network.arch):
        raise DesignError(f"padding-free downsampling is defined for {', '.join(padfree_archs())}, not "
                          f"{design.network.arch}", "padfree")
    return carry_over(design, design.network, on)[0]


def carry_over(design: Design, network: Network, padfree: bool) -> tuple[Design, list[str]]:
    """`design`'s layer choices on (network, padfree), matched by module path, and why any were dropped.

    A choice is kept where the new network has a convolution of the same name and the same shape that
    can take it (a data-set change keeps them all but, with another number of classes, the classifier's);
    every other convolution starts dense. The notes name each dropped choice and the reason.
    """
    new = dense_design(network, padfree)
    if design.layers and new.network == design.network and padfree == design.padfree:
        return design, []
    old = {c.name: (c, choice) for c, choice in zip(design_layers(design), design.layers)}
    layers, notes = list(new.layers), []
    for conv in design_layers(new):
        before = old.pop(conv.name, None)
        if before is None or before[1].kind == "dense":
            continue
        old_conv, choice = before
        if old_conv.spec != conv.spec:
            notes.append(f"{conv.name}: {describe_choice(choice)} dropped, the convolution changed "
                         f"({_shape(old_conv)} -> {_shape(conv)})")
            continue
        try:
            check_layer_fits(choice, conv, conv.name)
        except DesignError as err:
            notes.append(f"{conv.name}: {describe_choice(choice)} dropped, {err.message}")
            continue
        layers[conv.index] = choice
    notes += [f"{name}: {describe_choice(choice)} dropped, the new network has no such convolution"
              for name, (_conv, choice) in old.items() if choice.kind != "dense"]
    return validate(new.with_layers(layers)), notes


def _shape(conv: ConvLayer) -> str:
    s = conv.spec
    groups = f", {s.groups} groups" if s.groups > 1 else ""
    return f"{s.in_channels}->{s.out_channels}, {s.k}x{s.k}, stride {s.stride}, pad {s.padding[0]}{groups}"


def hetconv_parts(design: Design, indices) -> list[int]:
    """HetConv parts P that fit every selected layer: P divides its input and output channels (3x3 convs)."""
    convs = design_layers(design)
    layers = [convs[i] for i in indices]
    if not layers or any(c.spec.k != 3 or c.spec.groups != 1 for c in layers):
        return []
    top = min(min(c.spec.in_channels, c.spec.out_channels) for c in layers)
    return [p for p in range(2, top + 1)
            if all(c.spec.in_channels % p == 0 and c.spec.out_channels % p == 0 for c in layers)]


def block_sizes(design: Design, indices) -> list[int]:
    """1xN block sizes N that divide the output channels of every selected (full) layer."""
    convs = design_layers(design)
    layers = [convs[i] for i in indices]
    if not layers or any(c.spec.groups != 1 for c in layers):
        return []
    top = min(c.spec.out_channels for c in layers)
    return [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= top and all(c.spec.out_channels % n == 0 for c in layers)]


def lowrank_targets(design: Design, indices, rank: int) -> tuple[list[int], list[str]]:
    """The selected layers a fixed low-rank `rank` is applied to, and why the others stay as they are: a
    layer whose factor pair would cost at least the dense conv's MACs stays dense (designer.networks.lowrank)."""
    from designer.networks.lowrank import why_not_lowrank

    from designer.networks.build import why_not_layer

    keep, notes = [], []
    convs = design_layers(design)
    for i in sorted(set(indices)):
        why = why_not_layer(LayerChoice.lowrank(rank), convs[i]) or why_not_lowrank(convs[i], rank)
        if why:
            notes.append(f"layer {i + 1} stays as it is: {why}")
        else:
            keep.append(i)
    return keep, notes


def max_rank_of(design: Design, indices) -> int:
    """The largest low-rank rank every selected layer takes (min over layers of min(C*kh, N*kw))."""
    convs = design_layers(design)
    return min((max_rank(convs[i].spec.in_channels, convs[i].spec.out_channels, convs[i].spec.k)
                for i in indices), default=0)


def arch_choices() -> list[str]:
    """The registered paper families, in the registry's order (the ASK paper's first)."""
    return list_models()


def depth_choices(arch: str) -> list[int]:
    """Depths a picker offers for `arch` (any other valid depth works from JSON and the CLI); [0] when fixed."""
    return list(model_info(arch).depths) or [0]


def default_depth(arch: str) -> int:
    return model_info(arch).default_depth


def has_depth(arch: str) -> bool:
    """Whether the family comes in several depths (the MobileNets have one fixed depth)."""
    return bool(model_info(arch).depths)


def source_input_size(network: Network) -> int:
    """The input side (pixels) the network's source defines: a paper family's (32), the crop of torchvision's
    weights (224 for most), 224 for an entry point."""
    from designer.networks.sources import ENTRY_POINT_INPUT
    from models.torchvision_models import default_input_shape

    if network.source == "paper":
        return model_info(network.arch).input_shape[-1]
    if network.source == "torchvision":
        return default_input_shape(network.arch)[-1]
    return ENTRY_POINT_INPUT[-1]


def full_kxk_layers(design: Design) -> list[int]:
    """Convolutions ASK shapes can take: full (ungrouped) k x k, k > 1, padded 'same'."""
    return [conv.index for conv in design_layers(design) if conv.spec.k in KERNEL_SIZES
            and can_take(LayerChoice.ask((KernelShape.full(conv.spec.k),)), conv)]


def ask_targets(design: Design, indices, k: int = 3) -> tuple[list[int], list[str]]:
    """The selected layers k x k ASK shapes can replace, and a note on the others (1x1, depthwise or other
    kernel sizes, padding-free downsampling), which stay as they are."""
    fits = set(full_kxk_layers(design))
    convs = design_layers(design)
    keep = [i for i in sorted(set(indices)) if i in fits and convs[i].spec.k == k]
    left = len(set(indices)) - len(keep)
    notes = [f"{left} selected layer{'s' if left != 1 else ''} cannot take {k}x{k} shapes (1x1, depthwise, another "
             f"kernel size or a padding-free downsampling) and stay{'s' if left == 1 else ''} as "
             f"{'it is' if left == 1 else 'they are'}"] if left else []
    return keep, notes


def layers_matching(design: Design, pattern: str) -> list[int]:
    """The design's convolutions whose module path matches `pattern` (designer.networks.variants.matching_layers)."""
    from designer.networks.variants import matching_layers
    return matching_layers(design_layers(design), pattern)


def hetconv_targets(design: Design, indices) -> tuple[list[int], list[str]]:
    """The selected layers HetConv is applied to, and why the others are left out: the first conv stays
    plain, as in the HetConv paper's VGG (3 input channels); HetConv replaces full 3x3 convolutions only."""
    keep, not_3x3, notes = [], [], []
    convs = design_layers(design)
    for i in sorted(set(indices)):
        spec = convs[i].spec
        if convs[i].role == "first":
            notes.append(f"layer {i + 1} ({convs[i].name}) stays as it is: HetConv keeps the first convolution "
                         f"plain, as the paper does")
        elif spec.k != 3 or spec.groups != 1:
            not_3x3.append(i)
        else:
            keep.append(i)
    if not_3x3:
        notes.append(f"{len(not_3x3)} selected layer{'s are' if len(not_3x3) > 1 else ' is'} not a full 3x3 "
                     f"convolution (1x1, depthwise or grouped) and stay{'s' if len(not_3x3) == 1 else ''} as "
                     f"{'they are' if len(not_3x3) > 1 else 'it is'}")
    return keep, notes


# --- groups of layers: stages and blocks ------------------------------------------------------

MAX_STAGES = 12  # more path groups than this (MobileNetV2's 19 features.N, VGG's 13 convs) merge by resolution


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive convolutions that belong together: a stage (layer3, features.denseblock3) or a block in it.

    name: the module path they share ('layer3'), or 'first - last' for a run merged by resolution;
    pattern: a name pattern that selects them (None when no simple one does); size: their output resolution.
    """

    name: str
    indices: tuple[int, ...]
    size: tuple[int, int]
    pattern: str | None = None
    blocks: tuple["LayerGroup", ...] = ()

    @property
    def label(self) -> str:
        n = len(self.indices)
        return f"{self.name} · {n} conv{'s' if n != 1 else ''} · {self.size[0]}×{self.size[1]}"


def layer_groups(design: Design) -> tuple[LayerGroup, ...]:
    """The design's convolutions grouped into stages (each with its blocks), in forward order.

    Stages follow the module paths: the first component after the prefix every name shares (ResNet's layer1..4,
    DenseNet's denseblockN and transitionN, EfficientNet's features.N); a stage holding more than half of the
    convolutions is split one level further (RegNet's trunk_output). Where that gives more than MAX_STAGES
    groups, consecutive groups at the same output resolution merge (MobileNetV2's 19 blocks make 5 stages,
    VGG's 13 convs its 5 resolutions). A stage's blocks are the next component of the path (layer3.0 ...) or,
    for a merged stage, the groups it merged. Cached per network."""
    return _layer_groups(design.network, design.padfree)


@lru_cache(maxsize=64)
def _layer_groups(network: Network, padfree: bool) -> tuple[LayerGroup, ...]:
    convs = conv_layers(network, padfree)
    if not convs:
        return ()
    items = [(c.index, c.name.split(".")) for c in convs]
    common = 0
    shortest = min(len(parts) for _, parts in items)
    while common < shortest - 1 and len({tuple(parts[:common + 1]) for _, parts in items}) == 1:
        common += 1
    stages = [(key, members, common) for key, members in _runs(items, common)]
    split = True
    while split:
        split = False
        for j, (_key, members, depth) in enumerate(stages):
            if len(members) > 1 and len(members) * 2 > len(items):
                finer = _runs(members, depth + 1)
                if len(finer) > 1:
                    stages[j:j + 1] = [(k, m, depth + 1) for k, m in finer]
                    split = True
                    break
    groups = [_path_group(convs, key, members, depth, with_blocks=True) for key, members, depth in stages]
    if len(groups) > MAX_STAGES:
        merged: list[list[LayerGroup]] = []
        for group in groups:
            if merged and merged[-1][-1].size == group.size:
                merged[-1].append(group)
            else:
                merged.append([group])
        groups = [run[0] if len(run) == 1 else _merged(run) for run in merged]
    return tuple(_unique_names(groups))


def _runs(items, depth: int) -> list[tuple[tuple[str, ...], list]]:
    """Consecutive runs of items whose paths agree on their first depth + 1 components."""
    runs: list[tuple[tuple[str, ...], list]] = []
    for index, parts in items:
        key = tuple(parts[:depth + 1])
        if runs and runs[-1][0] == key:
            runs[-1][1].append((index, parts))
        else:
            runs.append((key, [(index, parts)]))
    return runs


def _resolution(convs, indices) -> tuple[int, int]:
    """The output resolution of a group: its last conv's that is not a squeeze-excite 1x1 (else its last)."""
    sizes = [convs[i].out_size for i in indices]
    return next((s for s in reversed(sizes) if s != (1, 1)), sizes[-1])


def _path_group(convs, key, members, depth: int, with_blocks: bool) -> LayerGroup:
    name = ".".join(key)
    indices = tuple(i for i, _ in members)
    deeper = any(len(parts) > depth + 1 for _, parts in members)
    blocks: tuple[LayerGroup, ...] = ()
    if with_blocks and deeper:
        runs = _runs(members, depth + 1)
        if len(runs) > 1:
            blocks = tuple(_unique_names(_path_group(convs, k, m, depth + 1, False) for k, m in runs))
    return LayerGroup(name, indices, _resolution(convs, indices), f"{name}.*" if deeper else name, blocks)


def _merged(run: list[LayerGroup]) -> LayerGroup:
    first, last = run[0].name, run[-1].name
    head, _, tail = last.rpartition(".")
    name = f"{first}–{tail}" if head and first.startswith(head + ".") else f"{first} – {last}"
    indices = tuple(i for group in run for i in group.indices)
    blocks = tuple(LayerGroup(g.name, g.indices, g.size, g.pattern) for g in run)
    return LayerGroup(name, indices, run[-1].size, None, blocks)


def _unique_names(groups) -> list[LayerGroup]:
    """Groups with distinct names: a path that comes back later (not next to its first run) gets ' (2)'."""
    seen: dict[str, int] = {}
    out = []
    for group in groups:
        seen[group.name] = seen.get(group.name, 0) + 1
        if seen[group.name] > 1:
            group = LayerGroup(f"{group.name} ({seen[group.name]})", group.indices, group.size, None, group.blocks)
        out.append(group)
    return out


def stage_of(design: Design) -> list[str]:
    """The name of each convolution's stage (layer_groups), by layer index."""
    names = [""] * len(design.layers)
    for group in layer_groups(design):
        for i in group.indices:
            names[i] = group.name
    return names


def block_of(design: Design) -> list[str]:
    """The name of each convolution's block (its stage's name where the stage has no blocks), by layer index."""
    names = [""] * len(design.layers)
    for group in layer_groups(design):
        for block in group.blocks or (group,):
            for i in block.indices:
                names[i] = block.name
    return names


ELIGIBLE = {  # kind -> what "all eligible" selects (the layers the papers give that kind)
    "ask": "ASK shapes (full 3x3 convs)",
    "hetconv": "HetConv (full 3x3 convs but the first)",
    "blocksparse": "1xN pruning (full convs but the first and the classifier)",
    "lowrank": "low-rank (full convs but the classifier)",
}


def eligible_layers(design: Design, kind: str, indices=None) -> list[int]:
    """The convolutions (of `indices`, default all) that can take `kind` where the papers use it (ELIGIBLE):
    ASK presets on full 3x3 convs, HetConv on full 3x3 convs but the first, 1xN on full convs but the first
    and the classifier, low-rank on full convs but the classifier. A conv the forward runs twice is left out."""
    from designer.networks.variants import hetconv_layers, lowrank_layers, pruning_layers

    if kind not in ELIGIBLE:
        raise DesignError(f"unknown kind {kind!r} (choose one of {', '.join(ELIGIBLE)})", "selection")
    convs = design_layers(design)
    pool = range(len(convs)) if indices is None else sorted(set(indices))
    if kind == "ask":
        return ask_targets(design, pool, 3)[0]
    fits = set({"hetconv": hetconv_layers, "blocksparse": lambda c: pruning_layers(c, 1),
                "lowrank": lowrank_layers}[kind](convs))
    return [i for i in pool if i in fits]


def server_models(setting: str | None = None) -> tuple[list[str], list[str]]:
    """The entry points a server offers (KERNEL_STUDIO_MODELS: comma-separated package.module:callable; None
    reads the environment) and a note on each entry that is not one (left out)."""
    from models.entry_point import ENTRY_POINT

    text = os.environ.get("KERNEL_STUDIO_MODELS", "") if setting is None else setting
    names, notes = [], []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if ENTRY_POINT.match(item) and not item.startswith("torchvision:"):
            names.append(item)
        else:
            notes.append(f"KERNEL_STUDIO_MODELS: {item[:80]!r} is not package.module:callable; left out")
    return list(dict.fromkeys(names)), notes


def offer_only(names) -> None:
    """Let only these entry points build from now on (designer.networks.sources.restrict_entry_points), unless
    that is already the rule: the resolve cache is kept when nothing changes."""
    from designer.networks import sources

    if sources._allowed_entry_points != frozenset(names):
        sources.restrict_entry_points(names)


# --- drawing shapes ----------------------------------------------------------------------------

def toggle_tap(shape: KernelShape, tap: int) -> KernelShape:
    """The shape with `tap` switched; DesignError if that would leave it empty."""
    if not 1 <= tap <= shape.k * shape.k:
        raise DesignError(f"tap {tap} is out of range 1..{shape.k * shape.k}", "shape")
    if tap in shape.taps:
        if len(shape.taps) == 1:
            raise DesignError("a shape needs at least one active tap (remove the shape instead)", "shape")
        return KernelShape(tuple(t for t in shape.taps if t != tap), shape.k)
    return KernelShape(tuple(sorted((*shape.taps, tap))), shape.k)


def resize_shape(shape: KernelShape, k: int) -> KernelShape:
    """The shape on a k x k grid, centred; taps that fall outside are dropped (the centre if none is left)."""
    if k not in KERNEL_SIZES:
        raise DesignError(f"kernel size {k!r} is not supported (choose one of {KERNEL_SIZES})", "shape")
    offset = (k - shape.k) // 2
    taps = []
    for tap in shape.taps:
        r, c = tap_position(tap, shape.k)
        r, c = r + offset, c + offset
        if 0 <= r < k and 0 <= c < k:
            taps.append(tap_number(r, c, k))
    if not taps:
        taps = [tap_number(k // 2, k // 2, k)]
    return KernelShape(tuple(sorted(taps)), k)


def shapes_of(choice: LayerChoice, k: int = 3) -> tuple[KernelShape, ...]:
    """The shapes a choice draws as: its own for ASK, the full kernel otherwise."""
    if choice.kind == "ask" and choice.shapes:
        return tuple(choice.shapes)
    return (KernelShape.full(k),)


def channel_split(out_channels: int, n_shapes: int) -> list[int] | None:
    """Output channels per shape (equal split, ASK semantics), or None when they do not divide."""
    if n_shapes < 1 or out_channels % n_shapes:
        return None
    return [out_channels // n_shapes] * n_shapes


# --- naming ------------------------------------------------------------------------------------

def uniform_preset(design: Design) -> str | None:
    """The preset on every full 3x3 conv with every other conv dense ('dense' for the dense network), or None."""
    covered = set(cfglist_layers(design.network, design.padfree))
    names = {preset_name(choice) for i, choice in enumerate(design.layers) if i in covered}
    others = {preset_name(choice) for i, choice in enumerate(design.layers) if i not in covered}
    if len(names) != 1 or None in names or others - {"dense"}:
        return None
    return names.pop()


MAX_SUMMARY_RUNS = 8


def summarize(design: Design) -> str:
    """One line: 'VGG-16 on cifar10: ASK_5a x10, ASK_2 x3' (runs of equal choices, in order); past
    MAX_SUMMARY_RUNS runs, each choice's total in order of first use: 'dense x62, ASK_5a x58 (interleaved, ...)'."""
    net = design.network
    runs: list[list] = []
    for choice in design.layers:
        label = describe_choice(choice)
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    body = ", ".join(f"{label} x{n}" for label, n in runs) if runs else "no layers"
    if len(runs) > MAX_SUMMARY_RUNS:  # interleaved choices (DenseNet's 1x1 and 3x3): totals, not 100 runs
        counts: dict[str, int] = {}
        for label, n in runs:
            counts[label] = counts.get(label, 0) + n
        body = ", ".join(f"{label} x{n}" for label, n in counts.items()) + f" (interleaved, {len(runs)} runs)"
    pad = ", padding-free" if design.padfree else ""
    return f"{network_label(net)} on {net.dataset}: {body}{pad}"


# --- import ------------------------------------------------------------------------------------

def import_text(text: str | bytes, network: Network, where: str = "import", padfree: bool = False) -> Design:
    """A design from pasted or uploaded text: a Kernel Studio design JSON (any network) or an
    ASK cfglist (JSON or the ASK README's Python list) for `network`. DesignError when bad."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DesignError("the file is not UTF-8 text", where) from None
    stripped = text.strip()
    if not stripped:
        raise DesignError("nothing to import: paste a design JSON or an ASK cfglist", where)
    if stripped.startswith("{"):
        raw = load_json_text(stripped, where)
        if isinstance(raw, dict) and not ("network" in raw or "layers" in raw or "format" in raw):
            raise DesignError("a JSON object must be a Kernel Studio design (with 'network' and 'layers'); "
                              "a cfglist is a list", where)
        return validate(design_from_json(raw))
    return design_from_cfglist(network, parse_cfglist_text(stripped, where), where, padfree)


# --- undo --------------------------------------------------------------------------------------

@dataclass
class History:
    """Past designs for undo (and the undone ones for redo), bounded."""

    past: list = field(default_factory=list)
    future: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    limit: int = HISTORY_LIMIT

    def record(self, before: Design, label: str = "edit") -> None:
        """Call before replacing `before` with a new design."""
        self.past.append(before)
        self.labels.append(label)
        if len(self.past) > self.limit:
            del self.past[0], self.labels[0]
        self.future.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self.past)

    @property
    def can_redo(self) -> bool:
        return bool(self.future)

    def last_label(self) -> str | None:
        return self.labels[-1] if self.labels else None

    def undo(self, current: Design) -> Design:
        if not self.past:
            raise DesignError("nothing to undo", "undo")
        self.future.append((current, self.labels.pop()))
        return self.past.pop()

    def redo(self, current: Design) -> Design:
        if not self.future:
            raise DesignError("nothing to redo", "redo")
        design, label = self.future.pop()
        self.past.append(current)
        self.labels.append(label)
        return design


def preset_pictures(name: str) -> list[str]:
    """Text pictures of a preset's shapes (for captions)."""
    return [s.picture() for s in preset_shapes(name)]


def lowrank_by_ratio(design: Design, indices, ratio: float, seed: int = 0, weights: dict | None = None) -> Design:
    """accnn rank selection for a speed-up `ratio` on the selected layers, from the SVD of their dense weights.

    `weights`: a dense state_dict of the network (designer.networks.weights.dense_weights_of makes one from any run);
    without it, freshly initialised (seeded) weights, whose ranks differ from a trained network's although
    the budget holds either way.
    """
    import torch

    from designer.networks.build import build_model
    from designer.networks.lowrank import lowrank_design
    from designer.networks.weights import load_dense_weights

    indices = sorted(set(indices))
    if not indices:
        raise DesignError("select at least one layer first", "selection")
    if not ratio > 1:
        raise DesignError(f"the speed-up ratio must be above 1, got {ratio}", "low-rank ratio")
    convs = design_layers(design)
    bad = [convs[i].name for i in indices if convs[i].spec.groups != 1]
    if bad:
        raise DesignError(f"low-rank needs full convolutions; {bad[0]} is grouped", "low-rank ratio")
    base = design.with_layers(DENSE if i in indices else c for i, c in enumerate(design.layers))
    if weights is None:
        torch.manual_seed(seed)
        model = build_model(base)
    else:
        dense = dense_design(design.network, design.padfree)
        model = build_model(dense)
        load_dense_weights(model, dense, weights, "weights")
    with torch.no_grad():
        return validate(lowrank_design(base, indices, model, ratio))


# --- deriving a design from a trained network ---------------------------------------------------

DERIVATIONS = {  # how -> what it does (the papers' defaults)
    "1xN": "1x16 blocks pruned 50% (masks from the weights' L1 norms) on every full conv but the first and the "
           "classifier, as lmbxmu/1xN",
    "low-rank": "accnn ranks for a 2x speed-up (SVD of the weights) on every full conv but the classifier",
    "ASK_5a": "ASK_5a on every full 3x3 conv (the ASK paper's preset)",
}


def derive_design(base: Design, how: str, weights: dict | None = None) -> Design:
    """A design of `base`'s network made from a trained one: the classic next step after training dense.
    `weights` (a dense state_dict) feed the low-rank SVD; the 1xN masks come from the weights the run
    starts from when it is built."""
    from designer.networks.variants import lowrank_layers, pruning_layers

    if how not in DERIVATIONS:
        raise DesignError(f"unknown derivation {how!r} (choose one of {', '.join(DERIVATIONS)})", "derive")
    dense = dense_design(base.network, base.padfree)
    convs = design_layers(dense)
    if how == "ASK_5a":
        return apply_preset_to_3x3(dense, "ASK_5a")
    if how == "1xN":
        return set_choice(dense, pruning_layers(convs, 16), LayerChoice.blocksparse(16, 0.5))
    return lowrank_by_ratio(dense, lowrank_layers(convs), 2.0, weights=weights)
