"""The inference form of a network: each eval BatchNorm folded into the conv before it, and the bias, residual
add and ReLU that follow run in the conv's own call.

A deployed network runs this way (onnxruntime folds Conv + BatchNormalization; oneDNN fuses post-ops), and
so the latency of a design and of its dense network is measured on this form (designer.bench.latency):
without it, the BatchNorms, adds and ReLUs are the same time on both sides, and they hide what the
convolutions gain. The chains conv -> BN [-> add(., r)] [-> ReLU] are found by tracing the graph (torch.fx),
where each link is the only consumer of the one before, each module is called once and the add's operands
have one shape (checked on an example input). A network fx cannot trace stays as it is; the report says why.
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from models.layers.ask import AskConv2d
from models.layers.backend_choice import BackendChoice
from models.layers.blocksparse import BlockSparseConv2d
from models.layers.epilogue import Epilogue, dense_conv
from models.layers.hetconv import HetConv2d

LAYER_KINDS = (AskConv2d, HetConv2d, BlockSparseConv2d)  # a design's layers: leaves of the traced graph
_ADDS = {operator.add, operator.iadd, torch.add}
_RELUS = {F.relu, torch.relu, torch.relu_}


class LeafTracer(torch.fx.Tracer):
    """fx's tracer that keeps a design's layers whole (their backend choice happens at run time)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LAYER_KINDS) or super().is_leaf_module(m, qualname)


def bn_scale_shift(bn: nn.BatchNorm2d | None, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-channel scale and shift of an eval-mode BatchNorm (1 and None without one)."""
    if bn is None:
        return torch.ones(channels), None
    std = torch.sqrt(bn.running_var + bn.eps)
    weight = bn.weight.detach() if bn.affine else torch.ones_like(std)
    bias = bn.bias.detach() if bn.affine else torch.zeros_like(std)
    scale = weight / std
    return scale, bias - bn.running_mean * scale


class FoldedConv(nn.Module):
    """A conv with its BatchNorm folded into the weights: [relu](conv(x) + residual + bias), one call."""

    def __init__(self, conv: nn.Module, bias: torch.Tensor, relu: bool):
        super().__init__()
        self.conv, self.relu = conv, relu
        self.register_buffer("bias", bias.detach().contiguous())

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        epilogue = Epilogue(self.bias, self.relu, residual)
        if isinstance(self.conv, BackendChoice):
            return self.conv.forward_with_epilogue(x, epilogue)
        return dense_conv(self.conv, x, epilogue)

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


@dataclass(frozen=True)
class FoldReport:
    folded: int  # convs with a BatchNorm folded in
    residuals: int  # of those, how many also add a residual
    relus: int  # and how many run the ReLU
    why_not: str = ""  # set when the network could not be traced: nothing folded


@torch.inference_mode(False)  # the copy's weights must be ordinary tensors (packed-weight caches track versions)
def fold_for_inference(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, FoldReport]:
    """An eval-mode copy of `model` in its inference form, and what was folded. `example` (an input batch)
    fixes the shapes checked for residual adds; the copy then takes any input the model takes."""
    model = copy.deepcopy(model).eval()
    try:
        graph = LeafTracer().trace(model)
        traced = torch.fx.GraphModule(model, graph)
        with torch.no_grad():
            ShapeProp(traced).propagate(example)
    except Exception as err:  # data-dependent control flow in a user's network: nothing folded, still exact
        return model, FoldReport(0, 0, 0, f"torch.fx cannot trace it: {str(err).splitlines()[0] if str(err) else err}")
    graph = traced.graph
    modules = dict(traced.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = residuals = relus = 0
    for node in list(graph.nodes):
        chain = _chain(node, modules, calls)
        if chain is None:
            continue
        bn_node, add_node, residual, relu_node = chain
        conv, bn = modules[node.target], modules[bn_node.target]
        scale, shift = bn_scale_shift(bn, bn.num_features)
        bias = shift if conv.bias is None else shift + conv.bias.detach() * scale
        with torch.no_grad():
            if isinstance(conv, nn.Conv2d):
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
            else:
                conv.scale_outputs_(scale)
        conv.bias = None
        _replace(traced, node.target, FoldedConv(conv, bias, relu_node is not None))
        last = relu_node or add_node or bn_node
        with graph.inserting_before(last):
            fused = graph.call_module(node.target, (node.args[0],) + ((residual,) if residual is not None else ()))
        fused.meta = dict(last.meta)  # its shape, for the chains after it that add it as a residual
        last.replace_all_uses_with(fused)
        for dead in (relu_node, add_node, bn_node, node):
            if dead is not None:
                graph.erase_node(dead)
        folded += 1
        residuals += residual is not None
        relus += relu_node is not None
    graph.eliminate_dead_code()
    graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced.eval(), FoldReport(folded, residuals, relus)


def _chain(node: torch.fx.Node, modules: dict[str, nn.Module], calls: dict[str, int]):
    """(bn, add or None, residual or None, relu or None) for a foldable conv node, else None."""
    if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
        return None
    conv = modules[node.target]
    if not (type(conv) is nn.Conv2d or isinstance(conv, LAYER_KINDS)):
        return None
    (bn_node,) = node.users
    if bn_node.op != "call_module" or calls.get(bn_node.target) != 1 or bn_node.args[0] is not node:
        return None
    bn = modules[bn_node.target]
    if type(bn) is not nn.BatchNorm2d or bn.running_var is None or bn.num_features != conv.out_channels:
        return None
    add_node = residual = relu_node = None
    tail = bn_node
    if len(tail.users) == 1:
        (user,) = tail.users
        other = _residual_of(user, tail)
        if other is not None:
            add_node, residual, tail = user, other, user
    if len(tail.users) == 1:
        (user,) = tail.users
        if _is_relu(user, modules) and user.args[0] is tail:
            relu_node = user
    return bn_node, add_node, residual, relu_node


def _residual_of(add: torch.fx.Node, operand: torch.fx.Node) -> torch.fx.Node | None:
    """The other operand of `add` = operand + other (or other + operand) when both have one shape."""
    is_add = ((add.op == "call_function" and add.target in _ADDS)
              or (add.op == "call_method" and add.target in ("add", "add_")))
    if not is_add or add.kwargs or len(add.args) != 2 or operand not in add.args:
        return None
    other = add.args[1] if add.args[0] is operand else add.args[0]
    if not isinstance(other, torch.fx.Node) or other is operand:
        return None
    shape_of = lambda n: getattr(n.meta.get("tensor_meta"), "shape", None)  # noqa: E731
    mine, theirs = shape_of(operand), shape_of(other)
    return other if mine is not None and mine == theirs else None


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules[node.target]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELUS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)
