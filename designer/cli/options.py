"""The CLI's shared parts: argparse types with ranges, the model options, and turning them into a design.

Every command that builds a network takes the same model options
(add_model_options) and reads them with design_from_args.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from designer.designs.datasets import DATASETS, IMAGE_FOLDER
from designer.designs.design import MAX_CLASSES, MAX_DEPTH, MAX_INPUT, Design, Network, loads_design, read_text
from designer.designs.kinds import LayerChoice, check_prune_rate
from designer.designs.shapes import ASK_PRESETS
from designer.errors import DesignError, shown
from designer.networks.build import build_model, dense_design, design_layers, validate
from designer.networks.cfglist import cfglist_layers, design_from_cfglist, parse_cfglist_text
from designer.networks.sources import network_from_options
from designer.networks.variants import REARRANGE
from designer.networks.weights import read_weights
from designer.runs.data import scan_image_folder
from models import list_models, padfree_archs

HOME_HELP = "workspace folder (default ./workspace or $KERNEL_STUDIO_HOME)"
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


def input_size(text: str) -> tuple[int, int, int]:
    """An argparse type for --input-size: N (3 x N x N) or CxHxW."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = [3, values[0], values[0]]
    if len(values) != 3 or not all(1 <= v <= MAX_INPUT for v in values):
        raise argparse.ArgumentTypeError(f"the input size must be N or CxHxW with numbers in 1..{MAX_INPUT}, "
                                         f"got {shown(text)}")
    return tuple(values)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model options")
    group.add_argument("--arch", help=f"a paper family: {', '.join(list_models())} (ASK aliases vgg_any, "
                                      f"resnet_any); torchvision:NAME (any torchvision classification model); or "
                                      f"package.module:callable (your own nn.Module)")
    group.add_argument("--arch-kwargs", metavar="JSON", help="keyword arguments for the torchvision builder or your "
                                                             "callable, e.g. '{\"width\": 2}'")
    depths = ": VGG 11/13/16/19, ResNet 6n+2, MobileNets 0"
    group.add_argument("--depth", type=int_in(0, MAX_DEPTH, "the depth", depths), default=None,
                       help=f"paper families: VGG 11/13/16/19 (default 16); ResNet 6n+2 up to {MAX_DEPTH} "
                            f"(default 20); MobileNets fixed (0)")
    group.add_argument("--dataset", choices=list(DATASETS),
                       help="default cifar10 for the paper families, image-folder for the others (train and "
                            "runs start take the folder as --data-dir DIR)")
    group.add_argument("--num-classes", type=int_in(1, MAX_CLASSES, "the number of classes"), metavar="N",
                       help="classes of the network (default: the data set's; 1000 for torchvision)")
    group.add_argument("--input-size", type=input_size, metavar="N|CxHxW",
                       help="input of the network (default: 3x32x32 for the paper families, torchvision's own "
                            "size, 3x224x224 for your callable)")
    group.add_argument("--layers", metavar="PATTERN",
                       help="restrict --anycfg, --hetconv, 1xN and low-rank to the convs whose module path matches "
                            "(shell-style, e.g. 'layer3.*.conv2'; without wildcards a substring)")
    shapes = group.add_mutually_exclusive_group()
    shapes.add_argument("--anycfg", metavar="PRESET",
                        help=f"ASK preset on every eligible 3x3 conv: {', '.join(ASK_PRESETS)}")
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
                       help=f"hybrid stem + padding-free downsampling ({', '.join(padfree_archs())})")
    group.add_argument("--design", type=input_file, metavar="FILE", help="a design JSON; replaces the options above")
    group.add_argument("--checkpoint", type=input_file, metavar="FILE",
                       help="weights to load: a run checkpoint, a state_dict of this design, or a plain state_dict "
                            "of the original network (torchvision's, or your model's)")


# What --design replaces: given together, one of them would be silently ignored.
DESIGN_REPLACES = ("--arch", "--arch-kwargs", "--depth", "--dataset", "--num-classes", "--input-size", "--layers",
                   "--anycfg", "--cfglist", "--hetconv", "--block-n", "--prune-rate", "--rearrange", "--lowrank-ratio",
                   "--lowrank-config", "--padfree")


def design_from_args(args) -> Design:
    """The design the model options describe."""
    if args.design is not None:
        given = [option for option in DESIGN_REPLACES if getattr(args, option[2:].replace("-", "_")) not in
                 (None, False)]
        if given:
            raise DesignError(f"{given[0]} would be ignored: the design file replaces the model options (put the "
                              f"choice in the design, or leave --design out)", "--design")
        design = validate(loads_design(read_text(args.design, "the design"), args.design))
        return on_image_folder(design) if getattr(args, "data_dir", None) is not None else design
    dataset, num_classes = image_folder_options(args)
    network = network_from_options("vgg" if args.arch is None else args.arch, args.depth, dataset, num_classes,
                                   args.input_size, args.arch_kwargs)
    base = dense_design(network, args.padfree)
    if args.layers is not None and args.cfglist is not None:
        raise DesignError("a cfglist lists every 3x3 conv in order; --layers does not apply to it", "--layers")
    if args.cfglist is not None:
        design = design_from_cfglist(base.network, parse_cfglist_text(read_text(args.cfglist, "the cfglist"),
                                                                     args.cfglist), args.cfglist, args.padfree)
    elif args.anycfg is not None:
        preset = LayerChoice.preset(args.anycfg, "--anycfg")
        covered = restricted(set(cfglist_layers(base.network, args.padfree)), base, args)
        design = base.with_layers(preset if i in covered else layer for i, layer in enumerate(base.layers))
    else:
        design = base
    return apply_variant_options(design, args)


