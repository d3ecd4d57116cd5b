"""Design page: pick a network and see every convolution with its params and FLOPs."""
import streamlit as st

from designer.build import conv_layers, dense_design
from designer.counting import CONVENTIONS, count_design
from designer.design import LayerChoice, Network
from designer.shapes import ASK_PRESETS
from models import list_models

st.title("Design")
col1, col2, col3, col4 = st.columns(4)
arch = col1.selectbox("Architecture", list_models())
depth = col2.selectbox("Depth", [11, 13, 16, 19] if arch == "vgg" else [20, 32, 44, 56, 110])
dataset = col3.selectbox("Data set", ["cifar10", "cifar100", "fashion-mnist"])
preset = col4.selectbox("Kernel on every 3x3 conv", ["dense", *ASK_PRESETS])
convention = st.radio("Counting convention", CONVENTIONS, horizontal=True)

base = dense_design(Network(arch, depth, dataset))
design = base if preset == "dense" else base.with_layers(LayerChoice.preset(preset) for _ in base.layers)
count, dense = count_design(design, convention), count_design(base, convention)
st.metric("Params", f"{count.params / 1e6:.4f}M", f"{count.params / dense.params:.2f}x of dense")
st.metric("FLOPs", f"{count.flops / 1e6:.2f}M", f"{count.flops / dense.flops:.2f}x of dense")
per_layer = {layer.name: layer for layer in count.layers}
st.dataframe([
    {"layer": c.name, "Cin": c.spec.in_channels, "Cout": c.spec.out_channels,
     "size": f"{c.in_size[0]}x{c.in_size[1]}", "stride": c.spec.stride, "choice": design.layers[c.index].kind,
     "params": per_layer[c.name].params, "FLOPs": per_layer[c.name].flops}
    for c in conv_layers(design.network)
], width="stretch")
