"""Your own network and data on the CLI (issue 12): torchvision models and entry points, image folders,
torchvision weights as the start of a design, and one clear line for each thing a user can get wrong."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

from designer.cli import main
from designer.runs.store import RunStore
from tests.image_folders import make_image_folder

ROOT = Path(__file__).resolve().parents[3]


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_image_folder_of_pngs_trains_a_few_steps_from_a_real_process(tmp_path):
    make_image_folder(tmp_path / "shapes", classes=3, per_class=8, val_per_class=2)
    proc = subprocess.run([sys.executable, "-m", "designer", "train", "--arch", "resnet", "--depth", "8",
                           "--data-dir", str(tmp_path / "shapes"), "--batch-size", "8", "--max-steps", "3",
                           "--home", str(tmp_path / "ws"), "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps"] == 3 and result["dataset"] == "image-folder" and result["steps_per_epoch"] == 3
    run = RunStore(tmp_path / "ws" / "runs.db").get_run(result["run_id"])
    assert run["design"]["network"]["num_classes"] == 3  # the folder's classes
    assert run["hparams"]["data_dir"] == str((tmp_path / "shapes").resolve())
    recorded = json.loads((Path(result["run_dir"]) / "hparams.json").read_text())
    assert recorded["data_dir"] == run["hparams"]["data_dir"]


def test_runs_start_records_the_folder_and_a_design_file_trains_on_it(tmp_path, capsys, monkeypatch):
    make_image_folder(tmp_path / "images", classes=2, per_class=4, splits=())  # one folder: split 90/10
    monkeypatch.setattr("designer.runs.jobs.tick", lambda *a, **k: [])  # queue only: no training process
    code, out, err = run_main(capsys, "runs", "start", "--arch", "torchvision:resnet18", "--input-size", "32",
                              "--anycfg", "ASK_5a", "--layers", "layer4.*", "--data-dir", tmp_path / "images",
                              "--batch-size", "4", "--home", tmp_path / "ws", "--json")
    assert code == 0, err
    run = RunStore(tmp_path / "ws" / "runs.db").get_run(json.loads(out)["run"]["id"])
    assert run["design"]["network"]["dataset"] == "image-folder" and run["design"]["network"]["num_classes"] == 2
    assert run["hparams"]["data_dir"] == str((tmp_path / "images").resolve())
    design = tmp_path / "design.json"
    code, _, err = run_main(capsys, "export", "--arch", "resnet", "--depth", "8", "--format", "design",
                            "--out", design)
    assert code == 0, err
    code, _, err = run_main(capsys, "runs", "start", "--design", design, "--data-dir", tmp_path / "images",
                            "--batch-size", "4", "--home", tmp_path / "ws")
    assert code == 2 and "the image folder" in err and "has 2 classes (class0, class1), the design has 10" in err


def test_fine_tuning_imagenet_weights_on_a_folder_starts_the_head_fresh(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), tmp_path / "imagenet.pt")
    make_image_folder(tmp_path / "images", classes=3, per_class=4, val_per_class=1)
    proc = subprocess.run([sys.executable, "-m", "designer", "train", "--arch", "torchvision:resnet18",
                           "--input-size", "32", "--anycfg", "ASK_5a", "--data-dir", str(tmp_path / "images"),
                           "--checkpoint", str(tmp_path / "imagenet.pt"), "--batch-size", "6", "--max-steps", "2",
                           "--home", str(tmp_path / "ws"), "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "state_dict from imagenet.pt; its classifier head fc is for 1000 classes, the design has 3: fc starts " \
           "fresh" in proc.stderr
    assert json.loads(proc.stdout)["steps"] == 2


def test_infer_with_torchvision_weights_on_an_ask_design_and_a_head_that_does_not_fit(tmp_path, capsys):
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(theirs.state_dict(), tmp_path / "w.pt")
    torch.save(torch.randn(2, 3, 32, 32), tmp_path / "x.pt")
    options = ["--arch", "torchvision:resnet18", "--num-classes", "10", "--input-size", "32"]
    code, _, err = run_main(capsys, "infer", *options, "--checkpoint", tmp_path / "w.pt", "--input", tmp_path / "x.pt",
                            "--output", tmp_path / "y.pt")
    assert code == 0, err
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), theirs(torch.load(tmp_path / "x.pt")))
    code, _, err = run_main(capsys, "infer", *options, "--anycfg", "ASK_5a", "--checkpoint", tmp_path / "w.pt",
                            "--input", tmp_path / "x.pt", "--output", tmp_path / "y.pt")
    assert code == 0, err  # the dense network's weights, each ASK layer taking its active taps
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), tmp_path / "imagenet.pt")
    code, _, err = run_main(capsys, "infer", *options, "--checkpoint", tmp_path / "imagenet.pt",
                            "--input", tmp_path / "x.pt", "--output", tmp_path / "y.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "imagenet.pt: the weights do not fit the design: fc.weight has shape (1000, 512), the design expects " \
           "(10, 512)" in err


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """A folder of the user's modules, importable as the current directory is for `python -m`."""
    (tmp_path / "cli_nets.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        def tiny(num_classes=10, width=8):
            return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

        def not_a_model():
            return {"layers": 3}
    """))
    (tmp_path / "cli_broken.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--arch", "torchvision:resnet19"],
     "error: network: torchvision has no classification model 'resnet19'; did you mean torchvision:resnet18"),
    (["--arch", "cli_broken:build"],
     "error: network: cannot import cli_broken: ModuleNotFoundError: No module named 'a_package_that_is_not_installed'"),
    (["--arch", "cli_nets:not_a_model"], "error: network: cli_nets:not_a_model returned a dict, not an nn.Module"),
    (["--arch", "cli_nets:missing"], "error: network: cli_nets has no attribute 'missing'"),
    (["--arch", "resnet", "--depth", "20", "--dataset", "cifar100", "--num-classes", "10"],
     "error: --num-classes: cifar100 has 100 classes, the design says 10"),
    (["--arch", "resnet", "--input-size", "64"],
     "error: --input-size: ResNet is defined at 3x32x32 (its pooling and classifier fix the size), got 3x64x64"),
    (["--arch", "torchvision:resnet18", "--anycfg", "ASK_5a", "--layers", "blocks.*"],
     "error: --layers: 'blocks.*' matches no convolution of this network (its convs are named like conv1, "
     "layer1.0.conv1, layer1.0.conv2, ...)"),
    (["--arch", "cli_nets:tiny", "--arch-kwargs", "[1]"], "error: --arch-kwargs: must be a JSON object"),
])
def test_bad_input_about_the_network_is_one_line_and_exit_code_2(user_modules, capsys, args, message):
    code, out, err = run_main(capsys, "count", *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err


def test_a_checkpoint_of_another_network_is_refused_before_a_run_starts(tmp_path, capsys):
    torch.save(torchvision.models.resnet34(num_classes=10).state_dict(), tmp_path / "resnet34.pt")
    code, _, err = run_main(capsys, "train", "--arch", "torchvision:resnet18", "--num-classes", "10",
                            "--input-size", "32", "--data", "synthetic", "--checkpoint", tmp_path / "resnet34.pt",
                            "--home", tmp_path / "ws")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "resnet34.pt: layer1.2.conv1.weight (shape (64, 64, 3, 3)) is not a tensor of this network" in err


def test_data_dir_options_that_contradict_each_other(tmp_path, capsys):
    make_image_folder(tmp_path / "images", classes=3, per_class=2)
    base = ["train", "--arch", "resnet", "--depth", "8", "--home", tmp_path / "ws"]
    code, _, err = run_main(capsys, *base, "--data-dir", tmp_path / "images", "--dataset", "cifar10")
    assert code == 2 and "--dataset cifar10 would be another data set" in err
    code, _, err = run_main(capsys, *base, "--data-dir", tmp_path / "images", "--num-classes", "4")
    assert code == 2 and f"the image folder {(tmp_path / 'images').resolve()} has 3 classes" in err
    assert "the design has 4" in err
    code, _, err = run_main(capsys, *base, "--dataset", "image-folder")
    assert code == 2 and "--data-dir: an image-folder design trains on a folder of images: give --data-dir DIR" in err
    code, _, err = run_main(capsys, *base, "--data-dir", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such folder" in err
