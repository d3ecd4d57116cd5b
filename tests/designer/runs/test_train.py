"""The trainer in-process: hyper-parameter checks, schedule, metrics, checkpoints, exact resume, masks."""
import dataclasses
import threading

import pytest
import torch

from designer.designs.datasets import IMAGE_FOLDER
from designer.designs.design import Network
from designer.designs.kinds import LayerChoice
from designer.errors import DesignError
from designer.networks.build import dense_design
from designer.runs.checkpoints import CheckpointError, digest_path, list_checkpoints, load_checkpoint, load_latest
from designer.runs.data import DEBIAN_FASHION_MNIST, prepare_fashion_mnist
from designer.runs.store import RunStore, StoreError
from designer.runs.train import OPTION_NAMES, HParams, RunStopped, lr_at, train
from tests.image_folders import make_image_folder

TINY = HParams(epochs=2, batch_size=128, data="synthetic", log_every=2, warmup_epochs=0.25)
RESNET8 = Network("resnet", 8, "cifar10")


@pytest.mark.parametrize("field, value, option", [
    ("lr", 0, "--lr"), ("lr", float("nan"), "--lr"), ("epochs", 0, "--epochs"), ("batch_size", 2.5, "--batch-size"),
    ("max_steps", 0, "--max-steps"), ("momentum", 1.5, "--momentum"), ("weight_decay", -1, "--weight-decay"),
    ("schedule", "linear", "--schedule"), ("backend", "cuda-magic", "--backend"), ("workers", -1, "--workers"),
    ("data", "cifar100", "--data"), ("seed", 10 ** 15, "--seed"), ("seed", 2 ** 31, "--seed"),
    ("batch_size", 10 ** 7, "--batch-size"), ("eval_batch_size", 10 ** 6, "--eval-batch-size"),
    ("workers", 1000, "--workers"), ("epochs", 10 ** 12, "--epochs"), ("max_steps", 10 ** 12, "--max-steps"),
    ("checkpoint_every_s", -1.0, "--checkpoint-every-s"), ("log_every_s", float("inf"), "--log-every-s"),
    ("data_limit", 0, "--data-limit"), ("init_from", "", "--checkpoint"), ("download", "yes", "--no-download"),
])
def test_bad_hyper_parameters_are_refused_naming_the_option(field, value, option):
    with pytest.raises(DesignError) as err:
        dataclasses.replace(HParams(), **{field: value}).checked()
    assert err.value.where == option


@pytest.mark.parametrize("field, value", [
    ("lr", "0.1"), ("epochs", 2.0), ("batch_size", True), ("seed", 10 ** 15), ("schedule", ["cosine"]),
    ("backend", {}), ("channels_last", 1), ("data_root", 7), ("max_steps", 3.5), ("momentum", None),
    ("log_every_s", "5"), pytest.param("seed", 10 ** 5000, id="seed-5000-digits"), ("init_from", ["a"]),
])
def test_hyper_parameters_read_back_with_a_wrong_type_or_a_huge_value_are_refused(field, value):
    with pytest.raises(DesignError) as err:
        HParams.from_json({**HParams().to_json(), field: value})
    assert err.value.where == OPTION_NAMES.get(field, "--" + field.replace("_", "-")) and len(str(err.value)) < 200


def test_training_defaults_to_the_auto_backend():
    assert HParams().checked().backend == "auto"  # each layer its fastest, the masked dense conv among them


