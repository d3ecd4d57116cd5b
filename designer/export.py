"""Export a design: design JSON, ASK cfglist JSON, weights (state_dict) or ONNX.

Every file is written to a temporary name and renamed, so a failed export
never leaves half a file. Weights are a plain state_dict, loadable with
torch.load(weights_only=True). ONNX goes through the reference backend (one
masked dense conv per ASK layer: standard operators, any runtime), opset 17,
with a dynamic batch dimension.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from designer.build import build_model, validate
from designer.cfglist import design_to_cfglist
from designer.data import dataset_info
from designer.design import Design
from designer.errors import DesignError

FORMATS = ("design", "cfglist", "onnx", "weights")
ONNX_OPSET = 17


def export(design: Design, fmt: str, out: str | Path, model: nn.Module | None = None) -> Path:
    """Write `design` (and `model`'s weights where the format holds weights) to `out`.

    model: the trained network to export (build_model(design) when None,
    i.e. fresh weights). Returns the path written.
    """
    if fmt not in FORMATS:
        raise DesignError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})", "--format")
    design = validate(design)
    out = Path(out)
    if not out.parent.is_dir():
        raise DesignError("the folder does not exist", str(out.parent))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if fmt == "design":
            tmp.write_text(design.dumps())
        elif fmt == "cfglist":
            tmp.write_text(json.dumps(design_to_cfglist(design)))
        elif fmt == "weights":
            torch.save((model or build_model(design)).state_dict(), tmp)
        else:
            export_onnx(design, model or build_model(design), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_onnx(design: Design, model: nn.Module, path: Path) -> None:
    """Eval-mode ONNX of the model through the reference ASK backend; input (N, 3, 32, 32) named 'input'."""
    info = dataset_info(design.network.dataset)
    reference = build_model(design, "reference")
    reference.load_state_dict(model.state_dict())
    reference.eval()
    example = torch.zeros(1, info.in_channels, info.input_size, info.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about constant tap indices: expected
        torch.onnx.export(reference, (example,), str(path), opset_version=ONNX_OPSET, dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
