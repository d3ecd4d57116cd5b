"""Benchmark page: latency of the current design against its dense network, per backend, kept in the store."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from designer.bench.latency import BACKENDS, bench_design, bench_layers
from designer.bench.onnx_runtime import RUNTIMES, bench_onnx
from designer.bench.timing import LIMITS, MODES, RUN_ERRORS, BenchConfig, first_line
from designer.errors import DesignError
from designer.networks.editing import summarize
from designer.runs import jobs
from designer.runs.reports import benchmark_bars, benchmark_notes
from pages import state

INFER_BATCHES, TRAIN_BATCHES = [1, 8, 32, 64, 128], [2, 8, 32, 64, 128]  # a training step needs 2 (BatchNorm)
DENSE_GREY, BACKEND_BLUE, MARKED = "#b0b7c3", "#1f6feb", "#d97706"

d = state.design()
st.title("Benchmark")
st.caption(f"{summarize(d)} · input {'x'.join(map(str, d.network.input_shape))}")
st.caption("Times the whole network (and optionally each convolution) for every chosen backend against the dense "
           "network of the same architecture, in the same run: medians after warm-up, with the min..max of the "
           "repeats beside each; the dense baseline is the faster of NCHW and channels-last. Inference runs the "
           "deployed form of both networks (BatchNorm folded into the convs, bias, residual add and ReLU in the "
           "conv's own call), the dense one also as trained, whichever is faster. Results are saved, so runs can "
           "be compared later.")

state.keep("bench_backends", ["decomposed", "auto"])  # the form survives a change of page
state.keep("bench_mode", "infer", MODES)
state.keep("bench_repeats", 5)
state.keep("bench_layers", False)
state.keep("bench_runtime", "torch", RUNTIMES)
c0, c1, c2, c3, c4 = st.columns([1, 3, 1, 1, 1])
runtime = c0.selectbox("Runtime", RUNTIMES, key="bench_runtime",
                       help="onnxruntime: the design's fast ONNX export against the dense network's export, "
                            "inference only, same threads as torch")
onnx = runtime == "onnxruntime"
backends = c1.multiselect("Backends", BACKENDS, key="bench_backends", disabled=onnx,
                          help="On the first call taichi compiles its kernels and auto times every backend on each "
                               "layer (reported apart, never in a median)")
mode = c3.selectbox("Step", MODES, key="bench_mode", disabled=onnx,
                    format_func=lambda m: {"infer": "inference", "train": "training (fwd+bwd)"}[m])
mode = "infer" if onnx else mode
batches = TRAIN_BATCHES if mode == "train" else INFER_BATCHES
state.keep("bench_batch", batches[0], batches)
if st.session_state.bench_batch not in batches:  # the step changed under a batch it cannot take
    st.session_state.bench_batch = batches[0]
batch = c2.selectbox("Batch size", batches, key="bench_batch",
                     help="A training step starts at batch 2: BatchNorm normalises by the batch's own statistics, "
                          "which one image cannot give")
repeats = c4.number_input("Repeats", min_value=LIMITS["repeats"][0], max_value=50, key="bench_repeats")
per_layer = st.checkbox("Also time each convolution alone (slower)", key="bench_layers", disabled=onnx) and not onnx
state.keep("bench_fold", True)
fold = st.checkbox("Deployed form (inference): fold BatchNorm into the convs", key="bench_fold",
                   disabled=onnx or mode == "train",
                   help="As an exported network runs: each eval BatchNorm folded into the conv before it, and the "
                        "bias, residual add and ReLU that follow run in the conv's own call (sconv's epilogue, "
                        "oneDNN's post-ops). Off: both networks as trained, each op on its own.")

if st.button("Run benchmark", key="run_bench", type="primary", disabled=not (backends or onnx)):
    config = BenchConfig(batch_size=int(batch), repeats=int(repeats), warmup=1, mode=mode, fold=bool(fold))
    bar = st.progress(0.0, text="starting...")
    layer_share = 0.5 if per_layer else 0.0

    def progress(what: str, f: float) -> None:
        bar.progress(min(f * (1 - layer_share), 1.0), text=f"timing {what}...")
    try:
        result = bench_onnx(d, config, progress) if onnx else bench_design(d, list(backends), config, progress)
    except DesignError as err:
        st.error(str(err))
        result = None
    if result is not None and per_layer:  # a per-layer failure is shown there; the whole-network result stays
        result["layers"] = {}
        for i, name in enumerate(backends):
            bar.progress((1 - layer_share) + layer_share * i / len(backends), text=f"per layer: {name}...")
            try:
                result["layers"][name] = bench_layers(d, name, config)
            except (DesignError, *RUN_ERRORS) as err:
                result["layers"][name] = {"error": first_line(err)}
    if result is not None:
        jobs.open_store().add_benchmark(d.to_json(), "onnxruntime" if onnx else ",".join(backends), int(batch), mode,
                                        result)
        st.session_state.bench_result = {"design": d.to_json(), "result": result}
    bar.empty()


def spread_text(row: dict) -> str:
    if row.get("min_ms") is None:
        return "spread not recorded"
    n = row["repeats"]
    return (f"{row['min_ms']:.2f}..{row['max_ms']:.2f} ms over {n} repeat{'s' if n > 1 else ''}"
            + (f", spread {row['spread']:.0%}" if row["noisy"] else ""))


shown = st.session_state.get("bench_result")
if shown and shown["design"] == d.to_json():
    result = shown["result"]
    rows = benchmark_bars(result)
    st.subheader(f"Whole network, batch {result['batch_size']}, {result['mode']}, {result['threads']} threads"
                 + (", deployed form" if result.get("fold") else "")
                 + (", onnxruntime (fast ONNX export vs the dense export)" if result.get("runtime") else ""))
    for note in benchmark_notes(result):
        st.warning(note)
    cols = st.columns(len(rows))
    for col, row in zip(cols, rows):
        if row["median_ms"] is None:
            col.metric(row["what"], "failed")
            col.text(row.get("error"))  # the error as text: it may echo user input
            continue
        label = row["what"] + (" *" if row["note"] else "")
        col.metric(label, f"{row['median_ms']:.2f} ms",
                   None if row["speedup"] == 1.0 else f"{row['speedup']:.2f}x vs dense",
                   delta_color="normal" if row["speedup"] and row["speedup"] >= 1 else "inverse",
                   delta_arrow="off", help=row["note"])
        col.caption(("⚠ " if row["noisy"] else "") + spread_text(row))
    ok_rows = [r for r in rows if r["median_ms"] is not None]
    spreads = all(r.get("min_ms") is not None for r in ok_rows)
    fig = go.Figure(go.Bar(
        x=[f"{r['what']}{' *' if r['note'] else ''}<br>{r['speedup']:.2f}x vs dense" for r in ok_rows],
        y=[r["median_ms"] for r in ok_rows],
        error_y=dict(type="data", symmetric=False, array=[r["max_ms"] - r["median_ms"] for r in ok_rows],
                     arrayminus=[r["median_ms"] - r["min_ms"] for r in ok_rows], color="#555") if spreads else None,
        marker_color=[DENSE_GREY] + [MARKED if r["note"] else BACKEND_BLUE for r in ok_rows[1:]],
        marker_pattern_shape=[""] + ["/" if r["note"] else "" for r in ok_rows[1:]]))
    fig.update_layout(height=320, yaxis_title="median ms (whiskers: min..max)", margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="bench_bars")
    st.caption(f"MAC ratio dense/design: {result['flop_ratio']:.2f}x (multiply-accumulates of conv and linear "
               "layers)." + (" * auto lost to a fixed backend in this run (see the note above)."
                             if any(r.get("note") for r in rows) else ""))
    if result.get("layers"):
        st.subheader("Per convolution")
        fig = go.Figure()
        first = True
        for name, layers in result["layers"].items():
            if isinstance(layers, dict):
                st.error(f"per layer, {name}: could not run")
                st.text(layers["error"])
                continue
            failed = [r for r in layers if "error" in r]
            for r in failed:
                st.caption(f"{name}, {r['name']}: could not run")
            layers = [r for r in layers if "error" not in r]
            wide = len(layers) > 40  # many convs: one named row each, in a box that scrolls
            names = [r["name"] for r in layers]
            if first:
                fig.add_bar(name="dense", orientation="h" if wide else "v",
                            **{"y" if wide else "x": names, "x" if wide else "y": [r["dense_ms"] for r in layers]},
                            marker_color=DENSE_GREY)
                first = False
            value = "x" if wide else "y"
            fig.add_bar(name=name, orientation="h" if wide else "v",
                        **{"y" if wide else "x": names, value: [r["design_ms"] for r in layers]},
                        customdata=[r["speedup_vs_dense"] for r in layers],
                        hovertemplate="%{" + value + ":.3f} ms, %{customdata:.2f}x vs dense<extra>" + name +
                                      "</extra>")
        rows_shown = max((len(v) for v in result["layers"].values() if isinstance(v, list)), default=0)
        if rows_shown > 40:
            height = 120 + 16 * rows_shown * (1 + len(result["layers"]))
            fig.update_layout(barmode="group", height=height, xaxis=dict(title="median ms", side="top"),
                              yaxis=dict(autorange="reversed", automargin=True, tickfont=dict(size=11)),
                              margin=dict(l=10, r=10, t=90, b=10),
                              legend=dict(orientation="h", y=1 + 60 / (height - 100), yanchor="bottom"))
            with st.container(height=640, border=False):
                st.plotly_chart(fig, key="bench_layer_bars")
        else:
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
                          "median ms": row["median_ms"], "min ms": row.get("min_ms"), "max ms": row.get("max_ms"),
                          "speed-up vs dense": row["speedup"], "note": row.get("note") or ""})
    st.dataframe(table, hide_index=True, width="stretch", key="bench_saved")
