"""Loading the data sets of designer.designs.datasets for training, at the network's input shape.

Loaders: Fashion-MNIST prepared from Debian's package (or
downloaded by torchvision where the network allows), CIFAR-10/100 through
torchvision from a given root, a folder of the user's images (torchvision's
ImageFolder layout), and a small synthetic set that only tests ask for by
name. A missing data set is a DesignError saying how to get it.

Every set is fed at the design's input shape (C, H, W):
- CIFAR and Fashion-MNIST at 32 x 32 exactly as the paper families always
  had them (CIFAR: Pad(4) + RandomCrop(32) + flip; Fashion-MNIST padded
  28 -> 32, flips only); at another size each image is augmented at its own
  size first, then resized (bilinear; antialiased when it shrinks).
  Fashion-MNIST's one channel is repeated to C (C = 1 keeps it); CIFAR's
  three become one grey channel for C = 1 (PIL's "L" weights).
- An image folder: RandomResizedCrop(H, W) + horizontal flip for training,
  Resize(max(H, W) / 0.875) + CenterCrop(H, W) for evaluation, ImageNet's
  mean and std (torchvision's recipe), decoded per sample with PIL. Layout:
  DIR/train/<class>/ and DIR/val/<class>/ (or valid/, validation/, test/);
  else DIR/<class>/ (or DIR/train/<class>/ alone) split 90/10 per class with
  a fixed seed, the same split for every run. Classes are the train folder's
  sub-folders in sorted order (ImageFolder's numbering).
- The synthetic set at any shape.
"""
from __future__ import annotations

import contextlib
import copy
import gzip
import math
import os
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from designer.designs.datasets import DATASETS, IMAGE_FOLDER, dataset_info
from designer.errors import DesignError, shown

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
# Loaders. CIFAR, Fashion-MNIST and the synthetic set live in memory as uint8
# tensors (N, C, h, w) and are augmented per sample with tensor ops: no PIL,
# cheap on 2 cores. The training sampler hands each sample its own
# augmentation seed, a function of (seed, epoch, index), so the data path
# draws nothing from torch's global generator and a resumed run (any worker
# count) sees the very same images. An image folder decodes each file with
# PIL when asked and draws its crop and flip from the same per-sample seed.

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the ASK normalisation
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's weights' normalisation
GREY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L")
PAPER_SHAPE = (3, 32, 32)
SYNTHETIC = "synthetic"  # tests only: chosen explicitly, never a fallback
SYNTHETIC_SIZES = (512, 256)  # train, test


def _grey(values) -> tuple[float]:
    """One channel's mean (or std) from three: the luma weights' sum (exact for the mean)."""
    return (sum(w * v for w, v in zip(GREY, values)),)