def test_a_batch_larger_than_the_training_set_is_refused_before_training():
    design = dense_design(RESNET8)
    with pytest.raises(DesignError, match="more than the 512 training images") as err:
        dataclasses.replace(TINY, batch_size=1024).checked_for(design)
    assert err.value.where == "--batch-size"
    with pytest.raises(DesignError, match="more than the 64 training images"):
        dataclasses.replace(TINY, data_limit=64).checked_for(design)
    with pytest.raises(DesignError, match="more than the 1000 training images of cifar10"):
        dataclasses.replace(TINY, data=None, batch_size=4096, data_limit=1000).checked_for(design)
    assert dataclasses.replace(TINY, batch_size=512).checked_for(design).batch_size == 512


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
    assert run["resume_step"] == 8  # the newest checkpoint's step
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
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(newest)
    digest_path(newest).unlink()  # and without its digest, torch finds the damage itself
    with pytest.raises(CheckpointError, match="corrupt or truncated checkpoint"):
        load_checkpoint(newest)
    state, path = load_latest(run_dir)
    assert path.name == "ckpt-00000004.pt" and state["step"] == 4
    assert "ckpt-00000008.pt: corrupt or truncated checkpoint" in capsys.readouterr().err
    assert (run_dir / "ckpt-00000008.corrupt").exists()  # out of the rotation, kept to inspect
    result = train(dense_design(RESNET8), TINY, run_dir, resume=True)
    assert result["resumed_from_step"] == 4 and result["steps"] == 8


def test_a_checkpoint_with_64_flipped_bytes_inside_a_tensor_is_skipped_for_the_previous_one(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(dense_design(RESNET8), TINY, run_dir)
    newest = run_dir / "ckpt-00000008.pt"
    data = bytearray(newest.read_bytes())
    middle = len(data) // 2  # the archive is mostly tensor bytes, stored uncompressed
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    newest.write_bytes(bytes(data))
    assert torch.load(newest, weights_only=True)["step"] == 8  # torch alone loads it silently
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(newest)
    state, path = load_latest(run_dir)
    assert path.name == "ckpt-00000004.pt" and "ckpt-00000008.pt: digest mismatch" in capsys.readouterr().err


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
    from designer.networks.build import build_model
    torch.manual_seed(TINY.seed)
    before = [m.dense_weight().detach() == 0 for m in build_model(design).modules() if hasattr(m, "active_weights")]
    result = train(design, dataclasses.replace(TINY, epochs=1), tmp_path)
    model = build_model(design)
    model.load_state_dict(torch.load(result["checkpoint"], weights_only=True)["state_dict"])
    after = [m.dense_weight().detach() == 0 for m in model.modules() if hasattr(m, "active_weights")]
    assert len(before) == len(base.layers)
    for zero_before, zero_after in zip(before, after):
        assert zero_before.any() and torch.equal(zero_before, zero_after)


def test_checkpoints_and_step_metrics_also_come_by_time(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    by_time = dataclasses.replace(TINY, epochs=1, log_every=1000, checkpoint_every_s=1e-9, log_every_s=1e-9)
    run_id = store.create_run({}, {}, status="running")
    train(dense_design(RESNET8), by_time, tmp_path / "a", store, run_id)
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == [1, 2, 3, 4]
    assert [p.name for p in list_checkpoints(tmp_path / "a")] == ["ckpt-00000004.pt", "ckpt-00000003.pt"]
    off = dataclasses.replace(by_time, checkpoint_every_s=0, log_every_s=0)
    run_id = store.create_run({}, {}, status="running")
    train(dense_design(RESNET8), off, tmp_path / "b", store, run_id)
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == [4]  # the epoch's end only
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["ckpt-00000004.pt"]


def test_resume_drops_the_rows_logged_after_its_checkpoint_and_records_the_resume_step(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, status="running")
    hp = dataclasses.replace(TINY, log_every=1, checkpoint_every=3)
    train(dense_design(RESNET8), hp, tmp_path / "run", store, run_id)
    (tmp_path / "run" / "ckpt-00000008.pt").unlink()  # as if killed after step 8's rows, before its checkpoint
    store.log_metrics(run_id, 7, 2, "test", {"acc": 99.0})  # a row only the killed timeline had
    train(dense_design(RESNET8), hp, tmp_path / "run", store, run_id, resume=True)
    rows = store.metrics(run_id, all_rows=True)
    after = [(m["split"], m["name"], m["step"]) for m in rows if m["step"] > 6]
    assert len(after) == len(set(after)) and ("test", "acc", 7) not in after  # each step once, no stale row
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == list(range(1, 9))
    assert store.get_run(run_id)["resume_step"] == 8


class StopAfter(threading.Event):
    """A stop request that arrives after `steps` steps (the trainer asks once per step)."""

    def __init__(self, steps):
        super().__init__()
        self.asks = steps

    def is_set(self):
        self.asks -= 1
        return self.asks <= 0


def test_a_stop_request_checkpoints_the_current_step_and_resume_continues_there(tmp_path):
    with pytest.raises(RunStopped, match="stopped at step 3"):
        train(dense_design(RESNET8), TINY, tmp_path, stop=StopAfter(3))
    assert list_checkpoints(tmp_path)[0].name == "ckpt-00000003.pt"
    result = train(dense_design(RESNET8), TINY, tmp_path, resume=True)
    assert result["resumed_from_step"] == 3 and result["steps"] == 8


class FlakyStore(RunStore):
    """A real store whose writes fail while `failing` says so (a disk I/O error, say)."""

    failing = staticmethod(lambda: False)

    def write_progress(self, *args, **kwargs):
        if self.failing():
            raise StoreError("disk I/O error (simulated)", str(self.path))
        return super().write_progress(*args, **kwargs)


def test_metric_rows_a_failing_store_refused_are_written_at_the_next_try(tmp_path, capsys):
    store = FlakyStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, status="running")
    calls = iter(range(1000))
    store.failing = lambda: 2 <= next(calls) < 5  # three writes in a row fail, mid-run
    train(dense_design(RESNET8), dataclasses.replace(TINY, log_every=1), tmp_path / "run", store, run_id)
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == list(range(1, 9))
    assert len(store.metrics(run_id, "step", "loss", all_rows=True)) == 8
    err = capsys.readouterr().err
    assert "the metrics wait in memory" in err and "the run store works again" in err


def test_a_store_that_keeps_failing_stops_the_run_with_a_checkpoint_and_no_row_lost(tmp_path, monkeypatch):
    monkeypatch.setattr("designer.runs.train.STORE_GIVE_UP_S", 0.0)
    store = FlakyStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, status="running")
    calls = iter(range(1000))
    store.failing = lambda: next(calls) >= 3  # the start, then steps 1 and 2 are written; then nothing
    hp = dataclasses.replace(TINY, log_every=1)
    with pytest.raises(StoreError, match="unsaved metric rows are in"):
        train(dense_design(RESNET8), hp, tmp_path / "run", store, run_id)
    stopped_at = load_latest(tmp_path / "run")[0]["step"]
    assert 3 <= stopped_at < 8 and (tmp_path / "run" / "unsaved-metrics.json").exists()
    store.failing = lambda: False
    train(dense_design(RESNET8), hp, tmp_path / "run", store, run_id, resume=True)
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == list(range(1, 9))
    assert not (tmp_path / "run" / "unsaved-metrics.json").exists()


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make data)")
    root = tmp_path_factory.mktemp("data")
    prepare_fashion_mnist(root)
    return root


