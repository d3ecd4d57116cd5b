"""`python -m designer COMMAND`: everything the app does, scriptable.

Errors go to stderr as one line: exit 2 for bad input (DesignError, bad
options, unreadable files), 1 for anything else that fails. `--json` prints
exactly one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

from designer.bench import (BACKENDS as BENCH_BACKENDS, LIMITS as BENCH_LIMITS, RUNTIMES, BenchConfig,
                            bench_design, bench_layers, bench_onnx, resolve_backends)
from designer.build import build_model, dense_design, design_layers, validate
from designer.cfglist import cfglist_layers, design_from_cfglist, parse_cfglist_text
from designer.counting import CONVENTIONS, count_design
from designer.data import DATASETS, dataset_info, prepare_fashion_mnist
from designer.design import MAX_DEPTH, MAX_JSON_BYTES, Design, LayerChoice, Network, check_prune_rate, loads_design
from designer.errors import DesignError, shown
from designer.shapes import ASK_PRESETS
from designer.variants import REARRANGE
from designer.weights import read_weights
from designer.workspace import data_root, workspace_home

MAX_WIDTH = 4096  # HetConv's P and 1xN's N: above any network's channel count (each layer checks it divides)


class CliParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        raise DesignError(message, self.prog)


def int_in(low: int, high: int, what: str = "it", hint: str = ""):
    """An argparse type: an integer in low..high, refused at parse time with the range in the message."""
    def parse(text: str) -> int:
        allowed = f"an integer in {low}..{high}{hint}"
        try:
            value = int(text)
        except ValueError:  # not a number, or past Python's int-to-str digit limit
            raise argparse.ArgumentTypeError(f"{what} must be {allowed}, got {shown(text)}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{what} must be at least {low} ({allowed}), got {shown(value)}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{what} must be at most {high} ({allowed}), got {shown(value)}")
        return value
    return parse


def number_in(low: float, what: str = "it"):
    """An argparse type: a finite number at least `low` (nan and inf refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= low):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number at least {low:g}, got {shown(text)}")
        return value
    return parse


