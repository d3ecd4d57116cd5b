"""Design page: pick a network (a paper family, a torchvision model or one of the server's own), select layers
(by stage and block, name pattern, 'all eligible', or in the table), give them kernels, import, export, undo."""
from __future__ import annotations

import json

import streamlit as st

from designer.analysis.tables import cost_name, layer_table, totals
from designer.designs.datasets import DATASETS, dataset_info
from designer.designs.design import Network, canonical_kwargs
from designer.designs.kinds import DENSE, LayerChoice
from designer.designs.shapes import ASK_PRESETS, KERNEL_SIZES, preset_shapes
from designer.errors import DesignError
from designer.networks import editing
from designer.networks.build import design_layers
from designer.networks.cfglist import design_to_cfglist
from designer.networks.sources import allowed_entry_points, parse_kwargs
from designer.networks.weights import dense_start_weights
from models import model_info, supports_padfree
from models.torchvision_models import torchvision_names
from pages import state

d = state.design()
net = d.network
convs = design_layers(d)
n = len(convs)
names = [c.name for c in convs]
position = {name: i for i, name in enumerate(names)}

st.title("Design")
st.caption("Pick a network, select the convolutions to change, and give them a kernel: draw the active taps, "
           "or apply an ASK preset. Counts update as you edit; every edit can be undone.")

# --- the network ---------------------------------------------------------------------------------

SOURCES = {"paper": "Paper family", "torchvision": "torchvision", "entry_point": "Your model"}
DEFAULT_TORCHVISION = "torchvision:resnet18"
MAX_NOTES = 8


def _move_to(network: Network, padfree: bool, label: str) -> None:
    """Carry the design over to another network (or padding-free switch), keeping what still fits, and keep
    the selection on the layers that are still there."""
    old = state.design()
    try:
        new, notes = editing.carry_over(old, network, padfree)
    except DesignError as err:
        st.session_state.errors["network"] = str(err)
        return
    state.clear_error("network")
    state.commit(new, label)
    kept = sum(choice.kind != "dense" for choice in new.layers)
    st.session_state.network_notes = ([f"{kept} layer choice{'s' if kept != 1 else ''} carried over."]
                                      if kept else []) + notes
    old_names = [c.name for c in design_layers(old)]
    new_names = [c.name for c in design_layers(new)]
    before = st.session_state.get("sel_layers", [])
    selected = [name for name in before if name in new_names]
    _select_names(new_names if set(before) >= set(old_names) or not selected else selected)


def _network(**changes) -> Network:
    """The current network with some of its fields changed."""
    now = state.design().network
    fields = dict(arch=now.arch, depth=now.depth, dataset=now.dataset, num_classes=now.num_classes,
                  input_shape=now.input_shape, kwargs=now.kwargs)
    fields.update(changes)
    return Network(**fields)


def _kept_classes(dataset: str) -> int:
    """A new model keeps the classes where the data set does not fix them (an image folder), else 0 (the data set's)."""
    return 0 if dataset_info(dataset).num_classes else state.design().network.num_classes


def _to(network: Network) -> None:
    padfree = state.design().padfree and network.source == "paper" and supports_padfree(network.arch)
    _move_to(network, padfree, f"network {editing.network_label(network)} on {network.dataset}")


def _change_source() -> None:
    source = st.session_state.net_source or state.design().network.source
    now = state.design().network
    if source == now.source:
        return
    dataset = now.dataset
    if source == "paper":
        _to(Network("vgg", editing.default_depth("vgg"), dataset, _kept_classes(dataset)))
    elif source == "torchvision":
        _to(Network(DEFAULT_TORCHVISION, 0, dataset, _kept_classes(dataset)))
    elif allowed_entry_points():
        _to(Network(allowed_entry_points()[0], 0, dataset, _kept_classes(dataset)))


def _change_arch() -> None:
    arch = st.session_state.net_arch
    depths = editing.depth_choices(arch)
    depth = st.session_state.net_depth if st.session_state.net_depth in depths else editing.default_depth(arch)
    dataset = state.design().network.dataset
    _to(Network(arch, depth, dataset, _kept_classes(dataset)))