class TensorImages(Dataset):
    """uint8 images (N, c, h, w) + labels -> normalised (C, H, W) float tensors.

    crop_pad > 0: a random h x w crop of the image padded by crop_pad;
    flip: a horizontal flip with probability 1/2; then, when `size` (H, W)
    differs from (h, w), a bilinear resize (antialiased when it shrinks);
    a one-channel image is repeated to `channels`. The key is an index, or
    (index, seed): the augmentation draws from a generator with that seed
    (the training sampler's way), else from torch's global generator.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, crop_pad: int = 0,
                 flip: bool = False, channels: int = 3, size: tuple[int, int] | None = None):
        self.images, self.labels, self.crop_pad, self.flip = images, labels.long(), crop_pad, flip
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.channels = channels
        self.size = None if size is None or tuple(size) == tuple(images.shape[-2:]) else tuple(size)

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
        if self.size is not None:
            shrinks = self.size[0] < img.shape[-2] or self.size[1] < img.shape[-1]
            img = F.interpolate(img[None], size=self.size, mode="bilinear", align_corners=False,
                                antialias=shrinks)[0]
        return img.expand(self.channels, -1, -1).contiguous(), self.labels[i]

    def head(self, n: int | None) -> "TensorImages":
        """The first n images (all when n is None): quick trials on a slice of a data set."""
        if n is None or n >= len(self):
            return self
        part = copy.copy(self)
        part.images, part.labels = self.images[:n], self.labels[:n]
        return part


def load_datasets(name: str, root: Path, num_classes: int = 10, download: bool = True,
                  augment: bool = True, input_shape: tuple[int, int, int] = PAPER_SHAPE,
                  data_dir: str | Path | None = None) -> tuple[Dataset, Dataset]:
    """(train, test) of a data set at the network's input shape (C, H, W); DesignError saying how to get it
    when it is missing. An image folder is `data_dir`, and must have `num_classes` classes."""
    channels, height, width = _shape(input_shape)
    if name == SYNTHETIC:
        return synthetic_datasets(num_classes, input_shape=(channels, height, width))
    if name == "fashion-mnist":
        return _fashion_mnist(root, download, augment, channels, (height, width))
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root, download, augment, channels, (height, width))
    if name == IMAGE_FOLDER:
        return image_folder_datasets(data_dir, num_classes, (channels, height, width), augment)
    raise DesignError(f"unknown data set {name!r} (choose one of {', '.join([*DATASETS, SYNTHETIC])})", "dataset")


def _shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape or PAPER_SHAPE)
    if len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
        raise DesignError(f"an input shape is (C, H, W), got {shape}", "data")
    return shape


def _color_channels(name: str, channels: int) -> None:
    """Colour images feed 3 channels, or 1 as grey; another count has no natural meaning."""
    if channels not in (1, 3):
        raise DesignError(f"{name} has colour images: a network on it takes 3 channels (or 1, in grey), "
                          f"this one takes {channels}", "--input-size")


def _fashion_mnist(root: Path, download: bool, augment: bool, channels: int = 3,
                   size: tuple[int, int] = (32, 32)):
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
        # 32 x 32 (the paper families): padded 28 -> 32 as always; any other size: resized from 28 x 28.
        images = (F.pad(ds.data, (2, 2, 2, 2)) if tuple(size) == (32, 32) else ds.data).unsqueeze(1)
        # Flips only: short runs underfit, and random crops cost ~4 points after 2 epochs (measured).
        out.append(TensorImages(images, ds.targets, FASHION_MEAN, FASHION_STD, flip=train and augment,
                                channels=channels, size=size))
    return tuple(out)


def _cifar(name: str, root: Path, download: bool, augment: bool, channels: int = 3,
           size: tuple[int, int] = (32, 32)):
    from torchvision import datasets
    _color_channels(name, channels)
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
        mean, std = CIFAR_MEAN, CIFAR_STD
        if channels == 1:
            images, mean, std = to_grey(images), _grey(CIFAR_MEAN), _grey(CIFAR_STD)
        augmented = train and augment  # the ASK recipe: Pad(4) + RandomCrop(32) + horizontal flip
        out.append(TensorImages(images, torch.tensor(ds.targets), mean, std, 4 if augmented else 0,
                                flip=augmented, channels=channels, size=size))
    return tuple(out)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 1, H, W) by PIL's "L" weights, rounded."""
    weights = torch.tensor(GREY).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _download(fetch, name: str, root: Path, how: str) -> None:
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torchvision prints progress; stdout is for --json
            fetch()
    except (OSError, RuntimeError) as err:  # urllib errors are OSErrors; torchvision raises RuntimeError
        raise DesignError(f"{name} is not under {root} and could not be downloaded ({err}): {how}", "data") from None


def synthetic_datasets(num_classes: int = 10, seed: int = 1234,
                       input_shape: tuple[int, int, int] = PAPER_SHAPE) -> tuple[TensorImages, TensorImages]:
    """A small data set a tiny network learns in a few steps: a fixed black-and-white 4x4 pattern
    per class, upsampled to 32x32, plus noise; at another input shape, C channels resized to H x W."""
    channels, height, width = _shape(input_shape)
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate((torch.rand(num_classes, channels, 4, 4, generator=g) > 0.5).float(), size=32,
                           mode="nearest")
    out = []
    for n in SYNTHETIC_SIZES:
        labels = torch.randint(0, num_classes, (n,), generator=g)
        noisy = protos[labels] * 0.7 + torch.rand(n, channels, 32, 32, generator=g) * 0.3
        out.append(TensorImages((noisy * 255).to(torch.uint8), labels, (0.5,) * channels, (0.25,) * channels,
                                channels=channels, size=(height, width)))
    return tuple(out)


# ---------------------------------------------------------------------------
# Image folders.

VAL_FOLDERS = ("val", "valid", "validation", "test")  # the held-out split beside train/, first found
VAL_FRACTION = 0.1  # a folder without one: this much of each class is held out
SPLIT_SEED = 0  # the split and the listing order: fixed, so every run of a folder sees the same split
EVAL_RESIZE = 0.875  # evaluation: resize to size / 0.875, centre crop to size (256 -> 224, torchvision's recipe)
LAYOUT_HELP = ("DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg, or DIR/<class>/*.jpg (split 90/10); "
               "torchvision's ImageFolder layout")


