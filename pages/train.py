"""Train page: launch a background training run of the current design and watch its curves live.

Runs are separate processes started by the job manager (designer.runs.jobs) and
recorded in the run store; this page only starts, stops and reads them, so a
reload, a second tab or an app restart loses nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect

import streamlit as st
from plotly.subplots import make_subplots

from designer.designs.datasets import DATASETS, IMAGE_FOLDER
from designer.designs.design import Network, design_from_json
from designer.errors import DesignError
from designer.networks.editing import change_network, summarize, with_dataset
from designer.networks.weights import read_weights
from designer.networks.weights import same_network as same_network_as
from designer.runs import data as run_data
from designer.runs import jobs
from designer.runs.checkpoints import run_weights_path
from designer.runs.data import SYNTHETIC, missing_data
from designer.runs.reports import describe_design_json
from designer.runs.train import SCHEDULES, HParams
from designer.workspace import data_root, workspace_home
from models.layers.ask import ASK_BACKENDS
from pages import state

d = state.design()
st.title("Train")
st.caption(summarize(d))

defaults = HParams()
root = data_root()
data_options = [*sorted(DATASETS), SYNTHETIC]
# Image folders: designer.runs.data and HParams take the folder (data_dir) in builds that load them.
FOLDERS = "data_dir" in inspect.signature(missing_data).parameters and \
    "data_dir" in {f.name for f in dataclasses.fields(HParams)}
state.keep("train_data_dir", "")
data_dir = st.session_state.train_data_dir.strip()


def _missing(name: str) -> str | None:
    if name != IMAGE_FOLDER:
        return missing_data(name, root)
    if not FOLDERS:
        return "this build cannot train on an image folder yet (designer.runs.data has no image-folder loader)"
    return missing_data(name, root, data_dir or None)


missing = {name: _missing(name) for name in data_options}
# The design's data set when it is here, else the first one that is (Fashion-MNIST ships with the app).
default_data = d.network.dataset if not missing[d.network.dataset] else next(
    name for name in data_options if not missing[name])
START_OPTIONS = ("fresh", "run", "upload")
START_LABELS = {"fresh": "fresh weights", "run": "a finished run of this network", "upload": "an uploaded state_dict"}

state.keep("train_data", default_data, data_options)
data = st.session_state.train_data
target = d if data in (SYNTHETIC, d.network.dataset) else change_network(d, with_dataset(d.network, data))
folder_classes = None
if data == IMAGE_FOLDER and FOLDERS and not missing[data]:  # the classifier gets the folder's classes
    folder_classes = len(run_data.scan_image_folder(data_dir).classes)
    if folder_classes != target.network.num_classes:
        net = target.network
        target = change_network(d, Network(net.arch, net.depth, IMAGE_FOLDER, folder_classes, net.input_shape,
                                           net.kwargs))


def _same_network(raw: dict) -> bool:
    """Whether a run's weights fit the target (False for a run this server cannot build, e.g. a model of
    the user's that KERNEL_STUDIO_MODELS does not name)."""
    try:
        return same_network_as(target, design_from_json(raw))
    except DesignError:
        return False


same_network = [r for r in jobs.list_runs() if r["status"] == "finished" and _same_network(r["design"])]
start_runs = [r["id"] for r in same_network]
state.keep("train_epochs", 1)
state.keep("train_batch", 128, [32, 64, 128, 256])
state.keep("train_lr", defaults.lr)
state.keep("train_schedule", defaults.schedule, SCHEDULES)
state.keep("train_warmup", defaults.warmup_epochs)
state.keep("train_max_steps", 0)
state.keep("train_backend", defaults.backend, list(ASK_BACKENDS))
state.keep("train_seed", 0)
state.keep("train_ckpt_s", int(defaults.checkpoint_every_s))
state.keep("train_download", False)
state.keep("train_start", "fresh", START_OPTIONS)
state.keep("train_start_run", start_runs[0] if start_runs else None, start_runs or [None])

