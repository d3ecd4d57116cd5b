"""Sweeps page: a design sweep from the current design, run on Ray Tune in the background, its trials live.

A sweep is a separate OS process (`python -m designer sweep --sweep-id ID`, started by
designer.runs.sweeps.records like the job manager starts runs) that drives a local Ray; its trials
are runs in the store, so this page, the Runs page and the CLI all see them arrive.
"""
from __future__ import annotations

import json

import streamlit as st

from designer.designs.datasets import DATASETS
from designer.errors import DesignError
from designer.networks.editing import summarize
from designer.runs import jobs
from designer.runs.data import SYNTHETIC, missing_data
from designer.runs.sweeps import records
from designer.runs.sweeps.compose import CHOICE_MENU, Recipe, compose_spec, sweep_groups
from designer.runs.sweeps.spec import load_spec
from designer.workspace import data_root, workspace_home
from pages import state
from pages.pareto import pareto_charts

d = state.design()
st.title("Sweeps")
st.caption(f"From the current design: {summarize(d)}. Each trial trains one combination of the choices below "
           "(plus the dense network, the baseline) with the project's trainer, in a local Ray started by the "
           "sweep's own process; the command line runs the same spec on a cluster (`python -m designer sweep "
           "SPEC.json --ray-address HOST:PORT`).")

groups = sweep_groups(d)
st.markdown("**Search space**: the choices each layer group may take (groups left empty keep the design's "
            "choice). A grid trains every combination.")
axes = {}
cols = st.columns(min(3, max(1, len(groups))))
for i, (pattern, label) in enumerate(groups):
    key = f"sweep_axis_{pattern}"
    state.keep(key, [])
    axes[pattern] = cols[i % len(cols)].multiselect(label, CHOICE_MENU, key=key, help=f"module paths `{pattern}`")

here = [name for name in sorted(DATASETS) if not missing_data(name, data_root())]
data_options = [d.network.dataset, SYNTHETIC] if d.network.dataset in here else [SYNTHETIC, d.network.dataset]
state.keep("sweep_data", data_options[0], data_options)
state.keep("sweep_epochs", 1)
state.keep("sweep_max_steps", 0)
state.keep("sweep_batch", 128, [32, 64, 128, 256])
state.keep("sweep_lr", 0.1)
state.keep("sweep_limit", 0)
state.keep("sweep_search", "grid", ["grid", "random"])
state.keep("sweep_trials", 4)
state.keep("sweep_asha", True)
state.keep("sweep_latency_batch", 1)
state.keep("sweep_concurrent", 2)
with st.form("sweep_form", border=True):
    c1, c2, c3, c4 = st.columns(4)
    data = c1.selectbox("Data", data_options, key="sweep_data",
                        format_func=lambda x: "synthetic (a tiny smoke-test set)" if x == SYNTHETIC else x)
    epochs = c2.number_input("Epochs per trial", 1, 500, key="sweep_epochs")
    max_steps = c3.number_input("Max steps (0 = whole epochs)", 0, 10_000_000, key="sweep_max_steps")
    batch = c4.selectbox("Batch size", [32, 64, 128, 256], key="sweep_batch")
    c5, c6, c7, c8 = st.columns(4)
    lr = c5.number_input("Learning rate", 0.0001, 10.0, format="%.4f", key="sweep_lr")
    limit = c6.number_input("Images per split (0 = all)", 0, 10_000_000, key="sweep_limit")
    search = c7.selectbox("Search", ["grid", "random"], key="sweep_search")
    trials = c8.number_input("Trials (random)", 1, 10_000, key="sweep_trials")
    c9, c10, c11, c12 = st.columns(4)
    asha = c9.checkbox("Early stopping (ASHA)", key="sweep_asha",
                       help="after each epoch, trials whose test accuracy falls behind the others' stop")
    latency_batch = c10.number_input("Latency at batch (0 = none)", 0, 1024, key="sweep_latency_batch")
    concurrent = c11.number_input("Trials at once", 1, 64, key="sweep_concurrent")
    name = c12.text_input("Name (optional)", key="sweep_name", max_chars=80)
    launched = st.form_submit_button("Launch the sweep in the background", type="primary")


def _spec() -> dict:
    recipe = Recipe(epochs=int(epochs), max_steps=int(max_steps) or None, batch_size=int(batch), lr=float(lr),
                    data=SYNTHETIC if data == SYNTHETIC else None, data_limit=int(limit) or None, search=search,
                    trials=int(trials), asha=bool(asha), latency_batch_size=int(latency_batch),
                    max_concurrent=int(concurrent))
    return compose_spec(d, axes, recipe, name.strip())


