"""Analyze page: per-layer params and MACs/FLOPs against the dense network, kernel shapes, totals, paper figures."""
from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from designer.analysis.paper_figures import figures_for
from designer.analysis.tables import (cost_name, kernel_groups, layer_comparison, layer_ranges, layer_rows,
                                      stage_comparison, tap_usage, totals)
from designer.networks.editing import layer_groups, network_label, summarize
from pages import state

d = state.design()
st.title("Analyze")
st.caption(summarize(d))
conv = state.convention_picker("analyze_convention")
cost = cost_name(conv)
t = totals(d, conv)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Params", f"{t.params / 1e6:.4f}M", f"{t.params_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m2.metric(cost, f"{t.flops / 1e6:.2f}M", f"{t.flops_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m3.metric("Dense params", f"{t.dense_params / 1e6:.4f}M")
m4.metric(f"Dense {cost}", f"{t.dense_flops / 1e6:.2f}M", f"{t.flops_saving:.2f}x saved", delta_color="off",
          delta_arrow="off")

figures = figures_for(d)
if figures:
    st.subheader("Beside the paper")
    ours = {c: totals(d, c) for c in {f.convention for f in figures}}
    st.dataframe([{
        "source": f.source, "convention": f.convention,
        "paper params (M)": f.params_m, "ours params (M)": round(ours[f.convention].params / 1e6, 4),
        "paper FLOPs (M)": f.flops_m, "ours FLOPs (M)": round(ours[f.convention].flops / 1e6, 2),
        "paper latency (ms)": f.latency_ms, "paper accuracy (%)": f.accuracy,
    } for f in figures], hide_index=True, width="stretch", key="paper_table")
    st.caption("Paper latencies are the ASK authors' CUDA kernel on an RTX 3090 at batch 1; "
               "ours are on the Benchmark page.")
else:
    st.caption(f"No paper figure for this exact configuration ({network_label(d.network)} on {d.network.dataset}); "
               "the paper tables cover VGG-16 and ResNet-20/32/56 on CIFAR-10 with one preset on every 3x3 conv.")

stage_groups = layer_groups(d)
by_stage = {g.name: g for g in stage_groups}
if len(stage_groups) > 1:
    st.subheader("Per stage, against the dense network")
    stages = stage_comparison(d, conv)
    labels = [f"{s['stage']} ({s['convs']})" if s["convs"] else s["stage"] for s in stages][::-1]  # first on top
    hover = "%{y}<br>%{x:,.0f}<extra>%{fullData.name}</extra>"
    fig = go.Figure([
        go.Bar(name="dense", orientation="h", y=labels, x=[s["dense FLOPs"] for s in stages][::-1],
               marker_color="#b0b7c3", hovertemplate=hover),
        go.Bar(name="this design", orientation="h", y=labels, x=[s["FLOPs"] for s in stages][::-1],
               marker_color="#1f6feb", hovertemplate=hover,
               text=[f"{s['vs dense']:.2f}x" if s["changed"] else "" for s in stages][::-1], textposition="outside",
               textfont=dict(size=12), cliponaxis=False),
    ])
    fig.update_layout(barmode="group", height=100 + 34 * len(stages), margin=dict(l=10, r=40, t=40, b=10),
                      xaxis_title=f"{cost} per image ({conv})",
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0),
                      yaxis=dict(type="category", automargin=True))
    st.plotly_chart(fig, key="stage_bars")
    st.caption("Stages follow the module paths (a network of many small blocks is grouped by resolution); the "
               "number of convolutions is in brackets, a stage the design changes shows its share of the dense "
               "cost. Pick a stage below to see its layers.")

st.subheader("Per layer, against the dense network")
n_rows = len(layer_comparison(d, conv))
TOP = 20
scopes = ["all", "top", *by_stage]
if st.session_state.get("analyze_scope") not in scopes:
    st.session_state.analyze_scope = "all" if n_rows <= 40 else "top"
c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="bottom")
scope = c1.selectbox("Layers", scopes, key="analyze_scope", format_func=lambda s: {
    "all": f"Every layer ({n_rows})", "top": f"The {TOP} costliest layers (dense {cost})"}.get(s) or
    f"Stage {by_stage[s].label}", help="a stage's layers, the costliest ones, or all of them (a long list scrolls)")
metric = c2.segmented_control("Show", [cost, "params"], default=cost, key="analyze_metric") or cost
key = "FLOPs" if metric == cost else "params"
whole = st.session_state.analyze_scope == "all"  # every layer: a log scale by default on a long list
log_y = c3.toggle("Log scale", value=n_rows > 30 if whole else False, key="analyze_log" if whole else "analyze_log_part",
                  help="Layers of one network differ by orders of magnitude (a squeeze-excite 1x1 against a stem "
                       "conv): a log scale shows the small ones")
