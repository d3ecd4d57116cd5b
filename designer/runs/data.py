"""Loading the data sets of designer.designs.datasets for training.

Loaders: Fashion-MNIST prepared from Debian's package (or
downloaded by torchvision where the network allows), CIFAR-10/100 through
torchvision from a given root, and a small synthetic set that only tests
ask for by name. A missing data set is a DesignError saying how to get it.
"""
from __future__ import annotations

import contextlib
import copy
import gzip
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from designer.designs.datasets import DATASETS, dataset_info
from designer.errors import DesignError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def prepare_fashion_mnist(root: Path, source: Path = DEBIAN_FASHION_MNIST) -> Path:
    """Unpack Debian's Fashion-MNIST into root/FashionMNIST/raw/ (torchvision's layout), once."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / name).exists() for name in FASHION_MNIST_FILES):
        return raw
    missing = [name for name in FASHION_MNIST_FILES if not (source / f"{name}.gz").exists()]
    if missing:
        raise DesignError(f"Fashion-MNIST is not at {source} (missing {', '.join(missing)}.gz): install Debian's "
                          f"package with `apt-get install dataset-fashion-mnist`, or let torchvision download it "
                          f"where the network allows", "data")
    raw.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        tmp = raw / f"{name}.tmp"
        with gzip.open(source / f"{name}.gz") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(raw / name)
    return raw


# ---------------------------------------------------------------------------
# Loaders. Images live in memory as uint8 tensors (N, C, 32, 32) and are
# augmented per sample with tensor ops: no PIL, cheap on 2 cores. The
# training sampler hands each sample its own augmentation seed, a function of
# (seed, epoch, index), so the data path draws nothing from torch's global
# generator and a resumed run (any worker count) sees the very same images.

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the ASK normalisation
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
SYNTHETIC = "synthetic"  # tests only: chosen explicitly, never a fallback
SYNTHETIC_SIZES = (512, 256)  # train, test


class TensorImages(Dataset):
    """uint8 images (N, C, 32, 32) + labels -> normalised 3 x 32 x 32 float tensors.

    crop_pad > 0: a random 32 x 32 crop of the image padded by crop_pad;
    flip: a horizontal flip with probability 1/2. The key is an index, or
    (index, seed): the augmentation draws from a generator with that seed
    (the training sampler's way), else from torch's global generator.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, crop_pad: int = 0,
                 flip: bool = False):
        self.images, self.labels, self.crop_pad, self.flip = images, labels.long(), crop_pad, flip
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        img = (self.images[i].float() / 255 - self.mean) / self.std
        g = torch.Generator().manual_seed(seed) if seed is not None and (self.crop_pad or self.flip) else None
        if self.crop_pad:
            p = self.crop_pad
            size = img.shape[-1]
            padded = F.pad(img, (p, p, p, p))
            top, left = torch.randint(0, 2 * p + 1, (2,), generator=g).tolist()
            img = padded[:, top:top + size, left:left + size]
        if self.flip and torch.rand((), generator=g) < 0.5:
            img = img.flip(-1)
        return img.expand(3, -1, -1).contiguous(), self.labels[i]

    def head(self, n: int | None) -> "TensorImages":
        """The first n images (all when n is None): quick trials on a slice of a data set."""
        if n is None or n >= len(self):
            return self
        part = copy.copy(self)
        part.images, part.labels = self.images[:n], self.labels[:n]
        return part


def load_datasets(name: str, root: Path, num_classes: int = 10, download: bool = True,
                  augment: bool = True) -> tuple[TensorImages, TensorImages]:
    """(train, test) of a data set; DesignError saying how to get it when it is missing."""
    if name == SYNTHETIC:
        return synthetic_datasets(num_classes)
    if name == "fashion-mnist":
        return _fashion_mnist(root, download, augment)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root, download, augment)
    raise DesignError(f"unknown data set {name!r} (choose one of {', '.join([*DATASETS, SYNTHETIC])})", "dataset")


def _fashion_mnist(root: Path, download: bool, augment: bool):
    from torchvision import datasets  # imported here: designs import this module and need no torchvision
    try:
        prepare_fashion_mnist(root)
    except DesignError:
        if not download:
            raise
        _download(lambda: (datasets.FashionMNIST(root, train=True, download=True),
                           datasets.FashionMNIST(root, train=False, download=True)), "fashion-mnist", root,
                  "install Debian's package with `apt-get install dataset-fashion-mnist`")
    out = []
    for train in (True, False):
        ds = datasets.FashionMNIST(root, train=train, download=False)
        images = F.pad(ds.data, (2, 2, 2, 2)).unsqueeze(1)  # 28 -> 32, one channel (expanded to 3 per sample)
        # Flips only: short runs underfit, and random crops cost ~4 points after 2 epochs (measured).
        out.append(TensorImages(images, ds.targets, FASHION_MEAN, FASHION_STD, flip=train and augment))
    return tuple(out)