@dataclass(frozen=True)
class ImageFolderLayout:
    """What a folder holds: its classes (sorted names; index = position), (path, class) per split, how split."""

    root: str
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    split: str  # 'train/ and val/' | 'train/ split 90/10' | 'split 90/10'


def scan_image_folder(data_dir: str | Path | None) -> ImageFolderLayout:
    """The layout of an image folder; DesignError naming the folder and what is wrong (cached while the
    folder and its class folders are unchanged)."""
    if data_dir is None or str(data_dir) == "":
        raise DesignError(f"an image-folder design trains on a folder of images: give --data-dir DIR "
                          f"({LAYOUT_HELP})", "--data-dir")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DesignError(f"no such folder ({LAYOUT_HELP})" if not root.exists() else
                          f"not a folder ({LAYOUT_HELP})", str(data_dir))
    root = root.resolve()
    return _scan(str(root), _signature(root))


def _signature(root: Path) -> tuple:
    """Modification times of the folder, its sub-folders and theirs: a changed listing rescans."""
    children = _subdirs(root)
    sig = []
    for level in (root, *children, *[g for d in children for g in _subdirs(d)]):
        with contextlib.suppress(OSError):
            sig.append((str(level), level.stat().st_mtime_ns))
    return tuple(sig)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


@lru_cache(maxsize=16)
def _scan(root: str, signature: tuple) -> ImageFolderLayout:
    base = Path(root)
    train_dir = base / "train"
    val_dir = next((base / name for name in VAL_FOLDERS if (base / name).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        classes = _classes(train_dir)
        train = _files(train_dir, classes)
        val_classes = _classes(val_dir)
        foreign = [c for c in val_classes if c not in classes]
        if foreign:
            raise DesignError(f"{val_dir.name}/ has the class {shown(foreign[0])}, which train/ does not have "
                              f"(the classes are train/'s sub-folders)", root)
        test = _files(val_dir, classes, val_classes)
        split = f"train/ and {val_dir.name}/"
    else:
        source = train_dir if train_dir.is_dir() else base
        classes = _classes(source)
        train, test = _split(_files(source, classes))
        split = "train/ split 90/10" if source is train_dir else "split 90/10"
    if not train:
        raise DesignError(f"no training images after the split ({LAYOUT_HELP})", root)
    return ImageFolderLayout(root, classes, _mixed(train), _mixed(test), split)


def _classes(folder: Path) -> tuple[str, ...]:
    classes = tuple(d.name for d in _subdirs(folder))
    if not classes:
        raise DesignError(f"no class folders in {folder} ({LAYOUT_HELP})", str(folder))
    return classes


def _files(folder: Path, classes: tuple[str, ...], present: tuple[str, ...] | None = None) -> list:
    """(path, class index) of every image under folder/<class>/ (sub-folders included), in sorted order."""
    from torchvision.datasets.folder import IMG_EXTENSIONS
    out = []
    for name in (classes if present is None else present):
        index, found = classes.index(name), []
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in filenames
                      if f.lower().endswith(IMG_EXTENSIONS) and not f.startswith(".")]
        if not found:
            raise DesignError(f"the class folder {shown(name)} holds no images "
                              f"({', '.join(IMG_EXTENSIONS)})", str(folder / name))
        out += [(path, index) for path in sorted(found)]
    return out


def _split(samples: list) -> tuple[list, list]:
    """Per class, a fixed-seed shuffle; the first 10% (at least one of two or more images) held out."""
    train, test = [], []
    by_class: dict[int, list] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    for index in sorted(by_class):
        items = by_class[index]
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(SPLIT_SEED + index)).tolist()
        held = max(1, round(VAL_FRACTION * len(items))) if len(items) >= 2 else 0
        test += [items[i] for i in sorted(order[:held])]
        train += [items[i] for i in sorted(order[held:])]
    return train, test


def _mixed(samples: list) -> tuple:
    """The samples in a fixed shuffled order: --data-limit N then takes N of every class, not the first class."""
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return tuple(samples[i] for i in order)