def _change_model(key: str, prefix: str = "") -> None:
    dataset = state.design().network.dataset
    _to(Network(prefix + st.session_state[key], 0, dataset, _kept_classes(dataset)))


def _change_dataset() -> None:
    _to(editing.with_dataset(state.design().network, st.session_state.net_dataset))


def _change_input() -> None:
    size = int(st.session_state.net_input)
    _to(_network(input_shape=(state.design().network.input_shape[0], size, size)))


def _change_classes() -> None:
    _to(_network(num_classes=int(st.session_state.net_classes)))


def _change_kwargs() -> None:
    try:
        kwargs = canonical_kwargs(parse_kwargs(st.session_state.net_kwargs.strip() or "{}"))
    except DesignError as err:
        st.session_state.errors["network"] = str(err)
        return
    _to(_network(kwargs=kwargs))


def _toggle_padfree() -> None:
    on = st.session_state.padfree
    _move_to(state.design().network, on, "padding-free " + ("on" if on else "off"))


def _sync(key: str, value) -> None:
    """The network pickers follow the design when it changes (an undo, an import, a refused change), and keep
    what the user is typing otherwise."""
    if st.session_state.get("_net_synced") != net or st.session_state.get(key) is None:
        state.sync_widget(key, value)


for key, value in (("net_source", net.source), ("net_dataset", net.dataset), ("net_input", net.input_shape[-1]),
                   ("net_classes", net.num_classes)):
    _sync(key, value)
if net.source == "paper":
    _sync("net_arch", net.arch)
    _sync("net_depth", net.depth)
elif net.source == "torchvision":
    _sync("net_tv_model", net.name)
else:
    _sync("net_entry", net.arch)
    _sync("net_kwargs", json.dumps(net.kwargs_dict) if net.kwargs else "")
st.session_state._net_synced = net

top1, top2 = st.columns([3, 1], vertical_alignment="bottom")
source = top1.segmented_control(
    "Network from", list(SOURCES), format_func=SOURCES.get, key="net_source", on_change=_change_source,
    help="a CIFAR network of the papers; any torchvision classification model (weights=None); or a model of "
         "this server's own (KERNEL_STUDIO_MODELS)") or net.source
with top2:
    h = state.history()
    u1, u2 = st.columns(2)
    u1.button("Undo", icon=":material/undo:", key="undo", on_click=state.undo, disabled=not h.can_undo, width="stretch",
              help=f"undo: {h.last_label()}" if h.can_undo else "nothing to undo")
    u2.button("Redo", icon=":material/redo:", key="redo", on_click=state.redo, disabled=not h.can_redo, width="stretch")

offered = allowed_entry_points()
if source == "entry_point" and net.source != "entry_point" and not offered:
    server_names, server_notes = editing.server_models()
    st.info("This server offers no models of its own. A model is your code: a `package.module:callable` that "
            "returns an `nn.Module` (it may take `num_classes` and other keyword arguments), importable from the "
            "folder the app runs in. Name it when you start the app, e.g. "
            "`KERNEL_STUDIO_MODELS=mypkg.nets:build make run` (several: comma-separated). The app builds only "
            "the models this setting names, never one that a link or an uploaded design names; the CLI takes any "
            "(`--arch mypkg.nets:build`).", icon=":material/info:")
    for note in server_notes:
        st.caption(state.plain(note))
