"""Export a design: design JSON, ASK cfglist JSON, weights (state_dict), ONNX or a torch.export program.

Every file is written to a temporary name and renamed, so a failed export
never leaves half a file. Weights are a plain state_dict, loadable with
torch.load(weights_only=True). ONNX and pt2 hold the network's export form
(designer.networks.export_forms): `fast` by default (the standard operators that run
each layer's saving), `masked` for one masked dense conv per layer. ONNX:
the TorchScript exporter (dynamo=False: the dynamo one needs onnxscript,
which is not installed, and this one is deterministic), opset 17, input
named "input" of shape (batch, C, H, W) float32 with a dynamic batch, output
"logits" (batch, classes); metadata_props record the form, the opset, the
input and the design. pt2: an ExportedProgram (torch.export.save) with a
dynamic batch, loaded with torch.export.load(path).module().
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from designer.designs.design import Design
from designer.errors import DesignError
from designer.networks.build import build_model, validate
from designer.networks.cfglist import design_to_cfglist
from designer.networks.export_forms import FORMS, export_form

FORMATS = ("design", "cfglist", "onnx", "weights", "pt2")
ONNX_OPSET = 17
MAX_BATCH = 1024  # the pt2 program's dynamic batch range is 1..MAX_BATCH


def export(design: Design, fmt: str, out: str | Path, model: nn.Module | None = None, form: str = "fast") -> Path:
    """Write `design` (and `model`'s weights where the format holds weights) to `out`.

    model: the trained network to export (build_model(design) when None,
    i.e. fresh weights); form: the export form of onnx and pt2 (fast or
    masked). Returns the path written.
    """
    if fmt not in FORMATS:
        raise DesignError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})", "--format")
    if form not in FORMS:
        raise DesignError(f"unknown export form {form!r} (choose one of {', '.join(FORMS)})", "--onnx-form")
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
        elif fmt == "pt2":
            export_pt2(design, model or build_model(design), tmp, form)
        else:
            export_onnx(design, model or build_model(design), tmp, form)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def input_shape(design: Design) -> tuple[int, int, int]:
    """(C, H, W) of one input image of the design's network."""
    return validate(design).network.input_shape


@contextlib.contextmanager
def _quiet_output():
    """Standard output and error (the file descriptors, where C++ writes) sent to /dev/null for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def export_onnx(design: Design, model: nn.Module, path: Path, form: str = "fast") -> None:
    """Eval-mode ONNX of the model's export form; input 'input' (batch, C, H, W), output 'logits'."""
    shape = input_shape(design)
    with warnings.catch_warnings(), _quiet_output():  # a failing export prints its whole graph from C++
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation note: chosen on purpose
        try:
            torch.onnx.export(export_form(model, shape, form), (torch.zeros(1, *shape),), str(path),
                              opset_version=ONNX_OPSET, dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except torch.onnx.errors.OnnxExporterError as err:
            reason = str(err).split(" Please feel free")[0].split(" [Caused by")[0].strip()
            raise DesignError(f"this network does not export to ONNX at {'x'.join(map(str, shape))}: {reason[:200]}",
                              "--format") from None
    proto = onnx.load(str(path))
    metadata = {"kernel_studio.form": form, "kernel_studio.opset": str(ONNX_OPSET),
                "kernel_studio.input": f"input: float32 (batch, {', '.join(map(str, shape))}), batch dynamic",
                "kernel_studio.design": design.dumps()}
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def export_pt2(design: Design, model: nn.Module, path: Path, form: str = "fast") -> None:
    """An ExportedProgram of the model's export form, batch dynamic (1..MAX_BATCH), saved with torch.export.save."""
    shape = input_shape(design)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(export_form(model, shape, form), (torch.zeros(2, *shape),),
                                  dynamic_shapes=({0: batch},))
    with open(path, "wb") as file:  # a file object: torch.export.save would add .pt2 to a name without it
        torch.export.save(program, file)