def image_folder_options(args) -> tuple[str | None, int | None]:
    """(--dataset, --num-classes) with --data-dir DIR (train, runs start): the data set is the folder, and its
    classes are the design's unless --num-classes says otherwise (a mismatch is refused when the run starts)."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is None:
        return args.dataset, args.num_classes
    if args.dataset not in (None, IMAGE_FOLDER):
        raise DesignError(f"--data-dir trains on a folder of images; --dataset {args.dataset} would be another data "
                          f"set (leave --dataset out)", "--data-dir")
    if args.num_classes is not None:
        return IMAGE_FOLDER, args.num_classes
    return IMAGE_FOLDER, len(scan_image_folder(data_dir).classes)


def on_image_folder(design: Design) -> Design:
    """A design file's network on an image folder (--design FILE --data-dir DIR): same classes and input."""
    net = design.network
    if net.dataset == IMAGE_FOLDER:
        return design
    network = Network(net.arch, net.depth, IMAGE_FOLDER, net.num_classes, net.input_shape, net.kwargs)
    return validate(Design(network, design.layers, design.padfree))


def restricted(indices, design: Design, args) -> set[int]:
    """`indices` narrowed to the convs --layers matches (all of them without --layers)."""
    if args.layers is None:
        return set(indices)
    from designer.networks.variants import matching_layers
    matched = matching_layers(design_layers(design), args.layers)
    if not matched:
        names = [c.name for c in design_layers(design)]
        raise DesignError(f"{shown(args.layers)} matches no convolution of this network (its convs are named like "
                          f"{', '.join(names[:3])}, ...)", "--layers")
    return set(indices) & set(matched)


def apply_variant_options(design: Design, args) -> Design:
    """HetConv, 1xN and low-rank options on their default layers (designer.networks.variants), narrowed by
    --layers."""
    from designer.networks import lowrank, variants
    layers = design_layers(design)
    if args.hetconv is not None:
        chosen = restricted(variants.hetconv_layers(layers, args.hetconv), design, args)
        design = variants.apply_to(design, {i: LayerChoice.hetconv(args.hetconv) for i in chosen}, "--hetconv")
    if (args.block_n is None) != (args.prune_rate is None) or (args.rearrange and args.block_n is None):
        raise DesignError("1xN pruning needs both --block-n N and --prune-rate R (--rearrange is optional)",
                          "--block-n")
    if args.block_n is not None:
        choices = variants.pruning_choices(design, args.block_n, args.prune_rate, args.rearrange)
        chosen = restricted(choices, design, args)
        design = variants.apply_to(design, {i: c for i, c in choices.items() if i in chosen}, "--block-n")
    if args.lowrank_config is not None:
        design = lowrank.design_from_config(design, read_text(args.lowrank_config, "the accnn config"),
                                            args.lowrank_config)
    if args.lowrank_ratio is not None:
        indices = [i for i in sorted(restricted(variants.lowrank_layers(layers), design, args))
                   if design.layers[i].kind == "dense"]
        design = lowrank.lowrank_design(design, indices, dense_weights_model(design, args.checkpoint),
                                        args.lowrank_ratio)
    return validate(design)


def dense_weights_model(design: Design, checkpoint: str | None) -> torch.nn.Module:
    """The dense network whose weights choose the ranks: the checkpoint's, else a seeded fresh init."""
    dense = dense_design(design.network, design.padfree)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(dense)
    if checkpoint is not None:
        load_weights(model, checkpoint, dense)
    return model


def load_weights(model: torch.nn.Module, path: str, design: Design) -> None:
    """Load weights into `model` (built by build_model(design)): exactly when they are this design's (a
    state_dict or a run checkpoint of it); else as start weights (designer.networks.weights: the original
    network's own state_dict, or another design's, each conv taking them by its kind). A classifier head for
    other classes is refused here: inference and export need trained logits."""
    state = read_weights(path).state_dict
    try:
        model.load_state_dict(state)
        return
    except RuntimeError:
        pass
    from designer.networks.weights import load_start_weights
    try:
        load_start_weights(model, design, path, fresh_head=False)
    except DesignError as err:
        reason = str(err).split(": ", 1)[-1] if err.where else str(err)  # without the file name: it comes first
        raise DesignError(f"the weights do not fit the design: {reason}", path) from None


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
