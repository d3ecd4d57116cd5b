"""Data sets: synthetic for tests, Fashion-MNIST from the workspace, CIFAR's clear message when missing, image
folders; each at the network's input shape."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from designer.designs.datasets import IMAGE_FOLDER
from designer.errors import DesignError
from designer.runs import data
from designer.runs.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    DEBIAN_FASHION_MNIST,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpochSampler,
    TensorImages,
    eval_loader,
    load_datasets,
    missing_data,
    scan_image_folder,
    synthetic_datasets,
    train_loader,
)
from tests.image_folders import make_image_folder


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


# ---------------------------------------------------------------------------
# Every data set at the network's input shape.

def test_synthetic_at_any_input_shape_and_unchanged_at_3x32x32():
    plain, _ = synthetic_datasets(10)
    same, _ = synthetic_datasets(10, input_shape=(3, 32, 32))
    assert torch.equal(plain[(3, 9)][0], same[(3, 9)][0])
    for shape in [(1, 16, 16), (3, 64, 48), (5, 8, 8)]:
        train, test = synthetic_datasets(7, input_shape=shape)
        assert train[0][0].shape == shape and test[(1, 3)][0].shape == shape


def test_a_larger_input_resizes_after_the_augmentation_at_the_image_s_own_size():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    small = TensorImages(images, torch.zeros(2), (0.5,) * 3, (0.25,) * 3, crop_pad=4, flip=True)
    large = TensorImages(images, torch.zeros(2), (0.5,) * 3, (0.25,) * 3, crop_pad=4, flip=True, size=(64, 80))
    for seed in range(5):
        x = small[(1, seed)][0]
        expected = F.interpolate(x[None], size=(64, 80), mode="bilinear", align_corners=False)[0]
        assert torch.equal(large[(1, seed)][0], expected)
    shrunk = TensorImages(images, torch.zeros(2), (0.5,) * 3, (0.25,) * 3, size=(16, 16))[0][0]
    plain = TensorImages(images, torch.zeros(2), (0.5,) * 3, (0.25,) * 3)[0][0]
    antialiased = F.interpolate(plain[None], size=(16, 16), mode="bilinear", antialias=True)[0]
    assert torch.equal(shrunk, antialiased)


def test_one_channel_images_are_repeated_to_the_network_s_channels():
    images = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    for channels in (1, 3, 4):
        x = TensorImages(images, torch.zeros(1), (0.3,), (0.3,), channels=channels)[0][0]
        assert x.shape == (channels, 28, 28) and all(torch.equal(x[c], x[0]) for c in range(channels))


class FakeCIFAR10:
    """torchvision's CIFAR10 as _cifar reads it (data N x 32 x 32 x 3 uint8, targets), without the files."""
    base_folder, url = "cifar-10-batches-py", "https://example.invalid/cifar-10-python.tar.gz"

    def __init__(self, root, train=True, download=False):
        g = torch.Generator().manual_seed(0 if train else 1)
        n = 8 if train else 4
        self.data = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g).numpy()
        self.targets = list(range(n))


@pytest.fixture
def fake_cifar(monkeypatch):
    from torchvision import datasets
    monkeypatch.setattr(datasets, "CIFAR10", FakeCIFAR10)


def test_cifar_at_3x32x32_keeps_the_ask_recipe(fake_cifar, tmp_path):
    train, test = load_datasets("cifar10", tmp_path, download=False)
    assert (train.crop_pad, train.flip, train.size, test.crop_pad, test.flip) == (4, True, None, 0, False)
    raw = torch.from_numpy(FakeCIFAR10(tmp_path, train=False).data[2]).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)
    assert torch.equal(test[2][0], ((raw - mean) / std).contiguous())
    assert train[(2, 9)][0].shape == (3, 32, 32)