st.markdown(f"**A short run** to see whether the design still learns. Any data set trains this design: its images "
            f"are resized to the network's input ({'x'.join(map(str, d.network.input_shape))}), its convolutions "
            "stay as they are, the classifier follows the classes.")
c1, c2, c3 = st.columns([2, 2, 3])
data = c1.selectbox("Data", data_options, key="train_data",
                    format_func=lambda x: f"{x} (not here)" if missing[x] else
                    ("synthetic (a tiny smoke-test set)" if x == SYNTHETIC else x))
start = c2.selectbox("Start from", START_OPTIONS, key="train_start", format_func=START_LABELS.get,
                     help="fresh: random initialisation; a run or a state_dict of this network (dense or any "
                          "design of it): ASK keeps the active taps, HetConv its parts, 1xN takes its masks from "
                          "those weights, low-rank their SVD")
with c3:
    if start == "run":
        if start_runs:
            by_id = {r["id"]: r for r in same_network}
            st.selectbox("Run", start_runs, key="train_start_run",
                         format_func=lambda i: f"{i} · {by_id[i]['name']} · best {by_id[i]['best_acc'] or 0:.2f}%")
        else:
            st.info("No finished run of this network yet: train one from fresh weights first.")
    elif start == "upload":
        st.file_uploader("A state_dict (.pt, loaded with weights_only)", type=["pt", "pth", "bin"],
                         key="train_upload", max_upload_size=500)

if data == IMAGE_FOLDER:
    st.text_input("Image folder (a path on the machine the app runs on)", key="train_data_dir",
                  placeholder="/data/my-images",
                  help="one sub-folder per class (root/class/image.jpg), or train/ and val/ with class folders "
                       "inside; without val/ a fixed 90/10 split per class is held out")
    if folder_classes:
        st.caption(f"{folder_classes} classes in {state.plain(data_dir)}.")
if data not in (SYNTHETIC, d.network.dataset):
    classes = target.network.num_classes
    same = classes == d.network.num_classes
    st.caption(f"The design is for {d.network.dataset}; this run trains it on {data} "
               + ("(the same network: same convolutions, same classes)." if same else
                  f"(same convolutions; the classifier gets {classes} classes)."))
if missing[data]:
    st.warning(state.plain(missing[data]), icon=":material/cloud_off:")
    if data != IMAGE_FOLDER:
        st.checkbox(f"Let torchvision download {data} (needs the internet)", key="train_download")

with st.form("train_form", border=True):
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 500, key="train_epochs")
    batch = c2.selectbox("Batch size", [32, 64, 128, 256], key="train_batch")
    lr = c3.number_input("Learning rate", 0.0001, 10.0, format="%.4f", key="train_lr")
    warmup = c4.number_input("Warm-up (epochs)", 0.0, 100.0, step=0.05, format="%.2f", key="train_warmup",
                             help="linear warm-up of the learning rate from 0, then the schedule")
    c5, c6, c7, c8 = st.columns(4)
    schedule = c5.selectbox("Schedule", SCHEDULES, key="train_schedule",
                            help="cosine, or step: x0.1 at 50% and 75% (the ASK recipe)")
    max_steps = c6.number_input("Max steps (0 = whole epochs)", 0, 10_000_000, key="train_max_steps")
    backend = c7.selectbox("Backend", list(ASK_BACKENDS), key="train_backend",
                           help="auto: each layer times the backends on its first batch and keeps the fastest "
                                "(never slower than plain torch)")
    seed = c8.number_input("Seed", 0, 2**31 - 1, key="train_seed")
    c9, c10 = st.columns([1, 3])
    checkpoint_s = c9.number_input("Checkpoint every (s)", 10, 3600, key="train_ckpt_s",
                                   help="besides the end of every epoch: a stop or a crash loses at most this much")
    name = c10.text_input("Run name (optional)", key="train_name", max_chars=80)
    launched = st.form_submit_button("Launch in the background", type="primary")


