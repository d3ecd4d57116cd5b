"""The CLI's commands on a design: count, export, infer, import-ask, and prepare-data."""
from __future__ import annotations

import torch

from designer.analysis.counting import CONVENTIONS, count_design
from designer.cli.options import HOME_HELP, add_model_options, design_from_args, input_file, load_file, load_weights
from designer.designs.design import Design
from designer.errors import DesignError
from designer.networks.build import build_model, dense_design, design_layers, validate
from designer.networks.export import FORMATS, export
from designer.networks.export_forms import FORMS
from designer.runs.data import prepare_fashion_mnist
from designer.workspace import data_root, workspace_home


def cmd_count(args) -> dict:
    design = design_from_args(args)
    count = count_design(validate(design), args.convention)
    result = count.to_json()
    if not args.json:
        dense = count_design(dense_design(design.network), args.convention)
        print(f"{'layer':28} {'kind':6} {'params':>12} {'flops':>14}")
        for layer in count.layers:
            print(f"{layer.name:28} {layer.kind:6} {layer.params:12,d} {layer.flops:14,d}")
        conv_flops = sum(layer.flops for layer in count.layers if layer.kind == "conv")
        print(f"conv layers ({args.convention}): {conv_flops / 1e6:.2f}M FLOPs")
        print(f"total ({args.convention}): {count.params / 1e6:.4f}M params, {count.flops / 1e6:.2f}M FLOPs; "
              f"dense {dense.params / 1e6:.4f}M / {dense.flops / 1e6:.2f}M "
              f"({dense.flops / max(count.flops, 1):.2f}x fewer FLOPs)")
    return result


def cmd_infer(args) -> dict:
    design = design_from_args(args)
    if args.checkpoint is None:
        raise DesignError("infer needs --checkpoint FILE", "infer")
    model = build_model(design)
    load_weights(model, args.checkpoint, design)
    x = check_input(load_file(args.input, "tensor file"), design, args.input)
    batch = x.unsqueeze(0) if x.dim() == 3 else x
    model.eval()
    with torch.no_grad():
        y = model(batch.float())
    torch.save(y if x.dim() == 4 else y[0], args.output)
    result = {"output": args.output, "shape": list(y.shape)}
    if not args.json:
        print(f"wrote {args.output} with shape {tuple(y.shape)}")
    return result


def check_input(x, design: Design, where: str) -> torch.Tensor:
    """A real floating-point (N, C, H, W) or (C, H, W) tensor of the design's input size; a complex or integer
    one is refused, not cast."""
    expected = validate(design).network.input_shape
    if not isinstance(x, torch.Tensor):
        raise DesignError(f"expected a tensor, got {type(x).__name__}", where)
    if not x.is_floating_point():
        raise DesignError(f"expected a real floating-point tensor, got {x.dtype} (convert it yourself: nothing is "
                          f"cast silently)", where)
    if x.dim() not in (3, 4) or tuple(x.shape[-3:]) != expected:
        raise DesignError(f"expected a tensor of shape (N, {', '.join(map(str, expected))}) or {expected} for "
                          f"this network, got {tuple(x.shape)}", where)
    return x


def cmd_import_ask(args) -> dict:
    from designer.networks.ask_import import import_ask_checkpoint
    design = design_from_args(args)
    checkpoint = load_file(args.ckpt, "checkpoint")
    model = import_ask_checkpoint(design, checkpoint)
    torch.save({"state_dict": model.state_dict(), "design": validate(design).to_json()}, args.out)
    result = {"out": args.out, "tensors": len(model.state_dict()), "layers": len(design_layers(design))}
    if not args.json:
        print(f"wrote {args.out}: {result['tensors']} tensors for {len(design.layers)} convolutions")
    return result


def cmd_prepare_data(args) -> dict:
    raw = prepare_fashion_mnist(data_root(workspace_home(args.home)))
    if not args.json:
        print(f"Fashion-MNIST ready in {raw}")
    return {"fashion-mnist": str(raw)}


def cmd_export(args) -> dict:
    design = design_from_args(args)
    model = None
    if args.checkpoint:
        model = build_model(design)
        load_weights(model, args.checkpoint, design)
    path = export(design, args.format, args.out, model, args.onnx_form)
    if not args.json:
        print(f"wrote {path} ({args.format})")
    return {"out": str(path), "format": args.format, "bytes": path.stat().st_size}


def add_commands(commands) -> None:
    """Register count, infer, import-ask, export and prepare-data on the CLI's subparsers."""
    count = commands.add_parser("count", help="params and FLOPs per layer and in total")
    add_model_options(count)
    count.add_argument("--convention", choices=CONVENTIONS, default="macs")
    count.set_defaults(run=cmd_count)

    infer = commands.add_parser("infer", help="eval-mode forward of a saved tensor")
    add_model_options(infer)
    infer.add_argument("--input", type=input_file, required=True, metavar="X.pt")
    infer.add_argument("--output", required=True, metavar="Y.pt")
    infer.set_defaults(run=cmd_infer)

    imp = commands.add_parser("import-ask", help="a checkpoint of the ASK reference code -> ours")
    imp.add_argument("ckpt", type=input_file, metavar="CKPT")
    add_model_options(imp)
    imp.add_argument("--out", required=True, metavar="FILE")
    imp.set_defaults(run=cmd_import_ask)

    exp = commands.add_parser("export", help="design JSON, ASK cfglist, weights, ONNX or torch.export (pt2)")
    add_model_options(exp)
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--onnx-form", choices=FORMS, default="fast",
                     help="onnx and pt2: fast (default: each layer's saving in standard convs) or masked")
    exp.add_argument("--out", required=True, metavar="FILE")
    exp.set_defaults(run=cmd_export)

    prepare = commands.add_parser("prepare-data", help="unpack Debian's Fashion-MNIST into the workspace")
    prepare.add_argument("--home", help=HOME_HELP)
    prepare.set_defaults(run=cmd_prepare_data)
