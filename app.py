"""Kernel Studio: the Streamlit entry point. Pages compose UI from designer/."""
import streamlit as st

st.set_page_config(page_title="Kernel Studio", layout="wide")

pages = [
    st.Page("pages/design.py", title="Design", default=True),
]
st.navigation(pages).run()
