"""Data sets: synthetic for tests, Fashion-MNIST from the workspace, CIFAR's clear message when missing."""
import pytest
import torch

from designer.errors import DesignError
from designer.runs.data import (
    DEBIAN_FASHION_MNIST,
    EpochSampler,
    TensorImages,
    eval_loader,
    load_datasets,
    synthetic_datasets,
    train_loader,
)


def test_synthetic_is_small_deterministic_and_shaped_like_cifar():
    train, test = synthetic_datasets(10)
    again, _ = synthetic_datasets(10)
    assert len(train) == 512 and len(test) == 256
    x, y = train[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= int(y) < 10
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)


def test_synthetic_takes_the_design_class_count():
    train, _ = synthetic_datasets(100)
    assert int(train.labels.max()) < 100 and len(set(train.labels.tolist())) > 50


def test_unknown_data_set_is_refused_with_the_choices():
    with pytest.raises(DesignError, match="synthetic"):
        load_datasets("imagenet", root=None)


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(DesignError, match="cifar10 is not under .*allow the download"):
        load_datasets("cifar10", tmp_path, download=False)


def test_epoch_sampler_resumes_mid_epoch_on_the_same_order_and_augmentation_seeds():
    sampler = EpochSampler(100, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=40)
    assert list(sampler) == full[40:] and len(sampler) == 60
    sampler.set_epoch(3)
    assert list(sampler) != full and sorted(i for i, _ in full) == list(range(100))
    assert len({seed for _, seed in full}) == 100  # each sample its own augmentation seed
    assert {seed for _, seed in full}.isdisjoint(seed for _, seed in sampler)  # and new ones each epoch


def test_a_samples_augmentation_depends_on_its_seed_not_on_the_global_generator():
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    crops = TensorImages(images, torch.zeros(1), (0.5,) * 3, (0.25,) * 3, crop_pad=4, flip=True)
    torch.manual_seed(1)
    first = crops[(0, 77)][0]
    torch.manual_seed(2)
    assert torch.equal(crops[(0, 77)][0], first)
    assert any(not torch.equal(crops[(0, seed)][0], first) for seed in range(10))


def test_the_train_loader_draws_nothing_from_the_global_generator():
    train, _ = synthetic_datasets(10)
    loader, _ = train_loader(train, batch_size=100, seed=0)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)


def test_head_keeps_the_first_images_and_the_pipeline():
    train, _ = synthetic_datasets(10)
    part = train.head(64)
    assert len(part) == 64 and torch.equal(part[5][0], train[5][0]) and train.head(None) is train


def test_train_loader_drops_the_partial_batch_and_eval_keeps_it():
    train, test = synthetic_datasets(10)
    loader, _ = train_loader(train, batch_size=100, seed=0)
    assert len(loader) == 5 and all(len(y) == 100 for _, y in loader)
    assert sum(len(y) for _, y in eval_loader(test, 100)) == 256


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_is_prepared_padded_to_32_and_three_channels(tmp_path):
    train, test = load_datasets("fashion-mnist", tmp_path, download=False)
    assert len(train) == 60000 and len(test) == 10000
    x, _ = test[0]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[2])
    background = x[0, 0, 0].item()  # the zero padding, normalised
    assert background == pytest.approx(-0.2860 / 0.3530, abs=1e-4)
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_augmentation_crops_and_flips_only_when_asked():
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    plain = TensorImages(images, torch.zeros(1), (0.5,) * 3, (0.25,) * 3)[0][0]
    flips = TensorImages(images, torch.zeros(1), (0.5,) * 3, (0.25,) * 3, flip=True)
    seen = {0 if torch.equal(x, plain) else 1 if torch.equal(x, plain.flip(-1)) else 2
            for x, _ in (flips[0] for _ in range(40))}
    assert seen == {0, 1}  # flipped or not, never moved
    crops = TensorImages(images, torch.zeros(1), (0.5,) * 3, (0.25,) * 3, crop_pad=4, flip=True)
    outs = [crops[0][0] for _ in range(20)]
    assert all(x.shape == (3, 32, 32) for x in outs) and any(not torch.equal(x, plain) for x in outs)