else:
    fixed_classes = bool(dataset_info(net.dataset).num_classes)
    c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 1.2, 1.2])
    if net.source == "paper":
        c1.selectbox("Architecture", editing.arch_choices(), key="net_arch", on_change=_change_arch,
                     format_func=lambda a: model_info(a).label)
        fixed_depth = not editing.has_depth(net.arch)
        c2.selectbox("Depth", editing.depth_choices(net.arch), key="net_depth", on_change=_change_arch,
                     disabled=fixed_depth, format_func=lambda v: "fixed" if fixed_depth else str(v),
                     help="this family has one depth" if fixed_depth else "number of weight layers")
        any_size = model_info(net.arch).any_input_size
    elif net.source == "torchvision":
        c1.selectbox("torchvision model", torchvision_names(), key="net_tv_model",
                     on_change=_change_model, args=("net_tv_model", "torchvision:"),
                     help=f"any of torchvision's {len(torchvision_names())} classification models (type to "
                          "search), built with weights=None: start from trained weights on the Train page")
        c2.caption(f"{n} convolutions; default input {editing.source_input_size(net)} px.")
        any_size = True
    else:
        c1.selectbox("Model (this server's)", offered or [net.arch], key="net_entry",
                     on_change=_change_model, args=("net_entry",),
                     help="the models KERNEL_STUDIO_MODELS names on this server")
        c2.text_input("Keyword arguments (JSON)", key="net_kwargs", on_change=_change_kwargs,
                      placeholder='{"width": 2}', help="passed to the callable; num_classes comes from the data set")
        any_size = True
    c3.selectbox("Data set", sorted(DATASETS), key="net_dataset", on_change=_change_dataset,
                 help="the images are resized to the network's input when a run loads them; only the classifier "
                      "follows the number of classes, so the layer choices are kept")
    c4.number_input("Input size (px)", 16, 1024, key="net_input", on_change=_change_input, disabled=not any_size,
                    help=f"{'x'.join(map(str, net.input_shape))} now (channels x height x width; the source's "
                         f"default is {editing.source_input_size(net)} px)"
                    if any_size else "this family is defined at 32x32 (its pooling and classifier fix the size)")
    c5.number_input("Classes", 1, 100_000, key="net_classes", on_change=_change_classes, disabled=fixed_classes,
                    help=f"{net.dataset} has {net.num_classes} classes" if fixed_classes else
                    "an image folder has as many classes as sub-folders")
if supports_padfree(net.arch) and net.source == "paper":
    state.sync_widget("padfree", d.padfree)
    st.toggle("Padding-free downsampling and hybrid stem", key="padfree", on_change=_toggle_padfree,
              help="the stem block and padding-free stride-2 layers (network-wide); this changes some "
                   "convolutions: every layer choice that still fits is kept, the others are listed")
if state.error("network"):
    st.error(state.plain(state.error("network")))
notes = st.session_state.get("network_notes")
if notes:
    st.info("\n".join(f"- {state.plain(note)}" for note in notes[:MAX_NOTES])
            + (f"\n- ... and {len(notes) - MAX_NOTES} more (below)" if len(notes) > MAX_NOTES else ""),
            icon=":material/info:")
    if len(notes) > MAX_NOTES:
        with st.expander(f"All {len(notes)} notes"):
            st.text("\n".join(notes))

