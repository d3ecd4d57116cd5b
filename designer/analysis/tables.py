"""What the app shows about a design: the layer table, totals against dense, per-layer comparisons.

Thin views over designer.analysis.counting (the one home of the counting rules) and
designer.networks.build (the network's convolutions); all cached there, so the app
can call these on every redraw. No Streamlit here.
"""
from __future__ import annotations

from dataclasses import dataclass

from designer.analysis.counting import Count, count_design
from designer.designs.design import Design
from designer.networks.build import dense_design, design_layers
from designer.networks.editing import describe_choice, layer_groups


@dataclass(frozen=True)
class Totals:
    convention: str
    params: int
    flops: int
    dense_params: int
    dense_flops: int

    @property
    def params_ratio(self) -> float:
        """Params of the design / params of the dense network."""
        return self.params / self.dense_params if self.dense_params else 1.0

    @property
    def flops_ratio(self) -> float:
        return self.flops / self.dense_flops if self.dense_flops else 1.0

    @property
    def flops_saving(self) -> float:
        """How many times fewer FLOPs than dense (dense / design)."""
        return self.dense_flops / self.flops if self.flops else float("inf")


def totals(design: Design, convention: str = "macs") -> Totals:
    count = count_design(design, convention)
    dense = count_design(dense_design(design.network, design.padfree), convention)  # the plain network is the baseline
    return Totals(convention, count.params, count.flops, dense.params, dense.flops)


def _belongs(entry_name: str, conv_name: str) -> bool:
    return entry_name == conv_name or entry_name.startswith(conv_name + ".")


def conv_counts(count: Count, names: list[str]) -> dict[str, tuple[int, int]]:
    """(params, flops) per convolution name, summing the counted modules inside it (e.g. a low-rank pair)."""
    out = {name: [0, 0] for name in names}
    for entry in count.layers:
        if entry.kind != "conv":
            continue
        for name in names:
            if _belongs(entry.name, name):
                out[name][0] += entry.params
                out[name][1] += entry.flops
                break
    return {name: (p, f) for name, (p, f) in out.items()}


def layer_table(design: Design, convention: str = "macs") -> list[dict]:
    """One row per convolution: index, name, Cin, Cout, size, stride, choice, params, FLOPs, FLOPs vs dense."""
    convs = design_layers(design)
    names = [c.name for c in convs]
    ours = conv_counts(count_design(design, convention), names)
    dense = conv_counts(count_design(dense_design(design.network, design.padfree), convention), names)
    rows = []
    for conv, choice in zip(convs, design.layers):
        params, flops = ours[conv.name]
        spec = conv.spec
        rows.append({
            "#": conv.index + 1,
            "layer": conv.name,
            "Cin": spec.in_channels,
            "Cout": spec.out_channels,
            "kernel": f"{spec.kernel[0]}x{spec.kernel[1]}" + (f" g{spec.groups}" if spec.groups > 1 else ""),
            "size": f"{conv.in_size[0]}x{conv.in_size[1]}",
            "stride": spec.stride[0] if spec.stride[0] == spec.stride[1] else f"{spec.stride[0]}x{spec.stride[1]}",
            "choice": describe_choice(choice),
            "params": params,
            "FLOPs": flops,
            "vs dense": flops / dense[conv.name][1] if dense[conv.name][1] else 1.0,
        })
    return rows


def layer_comparison(design: Design, convention: str = "macs") -> list[dict]:
    """Every counted conv and linear layer with the design's and the dense network's params and FLOPs."""
    ours = count_design(design, convention)
    dense = count_design(dense_design(design.network, design.padfree), convention)
    acc: dict[str, list[int]] = {}
    order: list[str] = []
    convs = [c.name for c in design_layers(design)]

    def key(name: str) -> str:
        for conv in convs:
            if _belongs(name, conv):
                return conv
        return name

    for source, slot in ((dense, 0), (ours, 1)):
        for entry in source.layers:
            if entry.kind not in ("conv", "linear"):
                continue
            name = key(entry.name)
            if name not in acc:
                acc[name] = [0, 0, 0, 0]
                order.append(name)
            acc[name][slot * 2] += entry.params
            acc[name][slot * 2 + 1] += entry.flops
    return [{"layer": name, "dense params": v[0], "dense FLOPs": v[1], "params": v[2], "FLOPs": v[3]}
            for name, v in ((n, acc[n]) for n in order)]


def stage_comparison(design: Design, convention: str = "macs") -> list[dict]:
    """Per stage (designer.networks.editing.layer_groups), in forward order: its convolutions, how many the
    design changes, and the design's and the dense network's params and FLOPs. A linear layer outside every
    stage (the classifier) is a row of its own."""
    convs = design_layers(design)
    stage = {}
    for group in layer_groups(design):
        for i in group.indices:
            stage[convs[i].name] = group
    out: dict[str, dict] = {}
    for row in layer_comparison(design, convention):
        group = stage.get(row["layer"])
        name = group.name if group else row["layer"]
        entry = out.setdefault(name, {
            "stage": name, "size": f"{group.size[0]}×{group.size[1]}" if group else "",
            "convs": len(group.indices) if group else 0,
            "changed": sum(design.layers[i].kind != "dense" for i in group.indices) if group else 0,
            "dense params": 0, "dense FLOPs": 0, "params": 0, "FLOPs": 0})
        for key in ("dense params", "dense FLOPs", "params", "FLOPs"):
            entry[key] += row[key]
    for entry in out.values():
        entry["vs dense"] = entry["FLOPs"] / entry["dense FLOPs"] if entry["dense FLOPs"] else 1.0
    return list(out.values())