def test_cifar_at_a_larger_input_and_in_grey(fake_cifar, tmp_path):
    train, test = load_datasets("cifar10", tmp_path, download=False, input_shape=(3, 96, 96))
    assert train[(0, 5)][0].shape == (3, 96, 96) and test[0][0].shape == (3, 96, 96) and train.crop_pad == 4
    grey, _ = load_datasets("cifar10", tmp_path, download=False, input_shape=(1, 32, 32))
    x = grey[0][0]
    assert x.shape == (1, 32, 32)
    pil = torch.from_numpy(np.array(Image.fromarray(FakeCIFAR10(tmp_path).data[0]).convert("L"))).float()
    assert (grey.images[0, 0].float() - pil).abs().max() <= 1  # PIL's "L", up to its integer rounding
    with pytest.raises(DesignError, match="cifar10 has colour images: a network on it takes 3 channels .* takes 4"):
        load_datasets("cifar10", tmp_path, download=False, input_shape=(4, 32, 32))


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_native_resized_or_padded_by_the_input_shape(tmp_path):
    padded, _ = load_datasets("fashion-mnist", tmp_path, download=False)
    _, native = load_datasets("fashion-mnist", tmp_path, download=False, input_shape=(1, 28, 28))
    _, grey32 = load_datasets("fashion-mnist", tmp_path, download=False, input_shape=(1, 32, 32))
    _, large = load_datasets("fashion-mnist", tmp_path, download=False, input_shape=(3, 64, 64))
    x = native[0][0]
    assert x.shape == (1, 28, 28) and torch.equal(grey32[0][0][0, 2:30, 2:30], x[0])
    assert padded[0][0].shape == (3, 32, 32)
    assert large[0][0].shape == (3, 64, 64) and torch.equal(large[0][0][0], large[0][0][2])
    expected = F.interpolate(x[None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    assert torch.equal(large[0][0][0], expected)  # resized from 28 x 28, not from the padded 32 x 32


# ---------------------------------------------------------------------------
# Image folders.

def test_an_image_folder_with_train_and_val_keeps_them_and_numbers_classes_by_sorted_name(tmp_path):
    make_image_folder(tmp_path, classes=3, per_class=6, val_per_class=2)
    layout = scan_image_folder(tmp_path)
    assert layout.classes == ("class0", "class1", "class2") and layout.split == "train/ and val/"
    assert len(layout.train) == 18 and len(layout.test) == 6
    assert all(f"/train/class{c}/" in path for path, c in layout.train)
    assert all(f"/val/class{c}/" in path for path, c in layout.test)
    assert [c for _, c in layout.train[:6]] != sorted(c for _, c in layout.train[:6])  # mixed: --data-limit N


def test_test_or_valid_count_as_the_held_out_split_and_a_val_class_train_lacks_is_refused(tmp_path):
    make_image_folder(tmp_path / "a", classes=2, per_class=4, splits=("train", "test"))
    assert scan_image_folder(tmp_path / "a").split == "train/ and test/"
    make_image_folder(tmp_path / "b", classes=2, per_class=4)
    make_image_folder(tmp_path / "b", classes=3, per_class=1, splits=("val",), val_per_class=1)
    with pytest.raises(DesignError, match="val/ has the class 'class2', which train/ does not have"):
        scan_image_folder(tmp_path / "b")


def test_one_folder_is_split_90_10_per_class_the_same_way_every_time(tmp_path):
    make_image_folder(tmp_path, classes=2, per_class=20, splits=())
    layout = scan_image_folder(tmp_path)
    assert layout.split == "split 90/10" and len(layout.train) == 36 and len(layout.test) == 4
    assert sorted(c for _, c in layout.test) == [0, 0, 1, 1]
    assert not {p for p, _ in layout.train} & {p for p, _ in layout.test}
    again = data._scan.__wrapped__(layout.root, ())  # uncached: the split is a function of the file names
    assert again == layout
    make_image_folder(tmp_path / "only", classes=2, per_class=10, splits=("train",))
    assert scan_image_folder(tmp_path / "only").split == "train/ split 90/10"


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "no such folder"),
    (lambda root: root.mkdir(), "no class folders in"),
    (lambda root: (root / "cats").mkdir(parents=True), "the class folder 'cats' holds no images"),
])
def test_a_folder_that_is_not_an_image_folder_says_what_is_wrong(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DesignError, match=message):
        scan_image_folder(root)
    assert message in missing_data(IMAGE_FOLDER, tmp_path, root)


