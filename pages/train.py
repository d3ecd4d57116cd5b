"""Train page: launch a background training run of the current design and watch its curves live.

Runs are separate processes started by the job manager (designer.jobs) and
recorded in the run store; this page only starts, stops and reads them, so a
reload, a second tab or an app restart loses nothing.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from designer import jobs
from designer.data import dataset_info
from designer.editing import summarize
from designer.errors import DesignError
from designer.reports import describe_design_json
from designer.train import SCHEDULES, HParams
from models.layers.ask import ASK_BACKENDS
from pages import state

d = state.design()
st.title("Train")
st.caption(summarize(d))

defaults = HParams()
classes = dataset_info(d.network.dataset).num_classes
data_options = ["fashion-mnist", "cifar10", "cifar100", "synthetic"]
data_options = [x for x in data_options if x == "synthetic" or dataset_info(x).num_classes == classes]
with st.form("train_form", border=True):
    st.markdown("**A short run** to see whether the design still learns (Fashion-MNIST ships with the app).")
    c1, c2, c3, c4 = st.columns(4)
    data = c1.selectbox("Data", data_options, key="train_data",
                        help="the network's classes must match; 'synthetic' is a tiny set for smoke tests")
    epochs = c2.number_input("Epochs", 1, 500, 1, key="train_epochs")
    batch = c3.selectbox("Batch size", [32, 64, 128, 256], index=2, key="train_batch")
    lr = c4.number_input("Learning rate", 0.0001, 10.0, defaults.lr, format="%.4f", key="train_lr")
    c5, c6, c7, c8 = st.columns(4)
    schedule = c5.selectbox("Schedule", SCHEDULES, key="train_schedule",
                            help="cosine, or step: x0.1 at 50% and 75% (the ASK recipe)")
    max_steps = c6.number_input("Max steps (0 = whole epochs)", 0, 10_000_000, 0, key="train_max_steps")
    backend = c7.selectbox("Backend", list(ASK_BACKENDS), key="train_backend")
    seed = c8.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
    name = st.text_input("Run name (optional)", key="train_name", max_chars=80)
    launched = st.form_submit_button("Launch in the background", type="primary")

if launched:
    hp = HParams(epochs=int(epochs), max_steps=int(max_steps) or None, batch_size=int(batch), lr=float(lr),
                 schedule=schedule, backend=backend, seed=int(seed), data=None if data == d.network.dataset else data,
                 log_every=10 if data == "synthetic" else 50)
    try:
        run_id = jobs.start_run(d, hp, name=name.strip())
    except DesignError as err:
        st.error(str(err))
    else:
        st.session_state.watch_run = run_id
        st.success(f"Run {run_id} queued; it starts as soon as a slot is free.")


def _stop(run_id: int) -> None:
    jobs.stop_run(run_id)


def _resume(run_id: int) -> None:
    try:
        jobs.resume_run(run_id)
    except DesignError as err:
        st.session_state.errors["train"] = str(err)


@st.fragment(run_every=2)
def live() -> None:
    """Re-drawn every 2 s on its own; the rest of the page stays usable."""
    runs = jobs.list_runs()
    if not runs:
        st.info("No runs yet: launch one above.")
        return
    ids = [r["id"] for r in runs]
    watch = st.session_state.get("watch_run")
    if watch not in ids:
        watch = ids[0]
    by_id = {r["id"]: r for r in runs}
    st.subheader("Live")
    run_id = st.selectbox("Run", ids, index=ids.index(watch), key="train_watch",
                          format_func=lambda i: f"{i} · {by_id[i]['name']} · {by_id[i]['status']}")
    st.session_state.watch_run = run_id
    run = by_id[run_id]
    hp = run["hparams"]
    s1, s2, s3, s4 = st.columns(4)
    s1.metric("Status", run["status"])
    s2.metric("Epoch", f"{run['epoch']}/{hp.get('epochs')}")
    s3.metric("Step", run["step"])
    s4.metric("Best test accuracy", f"{run['best_acc']:.2f}%" if run.get("best_acc") is not None else "-")
    if run.get("error"):
        st.error(run["error"])
    b1, b2, _ = st.columns([1, 1, 4])
    b1.button("Stop", key=f"stop_{run_id}", on_click=_stop, args=(run_id,),
              disabled=run["status"] not in ("queued", "running"), icon=":material/stop:")
    b2.button("Resume", key=f"resume_{run_id}", on_click=_resume, args=(run_id,),
              disabled=run["status"] not in ("stopped", "interrupted", "failed"), icon=":material/play_arrow:")
    store = jobs.open_store()
    step = {name: store.metrics(run_id, split="step", name=name) for name in ("loss", "acc", "lr")}
    test = store.metrics(run_id, split="test", name="acc")
    if step["loss"]:
        fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy (%)", "learning rate"))
        fig.add_scatter(x=[m["step"] for m in step["loss"]], y=[m["value"] for m in step["loss"]], name="train loss",
                        row=1, col=1)
        fig.add_scatter(x=[m["step"] for m in step["acc"]], y=[m["value"] for m in step["acc"]], name="train acc",
                        row=1, col=2)
        if test:
            fig.add_scatter(x=[m["step"] for m in test], y=[m["value"] for m in test], name="test acc",
                            mode="lines+markers", row=1, col=2)
        fig.add_scatter(x=[m["step"] for m in step["lr"]], y=[m["value"] for m in step["lr"]], name="lr",
                        row=1, col=3)
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
        st.plotly_chart(fig, key="live_curves")
    elif run["status"] in ("queued", "running"):
        st.caption("Waiting for the first logged step...")
    active = [r for r in runs if r["status"] in ("queued", "running")]
    st.subheader("Queue")
    st.caption(f"{len(active)} active; at most {jobs.concurrency()} at a time.")
    if active:
        st.dataframe([{"id": r["id"], "name": r["name"], "status": r["status"], "design":
                       describe_design_json(r["design"]), "epoch": r["epoch"], "step": r["step"]} for r in active],
                     hide_index=True, width="stretch", key="queue_table")


live()
if state.error("train"):
    st.error(state.error("train"))
