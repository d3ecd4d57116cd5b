"""`train`, `export` and `runs` on the CLI: JSON out, ASK reference flags, resume, exit codes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from designer.cli import main
from designer.data import DEBIAN_FASHION_MNIST
from designer.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--arch", "resnet", "--depth", "8", "--data", "synthetic", "--batch-size", "128"]


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_one_json_object_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "designer", "train", *TINY, "--max-steps", "2",
                           "--home", str(tmp_path), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "finished" and result["steps"] == 2 and result["backend"] == "reference"
    run = RunStore(tmp_path / "runs.db").get_run(result["run_id"])
    assert run["status"] == "finished" and run["params"] == result["params"]
    assert Path(result["checkpoint"]).parent == tmp_path / "runs" / str(result["run_id"])


def test_ask_reference_flags_and_resume_into_the_same_folder(tmp_path, capsys):
    save = tmp_path / "logs"
    ask_flags = ["--arch", "resnet_any", "--depth", "8", "--anycfg", "ASK_5a", "--save", save, "--lr", "0.05",
                 "--batch-size", "128", "--wd", "1e-4", "--momentum", "0.9", "--seed", "1", "--log-interval", "2",
                 "--test-batch-size", "100", "--data", "synthetic", "--home", tmp_path, "--json"]
    code, out, err = run_main(capsys, "train", *ask_flags, "--epochs", "1")
    assert code == 0, err
    first = json.loads(out)
    assert first["steps"] == 4 and first["arch"] == "resnet"
    hp = RunStore(tmp_path / "runs.db").get_run(first["run_id"])["hparams"]
    assert (hp["lr"], hp["weight_decay"], hp["seed"], hp["log_every"], hp["eval_batch_size"]) == (0.05, 1e-4, 1, 2, 100)

    code, out, err = run_main(capsys, "train", *ask_flags, "--epochs", "1")
    assert code == 2 and "pass --resume" in err and len(err.strip().splitlines()) == 1

    code, out, err = run_main(capsys, "train", *ask_flags, "--epochs", "2", "--resume")
    assert code == 0, err
    second = json.loads(out)
    assert second["run_id"] == first["run_id"] and second["resumed_from_step"] == 4 and second["steps"] == 8

    code, out, err = run_main(capsys, "train", *ask_flags[:-1], "--anycfg", "ASK_2", "--epochs", "2", "--resume")
    assert code == 2 and "another design" in err


@pytest.mark.parametrize("bad, where", [(["--lr", "-1"], "--lr"), (["--epochs", "0"], "--epochs"),
                                        (["--backend", "gpu"], "--backend"), (["--anycfg", "ASK_9"], "ASK_9")])
def test_bad_input_exits_2_with_one_line_and_records_nothing(tmp_path, capsys, bad, where):
    code, out, err = run_main(capsys, "train", *TINY, "--home", tmp_path, *bad)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and where in err
    assert not (tmp_path / "runs.db").exists() or RunStore(tmp_path / "runs.db").list_runs() == []


def test_export_takes_a_training_checkpoint(tmp_path, capsys):
    code, out, _ = run_main(capsys, "train", *TINY, "--max-steps", "1", "--home", tmp_path, "--json")
    checkpoint = json.loads(out)["checkpoint"]
    model_opts = ["--arch", "resnet", "--depth", "8", "--checkpoint", checkpoint]
    for fmt in ("design", "cfglist", "weights", "onnx"):
        code, out, err = run_main(capsys, "export", *model_opts, "--format", fmt, "--out", tmp_path / f"m.{fmt}",
                                  "--json")
        assert code == 0 and json.loads(out)["bytes"] > 0, err
    weights = torch.load(tmp_path / "m.weights", weights_only=True)
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], trained[k]) for k in trained)


def test_runs_commands(tmp_path, capsys):
    code, out, _ = run_main(capsys, "runs", "list", "--home", tmp_path, "--json")
    assert code == 0 and json.loads(out) == {"runs": []}
    code, _, err = run_main(capsys, "runs", "stop", "7", "--home", tmp_path)
    assert code == 2 and "no run with id 7" in err
    code, out, _ = run_main(capsys, "train", *TINY, "--max-steps", "1", "--home", tmp_path, "--name", "tiny")
    assert code == 0 and "finished" in out
    code, out, _ = run_main(capsys, "runs", "list", "--home", tmp_path)
    assert "finished" in out and "tiny" in out
    code, out, _ = run_main(capsys, "runs", "delete", "1", "--home", tmp_path, "--json")
    assert code == 0 and json.loads(out) == {"deleted": 1} and not (tmp_path / "runs" / "1").exists()


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_a_few_batches(tmp_path, capsys):
    code, out, err = run_main(capsys, "train", "--arch", "resnet", "--depth", "8", "--dataset", "fashion-mnist",
                              "--max-steps", "20", "--home", tmp_path, "--no-download", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"] == "fashion-mnist" and result["steps"] == 20 and result["steps_per_epoch"] == 468
    assert result["test_acc"] > 15  # 20 steps on the real 10,000 test images: above chance (BN statistics lag)