def layer_rows(design: Design, convention: str = "macs", indices=None, top: int | None = None) -> list[dict]:
    """layer_comparison's rows with each conv's number ('#', 1-based; a linear layer has none) and choice:
    only the convolutions at `indices` (a stage's) when given, else every layer; with `top`, the `top` rows of
    largest dense FLOPs, costliest first (else forward order)."""
    convs = design_layers(design)
    by_name = {c.name: c for c in convs}
    keep = None if indices is None else {convs[i].name for i in indices}
    rows = []
    for row in layer_comparison(design, convention):
        conv = by_name.get(row["layer"])
        if keep is not None and row["layer"] not in keep:
            continue
        rows.append({"#": conv.index + 1 if conv else None, **row,
                     "choice": describe_choice(design.layers[conv.index]) if conv else "linear"})
    if top is not None:
        rows = sorted(rows, key=lambda r: (-r["dense FLOPs"], -r["FLOPs"]))[:top]
    return rows


def kernel_label(spec) -> str:
    """'3x3', '1x1', '5x5 depthwise' or '3x3 g4': what a convolution's kernel is."""
    size = f"{spec.kernel[0]}x{spec.kernel[1]}"
    if spec.groups == 1:
        return size
    return f"{size} depthwise" if spec.is_depthwise else f"{size} g{spec.groups}"


def _usage(grids: list[list[list[int]]]) -> list[list[float]]:
    """The share of output channels using each tap, the channels split equally among the grids (ASK)."""
    rows, cols = len(grids[0]), len(grids[0][0])
    return [[sum(g[r][c] for g in grids) / len(grids) for c in range(cols)] for r in range(rows)]


def tap_usage(design: Design, indices=None) -> list[dict]:
    """Per convolution: its kernel, its shapes as k x k 0/1 grids with their channel counts, and the
    fraction of output channels using each tap (what the heatmaps show).

    Dense convs of any size use every tap (a 1x1 has one; a depthwise conv is a full k x k per channel);
    ASK draws its shapes; HetConv, 1xN and low-rank are not tap shapes, so their usage is None.
    """
    out = []
    keep = None if indices is None else set(indices)
    for conv, choice in zip(design_layers(design), design.layers):
        if keep is not None and conv.index not in keep:
            continue
        entry = {"layer": conv.name, "index": conv.index, "kind": choice.kind, "kernel": kernel_label(conv.spec),
                 "choice": describe_choice(choice), "shapes": [], "usage": None}
        if choice.kind == "ask":
            entry["shapes"] = [[[int(on) for on in row] for row in shape.mask()] for shape in choice.shapes]
        elif choice.kind == "dense":
            kh, kw = conv.spec.kernel
            entry["shapes"] = [[[1] * kw for _ in range(kh)]]
        if entry["shapes"]:
            entry.update(k=len(entry["shapes"][0]), usage=_usage(entry["shapes"]),
                         channels=conv.spec.out_channels // len(entry["shapes"]))
        else:
            entry["k"] = conv.spec.kernel[0]
        out.append(entry)
    return out


def layer_ranges(indices: list[int], limit: int | None = None) -> str:
    """1-based layer numbers in runs: [0, 1, 2, 5] -> '1-3, 6'; cut to about `limit` characters with ', ...'
    (a chart title has room for a few runs, MobileNet's 1x1 convs are 20)."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in runs]
    text = ", ".join(parts)
    if limit is None or len(text) <= limit:
        return text
    kept = []
    for part in parts:
        if len(", ".join(kept + [part])) > limit - 5:
            break
        kept.append(part)
    return ", ".join(kept + ["..."])


def kernel_groups(design: Design, indices=None) -> list[dict]:
    """tap_usage with equal kernels drawn once: one entry per distinct (kernel, choice, usage), in order of
    first appearance, with the layers that share it ('1-10, 13'). MobileNetV3's 64 convs are 5 pictures.
    `indices`: only these convolutions (a stage's, say)."""
    groups: dict[tuple, dict] = {}
    for u in tap_usage(design, indices):
        if u["usage"] is None:
            continue
        key = (u["kernel"], u["choice"], str(u["usage"]))
        group = groups.setdefault(key, {**u, "indices": []})
        group["indices"].append(u["index"])
    for group in groups.values():
        group["layers"] = layer_ranges(group["indices"])
    return list(groups.values())


def cost_name(convention: str) -> str:
    """What a convention's compute count is called: 'MACs' under macs, the papers' 'FLOPs' under ask and bsconv."""
    return "MACs" if convention == "macs" else "FLOPs"
