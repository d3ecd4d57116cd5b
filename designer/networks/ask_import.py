"""Checkpoints of the ASK reference code (lgzz/ASKs main.py) -> our models.

The reference stores an ASK layer as 1x1 convs `<layer>.conv{g}.weight` of
shape (Cout/n_shapes, taps*Cin, 1, 1) over the tap-major concatenation of
shifted inputs (channel index = tap_position_in_shape * Cin + c). We store
(Cout/n_shapes, Cin, taps) in the same tap order, or a dense 3x3 weight when
the layer is dense. Every other tensor (BN, linear, dense convs) keeps its name.
"""
from __future__ import annotations

import re

import torch

from designer.designs.design import Design
from designer.errors import DesignError
from designer.networks.build import build_model, design_layers, validate

_ASK_KEY = re.compile(r"^(?P<layer>.+)\.conv(?P<group>\d+)\.weight$")


def reference_state_dict(checkpoint) -> dict:
    """The state_dict inside a reference checkpoint (main.py saves {'state_dict': ...})."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DesignError("not an ASK reference checkpoint (expected a dict with a 'state_dict' of tensors)",
                          "checkpoint")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_state_dict(design: Design, state: dict) -> dict:
    """Our state_dict for `design` from the reference layout `state`."""
    design = validate(design)
    layers = {c.name: (c, choice) for c, choice in zip(design_layers(design), design.layers)}
    ours: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _ASK_KEY.match(key)
        if match and match["layer"] in layers:
            conv, choice = layers[match["layer"]]
            group = int(match["group"])
            ours.update(_convert_ask_weight(conv, choice, group, tensor, key))
        else:
            ours[key] = tensor
    return ours


def _convert_ask_weight(conv, choice, group: int, tensor: torch.Tensor, key: str) -> dict:
    spec = conv.spec
    shapes = choice.shapes if choice.kind == "ask" else None
    if choice.kind == "dense":
        taps, n_groups = tuple(range(1, 10)), 1
    elif shapes is not None:
        n_groups = len(shapes)
        if group >= n_groups:
            raise DesignError(f"{key}: the design has {n_groups} shapes in this layer", f"layer {conv.index + 1}")
        taps = shapes[group].taps
    else:
        raise DesignError(f"{key}: an ASK reference layer cannot load into a {choice.kind} layer",
                          f"layer {conv.index + 1}")
    group_out = spec.out_channels // n_groups
    expected = (group_out, len(taps) * spec.in_channels, 1, 1)
    if tuple(tensor.shape) != expected:
        raise DesignError(f"{key} has shape {tuple(tensor.shape)}, the design expects {expected} "
                          f"({len(taps)} taps x {spec.in_channels} inputs)", f"layer {conv.index + 1} ({conv.name})")
    per_tap = tensor.reshape(group_out, len(taps), spec.in_channels).permute(0, 2, 1).contiguous()
    if choice.kind == "ask":
        return {f"{conv.name}.weights.{group}": per_tap}
    dense = per_tap.new_zeros(group_out, spec.in_channels, 9)
    dense[:, :, [t - 1 for t in taps]] = per_tap
    return {f"{conv.name}.weight": dense.view(group_out, spec.in_channels, 3, 3)}


def import_ask_checkpoint(design: Design, checkpoint) -> torch.nn.Module:
    """Our model for `design` carrying the reference checkpoint's weights."""
    model = build_model(design)
    state = convert_state_dict(design, reference_state_dict(checkpoint))
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    if missing or unexpected:
        detail = (f"missing {missing[:3]}" if missing else "") + (" " if missing and unexpected else "") + \
                 (f"unexpected {unexpected[:3]}" if unexpected else "")
        raise DesignError(f"the checkpoint does not fit the design: {detail}", "checkpoint")
    for key, tensor in state.items():
        if ours[key].shape != tensor.shape:
            raise DesignError(f"{key} has shape {tuple(tensor.shape)}, the design expects {tuple(ours[key].shape)}",
                              "checkpoint")
    model.load_state_dict(state)
    return model