def prune_rate(text: str) -> float:
    """An argparse type for --prune-rate: design.check_prune_rate's range, at parse time."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"prune_rate must be a fraction in [0, 1), got {shown(text)}") from None
    try:
        check_prune_rate(value, "--prune-rate")
    except DesignError:
        raise argparse.ArgumentTypeError(f"prune_rate must be in [0, 1), got {shown(value)}") from None
    return value


def input_file(text: str) -> str:
    """An argparse type: a file to read; an empty path is refused, not taken as the option left out."""
    if not text:
        raise argparse.ArgumentTypeError("needs a file path, got an empty one")
    return text


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model options")
    group.add_argument("--arch", help="vgg (default), resnet (ASK aliases vgg_any, resnet_any), vgg_hetconv, "
                                      "resnet_proj, mobilenetv2, mobilenetv3")
    depths = ": VGG 11/13/16/19, ResNet 6n+2, MobileNets 0"
    group.add_argument("--depth", type=int_in(0, MAX_DEPTH, "the depth", depths), default=None,
                       help=f"VGG 11/13/16/19 (default 16); ResNet 6n+2 up to {MAX_DEPTH} (default 20); "
                            f"MobileNets fixed (0)")
    group.add_argument("--dataset", choices=sorted(DATASETS), help="default cifar10")
    shapes = group.add_mutually_exclusive_group()
    shapes.add_argument("--anycfg", metavar="PRESET", help=f"ASK preset on every 3x3 conv: {', '.join(ASK_PRESETS)}")
    shapes.add_argument("--cfglist", type=input_file, metavar="FILE",
                        help="ASK cfglist (JSON or the ASK README's Python list)")
    group.add_argument("--hetconv", type=int_in(1, MAX_WIDTH, "P"), metavar="P",
                       help="HetConv with part P on every 3x3 conv but the first")
    group.add_argument("--block-n", type=int_in(1, MAX_WIDTH, "N"), metavar="N",
                       help="1xN pruning: blocks of N output channels")
    group.add_argument("--prune-rate", type=prune_rate, metavar="R",
                       help="1xN pruning: fraction of blocks pruned per layer, in [0, 1)")
    group.add_argument("--rearrange", nargs="?", const="paper", choices=REARRANGE,
                       help="1xN pruning: sort filters by L1 norm first, on the layers lmbxmu/1xN sorts (paper, "
                            "the default: on MobileNets the expansion and final convs) or on all")
    lowrank = group.add_mutually_exclusive_group()
    lowrank.add_argument("--lowrank-ratio", type=number_in(1, "the speed-up ratio"), metavar="R",
                         help="accnn: ranks for an R-fold conv speed-up, from the weights (--checkpoint or fresh)")
    lowrank.add_argument("--lowrank-config", type=input_file, metavar="FILE",
                         help="accnn config JSON: {conv_params: {layer: rank}}")
    group.add_argument("--padfree", action="store_true",
                       help="hybrid stem + padding-free downsampling (mobilenetv2, mobilenetv3, resnet_proj)")
    group.add_argument("--design", type=input_file, metavar="FILE", help="a design JSON; replaces the options above")
    group.add_argument("--checkpoint", type=input_file, metavar="FILE", help="weights to load")


DEFAULT_DEPTH = {"vgg": 16, "vgg_any": 16, "resnet": 20, "resnet_any": 20, "vgg_hetconv": 16, "resnet_proj": 20,
                 "mobilenetv2": 0, "mobilenetv3": 0}


# What --design replaces: given together, one of them would be silently ignored.
DESIGN_REPLACES = ("--arch", "--depth", "--dataset", "--anycfg", "--cfglist", "--hetconv", "--block-n",
                   "--prune-rate", "--rearrange", "--lowrank-ratio", "--lowrank-config", "--padfree")


def read_text(path: str, what: str, limit: int = MAX_JSON_BYTES) -> str:
    """A text file of at most `limit` bytes, read no further than that (`--design /dev/zero` is refused)."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as err:
        raise DesignError(f"cannot read {what}: {err.strerror}", path) from None
    if len(data) > limit:
        raise DesignError(f"{what} is larger than the limit of {limit} bytes", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DesignError(f"{what} is not UTF-8 text", path) from None


def design_from_args(args) -> Design:
    """The design the model options describe."""
    if args.design is not None:
        given = [option for option in DESIGN_REPLACES if getattr(args, option[2:].replace("-", "_")) not in
                 (None, False)]
        if given:
            raise DesignError(f"{given[0]} would be ignored: the design file replaces the model options (put the "
                              f"choice in the design, or leave --design out)", "--design")
        return loads_design(read_text(args.design, "the design"), args.design)
    arch = "vgg" if args.arch is None else args.arch
    depth = args.depth if args.depth is not None else DEFAULT_DEPTH.get(arch, 16)
    base = dense_design(Network(arch, depth, "cifar10" if args.dataset is None else args.dataset), args.padfree)
    if args.cfglist is not None:
        design = design_from_cfglist(base.network, parse_cfglist_text(read_text(args.cfglist, "the cfglist"),
                                                                     args.cfglist), args.cfglist, args.padfree)
    elif args.anycfg is not None:
        preset = LayerChoice.preset(args.anycfg, "--anycfg")
        covered = set(cfglist_layers(base.network, args.padfree))
        design = base.with_layers(preset if i in covered else layer for i, layer in enumerate(base.layers))
    else:
        design = base
    return apply_variant_options(design, args)


def apply_variant_options(design: Design, args) -> Design:
    """HetConv, 1xN and low-rank options on their default layers (designer.variants)."""
    from designer import lowrank, variants
    layers = design_layers(design)
    if args.hetconv is not None:
        design = variants.apply_to(design, {i: LayerChoice.hetconv(args.hetconv)
                                            for i in variants.hetconv_layers(layers)}, "--hetconv")
    if (args.block_n is None) != (args.prune_rate is None) or (args.rearrange and args.block_n is None):
        raise DesignError("1xN pruning needs both --block-n N and --prune-rate R (--rearrange is optional)",
                          "--block-n")
    if args.block_n is not None:
        design = variants.apply_to(design, variants.pruning_choices(design, args.block_n, args.prune_rate,
                                                                    args.rearrange), "--block-n")
    if args.lowrank_config is not None:
        design = lowrank.design_from_config(design, read_text(args.lowrank_config, "the accnn config"),
                                            args.lowrank_config)
    if args.lowrank_ratio is not None:
        indices = [i for i in variants.lowrank_layers(layers) if design.layers[i].kind == "dense"]
        design = lowrank.lowrank_design(design, indices, dense_weights_model(design, args.checkpoint),
                                        args.lowrank_ratio)
    return validate(design)


def dense_weights_model(design: Design, checkpoint: str | None) -> torch.nn.Module:
    """The dense network whose weights choose the ranks: the checkpoint's, else a seeded fresh init."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(dense_design(design.network, design.padfree))
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load our checkpoint (a state_dict, or a dict holding one; designer.weights reads it) exactly."""
    state = read_weights(path).state_dict
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise DesignError(f"the weights do not fit the design: {first[:200]}", path) from None


def load_file(path: str, what: str):
    """torch.load(weights_only=True) of a file that is not weights (an input tensor, an ASK checkpoint)."""
    if not Path(path).is_file():
        raise DesignError("no such file", path)
    if Path(path).stat().st_size == 0:
        raise DesignError("the file is empty", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise DesignError(f"not a readable {what} ({type(err).__name__}{': ' if reason else ''}{reason[:120]})",
                          path) from None


def check_output_path(path: str, option: str) -> None:
    """An output file name whose folder exists and that is not a folder itself: refused before any work."""
    if not path or path.endswith(("/", os.sep)) or Path(path).is_dir():
        raise DesignError(f"needs a file name, got {shown(path) if path else 'an empty path'}", option)
    if not Path(path).resolve().parent.is_dir():
        raise DesignError(f"the folder {shown(str(Path(path).parent))} does not exist", option)


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
    load_weights(model, args.checkpoint)
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
    info = dataset_info(design.network.dataset)
    expected = (info.in_channels, info.input_size, info.input_size)
    if not isinstance(x, torch.Tensor):
        raise DesignError(f"expected a tensor, got {type(x).__name__}", where)
    if not x.is_floating_point():
        raise DesignError(f"expected a real floating-point tensor, got {x.dtype} (convert it yourself: nothing is "
                          f"cast silently)", where)
    if x.dim() not in (3, 4) or tuple(x.shape[-3:]) != expected:
        raise DesignError(f"expected a tensor of shape (N, {', '.join(map(str, expected))}) or {expected} for "
                          f"{design.network.dataset}, got {tuple(x.shape)}", where)
    return x


def cmd_import_ask(args) -> dict:
    from designer.ask_import import import_ask_checkpoint
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


def cmd_bench(args) -> dict:
    design = design_from_args(args)
    backends = resolve_backends(args.backend)
    config = BenchConfig(batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup, mode=args.mode)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.runtime == "onnxruntime":  # the fast ONNX export against the dense one (no backend, no per-layer)
        if args.per_layer:
            raise DesignError("--per-layer times torch modules; leave it out with --runtime onnxruntime",
                              "--per-layer")
        result = bench_onnx(design, config)
    else:
        result = bench_design(design, backends, config)
    if args.per_layer:
        result["layers"] = {name: bench_layers(design, name, config) for name in backends
                            if "error" not in result["backends"][name]}
    if not args.json:
        dense = result["dense"]
        print(f"batch {result['batch_size']}, {result['threads']} threads, {result['mode']}; "
              f"FLOP ratio {result['flop_ratio']:.2f}x")
        print(f"{'backend':14} {'median ms':>10} {'speed-up':>9}")
        print(f"{'dense (' + dense['layout'] + ')':14} {dense['median_ms']:10.2f} {1:9.2f}")
        for name, timing in result["backends"].items():
            if "error" in timing:
                print(f"{name:14} {'n/a':>10}  {timing['error']}")
            else:
                print(f"{name + ' (' + timing['layout'] + ')':14} {timing['median_ms']:10.2f} "
                      f"{timing['speedup_vs_dense']:9.2f}")
    return result


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m designer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)

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

    bench = commands.add_parser("bench", help="latency of the design against its dense network, same run")
    add_model_options(bench)
    for field, default in (("batch_size", 1), ("repeats", 10), ("warmup", 2)):
        low, high, option = BENCH_LIMITS[field]
        bench.add_argument(option, type=int_in(low, high, field.replace("_", " ")), default=default,
                           help=f"{low}..{high} (default {default})")
    bench.add_argument("--backend", default="all", help=f"{', '.join(BENCH_BACKENDS)} or all")
    bench.add_argument("--mode", default="infer", choices=("infer", "train"),
                       help="infer: eval forward; train: forward + backward")
    cores = os.cpu_count() or 1
    bench.add_argument("--threads", type=int_in(0, cores, "threads", ": 0 is torch's choice, at most the cores"),
                       default=0, help=f"torch threads, 1..{cores} (default 0: torch's choice)")
    bench.add_argument("--per-layer", action="store_true", help="also time each convolution alone")
    bench.add_argument("--runtime", choices=RUNTIMES, default="torch",
                       help="torch (default) or onnxruntime: the fast ONNX exports of the design and the dense net")
    bench.set_defaults(run=cmd_bench)

    prepare = commands.add_parser("prepare-data", help="unpack Debian's Fashion-MNIST into the workspace")
    prepare.add_argument("--home", help="workspace folder (default ./workspace or $KERNEL_STUDIO_HOME)")
    prepare.set_defaults(run=cmd_prepare_data)

    from designer.cli_train import add_commands as add_training_commands  # here: it imports this module
    add_training_commands(commands)

    for sub in commands.choices.values():
        sub.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    return parser


# Every command's output-file options: checked before any work, so a bad path fails at once, not after it.
OUTPUT_OPTIONS = ("out", "output")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        for dest in OUTPUT_OPTIONS:
            if getattr(args, dest, None) is not None:
                check_output_path(getattr(args, dest), f"--{dest}")
        result = args.run(args)
    except DesignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a failure, not bad input: still one line
        print(f"failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(result))
    return 0