def test_missing_data_of_an_image_folder(tmp_path):
    assert "give --data-dir DIR" in missing_data(IMAGE_FOLDER, tmp_path)  # none chosen yet
    make_image_folder(tmp_path / "ok", classes=2, per_class=4)
    assert missing_data(IMAGE_FOLDER, tmp_path, tmp_path / "ok") is None
    make_image_folder(tmp_path / "single", classes=2, per_class=1, splits=())
    assert "no images to evaluate on" in missing_data(IMAGE_FOLDER, tmp_path, tmp_path / "single")


def test_an_image_folder_must_have_the_design_s_classes(tmp_path):
    make_image_folder(tmp_path, classes=3, per_class=2)
    with pytest.raises(DesignError, match=rf"the image folder {tmp_path} has 3 classes \(class0, class1, class2\), "
                                          r"the design has 10") as err:
        load_datasets(IMAGE_FOLDER, None, 10, data_dir=tmp_path)
    assert err.value.where == "--num-classes"


def test_image_folder_transforms_at_the_network_s_input_shape(tmp_path):
    from torchvision import transforms
    make_image_folder(tmp_path, classes=2, per_class=3, val_per_class=1, size=(40, 48))
    train, test = load_datasets(IMAGE_FOLDER, None, 2, input_shape=(3, 24, 24), data_dir=tmp_path)
    x, y = train[(0, 11)]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and int(y) == train.samples[0][1]
    path = test.samples[0][0]
    reference = transforms.Compose([transforms.Resize(round(24 / 0.875)), transforms.CenterCrop(24),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(test[0][0], reference(Image.open(path).convert("RGB")), atol=1e-6, rtol=0)
    grey, _ = load_datasets(IMAGE_FOLDER, None, 2, input_shape=(1, 16, 20), data_dir=tmp_path)
    assert grey[(1, 3)][0].shape == (1, 16, 20)
    with pytest.raises(DesignError, match="takes 3 channels .* takes 2"):
        load_datasets(IMAGE_FOLDER, None, 2, input_shape=(2, 16, 16), data_dir=tmp_path)


def test_image_folder_augmentation_is_torchvision_s_crop_and_flip_drawn_from_the_sample_seed(tmp_path):
    from torchvision import transforms
    make_image_folder(tmp_path, classes=2, per_class=2)
    train, _ = load_datasets(IMAGE_FOLDER, None, 2, input_shape=(3, 32, 32), data_dir=tmp_path)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = train[(0, 77)][0]
    assert torch.equal(torch.get_rng_state(), before)  # nothing drawn from the global generator
    torch.manual_seed(2)
    assert torch.equal(train[(0, 77)][0], first)
    assert any(not torch.equal(train[(0, seed)][0], first) for seed in range(5))
    # The same draws in torchvision's own transforms (global generator seeded alike) give the same image.
    img = Image.open(train.samples[0][0]).convert("RGB")
    torch.manual_seed(77)
    reference = transforms.Compose([transforms.RandomResizedCrop(32), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(img)
    torch.testing.assert_close(first, reference, atol=1e-6, rtol=0)


def test_head_of_an_image_folder_takes_every_class(tmp_path):
    make_image_folder(tmp_path, classes=3, per_class=8)
    train, _ = load_datasets(IMAGE_FOLDER, None, 3, data_dir=tmp_path)
    assert len(train.head(9)) == 9 and set(train.head(9).labels.tolist()) == {0, 1, 2}
