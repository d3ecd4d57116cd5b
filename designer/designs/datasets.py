"""Data sets a design can target: what a network needs to know about them.

Every data set is fed to the networks as 3 x 32 x 32 images (Fashion-MNIST
is padded to 32 x 32 and repeated to 3 channels by its pipeline), so one
CIFAR network serves all; only the number of classes differs. Loading them
is designer.runs.data's job.
"""
from __future__ import annotations

from dataclasses import dataclass

from designer.errors import DesignError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: int = 32
    in_channels: int = 3
    train_size: int = 50_000  # training images: the largest batch a run can ask for


DATASETS = {
    "cifar10": DatasetInfo("cifar10", 10),
    "cifar100": DatasetInfo("cifar100", 100),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, train_size=60_000),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DesignError(f"unknown data set {name!r} (choose one of {', '.join(DATASETS)})", "dataset")
    return DATASETS[name]
