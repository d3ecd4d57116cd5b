"""CLI: the variant options through a subprocess, the paper figures, round trip through --design."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from designer.cli import build_parser, main
from designer.cli.options import design_from_args

ROOT = Path(__file__).resolve().parents[3]


def run(*args):
    return subprocess.run([sys.executable, "-m", "designer", *args], cwd=ROOT, capture_output=True, text=True)


def conv_flops(result) -> int:
    return sum(layer["flops"] for layer in result["layers"] if layer["kind"] == "conv")


def test_count_hetconv_and_padfree_figures(capsys):
    assert main(["count", "--arch", "vgg_hetconv", "--hetconv", "4", "--json"]) == 0
    assert abs(conv_flops(json.loads(capsys.readouterr().out)) - 105.58e6) / 105.58e6 < 1e-3
    assert main(["count", "--arch", "mobilenetv3", "--dataset", "cifar100", "--padfree", "--convention", "bsconv",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["params"] - 3.0672e6) / 3.0672e6 < 1e-3 and abs(result["flops"] - 54.61e6) / 54.61e6 < 1e-3


@pytest.mark.parametrize("args,message", [
    (["--block-n", "4"], "needs both --block-n N and --prune-rate R"),
    (["--block-n", "4", "--prune-rate", "1.5"], "--prune-rate: prune_rate must be in [0, 1), got 1.5"),
    (["--hetconv", "0"], "--hetconv: P must be at least 1"),
    (["--hetconv", "4", "--anycfg", "ASK_5a"], "layer 2 (feature.3): --hetconv and the ask choice both claim"),
    (["--hetconv", "2", "--block-n", "4", "--prune-rate", "0.5"], "--block-n and the hetconv choice both claim"),
    (["--arch", "mobilenetv3", "--hetconv", "2"], "mobilenetv3 has no convolution that --hetconv applies to"),
    (["--arch", "resnet", "--lowrank-ratio", "500"], "ratio 500.0 is out of reach"),
    (["--lowrank-config", "/nonexistent.json"], "cannot read the accnn config"),
])
def test_bad_options_exit_2(args, message, capsys):
    assert main(["count", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_option_through_a_subprocess():
    result = run("count", "--arch", "vgg", "--padfree")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: padfree: padding-free downsampling is defined for mobilenetv2, "
                                     "mobilenetv3, resnet_proj, not vgg")


def test_design_json_round_trip_through_the_cli(tmp_path):
    options = ["--arch", "resnet", "--depth", "8", "--block-n", "4", "--prune-rate", "0.25", "--rearrange"]
    design = design_from_args(build_parser().parse_args(["count", *options]))
    assert [layer.kind for layer in design.layers] == ["dense"] + ["blocksparse"] * 6  # not the first conv
    path = tmp_path / "d.json"
    path.write_text(design.dumps())
    by_options = run("count", *options, "--json")
    by_design = run("count", "--design", str(path), "--json")
    assert by_design.returncode == 0, by_design.stderr
    assert json.loads(by_design.stdout) == json.loads(by_options.stdout)


def test_lowrank_ratio_and_config_options(tmp_path):
    args = build_parser().parse_args(["count", "--arch", "resnet", "--depth", "8", "--lowrank-ratio", "2"])
    design = design_from_args(args)
    from designer.networks.build import design_layers
    from designer.networks.lowrank import dumps_config, layer_costs, lowrank_saves, ranks_cost
    layers = design_layers(design)
    ranks = [c.rank if c.kind == "lowrank" else 0 for c in design.layers]  # every 3x3 conv competes (as accnn);
    assert len(layers) == 7 and any(ranks)  # one that keeps more of its spectrum dense, within budget, stays dense
    assert all(lowrank_saves(layer, r) for layer, r in zip(layers, ranks) if r)
    assert ranks_cost(layers, ranks) <= sum(layer_costs(layer)[1] for layer in layers) / 2
    config = tmp_path / "accnn.json"
    config.write_text(dumps_config(design))
    again = design_from_args(build_parser().parse_args(["count", "--arch", "resnet", "--depth", "8",
                                                         "--lowrank-config", str(config)]))
    assert again == design