def test_stop_and_resume_on_fashion_mnist_with_flips_gives_the_uninterrupted_losses_bit_for_bit(
        tmp_path, fashion_root):
    design = dense_design(Network("resnet", 8, "fashion-mnist"))
    hp = HParams(epochs=2, max_steps=8, batch_size=32, data_limit=128, log_every=1, checkpoint_every=3,
                 warmup_epochs=0, data_root=str(fashion_root), download=False)  # 4 steps per epoch, flips on
    store = RunStore(tmp_path / "runs.db")
    straight, resumed = store.create_run({}, {}, status="running"), store.create_run({}, {}, status="running")
    train(design, hp, tmp_path / "straight", store, straight)
    interrupted = dataclasses.replace(hp, workers=1)  # and a data-loader worker: its seed must not matter either
    with pytest.raises(RunStopped):
        train(design, interrupted, tmp_path / "resumed", store, resumed, stop=StopAfter(7))
    (tmp_path / "resumed" / "ckpt-00000007.pt").unlink()  # as a kill at step 7 would: resume from 6, mid-epoch
    torch.manual_seed(12345)  # whatever the global generator holds now must not matter
    result = train(design, interrupted, tmp_path / "resumed", store, resumed, resume=True)
    assert result["resumed_from_step"] == 6
    losses = {run: [m["value"] for m in store.metrics(run, "step", "loss")] for run in (straight, resumed)}
    assert len(losses[straight]) == 8 and losses[resumed] == losses[straight]


