"""The trainer in-process: hyper-parameter checks, schedule, metrics, checkpoints, exact resume, masks."""
import dataclasses

import pytest
import torch

from designer.build import dense_design
from designer.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, load_latest
from designer.design import LayerChoice, Network
from designer.errors import DesignError
from designer.store import RunStore
from designer.train import HParams, lr_at, train

TINY = HParams(epochs=2, batch_size=128, data="synthetic", log_every=2, warmup_epochs=0.25)
RESNET8 = Network("resnet", 8, "cifar10")


@pytest.mark.parametrize("field, value, option", [
    ("lr", 0, "--lr"), ("lr", float("nan"), "--lr"), ("epochs", 0, "--epochs"), ("batch_size", 2.5, "--batch-size"),
    ("max_steps", 0, "--max-steps"), ("momentum", 1.5, "--momentum"), ("weight_decay", -1, "--weight-decay"),
    ("schedule", "linear", "--schedule"), ("backend", "cuda-magic", "--backend"), ("workers", -1, "--workers"),
    ("data", "cifar100", "--data"),
])
def test_bad_hyper_parameters_are_refused_naming_the_option(field, value, option):
    with pytest.raises(DesignError) as err:
        dataclasses.replace(HParams(), **{field: value}).checked()
    assert err.value.where == option


def test_hparams_json_round_trip_and_unknown_keys():
    hp = HParams(lr=0.05, schedule="step")
    assert HParams.from_json(hp.to_json()) == hp
    with pytest.raises(DesignError, match="unknown hyper-parameters: colour"):
        HParams.from_json({"colour": 1})


def test_step_schedule_is_the_ask_recipe_and_cosine_warms_up():
    step = HParams(lr=0.1, schedule="step", warmup_epochs=0)
    assert [lr_at(s, 100, 0, step) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = HParams(lr=0.1)
    assert lr_at(0, 100, 10, cos) == pytest.approx(0.01) and lr_at(9, 100, 10, cos) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, cos) == pytest.approx(0.1) and lr_at(99, 100, 10, cos) < 1e-3


def test_train_logs_metrics_checkpoints_and_learns(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, status="running")
    result = train(dense_design(RESNET8), TINY, tmp_path / "run", store, run_id)
    assert result["steps"] == 8 and result["steps_per_epoch"] == 4
    assert result["test_acc"] > 20  # 10 classes: chance is 10%; BN statistics lag after 8 steps
    names = {(m["split"], m["name"]) for m in store.metrics(run_id)}
    assert names == {("step", "loss"), ("step", "acc"), ("step", "lr"), ("step", "images_per_s"),
                     ("train", "loss"), ("train", "acc"), ("test", "loss"), ("test", "acc"),
                     ("epoch", "time_s"), ("epoch", "images_per_s")}
    assert [m["epoch"] for m in store.metrics(run_id, "test", "acc")] == [1, 2]
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000008.pt", "ckpt-00000004.pt"]
    run = store.get_run(run_id)
    assert run["epoch"] == 2 and run["step"] == 8 and run["best_acc"] == result["best_acc"]
    state = load_checkpoint(tmp_path / "run" / "ckpt-00000008.pt")
    assert state["scheduler"]["total_steps"] == 8 and "momentum_buffer" in str(state["optimizer"])


def test_resume_from_a_mid_run_checkpoint_gives_the_same_weights(tmp_path):
    hp = dataclasses.replace(TINY, checkpoint_every=3)
    straight = train(dense_design(RESNET8), hp, tmp_path / "a")
    a = torch.load(straight["checkpoint"], weights_only=True)["state_dict"]
    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    (tmp_path / "a" / "ckpt-00000006.pt").rename(resumed_dir / "ckpt-00000006.pt")  # mid-epoch 2
    result = train(dense_design(RESNET8), hp, resumed_dir, resume=True)
    assert result["resumed_from_step"] == 6 and result["steps"] == 8
    assert result["test_acc"] == pytest.approx(straight["test_acc"])
    b = torch.load(result["checkpoint"], weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_a_corrupt_checkpoint_is_reported_and_the_previous_one_used(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(dense_design(RESNET8), TINY, run_dir)
    newest = run_dir / "ckpt-00000008.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated checkpoint"):
        load_checkpoint(newest)
    state, path = load_latest(run_dir)
    assert path.name == "ckpt-00000004.pt" and state["step"] == 4
    assert "ckpt-00000008.pt: corrupt or truncated checkpoint" in capsys.readouterr().err
    assert (run_dir / "ckpt-00000008.corrupt").exists()  # out of the rotation, kept to inspect
    result = train(dense_design(RESNET8), TINY, run_dir, resume=True)
    assert result["resumed_from_step"] == 4 and result["steps"] == 8


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt-00000004.pt").write_bytes(b"not a zip file")
    (tmp_path / "ckpt-00000002.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="ckpt-00000004.pt: corrupt or truncated"):
        load_latest(tmp_path)
    torch.save({"state_dict": {}}, tmp_path / "ckpt-00000009.pt")
    with pytest.raises(CheckpointError, match="not a Kernel Studio training checkpoint"):
        load_checkpoint(tmp_path / "ckpt-00000009.pt")


def test_max_steps_stops_mid_epoch_and_ask_trains_on_another_backend(tmp_path):
    base = dense_design(RESNET8)
    design = base.with_layers(LayerChoice.preset("ASK_5a") for _ in base.layers)
    hp = dataclasses.replace(TINY, max_steps=3, backend="decomposed", epochs=5)
    result = train(design, hp, tmp_path)
    assert result["steps"] == 3 and result["backend"] == "decomposed"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000003.pt"]


def test_pruned_weights_stay_zero_through_training(tmp_path):
    base = dense_design(RESNET8)
    layers = [LayerChoice.hetconv(4) if i % 2 else LayerChoice.blocksparse(4, 0.5) for i in range(len(base.layers))]
    layers[0] = LayerChoice.blocksparse(4, 0.5)  # 3 input channels: HetConv needs P | Cin
    design = base.with_layers(layers)
    from designer.build import build_model
    torch.manual_seed(TINY.seed)
    before = [m.dense_weight().detach() == 0 for m in build_model(design).modules() if hasattr(m, "active_weights")]
    result = train(design, dataclasses.replace(TINY, epochs=1), tmp_path)
    model = build_model(design)
    model.load_state_dict(torch.load(result["checkpoint"], weights_only=True)["state_dict"])
    after = [m.dense_weight().detach() == 0 for m in model.modules() if hasattr(m, "active_weights")]
    assert len(before) == len(base.layers)
    for zero_before, zero_after in zip(before, after):
        assert zero_before.any() and torch.equal(zero_before, zero_after)
