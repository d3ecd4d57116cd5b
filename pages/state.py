"""The app's session state: the current design, its undo history, the counting convention.

Every page reads and changes the design through these helpers, so undo and
the sidebar see every edit. Edits are pure functions from designer.networks.editing;
a DesignError they raise is kept under an error key and shown next to the
control that caused it, and the design stays as it was.

The current design is also written to the address bar (`?design=...`), so a
reload, a bookmark or a shared link opens the same design; form values the
pages keep (`keep`) survive a change of page.
"""
from __future__ import annotations

import base64
import binascii
import re
import zlib
from typing import Callable

import streamlit as st

from designer.analysis.counting import CONVENTIONS
from designer.analysis.tables import cost_name, totals
from designer.designs.design import Design, Network, design_from_json, loads_design
from designer.errors import DesignError
from designer.networks.build import dense_design, validate
from designer.networks.editing import History, network_label, offer_only, server_models, summarize

DEFAULT_NETWORK = Network("vgg", 16, "cifar10")


URL_KEY = "design"
MAX_URL_CHARS = 20_000


def init() -> None:
    """Defaults for a new session (a browser tab): the design in the address if there is one.

    The user's own models (entry points, which run their code) build only when the server's setting names
    them (KERNEL_STUDIO_MODELS): set before any design from the address or an upload is read."""
    offer_only(server_models()[0])
    st.session_state.setdefault("errors", {})
    if "design" not in st.session_state:
        st.session_state.design = _design_from_url() or dense_design(DEFAULT_NETWORK)
    st.session_state.setdefault("history", History())
    st.session_state.setdefault("convention", "macs")


def encode_design(design: Design) -> str:
    """The design as a short URL-safe token (compressed JSON)."""
    raw = zlib.compress(design.dumps().encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_design(token: str) -> Design:
    """The inverse of encode_design; DesignError when the token is not a design."""
    if len(token) > MAX_URL_CHARS:
        raise DesignError(f"the token is {len(token)} characters; the limit is {MAX_URL_CHARS}", "address")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        inflater = zlib.decompressobj()
        text = inflater.decompress(raw, 1_000_000)
    except (binascii.Error, ValueError, zlib.error):
        raise DesignError("the design in the address is not readable", "address") from None
    if inflater.unconsumed_tail:
        raise DesignError("the design in the address is too large", "address")
    return validate(loads_design(text, "address"))


def _design_from_url() -> Design | None:
    token = st.query_params.get(URL_KEY)
    if not token:
        return None
    try:
        return decode_design(token)
    except DesignError as err:
        st.session_state.errors["address"] = f"{err}; starting from the default design"
        return None


def sync_url() -> None:
    """Write the current design to the address bar (only when it changed)."""
    token = encode_design(design())
    if st.query_params.get(URL_KEY) != token:
        st.query_params[URL_KEY] = token


def keep(key: str, default, options=None):
    """Give widget `key` its last value on this tab (or `default`) before it is drawn, so the value survives
    a change of page (Streamlit forgets the state of widgets a page does not draw). Draw the widget without a
    value of its own. `options`: the values it can take now; a kept value outside them falls back to default."""
    kept = st.session_state.setdefault("_kept", {})
    if key not in st.session_state:
        value = kept.get(key, default)
        st.session_state[key] = value if options is None or value in options else default
    kept[key] = st.session_state[key]
    return st.session_state[key]


def start_weights() -> tuple[str | None, str]:
    """(the file, a label) of the weights the Train page's *Start from* names: a finished run of this network
    (1xN masks and accnn ranks come from it), or (None, "fresh weights") for a fresh start or an upload."""
    from designer.networks.weights import same_network
    from designer.runs import jobs
    from designer.runs.checkpoints import run_weights_path

    kept = st.session_state.get("_kept", {})
    start = st.session_state.get("train_start", kept.get("train_start", "fresh"))
    run_id = st.session_state.get("train_start_run", kept.get("train_start_run"))
    if start == "run" and run_id is not None:
        run = jobs.open_store().get_run(run_id)
        try:
            if run and run["status"] == "finished" and same_network(design(), design_from_json(run["design"])):
                return str(run_weights_path(run)), f"the weights of run {run_id}"
        except DesignError:  # its weights are gone, or the server cannot build its network
            pass
    return None, "fresh (seeded) weights"


def preset_form(key: str, value) -> None:
    """Set the value a kept widget (see keep) shows the next time its page is drawn."""
    st.session_state.pop(key, None)
    st.session_state.setdefault("_kept", {})[key] = value


def plain(text) -> str:
    """User text (names, errors, pasted input) safe to put into markdown: the characters that make links,
    images, HTML, emphasis, code, maths, colour directives and tables backslash-escaped, so it shows as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\g<0>", str(text))


_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\](){}<>!$~|#]")


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
    st.session_state.pop("network_notes", None)  # what the last network change dropped: shown until the next edit
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
        st.session_state.pop("network_notes", None)
        st.session_state.design = h.undo(design())
        st.session_state.errors = {}


def redo() -> None:
    h = history()
    if h.can_redo:
        st.session_state.pop("network_notes", None)
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
    sync_url()
    with st.sidebar:
        if error("address"):
            st.warning(plain(error("address")))
        shape = "×".join(map(str, d.network.input_shape))
        st.markdown(f"**{plain(network_label(d.network))}** · {d.network.dataset} · {shape}")
        st.caption(summarize(d).split(": ", 1)[1])
        st.metric("Params", f"{t.params / 1e6:.4f}M", f"{t.params_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
        cost = cost_name(conv)
        st.metric(cost, f"{t.flops / 1e6:.2f}M", f"{t.flops_ratio:.3f}x dense", delta_color="off", delta_arrow="off")
        st.caption(f"Counted under `{conv}`; dense: {t.dense_params / 1e6:.4f}M params, "
                   f"{t.dense_flops / 1e6:.2f}M {cost}.")
        h = history()
        st.button("Undo" + (f": {h.last_label()}" if h.can_undo else ""), key="sidebar_undo",
                  on_click=undo, disabled=not h.can_undo, width="stretch")