def _start_weights() -> str | None:
    """The file the run starts from (None: fresh); DesignError when the choice is incomplete or unreadable."""
    if start == "run":
        run_id = st.session_state.get("train_start_run")
        if run_id not in start_runs:
            raise DesignError("choose a finished run of this network to start from", "start from")
        return str(run_weights_path(jobs.open_store().get_run(run_id)))
    if start == "upload":
        upload = st.session_state.get("train_upload")
        if upload is None:
            raise DesignError("upload a state_dict first", "start from")
        payload = upload.getvalue()
        folder = workspace_home() / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(payload).hexdigest()[:16]}.pt"
        if not path.exists():
            path.write_bytes(payload)
        read_weights(path)  # refuse a bad file now, not in the background
        return str(path)
    return None


if launched:
    try:
        if missing[data] and (data == IMAGE_FOLDER or not st.session_state.get("train_download")):
            raise DesignError(missing[data], "data")
        folder = {"data_dir": data_dir} if data == IMAGE_FOLDER and FOLDERS else {}
        hp = HParams(epochs=int(epochs), max_steps=int(max_steps) or None, batch_size=int(batch), lr=float(lr),
                     schedule=schedule, warmup_epochs=float(warmup), backend=backend, seed=int(seed),
                     data=SYNTHETIC if data == SYNTHETIC else None, download=bool(missing[data]),
                     log_every=10 if data == SYNTHETIC else 50, checkpoint_every_s=float(checkpoint_s),
                     init_from=_start_weights(), **folder)
        run_id = jobs.start_run(target, hp, name=name.strip())
    except DesignError as err:
        st.error(state.plain(err))
    else:
        st.session_state.watch_run = run_id
        st.session_state.train_watch = run_id  # the Live panel follows the new run
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
    if st.session_state.get("train_watch") not in ids:
        st.session_state.train_watch = st.session_state.get("watch_run") if st.session_state.get(
            "watch_run") in ids else ids[0]
    by_id = {r["id"]: r for r in runs}
    st.subheader("Live")
    run_id = st.selectbox("Run", ids, key="train_watch",
                          format_func=lambda i: f"{i} · {by_id[i]['name']} · {by_id[i]['status']}")
    st.session_state.watch_run = run_id
    run = by_id[run_id]
    hp = run["hparams"]
    s1, s2, s3, s4 = st.columns(4)
    s1.metric("Status", run["status"])
    s2.metric("Epoch", f"{run['epoch']}/{hp.get('epochs')}")
    s3.metric("Step", run["step"])
    s4.metric("Best test accuracy", f"{run['best_acc']:.2f}%" if run.get("best_acc") is not None else "-")
    resumable = run["status"] in ("stopped", "interrupted", "failed")
    if resumable:
        resume_step = run.get("resume_step") or 0
        st.caption(f"Resume continues from step {resume_step}" + (
            f" (the newest checkpoint; steps {resume_step + 1}..{run['step']} are trained again)"
            if resume_step < run["step"] else " (the newest checkpoint)") + "." if resume_step else
            "Resume starts from step 0: the run has no checkpoint yet.")
    if run.get("error"):
        st.error(state.plain(run["error"]))
    b1, b2, _ = st.columns([1, 1, 4])
    b1.button("Stop", key=f"stop_{run_id}", on_click=_stop, args=(run_id,),
              disabled=run["status"] not in ("queued", "running"), icon=":material/stop:")
    b2.button("Resume", key=f"resume_{run_id}", on_click=_resume, args=(run_id,), disabled=not resumable,
              icon=":material/play_arrow:")
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
        st.caption("Waiting for the first logged step (every few seconds)...")
    active = [r for r in runs if r["status"] in ("queued", "running")]
    st.subheader("Queue")
    st.caption(f"{len(active)} active; at most {jobs.concurrency()} at a time.")
    if active:
        st.dataframe([{"id": r["id"], "name": r["name"], "status": r["status"], "design":
                       describe_design_json(r["design"]), "epoch": r["epoch"], "step": r["step"]} for r in active],
                     hide_index=True, width="stretch", key="queue_table")


live()
if state.error("train"):
    st.error(state.plain(state.error("train")))
