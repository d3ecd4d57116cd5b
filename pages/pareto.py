"""Pareto charts of a sweep's trials (Runs and Sweeps pages): accuracy against a cost, the front drawn as a
step line, the dense baseline marked. The front itself comes from designer.runs.sweeps.records."""
from __future__ import annotations

import html

import plotly.graph_objects as go
import streamlit as st

from designer.runs.sweeps.records import trials_table

COSTS = {"macs": ("MACs per image (M)", 1e-6, "pareto_macs", "MACs"),
         "latency_ms": ("measured latency (ms)", 1.0, "pareto_latency", "latency")}
SYMBOLS = {"finished": "circle", "pruned": "x", "running": "circle-open"}


def pareto_figure(rows: list[dict], cost: str) -> go.Figure | None:
    """Every trial with an accuracy and the cost; None when there is none yet."""
    title, scale, flag, short = COSTS[cost]
    points = [r for r in rows if r["best_accuracy"] is not None and r[cost] is not None]
    if not points:
        return None
    fig = go.Figure()
    for status in sorted({r["status"] for r in points}):
        these = [r for r in points if r["status"] == status and not r["baseline"]]
        if these:
            fig.add_scatter(x=[r[cost] * scale for r in these], y=[r["best_accuracy"] for r in these],
                            mode="markers", name=status, marker=dict(symbol=SYMBOLS.get(status, "circle"), size=9),
                            text=[html.escape(f"run {r['run_id']}: {r['label']}") for r in these],
                            hovertemplate="%{text}<br>%{x:.3g}, %{y:.2f}%<extra></extra>")
    front = sorted((r for r in points if r[flag]), key=lambda r: r[cost])
    if front:
        fig.add_scatter(x=[r[cost] * scale for r in front], y=[r["best_accuracy"] for r in front],
                        mode="lines+markers", line=dict(shape="hv", dash="dot"), name="Pareto front",
                        marker=dict(symbol="circle-open", size=16), hoverinfo="skip")  # one point shows too
    for r in (r for r in points if r["baseline"]):
        fig.add_scatter(x=[r[cost] * scale], y=[r["best_accuracy"]], mode="markers+text", name="dense baseline",
                        marker=dict(symbol="star", size=16, color="black"), text=["dense"],
                        textposition="top center", hovertemplate=f"run {r['run_id']}: dense baseline<br>"
                                                                 "%{x:.3g}, %{y:.2f}%<extra></extra>")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), xaxis_title=title,
                      yaxis_title="best test accuracy (%)", title=f"accuracy vs {short}",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def pareto_charts(store, sweep_id: int, key: str) -> list[dict]:
    """The two charts side by side (accuracy against MACs and against latency); returns the trials."""
    rows = trials_table(store, sweep_id)
    for col, cost in zip(st.columns(2), COSTS):
        fig = pareto_figure(rows, cost)
        if fig is None:
            col.caption(f"No trial has an accuracy and its {COSTS[cost][0].split(' (')[0]} yet.")
        else:
            col.plotly_chart(fig, key=f"{key}_{cost}")
    return rows