def test_a_damaged_unsaved_metrics_file_is_reported_and_ignored_on_resume(tmp_path, capsys):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run({}, {}, status="running")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "unsaved-metrics.json").write_text('[[1, "x"]')
    train(dense_design(RESNET8), dataclasses.replace(TINY, epochs=1), tmp_path / "run", store, run_id, resume=True)
    assert "not the metric rows a run keeps; ignored" in capsys.readouterr().err
    assert [m["step"] for m in store.metrics(run_id, "step", "loss")] == [2, 4]


# ---------------------------------------------------------------------------
# Image folders and other input shapes.

FOLDER_NET = Network("resnet", 8, IMAGE_FOLDER, num_classes=3)


def test_an_image_folder_run_is_checked_before_it_trains(tmp_path):
    make_image_folder(tmp_path, classes=3, per_class=4)
    design = dense_design(FOLDER_NET)
    with pytest.raises(DesignError, match="give --data-dir DIR") as err:
        dataclasses.replace(TINY, data=None).checked_for(design)
    assert err.value.where == "--data-dir"
    with pytest.raises(DesignError, match="more than the 12 training images of image-folder"):
        dataclasses.replace(TINY, data=None, data_dir=str(tmp_path), batch_size=16).checked_for(design)
    with pytest.raises(DesignError, match=r"has 3 classes \(class0, class1, class2\), the design has 5"):
        dataclasses.replace(TINY, data=None, data_dir=str(tmp_path), batch_size=4).checked_for(
            dense_design(Network("resnet", 8, IMAGE_FOLDER, num_classes=5)))
    with pytest.raises(DesignError, match="this run trains on cifar10") as err:
        dataclasses.replace(TINY, data=None, data_dir=str(tmp_path)).checked_for(dense_design(RESNET8))
    assert err.value.where == "--data-dir"
    assert HParams.from_json({**TINY.to_json(), "data_dir": str(tmp_path)}).data_dir == str(tmp_path)
    old = TINY.to_json()
    del old["data_dir"]  # hyper-parameters recorded before the field existed still read
    assert HParams.from_json(old).data_dir is None


def test_stop_and_resume_on_an_image_folder_gives_the_uninterrupted_losses_bit_for_bit(tmp_path):
    make_image_folder(tmp_path / "images", classes=3, per_class=8)
    design = dense_design(FOLDER_NET)
    hp = HParams(epochs=2, max_steps=7, batch_size=6, log_every=1, warmup_epochs=0, data_dir=str(tmp_path / "images"),
                 channels_last=False)  # 4 steps per epoch: crops and flips from each sample's seed
    store = RunStore(tmp_path / "runs.db")
    straight, resumed = store.create_run({}, {}, status="running"), store.create_run({}, {}, status="running")
    result = train(design, hp, tmp_path / "straight", store, straight)
    assert result["steps"] == 7 and result["dataset"] == IMAGE_FOLDER
    with pytest.raises(RunStopped):
        train(design, hp, tmp_path / "resumed", store, resumed, stop=StopAfter(5))
    torch.manual_seed(4321)
    assert train(design, hp, tmp_path / "resumed", store, resumed, resume=True)["resumed_from_step"] == 5
    losses = {run: [m["value"] for m in store.metrics(run, "step", "loss")] for run in (straight, resumed)}
    assert len(losses[straight]) == 7 and losses[resumed] == losses[straight]


def test_a_network_at_another_input_shape_trains_on_the_data_at_that_shape(tmp_path):
    design = dense_design(Network("torchvision:resnet18", 0, "cifar10", 10, (3, 48, 48)))
    hp = dataclasses.replace(TINY, epochs=1, max_steps=2, batch_size=16, data_limit=32)
    result = train(design, hp, tmp_path)
    assert result["steps"] == 2 and result["test_acc"] is not None