def _cifar(name: str, root: Path, download: bool, augment: bool):
    from torchvision import datasets
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        cls(root, train=True, download=False)
    except RuntimeError:
        if not download:
            raise DesignError(f"{name} is not under {root}: put the torchvision copy there "
                              f"({cls.base_folder}/ from {cls.url}) or allow the download", "data") from None
        _download(lambda: (cls(root, train=True, download=True), cls(root, train=False, download=True)), name, root,
                  f"unpack {cls.url} into {root} (it holds {cls.base_folder}/)")
    out = []
    for train in (True, False):
        ds = cls(root, train=train, download=False)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        augmented = train and augment  # the ASK recipe: Pad(4) + RandomCrop(32) + horizontal flip
        out.append(TensorImages(images, torch.tensor(ds.targets), CIFAR_MEAN, CIFAR_STD, 4 if augmented else 0,
                                flip=augmented))
    return tuple(out)


def _download(fetch, name: str, root: Path, how: str) -> None:
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torchvision prints progress; stdout is for --json
            fetch()
    except (OSError, RuntimeError) as err:  # urllib errors are OSErrors; torchvision raises RuntimeError
        raise DesignError(f"{name} is not under {root} and could not be downloaded ({err}): {how}", "data") from None


def synthetic_datasets(num_classes: int = 10, seed: int = 1234) -> tuple[TensorImages, TensorImages]:
    """A small data set a tiny network learns in a few steps: a fixed black-and-white 4x4 pattern
    per class, upsampled to 32x32, plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate((torch.rand(num_classes, 3, 4, 4, generator=g) > 0.5).float(), size=32, mode="nearest")
    out = []
    for n in SYNTHETIC_SIZES:
        labels = torch.randint(0, num_classes, (n,), generator=g)
        noisy = protos[labels] * 0.7 + torch.rand(n, 3, 32, 32, generator=g) * 0.3
        out.append(TensorImages((noisy * 255).to(torch.uint8), labels, (0.5,) * 3, (0.25,) * 3))
    return tuple(out)


class EpochSampler(Sampler[tuple[int, int]]):
    """A seeded permutation per epoch, optionally from a position: exact mid-epoch resume.

    Yields (index, augmentation seed); the seed depends on (seed, epoch, index) only.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch, self.start = size, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        return iter([(i, (base + i) % 2 ** 63) for i in torch.randperm(self.size, generator=g)[self.start:].tolist()])

    def __len__(self) -> int:
        return self.size - self.start


def train_loader(ds: Dataset, batch_size: int, seed: int, workers: int = 0) -> tuple[DataLoader, EpochSampler]:
    """Shuffled batches (the last partial one dropped, so BatchNorm never sees a batch of 1).

    The loader has its own generator: iter() then draws worker seeds from it,
    not from torch's global generator, which the model's randomness uses and
    checkpoints restore.
    """
    sampler = EpochSampler(len(ds), seed)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        drop_last=len(ds) >= batch_size, persistent_workers=False,
                        generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def eval_loader(ds: Dataset, batch_size: int, workers: int = 0) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)


def missing_data(name: str, root: Path) -> str | None:
    """Why data set `name` cannot be loaded from `root` without a download (and how to get it), or None.
    The Train page asks before it launches, so a missing set is a message, not a failed run."""
    if name == SYNTHETIC:
        return None
    if name == "fashion-mnist":
        raw = root / "FashionMNIST" / "raw"
        if all((raw / f).exists() for f in FASHION_MNIST_FILES) or \
                all((DEBIAN_FASHION_MNIST / f"{f}.gz").exists() for f in FASHION_MNIST_FILES):
            return None
        return (f"Fashion-MNIST is not in {raw} nor at {DEBIAN_FASHION_MNIST}: install Debian's package "
                f"(`apt-get install dataset-fashion-mnist`, `make run` does it as root)")
    if name in ("cifar10", "cifar100"):
        from torchvision import datasets
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        if (root / cls.base_folder).is_dir():
            return None
        return (f"{name} is not in {root}: unpack torchvision's copy there ({cls.base_folder}/ from {cls.url}), "
                f"or allow the download where the network allows")
    dataset_info(name)
    return None
