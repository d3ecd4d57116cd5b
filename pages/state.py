"""The app's session state: the current design, its undo history, the counting convention.

Every page reads and changes the design through these helpers, so undo and
the sidebar see every edit. Edits are pure functions from designer.editing;
a DesignError they raise is kept under an error key and shown next to the
control that caused it, and the design stays as it was.
"""
from __future__ import annotations

from typing import Callable

import streamlit as st

from designer.analysis import totals
from designer.build import dense_design
from designer.counting import CONVENTIONS
from designer.design import Design, Network
from designer.editing import History, network_label, summarize
from designer.errors import DesignError

DEFAULT_NETWORK = Network("vgg", 16, "cifar10")


def init() -> None:
    """Defaults for a new session (a browser tab)."""
    if "design" not in st.session_state:
        st.session_state.design = dense_design(DEFAULT_NETWORK)
    st.session_state.setdefault("history", History())
    st.session_state.setdefault("convention", "macs")
    st.session_state.setdefault("errors", {})


def design() -> Design:
    init()
    return st.session_state.design


def history() -> History:
    init()
    return st.session_state.history


def convention() -> str:
    init()
    return st.session_state.convention


def set_convention(name: str) -> None:
    if name in CONVENTIONS:
        st.session_state.convention = name


def commit(new: Design, label: str) -> None:
    """Make `new` the current design, remembering the old one for undo (no-op if unchanged)."""
    old = design()
    if new == old:
        return
    history().record(old, label)
    st.session_state.design = new


def edit(fn: Callable[[Design], Design], label: str, error_key: str) -> bool:
    """Apply a pure edit; on DesignError keep the message under `error_key` and the design as it was."""
    errors = st.session_state.setdefault("errors", {})
    try:
        new = fn(design())
    except DesignError as err:
        errors[error_key] = str(err)
        return False
    errors.pop(error_key, None)
    commit(new, label)
    return True


def error(error_key: str) -> str | None:
    return st.session_state.get("errors", {}).get(error_key)


def clear_error(error_key: str) -> None:
    st.session_state.get("errors", {}).pop(error_key, None)


def undo() -> None:
    h = history()
    if h.can_undo:
        st.session_state.design = h.undo(design())
        st.session_state.errors = {}


def redo() -> None:
    h = history()
    if h.can_redo:
        st.session_state.design = h.redo(design())
        st.session_state.errors = {}


def sync_widget(key: str, value) -> None:
    """Show `value` in the widget `key` (call before the widget is drawn): after an undo or an import
    the network pickers follow the design, not the other way round."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def convention_picker(key: str) -> str:
    """A convention switch that every page shares."""
    sync_widget(key, convention())
    st.segmented_control("Counting convention", CONVENTIONS, key=key,
                         on_change=lambda: set_convention(st.session_state[key] or convention()),
                         help="macs: multiply-accumulates of conv and linear layers over active weights; "
                              "ask: the ASK paper's compute_flops.py; bsconv: the BSConv profiler")
    return convention()


def sidebar() -> None:
    """The current design, its params and FLOPs and their ratio to dense: on every page."""
    d, conv = design(), convention()
    t = totals(d, conv)
    with st.sidebar:
        st.markdown(f"**{network_label(d.network)}** · {d.network.dataset}")
        st.caption(summarize(d).split(": ", 1)[1])
        st.metric("Params", f"{t.params / 1e6:.4f}M", f"{t.params_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
        st.metric("FLOPs", f"{t.flops / 1e6:.2f}M", f"{t.flops_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
        st.caption(f"Counted under `{conv}`; dense: {t.dense_params / 1e6:.4f}M params, "
                   f"{t.dense_flops / 1e6:.2f}M FLOPs.")
        h = history()
        st.button("Undo" + (f": {h.last_label()}" if h.can_undo else ""), key="sidebar_undo",
                  on_click=undo, disabled=not h.can_undo, width="stretch")