if launched:
    try:
        spec = load_spec(_spec())
        if data != SYNTHETIC and missing_data(data, data_root()):
            raise DesignError(missing_data(data, data_root()), "data")
        sweep_id = records.start_sweep(spec, workspace_home(), max_concurrent=int(concurrent))
    except DesignError as err:
        st.error(state.plain(err))
    else:
        st.session_state.sweeps_watch = sweep_id
        st.success(f"Sweep {sweep_id} started: {spec.total_trials} trials.")
if any(axes.values()):
    with st.expander("The sweep's spec (JSON: run it with `python -m designer sweep SPEC.json`)"):
        try:
            text = json.dumps(_spec(), indent=1)
        except DesignError as err:
            st.caption(state.plain(err))
        else:
            st.code(text, language="json")
            st.download_button("Download the spec", text, file_name="sweep.json", mime="application/json",
                               key="sweep_spec_download", icon=":material/download:")


def _act(fn, sweep_id: int) -> None:
    try:
        fn(sweep_id, workspace_home())
    except DesignError as err:
        st.session_state.errors["sweeps"] = str(err)
    else:
        state.clear_error("sweeps")


def _stop(sweep_id: int, home) -> None:
    records.stop_sweep(sweep_id, home)


@st.fragment(run_every=2)
def live() -> None:
    """Re-drawn every 2 s on its own: trials arrive as the sweep's driver writes them."""
    store = jobs.open_store()
    sweeps = records.list_sweeps(store)
    if not sweeps:
        st.info("No sweeps yet: pick choices for a layer group above and launch one.")
        return
    by_id = {s["id"]: s for s in sweeps}
    if st.session_state.get("sweeps_watch") not in by_id:
        st.session_state.sweeps_watch = sweeps[0]["id"]
    st.subheader("Live")
    sweep_id = st.selectbox("Sweep", list(by_id), key="sweeps_watch",
                            format_func=lambda i: f"{i} · {by_id[i]['name']} · {by_id[i]['status']}")
    sweep = by_id[sweep_id]
    rows = records.trials_table(store, sweep_id)
    s1, s2, s3, s4 = st.columns(4)
    s1.metric("Status", sweep["status"])
    s2.metric("Trials", f"{sum(r['status'] in ('finished', 'pruned') for r in rows)}/{sweep['trials']}")
    s3.metric("Running", sum(r["status"] == "running" for r in rows))
    best = max((r["best_accuracy"] for r in rows if r["best_accuracy"] is not None), default=None)
    s4.metric("Best test accuracy", f"{best:.2f}%" if best is not None else "-")
    if sweep["error"]:
        st.error(state.plain(sweep["error"]))
    b1, b2, _ = st.columns([1, 1, 4])
    b1.button("Stop", key="sweeps_stop", on_click=_act, args=(_stop, sweep_id), icon=":material/stop:",
              disabled=sweep["status"] not in ("queued", "running"),
              help="Ray Tune saves the sweep and ends its trials; Resume continues them")
    b2.button("Resume", key="sweeps_resume", on_click=_act, args=(records.resume_sweep, sweep_id),
              icon=":material/play_arrow:", disabled=sweep["status"] not in ("stopped", "interrupted", "failed"),
              help="finished trials are not trained again")
    if state.error("sweeps"):
        st.error(state.plain(state.error("sweeps")))
    st.dataframe([{"run": r["run_id"], "choices": r["label"], "status": r["status"],
                   "epoch": f"{r['epoch']}/{r['epochs']}", "best acc (%)": r["best_accuracy"],
                   "MACs (M)": r["macs"] / 1e6 if r["macs"] else None, "latency (ms)": r["latency_ms"],
                   "Pareto": ("MACs " if r["pareto_macs"] else "") + ("latency" if r["pareto_latency"] else "")}
                  for r in rows], hide_index=True, width="stretch", key="sweeps_trials",
                 column_config={"best acc (%)": st.column_config.NumberColumn(format="%.2f"),
                                "MACs (M)": st.column_config.NumberColumn(format="%.2f"),
                                "latency (ms)": st.column_config.NumberColumn(format="%.2f")})
    if rows:
        pareto_charts(store, sweep_id, "sweeps_pareto")
    with st.expander("The sweep's log"):
        st.code(records.log_tail(sweep_id, workspace_home(), 5000) or "(empty)")


live()
