"""`python -m designer` count / infer / import-ask, through a real subprocess."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from designer.analysis.counting import count_design
from designer.designs.design import Network
from designer.networks.build import build_model, dense_design
from designer.networks.cfglist import design_from_cfglist
from tests.ask_reference import randomise_batchnorm, to_reference_layout

ROOT = Path(__file__).resolve().parents[3]


def designer(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "designer", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_count_json_prints_the_acceptance_figures():
    result = designer("count", "--arch", "vgg", "--depth", "16", "--anycfg", "ASK_5a", "--convention", "ask", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"params", "flops", "convention", "layers"}
    assert out["convention"] == "ask"
    assert abs(out["params"] / 8.4497e6 - 1) < 1e-3 and abs(out["flops"] / 175.22e6 - 1) < 1e-3
    assert out["layers"][0] == {"name": "feature.0", "kind": "conv", "params": 960, "flops": 983040}
    assert {layer["kind"] for layer in out["layers"]} == {"conv", "bn", "act", "pool", "linear"}


def test_count_reads_a_python_cfglist_file(tmp_path):
    cfg = tmp_path / "cfg.txt"
    cfg.write_text("[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3")
    result = designer("count", "--arch", "vgg_any", "--depth", "16", "--cfglist", cfg, "--json")
    assert result.returncode == 0, result.stderr
    dense = count_design(dense_design(Network("vgg", 16)), "macs").layers
    taps = [5] * 10 + [2] * 3 + [9, 9]  # the two linear layers keep all their weights
    assert json.loads(result.stdout)["flops"] == sum(layer.flops * t // 9 for layer, t in zip(dense, taps))


def test_count_table_for_people():
    result = designer("count", "--arch", "resnet", "--depth", "20", "--convention", "ask")
    assert result.returncode == 0
    assert "total (ask): 0.2697M params, 41.12M FLOPs" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["count", "--anycfg", "ASK_9"], "error: --anycfg: unknown preset 'ASK_9'"),
    (["count", "--arch", "resnet", "--depth", "21"], "error: network: ResNet depth must be 6n+2"),
    (["count", "--convention", "gflops"], "invalid choice: 'gflops'"),
    (["count", "--cfglist", "/nonexistent.json"], "error: /nonexistent.json: cannot read the cfglist"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    result = designer(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_bad_design_file_names_the_layer(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"network": {"arch": "resnet", "depth": 8},
                                "layers": [{"kind": "ask", "shapes": [[2, 12]]}] + [{"kind": "dense"}] * 6}))
    result = designer("count", "--design", path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: layer 1, shape 1: tap 12 is out of range 1..9 for a 3x3 kernel"


def test_import_ask_then_infer_reproduce_the_reference_outputs(tmp_path):
    cfg = [[[2, 4, 5, 6, 8]], [[2, 5], [4, 5], [5, 6], [5, 8]]] * 3 + [[[1, 5, 9]]]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    design = design_from_cfglist(Network("resnet", 8), cfg)
    torch.manual_seed(1)
    reference = to_reference_layout(build_model(design))
    randomise_batchnorm(reference)
    torch.save({"epoch": 1, "best_prec1": 0.1, "state_dict": reference.state_dict()}, tmp_path / "ref.pth.tar")
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")

    options = ["--arch", "resnet_any", "--depth", "8", "--cfglist", tmp_path / "cfg.json"]
    imported = designer("import-ask", tmp_path / "ref.pth.tar", *options, "--out", tmp_path / "ours.pt", "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["out"] == str(tmp_path / "ours.pt")
    inferred = designer("infer", *options, "--checkpoint", tmp_path / "ours.pt", "--input", tmp_path / "x.pt",
                        "--output", tmp_path / "y.pt", "--json")
    assert inferred.returncode == 0, inferred.stderr
    assert json.loads(inferred.stdout) == {"output": str(tmp_path / "y.pt"), "shape": [2, 10]}
    with torch.no_grad():
        expected = reference.eval()(x)
    assert (torch.load(tmp_path / "y.pt", weights_only=True) - expected).abs().max() < 1e-4


def test_infer_refuses_weights_of_another_design(tmp_path):
    torch.save(build_model(design_from_cfglist(Network("resnet", 8), [[[5]]] * 7)).state_dict(), tmp_path / "w.pt")
    torch.save(torch.randn(1, 3, 32, 32), tmp_path / "x.pt")
    result = designer("infer", "--arch", "resnet", "--depth", "8", "--checkpoint", tmp_path / "w.pt",
                      "--input", tmp_path / "x.pt", "--output", tmp_path / "y.pt")
    assert result.returncode == 2
    assert "the weights do not fit the design" in result.stderr and len(result.stderr.splitlines()) == 1
