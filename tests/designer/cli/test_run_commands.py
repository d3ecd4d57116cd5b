"""`train`, `export` and `runs` on the CLI: JSON out, ASK reference flags, resume, exit codes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from designer.cli import main
from designer.runs import jobs
from designer.runs.data import DEBIAN_FASHION_MNIST
from designer.runs.store import RunStore
from tests.designer.runs.test_store import corrupt_a_page

ROOT = Path(__file__).resolve().parents[3]
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
    assert result["status"] == "finished" and result["steps"] == 2 and result["backend"] == "auto"
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


def test_train_resume_without_save_is_a_clear_error_and_records_nothing(tmp_path, capsys):
    code, out, err = run_main(capsys, "train", *TINY, "--home", tmp_path, "--resume")
    assert code == 2 and "--resume" in err and "--save DIR" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs.db").exists() or RunStore(tmp_path / "runs.db").list_runs() == []


def test_train_save_into_a_folder_another_run_owns_is_refused(tmp_path, capsys):
    store = RunStore(tmp_path / "runs.db")
    other = store.create_run({}, {}, status="queued", runs_root=tmp_path / "runs")  # no checkpoint yet
    other_dir = tmp_path / "runs" / str(other)
    for save in (other_dir, other_dir / "sub", tmp_path / "runs" / "99"):
        code, _, err = run_main(capsys, "train", *TINY, "--max-steps", "1", "--home", tmp_path, "--save", save)
        assert code == 2 and "--save" in err and len(err.strip().splitlines()) == 1, err
    assert [r["id"] for r in store.list_runs()] == [other] and not other_dir.exists()


def test_runs_delete_of_an_active_run_needs_force(tmp_path, capsys):
    run_id = RunStore(tmp_path / "runs.db").create_run({}, {}, status="queued", runs_root=tmp_path / "runs")
    code, _, err = run_main(capsys, "runs", "delete", run_id, "--home", tmp_path)
    assert code == 2 and "stop it first" in err
    code, out, err = run_main(capsys, "runs", "delete", run_id, "--home", tmp_path, "--force", "--json")
    assert code == 0 and json.loads(out) == {"deleted": run_id}, err
    assert RunStore(tmp_path / "runs.db").get_run(run_id) is None


@pytest.mark.parametrize("bad, where", [(["--seed", str(10 ** 15)], "--seed"), (["--batch-size", str(10 ** 7)],
                                        "--batch-size"), (["--workers", "1000"], "--workers"),
                                        (["--checkpoint", "missing.pt"], "--checkpoint")])
def test_runs_start_refuses_what_would_die_in_the_background(tmp_path, capsys, bad, where):
    code, out, err = run_main(capsys, "runs", "start", *TINY, "--home", tmp_path, *bad)
    assert code == 2 and where in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs.db").exists() or RunStore(tmp_path / "runs.db").list_runs() == []


def test_train_checkpoint_starts_from_those_weights(tmp_path, capsys):
    code, out, err = run_main(capsys, "train", *TINY, "--max-steps", "2", "--home", tmp_path, "--json")
    assert code == 0, err
    source = torch.load(json.loads(out)["checkpoint"], weights_only=True)["state_dict"]
    still = ["--lr", "1e-9", "--momentum", "0", "--wd", "0", "--seed", "7"]  # one step that moves nothing
    code, out, err = run_main(capsys, "train", *TINY, "--max-steps", "1", *still, "--checkpoint",
                              json.loads(out)["checkpoint"], "--home", tmp_path, "--json")
    assert code == 0, err
    started = torch.load(json.loads(out)["checkpoint"], weights_only=True)["state_dict"]
    convs = [k for k in source if k.endswith("conv.weight") or k.endswith("conv1.weight")] or \
        [k for k in source if source[k].dim() == 4]
    assert convs and all(torch.allclose(started[k], source[k], atol=1e-6) for k in convs)
    assert RunStore(tmp_path / "runs.db").get_run(2)["hparams"]["init_from"].endswith(".pt")


def test_a_home_that_is_a_file_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, _, err = run_main(capsys, "runs", "list", "--home", tmp_path / "file")
    assert code == 2 and "must be a folder" in err and len(err.strip().splitlines()) == 1


def test_runs_list_says_where_a_stopped_run_resumes(tmp_path, capsys):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, "halfway", status="stopped", runs_root=tmp_path / "runs")
    store.update_run(run_id, step=150, resume_step=120)
    code, out, _ = run_main(capsys, "runs", "list", "--home", tmp_path)
    assert code == 0 and "step    150" in out and "resumes from step 120" in out
    code, out, _ = run_main(capsys, "runs", "list", "--home", tmp_path, "--json")
    assert json.loads(out)["runs"][0]["resume_step"] == 120
    assert jobs.get_run(run_id, tmp_path)["resume_step"] == 120


def test_a_corrupted_store_fails_to_list_with_the_way_out_and_runs_repair_salvages_it(tmp_path, capsys,
                                                                                        monkeypatch):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, "precious", status="finished")
    store.write_progress(run_id, [(step, 1, "step", "loss", 1.0, 0.0) for step in range(1, 3001)])
    corrupt_a_page(tmp_path / "runs.db")
    monkeypatch.setattr("designer.runs.store._checked", set())  # a new process checks the store once
    code, out, err = run_main(capsys, "runs", "list", "--home", tmp_path)
    assert code == 2 and "corrupted" in err and "runs repair" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_main(capsys, "runs", "repair", "--home", tmp_path)
    assert code == 0 and "salvaged 1 runs" in out, err
    code, out, _ = run_main(capsys, "runs", "list", "--home", tmp_path)
    assert code == 0 and "precious" in out
    assert list(tmp_path.glob("runs.db.corrupt-*"))


def test_evaluate_gives_a_runs_own_test_accuracy_and_needs_weights(tmp_path, capsys):
    code, out, err = run_main(capsys, "train", *TINY, "--max-steps", "3", "--home", tmp_path, "--json")
    assert code == 0, err
    run = json.loads(out)
    code, out, err = run_main(capsys, "evaluate", *TINY, "--checkpoint", run["checkpoint"], "--home", tmp_path,
                              "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["test_acc"] == pytest.approx(run["test_acc"]) and result["test_loss"] == pytest.approx(
        run["test_loss"], rel=1e-4)
    assert result["images"] > 0 and f"run {run['run_id']}" in result["weights"]

    code, out, err = run_main(capsys, "evaluate", *TINY, "--home", tmp_path)
    assert code == 2 and err.strip().splitlines() == ["error: --checkpoint: evaluating needs weights: give "
                                                      "--checkpoint FILE"]
