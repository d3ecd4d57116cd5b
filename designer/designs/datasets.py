"""Data sets a design can target: what a network needs to know about them.

A data set gives a design its number of classes; its images are resized to
the network's input shape when loaded (designer.runs.data): Fashion-MNIST's
28 x 28 grey images are padded to 32 x 32 for the CIFAR networks and resized
for larger ones, and repeated to the network's channels. `image-folder` is a
folder of the user's (torchvision's ImageFolder layout, root/class/image):
its classes are the folder's, so the design says how many.
"""
from __future__ import annotations

from dataclasses import dataclass

from designer.errors import DesignError

IMAGE_FOLDER = "image-folder"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int  # 0: set by the design (an image folder has as many classes as sub-folders)
    input_size: int = 32  # the images' own size (square)
    in_channels: int = 3
    train_size: int = 50_000  # training images: the largest batch a run can ask for (an image folder: unknown)


DATASETS = {
    "cifar10": DatasetInfo("cifar10", 10),
    "cifar100": DatasetInfo("cifar100", 100),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, input_size=28, in_channels=1, train_size=60_000),
    IMAGE_FOLDER: DatasetInfo(IMAGE_FOLDER, 0, input_size=0, train_size=0),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DesignError(f"unknown data set {name!r} (choose one of {', '.join(DATASETS)})", "dataset")
    return DATASETS[name]