stage = by_stage.get(scope)
rows = layer_rows(d, conv, indices=stage.indices if stage else None, top=TOP if scope == "top" else None)
names = [r["layer"] for r in rows]
if len(rows) <= 40 and scope != "top":  # few layers: one bar pair per layer, numbered in forward order
    numbers = [str(r["#"]) if r["#"] else r["layer"] for r in rows]  # short ticks; the name is in the hover
    hover = "%{customdata}<br>%{y:,.0f}<extra>%{fullData.name}</extra>"
    fig = go.Figure([
        go.Bar(name="dense", x=numbers, y=[r[f"dense {key}"] for r in rows], customdata=names,
               hovertemplate=hover, marker_color="#b0b7c3"),
        go.Bar(name="this design", x=numbers, y=[r[key] for r in rows], customdata=names, hovertemplate=hover,
               marker_color="#1f6feb"),
    ])
    fig.update_layout(barmode="group", height=360, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="layer (conv number, in forward order; hover for its name)",
                      yaxis_title=f"{metric} per image ({conv})", legend=dict(orientation="h", y=1.1))
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_xaxes(type="category")
    st.plotly_chart(fig, key="layer_bars")
else:  # many layers: one row each, named, in a box that scrolls
    ticks = [f"{r['#']} · {r['layer']}" if r["#"] else r["layer"] for r in rows][::-1]
    hover = "%{y}<br>%{x:,.0f}<br>%{customdata}<extra>%{fullData.name}</extra>"
    choice = [r["choice"] for r in rows][::-1]
    fig = go.Figure([
        go.Bar(name="dense", orientation="h", y=ticks, x=[r[f"dense {key}"] for r in rows][::-1],
               customdata=choice, hovertemplate=hover, marker_color="#b0b7c3"),
        go.Bar(name="this design", orientation="h", y=ticks, x=[r[key] for r in rows][::-1], customdata=choice,
               hovertemplate=hover, marker_color="#1f6feb"),
    ])
    height = 130 + 30 * len(rows)
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=110, b=10),
                      xaxis=dict(title=f"{metric} per image ({conv})", side="top"), bargap=0.25,
                      legend=dict(orientation="h", y=1 + 75 / (height - 120), yanchor="bottom", x=0),
                      yaxis=dict(type="category", automargin=True, tickfont=dict(size=11)))
    fig.update_xaxes(type="log" if log_y else "linear")
    with st.container(height=min(height + 20, 620), border=False):
        st.plotly_chart(fig, key="layer_bars")
    if scope == "top":
        st.caption(f"The {TOP} layers of largest dense {cost}, costliest first; pick a stage or every layer to "
                   "see the others.")

st.subheader("Kernel shapes")
MAX_PICTURES = 24
indices = list(stage.indices) if stage else ([r["#"] - 1 for r in rows if r["#"]] if scope == "top" else None)
where = f"stage {stage.name}" if stage else (f"the {TOP} costliest layers" if scope == "top" else "every layer")
st.caption(f"The kernels of {where} (the choice above). Each square is a k x k kernel: the share of its output "
           "channels that use each tap (1 = every channel, as in a dense kernel; a 1x1 conv has one tap, a depthwise "
           "conv a full k x k per channel). Layers with the same kernel are drawn once, titled with their numbers.")
groups = kernel_groups(d, indices)
not_drawn = [u for u in tap_usage(d, indices) if u["usage"] is None]
if len(groups) > MAX_PICTURES:
    st.caption(f"{len(groups)} different kernels: the first {MAX_PICTURES} are drawn; pick a stage above for the "
               "others.")
    groups = groups[:MAX_PICTURES]
if groups:
    cols = 6  # fixed, so a kernel is the same size whatever the number of groups
    nrows = math.ceil(len(groups) / cols)
    height = 170 * nrows + 40
    titles = [f"{g['choice']} {g['kernel']}<br>"
              + (f"{len(g['indices'])} layers: {layer_ranges(g['indices'], 18)}" if len(g["indices"]) > 1
                 else f"layer {g['layers']}") for g in groups]
    heat = make_subplots(rows=nrows, cols=cols, horizontal_spacing=0.04, vertical_spacing=min(0.3, 60 / height),
                         subplot_titles=titles)
    for i, g in enumerate(groups):
        z = g["usage"][::-1]  # row 0 at the top
        heat.add_trace(go.Heatmap(z=z, zmin=0, zmax=1, colorscale="Blues", showscale=False, xgap=2, ygap=2,
                                  hovertemplate=f"layers {g['layers']}<br>share %{{z:.2f}}<extra></extra>"),
                       row=i // cols + 1, col=i % cols + 1)
    heat.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain")
    heat.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain")
    for i in range(nrows * cols):  # square cells: each y axis follows its own x axis
        suffix = "" if i == 0 else str(i + 1)
        heat.update_layout({f"yaxis{suffix}": dict(scaleanchor=f"x{suffix}", scaleratio=1)})
    heat.update_annotations(font_size=10)
    heat.update_layout(height=height, margin=dict(l=5, r=5, t=50, b=5))
    st.plotly_chart(heat, key="shape_heatmaps", config={"displayModeBar": False})
if not_drawn:
    kinds = {"hetconv": "HetConv", "blocksparse": "1xN", "lowrank": "low-rank"}
    st.caption(f"Not drawn: layers {layer_ranges([u['index'] for u in not_drawn], 120)} "
               f"({', '.join(sorted({kinds.get(u['kind'], u['kind']) for u in not_drawn}))}): these kinds keep "
               "every tap and save elsewhere (channels, blocks, rank); their cost is in the bars above.")