t = totals(d, state.convention())
cost = cost_name(state.convention())
m1, m2, m3, m4 = st.columns(4)
m1.metric("Params", f"{t.params / 1e6:.4f}M", f"{t.params_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m2.metric(cost, f"{t.flops / 1e6:.2f}M", f"{t.flops_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m3.metric(f"{cost} saved", f"{t.flops_saving:.2f}x", help=f"dense {cost} / this design's {cost}")
m4.metric("Convolutions", n, f"{sum(c.kind != 'dense' for c in d.layers)} changed", delta_color="off", delta_arrow="off")

# --- selection: by module path, so it survives a change of network ------------------------------


def _label(name: str) -> str:
    if name not in position:
        return str(name)
    c = convs[position[name]]
    return f"{c.index + 1} · {c.name} ({c.spec.in_channels}→{c.spec.out_channels}, {c.in_size[0]}px)"


def _select_names(chosen) -> None:
    """Select these layers (kept in forward order); the range slider follows (it spans the selection)."""
    now = [c.name for c in design_layers(state.design())]
    where = {name: i for i, name in enumerate(now)}
    chosen = sorted({name for name in chosen if name in where}, key=where.get)
    st.session_state.sel_layers = chosen
    st.session_state.sel_range = (where[chosen[0]] + 1, where[chosen[-1]] + 1) if chosen else (1, len(now))


def _select(indices) -> None:
    now = [c.name for c in design_layers(state.design())]
    _select_names([now[i] for i in indices])


def _select_range() -> None:
    lo, hi = st.session_state.sel_range
    now = [c.name for c in design_layers(state.design())]
    st.session_state.sel_layers = now[lo - 1:hi]


# Only names of this network: anything else (another network's layer, a stale value) is dropped here.
stored = st.session_state.get("sel_layers", names)
selection_names = [name for name in stored if name in position]
if stored and not selection_names:  # e.g. an undo back to another network: start from all of its layers
    selection_names = names
state.sync_widget("sel_layers", selection_names)
lo_hi = st.session_state.get("sel_range")
if not (isinstance(lo_hi, tuple) and len(lo_hi) == 2 and all(isinstance(v, int) and 1 <= v <= n for v in lo_hi)):
    st.session_state.sel_range = (1, n)

# The view: the layers the table shows and the view buttons act on (a stage, a block, a name pattern).
groups = editing.layer_groups(d)
by_stage = {g.name: g for g in groups}
if st.session_state.get("view_stage") not in ("", *by_stage):
    st.session_state.view_stage = ""
stage = by_stage.get(st.session_state.get("view_stage", ""))
blocks = {b.name: b for b in stage.blocks} if stage else {}
if st.session_state.get("view_block") not in ("", *blocks):
    st.session_state.view_block = ""
pattern = st.session_state.get("sel_pattern", "").strip()
view = list(range(n))
if stage:
    view = list(blocks[st.session_state.view_block].indices if st.session_state.get("view_block") else stage.indices)
pattern_error = None
if pattern:
    try:
        matching = set(editing.layers_matching(d, pattern))
    except DesignError as err:
        pattern_error = str(err)
    else:
        view = [i for i in view if i in matching]
view_names = [names[i] for i in view]
st.session_state._view_names = view_names


def _changed(indices) -> int:
    return sum(d.layers[i].kind != "dense" for i in indices)


def _select_view(how: str) -> None:
    current = st.session_state.get("sel_layers", [])
    shown = st.session_state.get("_view_names", [])
    if not shown:
        text = st.session_state.get("sel_pattern", "").strip()
        st.session_state.errors["select"] = (f"no convolution matches {text!r}" if text else
                                             "the view is empty")
        return
    state.clear_error("select")
    if how == "replace":
        _select_names(shown)
    elif how == "add":
        _select_names([*current, *shown])
    else:
        _select_names([name for name in current if name not in set(shown)])


def _select_eligible() -> None:
    kind = st.session_state.sel_kind
    now = state.design()
    where = {c.name: c.index for c in design_layers(now)}
    found = editing.eligible_layers(now, kind, [where[name] for name in st.session_state.get("_view_names", [])
                                                 if name in where])
    if not found:
        st.session_state.errors["select"] = f"no layer shown can take {editing.ELIGIBLE[kind]}"
        return
    state.clear_error("select")
    _select(found)


def _select_in_table() -> None:
    """Rows ticked in the table: the selection inside the view follows them; outside the view it stays."""
    shown = st.session_state.get("_view_names", [])
    rows = st.session_state.layer_table["selection"]["rows"]
    ticked = {shown[r] for r in rows if 0 <= r < len(shown)}
    outside = [name for name in st.session_state.get("sel_layers", []) if name not in set(shown)]
    _select_names([*outside, *ticked])


st.subheader("Layers")
s1, s2 = st.columns([3, 2])
with s1:
    st.multiselect("Selected layers (the edits below apply to these)", names, key="sel_layers", wrap=False,
                   format_func=_label, placeholder="select layers to edit")
with s2:
    st.slider("Select a range", 1, max(n, 2), key="sel_range", on_change=_select_range,
              help="layers from..to, in forward order")
b1, b2, b3, b4, b5, b6 = st.columns([1, 1, 1, 1, 2.4, 1.6], vertical_alignment="bottom")
b1.button("All", key="sel_all", on_click=_select, args=(range(n),), width="stretch")
b2.button("Full k×k", key="sel_full", on_click=lambda: _select(editing.full_kxk_layers(state.design())),
          width="stretch", help="every full (ungrouped) k x k convolution with k > 1: what ASK shapes can take")
b3.button("None", key="sel_none", on_click=_select, args=((),), width="stretch")
b4.button("Invert", key="sel_invert", width="stretch", on_click=lambda: _select_names(
    [name for name in names if name not in st.session_state.sel_layers]))
kind = b5.selectbox("All eligible for", list(editing.ELIGIBLE), key="sel_kind", format_func=editing.ELIGIBLE.get,
                    help="the layers shown below (a stage, a block, a pattern, or all) that can take this kind "
                         "where the papers use it")
eligible = editing.eligible_layers(d, kind, view)
b6.button(f"Select {len(eligible)} eligible", key="sel_eligible", on_click=_select_eligible, width="stretch",
          disabled=not eligible)

v1, v2, v3, v4, v5, v6 = st.columns([2.4, 1.7, 2.2, 1.1, 0.8, 1.0], vertical_alignment="bottom")
v1.selectbox("Stage", ["", *by_stage], key="view_stage",
             format_func=lambda g: f"All stages ({n} convs)" if not g else
             f"{by_stage[g].label} · {_changed(by_stage[g].indices)} changed",
             help="stages follow the module paths (layer1..4, denseblocks, ...); a network with many small "
                  "groups is grouped by resolution")
v2.selectbox("Block", ["", *blocks], key="view_block", disabled=not blocks,
             format_func=lambda b: ("all blocks" if blocks else "-") if not b else
             f"{b} · {len(blocks[b].indices)} convs")
v3.text_input("Name pattern", key="sel_pattern", placeholder="e.g. layer3.*  or  *conv2",
              help="a shell-style pattern over the module paths (* any text, ? one character); text without a "
                   "wildcard matches anywhere in the name. It filters the table; the buttons select what it shows")
v4.button(f"Select {len(view)}", key="sel_match", on_click=_select_view, args=("replace",), width="stretch",
          help="select exactly the layers shown below")
v5.button("Add", key="sel_add", on_click=_select_view, args=("add",), width="stretch",
          help="add the layers shown below to the selection")
v6.button("Remove", key="sel_remove", on_click=_select_view, args=("remove",), width="stretch",
          help="take the layers shown below out of the selection")
if pattern_error:
    st.error(state.plain(pattern_error))
if state.error("select"):
    st.error(state.plain(state.error("select")))

selection = sorted(position[name] for name in st.session_state.sel_layers if name in position)
chosen = set(selection)
rows = layer_table(d, state.convention())
ticked = [r for r, i in enumerate(view) if i in chosen]
table_state = st.session_state.get("layer_table")
if table_state is None or list(table_state["selection"]["rows"]) != ticked:
    st.session_state.layer_table = {"selection": {"rows": ticked, "columns": [], "cells": []}}
where = [f"{stage.name}" + (f" / {st.session_state.view_block}" if st.session_state.get("view_block") else "")
         ] if stage else []
where += [state.plain(repr(pattern))] if pattern else []  # typed text: shown as typed
st.caption(f"Showing {len(view)} of {n} convolutions" + (f" ({', '.join(where)})" if where else "")
           + f" · {len(selection)} selected" + (f", {len(ticked)} of them shown" if len(view) < n else "")
           + ". Tick rows to select them.")
st.dataframe(
    [rows[i] for i in view], hide_index=True, width="stretch", key="layer_table",
    height=min(max(len(view), 1), 14) * 35 + 38, on_select=_select_in_table, selection_mode="multi-row",
    column_order=["#", "layer", "Cin", "Cout", "kernel", "size", "stride", "choice", "params", "FLOPs", "vs dense"],
    column_config={
        "#": st.column_config.NumberColumn(width=40),
        "layer": st.column_config.TextColumn(width=235, help="the module path"),
        "Cin": st.column_config.NumberColumn(width=48),
        "Cout": st.column_config.NumberColumn(width=50),
        "kernel": st.column_config.TextColumn(width=55),
        "size": st.column_config.TextColumn(width=68, help="input height x width"),
        "stride": st.column_config.NumberColumn(width=48),
        "choice": st.column_config.TextColumn(width=100),
        "params": st.column_config.NumberColumn(format="localized", width=80),
        "FLOPs": st.column_config.NumberColumn(cost, format="localized", width=95,
                                               help=f"per image, `{state.convention()}`"),
        "vs dense": st.column_config.ProgressColumn(format="%.2f", min_value=0.0, max_value=1.0, width=80,
                                                    help=f"this layer's {cost} / the dense layer's"),
    },
)

# --- editing the selected layers -------------------------------------------------------------------

st.subheader(f"Kernel for {len(selection)} selected layer{'s' if len(selection) != 1 else ''}")
if not selection:
    st.info("Select one or more layers above (or press **All**) to give them a kernel.")
else:
    first = d.layers[selection[0]]
    differ = len({d.layers[i] for i in selection}) > 1
    couts = sorted({convs[i].spec.out_channels for i in selection})
    tab_draw, tab_preset, tab_het, tab_1xn, tab_lowrank, tab_dense = st.tabs(
        ["Draw shapes", "ASK preset", "HetConv", "1xN pruning", "Low-rank", "Dense"])
    ks = {convs[i].spec.k for i in selection}
    full = all(convs[i].spec.groups == 1 for i in selection)

    with tab_draw:
        if len(ks) > 1 or not full:
            st.info("Drawing needs full convolutions of one kernel size: the selection mixes "
                    + ("kernel sizes " + ", ".join(f"{k}x{k}" if k else "non-square" for k in sorted(ks))
                       if len(ks) > 1 else "grouped (depthwise) convolutions") + ". Narrow the selection.")
        elif next(iter(ks)) not in KERNEL_SIZES:
            st.info("Drawing needs square k x k kernels with k in " + ", ".join(map(str, KERNEL_SIZES))
                    + ": the selection holds " + (f"{next(iter(ks))}x{next(iter(ks))}" if next(iter(ks)) else
                                                  "non-square") + " convolutions. Narrow the selection.")
        else:
            k_now = ks.pop()
            shapes = list(editing.shapes_of(first, k_now))
            if differ:
                st.caption(f"The selected layers differ; this shows layer {selection[0] + 1}. "
                           f"An edit here gives all {len(selection)} layers these shapes.")
            else:
                st.caption(f"{k_now}x{k_now} kernel. Click a tap to switch it on or off (blue = active). The output "
                           "channels of each layer are split equally among the shapes, in order.")

            def _apply_shapes(new_shapes, label):
                state.edit(lambda cur: editing.set_choice(cur, selection, LayerChoice.ask(new_shapes)), label, "draw")

            def _toggle(s: int, tap: int) -> None:
                try:
                    new = list(shapes)
                    new[s] = editing.toggle_tap(new[s], tap)
                except DesignError as err:
                    st.session_state.errors["draw"] = str(err)
                    return
                _apply_shapes(new, f"tap {tap} of shape {s + 1}")

            def _add_shape() -> None:
                _apply_shapes([*shapes, shapes[-1]], "add a shape")

            def _remove_shape(s: int) -> None:
                _apply_shapes([sh for j, sh in enumerate(shapes) if j != s], f"remove shape {s + 1}")

            splits = {c: editing.channel_split(c, len(shapes)) for c in couts}
            st.markdown("**Channel split:** " + "; ".join(
                f"{c} → {' + '.join(map(str, sp))}" if sp else f"{c} → :red[not divisible by {len(shapes)}]"
                for c, sp in splits.items()))
            cols = st.columns({3: 5, 5: 3, 7: 2}.get(k_now, 2))
            for s, shape in enumerate(shapes):
                with cols[s % len(cols)]:
                    st.markdown(f"**Shape {s + 1}** · {len(shape)} taps")
                    grid = shape.mask()
                    for r in range(shape.k):
                        row = st.columns(shape.k, gap="small")
                        for c in range(shape.k):
                            tap = r * shape.k + c + 1
                            row[c].button(f"{tap}", key=f"tap_{s}_{tap}",
                                          type="primary" if grid[r][c] else "secondary",
                                          on_click=_toggle, args=(s, tap), width="stretch")
                    if len(shapes) > 1:
                        st.button("Remove shape", key=f"remove_shape_{s}", on_click=_remove_shape, args=(s,))
            st.button("Add a shape", icon=":material/add:", key="add_shape", on_click=_add_shape,
                      help="a copy of the last shape; then edit it")
        if state.error("draw"):
            st.error(state.plain(state.error("draw")))

    with tab_preset:
        p1, p2 = st.columns([1, 2])
        name = p1.selectbox("Preset", list(ASK_PRESETS), index=list(ASK_PRESETS).index("ASK_5a"), key="preset_name")
        pictures = [sh.picture() for sh in preset_shapes(name)]
        with p2:
            pc = st.columns(len(pictures))
            for j, pic in enumerate(pictures):
                pc[j].code(pic, language=None)
        ask_layers, ask_notes = editing.ask_targets(d, selection)
        p1.button(f"Apply {name} to {len(ask_layers)} layer{'s' if len(ask_layers) != 1 else ''}", key="apply_preset",
                  type="primary", disabled=not ask_layers,
                  on_click=lambda: state.edit(lambda cur: editing.apply_preset(cur, ask_layers, name),
                                              f"{name} on {len(ask_layers)} layers", "preset"))
        for note in ask_notes:
            p1.caption(state.plain(note))
        if state.error("preset"):
            st.error(state.plain(state.error("preset")))

    with tab_het:
        het_layers, het_notes = editing.hetconv_targets(d, selection)
        parts = editing.hetconv_parts(d, het_layers)
        for note in het_notes:
            st.caption(state.plain(note))
        if not parts:
            st.info("HetConv replaces full 3x3 convolutions whose channels a part P divides; the selection has "
                    "none in common.")
        else:
            part = st.select_slider("Part P (each filter sees 1/P of its inputs through 3x3, the rest through 1x1)",
                                    parts, value=4 if 4 in parts else parts[0], key="het_part")
            st.button(f"Apply HetConv P={part} to {len(het_layers)} layer{'s' if len(het_layers) != 1 else ''}",
                      key="apply_hetconv", type="primary",
                      on_click=lambda: state.edit(lambda cur: editing.set_choice(cur, het_layers,
                                                                                 LayerChoice.hetconv(part)),
                                                  f"HetConv P={part}", "hetconv"))
        if state.error("hetconv"):
            st.error(state.plain(state.error("hetconv")))

    with tab_1xn:
        sizes = editing.block_sizes(d, selection)
        if not sizes:
            st.info("1xN pruning needs full convolutions; the selection holds grouped ones.")
        else:
            b1, b2, b3 = st.columns(3)
            block_n = b1.selectbox("Block N (consecutive output channels)", sizes,
                                   index=sizes.index(16) if 16 in sizes else len(sizes) - 1, key="block_n")
            rate = b2.slider("Prune rate", 0.0, 0.95, 0.5, 0.05, key="prune_rate")
            st.caption(f"The masks keep the blocks of largest L1 norm in the weights the run starts from: "
                       f"{state.plain(state.start_weights()[1])} (the Train page's *Start from*).")
            rearrange = b3.checkbox("Rearrange filters", key="rearrange",
                                    help="group similar filters before blocking, on the layers lmbxmu/1xN sorts "
                                         "(on MobileNets the expansion and final 1x1 convs; elsewhere every layer)")
            st.button(f"Apply 1x{block_n} at {rate:.0%} to {len(selection)} layers", key="apply_1xn", type="primary",
                      on_click=lambda: state.edit(
                          lambda cur: editing.apply_blocksparse(cur, selection, block_n, rate, rearrange),
                          f"1x{block_n} rate {rate:.2f}", "1xn"))
        if state.error("1xn"):
            st.error(state.plain(state.error("1xn")))

    with tab_lowrank:
        top = editing.max_rank_of(d, selection)
        weights_path, weights_label = state.start_weights()
        st.caption(f"Ranks by ratio come from the SVD of {state.plain(weights_label)} (the Train page's "
                   "*Start from*); the factors themselves are computed from the weights the run starts from.")
        l1, l2 = st.columns(2)
        with l1:
            st.markdown("**By rank** (the same rank on every selected layer)")
            rank = st.number_input("Rank", 1, max(top, 1), min(16, max(top, 1)), key="lowrank_rank",
                                   help=f"at most {top} for this selection (min over layers of min(C*kh, N*kw)); "
                                        "a layer where the rank saves no MACs stays dense")
            rank_layers, rank_notes = editing.lowrank_targets(d, selection, int(rank))
            st.button(f"Apply rank {rank} to {len(rank_layers)} layer{'s' if len(rank_layers) != 1 else ''}",
                      key="apply_rank", disabled=not rank_layers,
                      on_click=lambda: state.edit(lambda cur: editing.set_choice(cur, rank_layers,
                                                                                 LayerChoice.lowrank(rank)),
                                                  f"low-rank {rank}", "lowrank"))
            for note in rank_notes[:5]:
                st.caption(state.plain(note))
            if len(rank_notes) > 5:
                st.caption(f"... and {len(rank_notes) - 5} more layers stay as they are.")
        with l2:
            st.markdown("**By speed-up ratio** (accnn: SVD + knapsack over the selected layers)")
            ratio = st.number_input("Speed-up ratio R", 1.1, 20.0, 2.0, 0.1, key="lowrank_ratio")
            if st.button(f"Select ranks for {ratio:.1f}x", key="apply_ratio"):
                with st.status(f"Selecting ranks for {len(selection)} layers (SVD of each, then a knapsack)...",
                               expanded=False) as status:
                    try:
                        weights = dense_start_weights(d, weights_path)[0] if weights_path else None
                    except DesignError as err:
                        st.session_state.errors["lowrank"] = str(err)
                        ok = False
                    else:
                        ok = state.edit(lambda cur: editing.lowrank_by_ratio(cur, selection, ratio, weights=weights),
                                        f"low-rank {ratio:.1f}x", "lowrank")
                    status.update(label="Ranks selected" if ok else "No ranks selected",
                                  state="complete" if ok else "error")
                st.rerun()
        if state.error("lowrank"):
            st.error(state.plain(state.error("lowrank")))

    with tab_dense:
        st.button(f"Make {len(selection)} layer{'s' if len(selection) != 1 else ''} dense", key="make_dense",
                  on_click=lambda: state.edit(lambda cur: editing.set_choice(cur, selection, DENSE),
                                              f"dense on {len(selection)} layers", "dense"))
        if state.error("dense"):
            st.error(state.plain(state.error("dense")))

# --- import and export ---------------------------------------------------------------------------

st.subheader("Import and export")
i1, i2 = st.columns(2)


def _import(text, source: str) -> None:
    ok = state.edit(lambda cur: editing.import_text(text, cur.network, source, cur.padfree), f"import {source}", "import")
    if ok:
        _select(range(len(state.design().layers)))


def _import_paste() -> None:
    _import(st.session_state.get("import_text", ""), "pasted text")


def _import_file() -> None:
    upload = st.session_state.get("import_file")
    if upload is None:
        st.session_state.errors["import"] = "choose a file first"
        return
    _import(upload.getvalue(), upload.name)


with i1:
    st.markdown("**Import** a Kernel Studio design JSON, or an ASK cfglist for the network above "
                "(JSON, or the ASK README's Python list such as `[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3`).")
    tab_paste, tab_upload = st.tabs(["Paste", "Upload"])
    with tab_paste:
        st.text_area("Design JSON or cfglist", key="import_text", height=110,
                     placeholder="[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3")
        st.button("Import", key="import_paste", on_click=_import_paste)
    with tab_upload:
        st.file_uploader("A .json or .txt file (2 MB at most)", type=["json", "txt", "py"], key="import_file")
        st.button("Import file", key="import_upload", on_click=_import_file)
    if state.error("import"):
        st.error(state.plain(state.error("import")), icon=":material/error:")

with i2:
    st.markdown("**Export** the current design.")
    st.download_button("Design JSON", d.dumps(), file_name="design.json", mime="application/json",
                       key="export_design", icon=":material/download:")
    try:
        cfglist_text = json.dumps(design_to_cfglist(d))
    except DesignError as err:
        st.caption(f"No ASK cfglist for this design: {err}")
    else:
        st.download_button("ASK cfglist JSON", cfglist_text, file_name="cfglist.json", mime="application/json",
                           key="export_cfglist", icon=":material/download:")
        with st.expander("cfglist text"):
            st.code(cfglist_text, language="json", wrap_lines=True)
