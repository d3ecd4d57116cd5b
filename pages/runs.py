"""Runs page: every run, overlaid curves, accuracy against MACs and latency, derive and fine-tune, exports."""
from __future__ import annotations

import html

import plotly.express as px
import streamlit as st

from designer.designs.design import design_from_json
from designer.errors import DesignError
from designer.networks.build import validate
from designer.networks import editing
from designer.networks.weights import dense_start_weights
from designer.runs import jobs
from designer.runs.checkpoints import run_weights_path
from designer.runs.reports import curves, export_bytes, runs_table
from pages import state

st.title("Runs")
st.caption("Every training run of this workspace, whoever started it (this tab, another tab, the CLI). "
           "Latency is the newest saved inference benchmark of the same design (Benchmark page).")

store = jobs.open_store()
runs = jobs.list_runs()
if not runs:
    st.info("No runs yet: launch one on the Train page.")
    st.stop()

by_id = {r["id"]: r for r in runs}
rows = runs_table(runs, store.benchmarks(limit=500))


@st.fragment(run_every=3 if any(r["status"] in ("queued", "running") for r in runs) else None)
def table() -> None:
    fresh = runs_table(jobs.list_runs(), store.benchmarks(limit=500))
    st.dataframe(fresh, hide_index=True, width="stretch", key="runs_table",
                 column_config={"best acc (%)": st.column_config.NumberColumn(format="%.2f"),
                                "params (M)": st.column_config.NumberColumn(format="%.4f"),
                                "FLOPs (M)": st.column_config.NumberColumn(format="%.2f"),
                                "latency (ms)": st.column_config.NumberColumn(format="%.2f"),
                                "ONNX latency (ms)": st.column_config.NumberColumn(
                                    format="%.2f", help="its fast ONNX export in onnxruntime (Benchmark page, "
                                                        "runtime onnxruntime)")})


table()

st.subheader("Compare")
ids = [r["id"] for r in runs]
default = [r["id"] for r in runs if r["status"] == "finished"][:3] or ids[:1]
chosen = st.multiselect("Runs to overlay", ids, default=default, key="runs_compare",
                        format_func=lambda i: f"{i} · {by_id[i]['name']} · {by_id[i]['status']}")
metrics = {"test accuracy (per epoch)": ("test", "acc"), "test loss (per epoch)": ("test", "loss"),
           "train loss (per step)": ("step", "loss"), "train accuracy (per step)": ("step", "acc"),
           "learning rate": ("step", "lr")}
which = st.selectbox("Curve", list(metrics), key="runs_metric")
if chosen:
    labels = {i: html.escape(f"{i} · {by_id[i]['name']}") for i in chosen}
    data = curves(store, chosen, *metrics[which], labels=labels)
    if data:
        fig = px.line(data, x="step", y="value", color="run", markers=metrics[which][0] == "test")
        fig.update_layout(height=340, yaxis_title=which, margin=dict(l=10, r=10, t=20, b=10),
                          legend=dict(orientation="h", y=-0.25))
        st.plotly_chart(fig, key="runs_curves")
    else:
        st.caption("No points yet for these runs.")



def _labelled(points: list[dict]) -> list[dict]:
    """Rows with a short point label ('run 3') and the user's text HTML-escaped (plotly renders tags)."""
    return [{**r, "point": f"run {r['id']}", "name": html.escape(r["name"]), "design": html.escape(r["design"])}
            for r in points]


scatter = [r for r in rows if r["best acc (%)"] is not None]
if scatter:
    s1, s2 = st.columns(2)
    fig = px.scatter(_labelled(scatter), x="FLOPs (M)", y="best acc (%)", color="design", text="point",
                     hover_data=["id", "name"], labels={"FLOPs (M)": "MACs per image (M)"})
    fig.update_traces(textposition="top center")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      title="accuracy against MACs")
    s1.plotly_chart(fig, key="acc_vs_flops")
    timed = [r for r in scatter if r["latency (ms)"] is not None]
    if timed:
        fig = px.scatter(_labelled(timed), x="latency (ms)", y="best acc (%)", color="design", text="point",
                         hover_data=["id", "name"])
        fig.update_traces(textposition="top center")
        fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                          title="accuracy against measured latency")
        s2.plotly_chart(fig, key="acc_vs_latency")
    else:
        s2.caption("Benchmark a run's design (Benchmark page) to place it against latency.")

st.subheader("Act on a run")
run_id = st.selectbox("Run", ids, key="runs_selected",
                      format_func=lambda i: f"{i} · {by_id[i]['name']} · {by_id[i]['status']}")
run = by_id[run_id]
a1, a2, a3, a4 = st.columns(4)


def _act(fn, rid):
    try:
        fn(rid)
    except DesignError as err:
        st.session_state.errors["runs"] = str(err)


