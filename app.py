"""Kernel Studio: the Streamlit entry point. Pages compose UI from designer/.

The current design lives in the session state (pages/state.py) and is shown
in the sidebar on every page with its params, FLOPs and ratio to dense.
"""
import streamlit as st

from pages import state

st.set_page_config(page_title="Kernel Studio", page_icon=":material/grid_on:", layout="wide")
state.init()

pages = [
    st.Page("pages/design.py", title="Design", icon=":material/draw:", default=True),
    st.Page("pages/analyze.py", title="Analyze", icon=":material/bar_chart:"),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/timer:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("pages/sweeps.py", title="Sweeps", icon=":material/grid_view:"),
]
page = st.navigation(pages)
st.sidebar.title("Kernel Studio")
state.sidebar()
page.run()
