"""Data sets a design can target: what a network needs to know about them.

Every data set is fed to the networks as 3 x 32 x 32 images (Fashion-MNIST
is padded to 32 x 32 and repeated to 3 channels by its pipeline), so one
CIFAR network serves all; only the number of classes differs.
"""
from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

from designer.errors import DesignError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: int = 32
    in_channels: int = 3


DATASETS = {
    "cifar10": DatasetInfo("cifar10", 10),
    "cifar100": DatasetInfo("cifar100", 100),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DesignError(f"unknown data set {name!r} (choose one of {', '.join(DATASETS)})", "dataset")
    return DATASETS[name]


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