def check_image_folder(data_dir, num_classes: int) -> ImageFolderLayout:
    """The folder's layout, once its classes are known to be the design's; one DesignError naming both numbers
    and the folder when they are not."""
    layout = scan_image_folder(data_dir)
    if num_classes and len(layout.classes) != num_classes:
        names = ", ".join(layout.classes[:5]) + (", ..." if len(layout.classes) > 5 else "")
        raise DesignError(f"the image folder {layout.root} has {len(layout.classes)} classes ({names}), the design "
                          f"has {num_classes}: leave --num-classes out to take the folder's, or choose a design "
                          f"with {len(layout.classes)} classes", "--num-classes")
    return layout


def image_folder_datasets(data_dir, num_classes: int, input_shape: tuple[int, int, int] = (3, 224, 224),
                          augment: bool = True) -> tuple["FolderImages", "FolderImages"]:
    """(train, test) of an image folder at the network's input shape."""
    channels, height, width = _shape(input_shape)
    _color_channels("an image folder", channels)
    layout = check_image_folder(data_dir, num_classes)
    if not layout.test:
        raise DesignError(f"no images to evaluate on: each class needs 2 images or more for the 90/10 split, or "
                          f"give a val/ folder ({LAYOUT_HELP})", layout.root)
    return (FolderImages(layout.train, channels, (height, width), train=augment),
            FolderImages(layout.test, channels, (height, width), train=False))


class FolderImages(Dataset):
    """Image files -> normalised (C, H, W) float tensors, torchvision's ImageNet recipe.

    train: RandomResizedCrop((H, W), scale (0.08, 1), ratio (3/4, 4/3)) + a horizontal flip with probability
    1/2, drawn from a generator seeded by the key's seed (else from torch's global generator); eval: resize
    the shorter side to max(H, W) / 0.875, centre crop (H, W). Bilinear, antialiased.
    """

    def __init__(self, samples, channels: int, size: tuple[int, int], train: bool):
        self.samples, self.channels, self.size, self.train = tuple(samples), channels, tuple(size), train
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (_grey(IMAGENET_MEAN), _grey(IMAGENET_STD))
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __getitem__(self, key):
        from PIL import Image
        from torchvision.transforms import functional as TF
        i, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[i]
        try:
            with Image.open(path) as file:
                img = file.convert("RGB" if self.channels == 3 else "L")
        except OSError as err:
            raise DesignError(f"cannot read the image: {err}", path) from None
        if self.train:
            g = torch.Generator().manual_seed(seed) if seed is not None else None
            top, left, h, w = random_resized_crop(img.height, img.width, g)
            img = TF.resized_crop(img, top, left, h, w, list(self.size), antialias=True)
            if torch.rand((), generator=g) < 0.5:
                img = TF.hflip(img)
        else:
            img = TF.resize(img, round(max(self.size) / EVAL_RESIZE), antialias=True)
            img = TF.center_crop(img, list(self.size))
        x = TF.pil_to_tensor(img).float() / 255
        return (x - self.mean) / self.std, torch.tensor(label)

    def head(self, n: int | None) -> "FolderImages":
        """n images (all when n is None) of the folder's fixed shuffled order: every class, not the first."""
        if n is None or n >= len(self):
            return self
        part = copy.copy(self)
        part.samples = self.samples[:n]
        return part


def random_resized_crop(height: int, width: int, g: torch.Generator | None,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's RandomResizedCrop.get_params chooses them, drawn from `g`:
    up to 10 tries of a random area and aspect ratio, else the centre crop of the closest ratio."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision: the same draws give the same crop
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=g).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g)).item()
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_size(name: str, data_dir=None, num_classes: int = 0) -> int:
    """Training images of a data set (an image folder's after its split): the largest batch a run can ask for."""
    if name == SYNTHETIC:
        return SYNTHETIC_SIZES[0]
    if name == IMAGE_FOLDER:
        return len(check_image_folder(data_dir, num_classes).train)
    return dataset_info(name).train_size


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


def missing_data(name: str, root: Path, data_dir: str | Path | None = None) -> str | None:
    """Why data set `name` cannot be loaded from `root` without a download (and how to get it), or None.
    The Train page asks before it launches, so a missing set is a message, not a failed run. An image
    folder is `data_dir` (None: not chosen yet, which is a message too)."""
    if name == SYNTHETIC:
        return None
    if name == IMAGE_FOLDER:
        try:
            layout = scan_image_folder(data_dir)
        except DesignError as err:
            return str(err)
        if not layout.test:
            return (f"{layout.root} leaves no images to evaluate on: each class needs 2 images or more, or "
                    f"give a val/ folder")
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