def _open(rid):
    state.edit(lambda cur: validate(design_from_json(by_id[rid]["design"])), f"open run {rid}'s design", "runs")


def _ask_delete(rid):
    st.session_state.runs_confirm_delete = rid


def _delete(rid):
    st.session_state.pop("runs_confirm_delete", None)
    _act(lambda r: jobs.delete_run(r, force=True), rid)


a1.button("Stop", key="runs_stop", on_click=_act, args=(jobs.stop_run, run_id),
          disabled=run["status"] not in ("queued", "running"))
a2.button("Resume", key="runs_resume", on_click=_act, args=(jobs.resume_run, run_id),
          disabled=run["status"] not in ("stopped", "interrupted", "failed"))
a3.button("Delete...", key="runs_delete", on_click=_ask_delete, args=(run_id,),
          help="asks first; a running run is stopped before its folder is removed")
a4.button("Open its design", key="runs_open", on_click=_open, args=(run_id,),
          help="make it the current design (undo brings yours back)")
if st.session_state.get("runs_confirm_delete") == run_id:
    active = run["status"] in ("queued", "running")
    with st.container(border=True):
        st.warning(f"Delete run {run_id} ({state.plain(run['name'])}): its checkpoints, logs and metrics go for good"
                   + ("; it is **" + run["status"] + "** and will be stopped first." if active else "."))
        c1, c2, _ = st.columns([1, 1, 3])
        c1.button("Stop and delete" if active else "Delete for good", key="runs_delete_confirm", type="primary",
                  on_click=_delete, args=(run_id,))
        c2.button("Cancel", key="runs_delete_cancel",
                  on_click=lambda: st.session_state.pop("runs_confirm_delete", None))
if state.error("runs"):
    st.error(state.plain(state.error("runs")))


def _derive(rid, how):
    """Make a design derived from this run's trained network current, and start the next run from its weights."""
    source = by_id[rid]
    try:
        path = run_weights_path(source)
        base = design_from_json(source["design"])
        weights = dense_start_weights(base, path)[0] if how == "low-rank" else None
        derived = editing.derive_design(base, how, weights)
    except DesignError as err:
        st.session_state.errors["derive"] = str(err)
        return
    state.clear_error("derive")
    state.commit(derived, f"{how} from run {rid}")
    state.preset_form("train_start", "run")
    state.preset_form("train_start_run", rid)
    st.session_state.derived_from = rid


if run["status"] == "finished":
    st.markdown("**Derive a design from this run** (then fine-tune it on the Train page, starting from these "
                "weights, and compare here)")
    d1, d2 = st.columns([2, 3], vertical_alignment="bottom")
    how = d1.selectbox("How", list(editing.DERIVATIONS), key="runs_derive_how")
    d1.button(f"Derive {how} from run {run_id}", key="runs_derive", on_click=_derive, args=(run_id, how),
              type="primary")
    d2.caption(editing.DERIVATIONS[how])
    if st.session_state.get("derived_from") == run_id and not state.error("derive"):
        st.success(f"The current design is now {state.plain(editing.summarize(state.design()))}, starting from "
                   f"run {run_id}'s weights: launch it on the Train page.")
        st.page_link("pages/train.py", label="Fine-tune it on the Train page", icon=":material/model_training:")
    if state.error("derive"):
        st.error(state.plain(state.error("derive")))

st.markdown("**Export**")
e1, e2, e3, e4 = st.columns(4)
for col, fmt in zip((e1, e2), ("design", "cfglist")):
    try:
        file_name, payload, mime = export_bytes(run, fmt)
    except DesignError as err:
        col.caption(f"No {fmt}: {err}")
    else:
        col.download_button(f"{fmt} JSON", payload, file_name=file_name, mime=mime, key=f"dl_{fmt}",
                            icon=":material/download:")
run_input = design_from_json(run["design"]).network.input_shape or (3, 32, 32)  # version 1: a CIFAR network
e4.caption(f"ONNX: input `input` of shape (batch, {', '.join(map(str, run_input))}), float32, normalised as in "
           "training; output `logits` (batch, classes); the batch is dynamic.")
for col, fmt in zip((e3, e4), ("weights", "onnx")):
    key = f"export_{fmt}_{run_id}"
    if col.button(f"Prepare {fmt}", key=f"prep_{fmt}"):
        with st.spinner(f"Exporting {fmt}..."):
            try:
                st.session_state[key] = export_bytes(run, fmt)
            except DesignError as err:
                st.session_state[key] = str(err)
    prepared = st.session_state.get(key)
    if isinstance(prepared, str):
        col.caption(state.plain(prepared))
    elif prepared:
        file_name, payload, mime = prepared
        col.download_button(f"{file_name} ({len(payload) / 1e6:.1f} MB)", payload, file_name=file_name, mime=mime,
                            key=f"dl_{fmt}", icon=":material/download:")
