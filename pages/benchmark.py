"""Benchmark page: latency of the current design against its dense network, per backend, kept in the store."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from designer import jobs
from designer.bench import BACKENDS, MODES, BenchConfig, bench_design, bench_layers
from designer.editing import summarize
from designer.errors import DesignError
from designer.reports import benchmark_bars
from pages import state

d = state.design()
st.title("Benchmark")
st.caption(summarize(d))
st.caption("Times the whole network (and optionally each convolution) for every chosen backend against the dense "
           "network of the same architecture, in the same run: medians after warm-up; the dense baseline is the "
           "faster of NCHW and channels-last. Results are saved, so runs can be compared later.")

c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
backends = c1.multiselect("Backends", BACKENDS, default=["decomposed", "auto"], key="bench_backends",
                          help="On the first call taichi compiles its kernels and auto times every backend on each "
                               "layer (reported apart, never in a median)")
batch = c2.selectbox("Batch size", [1, 8, 32, 64, 128], index=0, key="bench_batch")
mode = c3.selectbox("Step", MODES, key="bench_mode", format_func=lambda m: {"infer": "inference",
                                                                             "train": "training (fwd+bwd)"}[m])
repeats = c4.number_input("Repeats", 1, 50, 5, key="bench_repeats")
per_layer = st.checkbox("Also time each convolution alone (slower)", key="bench_layers")

if st.button("Run benchmark", key="run_bench", type="primary", disabled=not backends):
    config = BenchConfig(batch_size=int(batch), repeats=int(repeats), warmup=1, mode=mode)
    bar = st.progress(0.0, text="starting...")
    layer_share = 0.5 if per_layer else 0.0
    try:
        result = bench_design(d, list(backends), config,
                              progress=lambda what, f: bar.progress(min(f * (1 - layer_share), 1.0),
                                                                    text=f"timing {what}..."))
        if per_layer:
            result["layers"] = {}
            for i, name in enumerate(backends):
                bar.progress((1 - layer_share) + layer_share * i / len(backends), text=f"per layer: {name}...")
                try:
                    result["layers"][name] = bench_layers(d, name, config)
                except (ValueError, ImportError, RuntimeError) as err:
                    result["layers"][name] = {"error": str(err).splitlines()[0]}
        bar.progress(1.0, text="done")
        jobs.open_store().add_benchmark(d.to_json(), ",".join(backends), int(batch), mode, result)
        st.session_state.bench_result = {"design": d.to_json(), "result": result}
    except DesignError as err:
        st.error(str(err))
    bar.empty()

shown = st.session_state.get("bench_result")
if shown and shown["design"] == d.to_json():
    result = shown["result"]
    rows = benchmark_bars(result)
    st.subheader(f"Whole network, batch {result['batch_size']}, {result['mode']}, {result['threads']} threads")
    cols = st.columns(len(rows))
    for col, row in zip(cols, rows):
        if row["median_ms"] is None:
            col.metric(row["what"], "failed", help=row.get("error"))
        else:
            col.metric(row["what"], f"{row['median_ms']:.2f} ms",
                       None if row["speedup"] == 1.0 else f"{row['speedup']:.2f}x vs dense",
                       delta_color="normal" if row["speedup"] and row["speedup"] >= 1 else "inverse")
    ok_rows = [r for r in rows if r["median_ms"] is not None]
    fig = go.Figure(go.Bar(x=[r["what"] for r in ok_rows], y=[r["median_ms"] for r in ok_rows],
                           text=[f"{r['speedup']:.2f}x" for r in ok_rows], textposition="outside",
                           marker_color=["#b0b7c3"] + ["#1f6feb"] * (len(ok_rows) - 1)))
    fig.update_layout(height=320, yaxis_title="median ms", margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="bench_bars")
    st.caption(f"FLOP ratio dense/design: {result['flop_ratio']:.2f}x (macs).")
    if result.get("layers"):
        st.subheader("Per convolution")
        fig = go.Figure()
        first = True
        for name, layers in result["layers"].items():
            if isinstance(layers, dict):
                st.caption(f"{name}: {layers['error']}")
                continue
            if first:
                fig.add_bar(name="dense", x=[r["name"] for r in layers], y=[r["dense_ms"] for r in layers],
                            marker_color="#b0b7c3")
                first = False
            fig.add_bar(name=name, x=[r["name"] for r in layers], y=[r["design_ms"] for r in layers],
                        customdata=[r["speedup_vs_dense"] for r in layers],
                        hovertemplate="%{y:.3f} ms, %{customdata:.2f}x vs dense<extra>" + name + "</extra>")
        fig.update_layout(barmode="group", height=340, yaxis_title="median ms",
                          margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.1))
        st.plotly_chart(fig, key="bench_layer_bars")

st.subheader("Saved results for this design")
saved = [b for b in jobs.open_store().benchmarks(limit=200) if b["design"] == d.to_json()]
if not saved:
    st.caption("None yet.")
else:
    table = []
    for b in saved:
        for row in benchmark_bars(b["result"]):
            table.append({"id": b["id"], "batch": b["batch_size"], "step": b["mode"], "backend": row["what"],
                          "median ms": row["median_ms"], "speed-up vs dense": row["speedup"]})
    st.dataframe(table, hide_index=True, width="stretch", key="bench_saved")
