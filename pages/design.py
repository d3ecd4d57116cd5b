"""Design page: pick a network, select layers, give them kernels (draw, preset, ...), import, export, undo."""
from __future__ import annotations

import json

import streamlit as st

from designer import editing
from designer.analysis import layer_table, totals
from designer.build import design_layers
from designer.cfglist import design_to_cfglist
from designer.data import DATASETS
from models import supports_padfree
from designer.design import DENSE, LayerChoice, Network
from designer.errors import DesignError
from designer.shapes import ASK_PRESETS, preset_shapes
from pages import state

d = state.design()
net = d.network
convs = design_layers(d)
n = len(convs)

st.title("Design")
st.caption("Pick a network, select the convolutions to change, and give them a kernel: draw the active taps, "
           "or apply an ASK preset. Counts update as you edit; every edit can be undone.")

# --- the network ---------------------------------------------------------------------------------

def _change_network() -> None:
    arch = st.session_state.net_arch
    depths = editing.depth_choices(arch)
    depth = st.session_state.net_depth if st.session_state.net_depth in depths else editing.default_depth(arch)
    network = Network(arch, depth, st.session_state.net_dataset)
    state.edit(lambda cur: editing.change_network(cur, network), f"network {editing.network_label(network)}",
               "network")
    st.session_state.sel_layers = list(range(len(state.design().layers)))


state.sync_widget("net_arch", net.arch)
state.sync_widget("net_depth", net.depth)
state.sync_widget("net_dataset", net.dataset)
c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
c1.selectbox("Architecture", editing.arch_choices(), key="net_arch", on_change=_change_network,
             format_func=lambda a: editing.ARCH_LABELS.get(a, a))
c2.selectbox("Depth", editing.depth_choices(net.arch), key="net_depth", on_change=_change_network)
c3.selectbox("Data set", sorted(DATASETS), key="net_dataset", on_change=_change_network)
with c4:
    h = state.history()
    u1, u2 = st.columns(2)
    u1.button("Undo", icon=":material/undo:", key="undo", on_click=state.undo, disabled=not h.can_undo, width="stretch",
              help=f"undo: {h.last_label()}" if h.can_undo else "nothing to undo")
    u2.button("Redo", icon=":material/redo:", key="redo", on_click=state.redo, disabled=not h.can_redo, width="stretch")
if supports_padfree(net.arch):
    state.sync_widget("padfree", d.padfree)
    st.toggle("Padding-free downsampling and hybrid stem", key="padfree",
              on_change=lambda: state.edit(lambda cur: editing.set_padfree(cur, st.session_state.padfree),
                                           "padding-free " + ("on" if st.session_state.padfree else "off"), "network"),
              help="the stem block and padding-free stride-2 layers (network-wide); this changes the list of "
                   "convolutions, so layer choices reset unless the list stays the same")
if state.error("network"):
    st.error(state.error("network"))

