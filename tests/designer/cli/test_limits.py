"""The CLI refuses what cannot run, at once: one short line on stderr, exit code 2, never a traceback.

In-process through designer.cli.main (a subprocess costs seconds); a few subprocesses at the end prove the
real exit codes.
"""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from designer.cli import build_parser, main
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.errors import MAX_MESSAGE, DesignError
from designer.networks.build import build_model, check_layer_fits, conv_layers, dense_design
from designer.networks.cfglist import cfglist_layers

ROOT = Path(__file__).resolve().parents[3]
RESNET8 = ["--arch", "resnet", "--depth", "8"]


def run_main(argv) -> tuple[int, str, str]:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def fill(argv, files) -> list[str]:
    """The argv with each {name} replaced by the path of that input file."""
    for name, path in files.items():
        argv = [a.replace("{" + name + "}", str(path)) for a in argv]
    return argv


def assert_one_clear_line(code, out, err, message):
    assert code == 2, err
    assert out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert len(err) <= MAX_MESSAGE + len("error: \n")
    assert message in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad and good input files, made once."""
    d = tmp_path_factory.mktemp("inputs")
    paths = {"dir": d}
    texts = {
        "empty": "",
        "deep.json": "[" * 3000 + "]" * 3000,
        "deep_design.json": '{"network": ' + "[" * 3000 + "]" * 3000 + "}",
        "deep_lowrank.json": '{"conv_params": ' + "[" * 3000 + "]" * 3000 + "}",
        "bigint_design.json": '{"network": {"arch": "vgg", "depth": ' + "9" * 5000 + "}}",
        "bigint_cfg.txt": "[[[" + "9" * 5000 + "]]] * 2",
        "bomb.txt": "[[5]*100000]*100000",
        "warning_cfg.txt": "['\\d'] is 1",
        "ok.json": json.dumps({"network": {"arch": "resnet", "depth": 8}, "layers": [{"kind": "dense"}] * 7}),
        "typo_top.json": json.dumps({"network": {"arch": "resnet", "depth": 8}, "datset": "cifar100",
                                     "layers": [{"kind": "dense"}] * 7}),
        "typo_network.json": json.dumps({"network": {"arch": "resnet", "depth": 8, "padfre": True},
                                         "layers": [{"kind": "dense"}] * 7}),
        "twice.json": '{"network": {"arch": "resnet", "depth": 8, "depth": 20}, "layers": []}',
        "preset_and_shapes.json": json.dumps({"network": {"arch": "resnet", "depth": 8},
                                              "layers": [{"kind": "ask", "preset": "ASK_5a", "shapes": [[5]]}]
                                              + [{"kind": "dense"}] * 6}),
        "long_path_value.json": json.dumps({"network": {"arch": "x" * 5000, "depth": 8}}),
    }
    for name, text in texts.items():
        (d / name).write_text(text)
        paths[name] = d / name
    torch.save(build_model(dense_design(Network("resnet", 8))).state_dict(), d / "w8.pt")
    torch.save(torch.randn(1, 3, 32, 32, dtype=torch.complex64), d / "complex.pt")
    torch.save(torch.randint(0, 255, (1, 3, 32, 32)), d / "uint.pt")
    torch.save(torch.randn(1, 3, 28, 28), d / "wrong_size.pt")
    for name in ("w8.pt", "complex.pt", "uint.pt", "wrong_size.pt"):
        paths[name] = d / name
    return paths


@pytest.mark.parametrize("argv, message", [
    (["count", "--arch", "resnet", "--depth", "999999998"], "the depth must be at most 1202 (an integer in 0..1202"),
    (["count", "--arch", "resnet", "--depth", "-5"], "the depth must be at least 0"),
    (["count", "--depth", "9" * 5000], "the depth must be an integer in 0..1202"),
    (["count", *RESNET8, "--hetconv", "0"], "--hetconv: P must be at least 1"),
    (["count", *RESNET8, "--block-n", "99999999999", "--prune-rate", "0.5"], "N must be at most 4096"),
    (["count", *RESNET8, "--block-n", "4", "--prune-rate", "nan"], "prune_rate must be in [0, 1), got nan"),
    (["count", *RESNET8, "--lowrank-ratio", "nan"], "the speed-up ratio must be a finite number at least 1"),
    (["count", *RESNET8, "--lowrank-ratio", "inf"], "the speed-up ratio must be a finite number at least 1"),
    (["count", *RESNET8, "--lowrank-ratio", "0.5"], "the speed-up ratio must be a finite number at least 1"),
    (["bench", *RESNET8, "--batch-size", "10000000"], "batch size must be at most 1024 (an integer in 1..1024)"),
    (["bench", *RESNET8, "--batch-size", "0"], "batch size must be at least 1"),
    (["bench", *RESNET8, "--threads", "-1"], "threads must be at least 0"),
    (["bench", *RESNET8, "--threads", "1000"], "threads must be at most"),
    (["bench", *RESNET8, "--repeats", "0"], "repeats must be at least 1"),
    (["bench", *RESNET8, "--repeats", "-3"], "repeats must be at least 1"),
    (["bench", *RESNET8, "--warmup", "-1"], "warmup must be at least 0 (an integer in 0..100)"),
])
def test_values_that_cannot_run_are_refused_at_parse_time_with_the_range(argv, message):
    with pytest.raises(DesignError, match="argument"):
        build_parser().parse_args(argv)  # parse time: nothing is built
    assert_one_clear_line(*run_main(argv), message)


@pytest.mark.parametrize("argv, message", [
    (["count", "--design", "{deep_design.json}"], "nested more than 16 deep"),
    (["count", *RESNET8, "--cfglist", "{deep.json}"], "nested more than 16 deep"),
    (["count", *RESNET8, "--lowrank-config", "{deep_lowrank.json}"], "nested more than 16 deep"),
    (["count", "--design", "{bigint_design.json}"], "a number has more than 4300 digits"),
    (["count", *RESNET8, "--cfglist", "{bigint_cfg.txt}"], "a number has more than 4300 digits"),
    (["count", *RESNET8, "--cfglist", "{bomb.txt}"], "the limit is 100000"),
    (["count", "--design", "/dev/zero"], "the design is larger than the limit of 1000000 bytes"),
    (["count", "--design", "{dir}"], "cannot read the design"),
    (["count", "--design", "{long_path_value.json}"], "unknown architecture 'xxxxxxxx"),
    (["count", *RESNET8, "--lowrank-ratio", "2", "--checkpoint", "{empty}"], "the file is empty"),
    (["export", *RESNET8, "--format", "weights", "--checkpoint", "{empty}", "--out", "{dir}/w.pt"],
     "the file is empty"),
    (["infer", *RESNET8, "--checkpoint", "{empty}", "--input", "{w8.pt}", "--output", "{dir}/y.pt"],
     "the file is empty"),
    (["infer", *RESNET8, "--checkpoint", "{w8.pt}", "--input", "{empty}", "--output", "{dir}/y.pt"],
     "the file is empty"),
    (["import-ask", "{empty}", *RESNET8, "--out", "{dir}/ours.pt"], "the file is empty"),
    (["export", *RESNET8, "--format", "design", "--out", ""], "--out: needs a file name, got an empty path"),
    (["export", *RESNET8, "--format", "design", "--out", "{dir}"], "--out: needs a file name"),
    (["export", *RESNET8, "--format", "design", "--out", "{dir}/missing/d.json"], "does not exist"),
    (["import-ask", "{w8.pt}", *RESNET8, "--out", "{dir}"], "--out: needs a file name"),
    (["infer", *RESNET8, "--checkpoint", "{w8.pt}", "--input", "{w8.pt}", "--output", "{dir}/no/y.pt"],
     "--output: the folder"),
    (["prepare-data", "--home", "{ok.json}"], "the workspace must be a folder"),
    (["export", *RESNET8, "--format", "weights", "--checkpoint", "", "--out", "{dir}/w.pt"],
     "argument --checkpoint: needs a file path, got an empty one"),
    (["count", "--design", ""], "argument --design: needs a file path"),
])
def test_bad_files_and_paths_are_one_clear_line(files, argv, message):
    argv = fill(argv, files)
    assert_one_clear_line(*run_main(argv), message)


def test_no_syntax_warning_reaches_stderr(files):
    code, out, err = run_main(["count", *RESNET8, "--cfglist", files["warning_cfg.txt"]])
    assert_one_clear_line(code, out, err, "unsupported expression")
    assert "SyntaxWarning" not in err


@pytest.mark.parametrize("name, message", [
    ("typo_top.json", "unknown key 'datset' in a design; did you mean 'dataset'"),
    ("typo_network.json", "unknown key 'padfre' in the network; did you mean 'padfree', a key of the design"),
    ("twice.json", "the key 'depth' is given twice"),
    ("preset_and_shapes.json", "layer 1: give either a preset or k and shapes, not both"),
])
def test_design_files_with_ignored_input_are_refused(files, name, message):
    assert_one_clear_line(*run_main(["count", "--design", files[name]]), message)


@pytest.mark.parametrize("option", [["--anycfg", "ASK_5a"], ["--arch", "vgg"], ["--depth", "20"], ["--padfree"],
                                    ["--dataset", "cifar100"], ["--hetconv", "2"]])
def test_model_options_next_to_design_are_refused_by_name(files, option):
    code, out, err = run_main(["count", "--design", files["ok.json"], *option])
    assert_one_clear_line(code, out, err, f"{option[0]} would be ignored: the design file replaces the model options")


def test_checkpoint_next_to_design_is_still_taken(files):
    code, out, err = run_main(["infer", "--design", files["ok.json"], "--checkpoint", files["w8.pt"],
                               "--input", files["wrong_size.pt"], "--output", files["dir"] / "y.pt"])
    assert_one_clear_line(code, out, err, "expected a tensor of shape (N, 3, 32, 32) or (3, 32, 32) for this network")


@pytest.mark.parametrize("name, message", [("complex.pt", "expected a real floating-point tensor, got torch.complex64"),
                                           ("uint.pt", "expected a real floating-point tensor, got torch.int64")])
def test_infer_refuses_a_tensor_it_would_have_to_cast(files, name, message):
    code, out, err = run_main(["infer", *RESNET8, "--checkpoint", files["w8.pt"], "--input", files[name],
                               "--output", files["dir"] / "y.pt"])
    assert_one_clear_line(code, out, err, message)
    assert not (files["dir"] / "y.pt").exists()


def test_anycfg_on_a_padfree_network_takes_only_the_convs_ask_can_replace():
    code, out, err = run_main(["count", "--arch", "resnet_proj", "--depth", "20", "--padfree", "--anycfg", "ASK_5a",
                               "--json"])
    assert code == 0, err
    layers = conv_layers(Network("resnet_proj", 20), True)
    asked = cfglist_layers(Network("resnet_proj", 20), True)
    assert len(layers) == 28 and len(asked) == 17  # not the depthwise stem conv, not the padding-free 3x3s
    for i in asked:
        check_layer_fits(LayerChoice.preset("ASK_5a"), layers[i], layers[i].name)


def test_cfglist_on_a_padfree_network_has_one_entry_per_ask_eligible_conv(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps([[[2, 4, 5, 6, 8]]] * 17))
    code, out, err = run_main(["count", "--arch", "resnet_proj", "--depth", "20", "--padfree",
                               "--cfglist", tmp_path / "cfg.json", "--json"])
    assert code == 0, err
    padfree_anycfg = run_main(["count", "--arch", "resnet_proj", "--depth", "20", "--padfree", "--anycfg", "ASK_5a",
                               "--json"])[1]
    assert json.loads(out) == json.loads(padfree_anycfg)
    assert len([layer for layer in json.loads(out)["layers"] if layer["kind"] == "conv"]) == 28


@pytest.mark.parametrize("argv, message", [
    (["count", "--arch", "resnet", "--depth", "999999998"], "the depth must be at most 1202"),
    (["count", *RESNET8, "--cfglist", "{bomb.txt}"], "the limit is 100000"),
])
def test_the_real_exit_codes_through_a_subprocess(files, argv, message):
    argv = fill(argv, files)
    result = subprocess.run([sys.executable, "-m", "designer", *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert_one_clear_line(result.returncode, result.stdout, result.stderr, message)


@pytest.mark.parametrize("argv", [
    ["runs", "stop", str(2 ** 63)], ["runs", "delete", "0"], ["runs", "resume", "9" * 30],
    ["train", "--arch", "resnet", "--depth", "8", "--seed", str(10 ** 15)],
    ["runs", "start", "--arch", "resnet", "--depth", "8", "--batch-size", str(10 ** 7)],
    ["train", "--arch", "resnet", "--depth", "8", "--workers", "-1"],
])
def test_run_ids_and_training_integers_out_of_range_are_refused_when_parsed(argv, capsys, tmp_path):
    from designer.cli import main
    assert main([*argv, "--home", str(tmp_path)] if argv[0] == "runs" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must be at" in err[0] and "Traceback" not in err[0]
