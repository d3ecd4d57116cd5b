"""Analyze page: per-layer params and FLOPs against the dense network, kernel shapes, totals, paper figures."""
from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from designer.analysis import layer_comparison, tap_usage, totals
from designer.editing import network_label, summarize
from designer.paper_figures import figures_for
from pages import state

d = state.design()
st.title("Analyze")
st.caption(summarize(d))
conv = state.convention_picker("analyze_convention")
t = totals(d, conv)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Params", f"{t.params / 1e6:.4f}M", f"{t.params_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m2.metric("FLOPs", f"{t.flops / 1e6:.2f}M", f"{t.flops_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
m3.metric("Dense params", f"{t.dense_params / 1e6:.4f}M")
m4.metric("Dense FLOPs", f"{t.dense_flops / 1e6:.2f}M", f"{t.flops_saving:.2f}x saved", delta_color="off", delta_arrow="off")

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

st.subheader("Per layer, against the dense network")
rows = layer_comparison(d, conv)
metric = st.segmented_control("Show", ["FLOPs", "params"], default="FLOPs", key="analyze_metric") or "FLOPs"
names = [r["layer"] for r in rows]
fig = go.Figure([
    go.Bar(name="dense", x=names, y=[r[f"dense {metric}"] for r in rows], marker_color="#b0b7c3"),
    go.Bar(name="this design", x=names, y=[r[metric] for r in rows], marker_color="#1f6feb"),
])
fig.update_layout(barmode="group", height=360, margin=dict(l=10, r=10, t=30, b=10),
                  yaxis_title=f"{metric} per image ({conv})", legend=dict(orientation="h", y=1.1))
st.plotly_chart(fig, key="layer_bars")

st.subheader("Kernel shapes")
st.caption("Each square is one convolution's k x k kernel: the share of its output channels that use each tap "
           "(1 = every channel, as in a dense kernel).")
usage = [u for u in tap_usage(d) if u["usage"] is not None]
if usage:
    cols = min(8, len(usage))
    nrows = math.ceil(len(usage) / cols)
    height = 165 * nrows + 30
    heat = make_subplots(rows=nrows, cols=cols, horizontal_spacing=0.03, vertical_spacing=48 / height,
                         subplot_titles=[f"{i + 1} · {u['layer']}<br>{u['choice']}" for i, u in enumerate(usage)])
    for i, u in enumerate(usage):
        z = u["usage"][::-1]  # row 0 at the top
        heat.add_trace(go.Heatmap(z=z, zmin=0, zmax=1, colorscale="Blues", showscale=False, xgap=2, ygap=2,
                                  hovertemplate="share %{z:.2f}<extra></extra>"), row=i // cols + 1, col=i % cols + 1)
    heat.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    heat.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor=None)
    heat.update_annotations(font_size=9)
    heat.update_layout(height=height, margin=dict(l=5, r=5, t=40, b=5))
    st.plotly_chart(heat, key="shape_heatmaps", config={"displayModeBar": False})