t = totals(d, state.convention())
m1, m2, m3, m4 = st.columns(4)
m1.metric("Params", f"{t.params / 1e6:.4f}M", f"{t.params_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m2.metric("FLOPs", f"{t.flops / 1e6:.2f}M", f"{t.flops_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m3.metric("FLOPs saved", f"{t.flops_saving:.2f}x", help="dense FLOPs / this design's FLOPs")
m4.metric("Convolutions", n, f"{sum(c.kind != 'dense' for c in d.layers)} changed", delta_color="off", delta_arrow="off")

# --- selection ---------------------------------------------------------------------------------

def _label(i: int) -> str:
    c = convs[i]
    return f"{i + 1} · {c.name} ({c.spec.in_channels}→{c.spec.out_channels}, {c.in_size[0]}px)"


def _select_range() -> None:
    lo, hi = st.session_state.sel_range
    st.session_state.sel_layers = list(range(lo - 1, hi))


def _select(indices) -> None:
    st.session_state.sel_layers = list(indices)


selection = [i for i in st.session_state.get("sel_layers", list(range(n))) if 0 <= i < n]
state.sync_widget("sel_layers", selection)
if not (isinstance(st.session_state.get("sel_range"), tuple) and st.session_state.sel_range[1] <= n):
    st.session_state.sel_range = (1, n)

st.subheader("Layers")
s1, s2 = st.columns([3, 2])
with s1:
    st.multiselect("Selected layers (the edits below apply to these)", list(range(n)), key="sel_layers",
                   format_func=_label, placeholder="select layers to edit")
with s2:
    st.slider("Select a range", 1, n, key="sel_range", on_change=_select_range,
              help="layers from..to, in forward order")
    b1, b2, b3 = st.columns(3)
    b1.button("All", key="sel_all", on_click=_select, args=(range(n),), width="stretch")
    b2.button("None", key="sel_none", on_click=_select, args=((),), width="stretch")
    b3.button("Invert", key="sel_invert", on_click=lambda: _select(
        [i for i in range(n) if i not in st.session_state.sel_layers]), width="stretch")
selection = sorted(st.session_state.sel_layers)

rows = layer_table(d, state.convention())
for row in rows:
    row["sel"] = (row["#"] - 1) in selection
st.dataframe(
    rows, hide_index=True, width="stretch", key="layer_table", height=min(len(rows), 16) * 35 + 38,
    column_order=["sel", "#", "layer", "Cin", "Cout", "kernel", "size", "stride", "choice", "params", "FLOPs",
                  "vs dense"],
    column_config={
        "sel": st.column_config.CheckboxColumn("✓", width="small", help="selected for editing"),
        "#": st.column_config.NumberColumn(width="small"),
        "params": st.column_config.NumberColumn(format="localized"),
        "FLOPs": st.column_config.NumberColumn(format="localized", help=f"per image, `{state.convention()}`"),
        "vs dense": st.column_config.ProgressColumn(format="%.2f", min_value=0.0, max_value=1.0,
                                                    help="this layer's FLOPs / the dense layer's"),
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
    ks = {convs[i].spec.kernel_size for i in selection}
    full = all(convs[i].spec.groups == 1 for i in selection)

    with tab_draw:
        if len(ks) > 1 or not full:
            st.info("Drawing needs full convolutions of one kernel size: the selection mixes "
                    + ("kernel sizes " + ", ".join(f"{k}x{k}" for k in sorted(ks)) if len(ks) > 1 else
                       "grouped (depthwise) convolutions") + ". Narrow the selection.")
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
            st.error(state.error("draw"))

    with tab_preset:
        p1, p2 = st.columns([1, 2])
        name = p1.selectbox("Preset", list(ASK_PRESETS), index=list(ASK_PRESETS).index("ASK_5a"), key="preset_name")
        pictures = [sh.picture() for sh in preset_shapes(name)]
        with p2:
            pc = st.columns(len(pictures))
            for j, pic in enumerate(pictures):
                pc[j].code(pic, language=None)
        p1.button(f"Apply {name} to {len(selection)} layer{'s' if len(selection) != 1 else ''}", key="apply_preset",
                  type="primary",
                  on_click=lambda: state.edit(lambda cur: editing.apply_preset(cur, selection, name),
                                              f"{name} on {len(selection)} layers", "preset"))
        if state.error("preset"):
            st.error(state.error("preset"))

    with tab_het:
        parts = editing.hetconv_parts(d, selection)
        if not parts:
            st.info("HetConv replaces full 3x3 convolutions whose channels a part P divides; the selection has "
                    "none in common (the first conv of VGG has 3 input channels: leave it out).")
        else:
            part = st.select_slider("Part P (each filter sees 1/P of its inputs through 3x3, the rest through 1x1)",
                                    parts, value=4 if 4 in parts else parts[0], key="het_part")
            st.button(f"Apply HetConv P={part} to {len(selection)} layers", key="apply_hetconv", type="primary",
                      on_click=lambda: state.edit(lambda cur: editing.set_choice(cur, selection,
                                                                                 LayerChoice.hetconv(part)),
                                                  f"HetConv P={part}", "hetconv"))
        if state.error("hetconv"):
            st.error(state.error("hetconv"))

    with tab_1xn:
        sizes = editing.block_sizes(d, selection)
        if not sizes:
            st.info("1xN pruning needs full convolutions; the selection holds grouped ones.")
        else:
            b1, b2, b3 = st.columns(3)
            block_n = b1.selectbox("Block N (consecutive output channels)", sizes,
                                   index=sizes.index(16) if 16 in sizes else len(sizes) - 1, key="block_n")
            rate = b2.slider("Prune rate", 0.0, 0.95, 0.5, 0.05, key="prune_rate")
            rearrange = b3.checkbox("Rearrange filters", key="rearrange",
                                    help="group similar filters before blocking (the paper's rearrangement)")
            st.button(f"Apply 1x{block_n} at {rate:.0%} to {len(selection)} layers", key="apply_1xn", type="primary",
                      on_click=lambda: state.edit(
                          lambda cur: editing.set_choice(cur, selection,
                                                         LayerChoice.blocksparse(block_n, rate, rearrange)),
                          f"1x{block_n} rate {rate:.2f}", "1xn"))
        if state.error("1xn"):
            st.error(state.error("1xn"))

    with tab_lowrank:
        top = editing.max_rank_of(d, selection)
        l1, l2 = st.columns(2)
        with l1:
            st.markdown("**By rank** (the same rank on every selected layer)")
            rank = st.number_input("Rank", 1, max(top, 1), min(16, max(top, 1)), key="lowrank_rank",
                                   help=f"at most {top} for this selection (min over layers of min(C*kh, N*kw))")
            st.button(f"Apply rank {rank}", key="apply_rank",
                      on_click=lambda: state.edit(lambda cur: editing.set_choice(cur, selection,
                                                                                 LayerChoice.lowrank(rank)),
                                                  f"low-rank {rank}", "lowrank"))
        with l2:
            st.markdown("**By speed-up ratio** (accnn: SVD + knapsack over the selected layers)")
            ratio = st.number_input("Speed-up ratio R", 1.1, 20.0, 2.0, 0.1, key="lowrank_ratio")
            if st.button(f"Select ranks for {ratio:.1f}x", key="apply_ratio"):
                with st.status(f"Selecting ranks for {len(selection)} layers (SVD of each, then a knapsack)...",
                               expanded=False) as status:
                    ok = state.edit(lambda cur: editing.lowrank_by_ratio(cur, selection, ratio),
                                    f"low-rank {ratio:.1f}x", "lowrank")
                    status.update(label="Ranks selected" if ok else "No ranks selected",
                                  state="complete" if ok else "error")
                st.rerun()
        if state.error("lowrank"):
            st.error(state.error("lowrank"))

    with tab_dense:
        st.button(f"Make {len(selection)} layer{'s' if len(selection) != 1 else ''} dense", key="make_dense",
                  on_click=lambda: state.edit(lambda cur: editing.set_choice(cur, selection, DENSE),
                                              f"dense on {len(selection)} layers", "dense"))
        if state.error("dense"):
            st.error(state.error("dense"))

# --- import and export ---------------------------------------------------------------------------

st.subheader("Import and export")
i1, i2 = st.columns(2)


def _import(text, source: str) -> None:
    ok = state.edit(lambda cur: editing.import_text(text, cur.network, source), f"import {source}", "import")
    if ok:
        st.session_state.sel_layers = list(range(len(state.design().layers)))


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
        st.error(state.error("import"), icon=":material/error:")

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
