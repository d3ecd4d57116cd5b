"""Small image folders of generated PNGs (torchvision's ImageFolder layout) for the tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ((220, 40, 40), (40, 200, 60), (50, 60, 230), (230, 210, 40), (200, 60, 200))


def make_image_folder(root: Path, classes: int = 3, per_class: int = 10, splits=("train", "val"),
                      val_per_class: int = 3, size=(40, 48), seed: int = 0) -> Path:
    """root/<split>/class<i>/<n>.png (or root/class<i>/<n>.png when splits is empty): each class a colour plus
    noise, so a tiny network tells them apart in a few steps. Images are size (H, W), not square on purpose."""
    rng = np.random.default_rng(seed)
    folders = [(root / split, per_class if split == "train" else val_per_class) for split in splits] or \
        [(root, per_class)]
    for folder, count in folders:
        for c in range(classes):
            target = folder / f"class{c}"
            target.mkdir(parents=True, exist_ok=True)
            colour = np.array(COLOURS[c % len(COLOURS)], dtype=np.float64)
            for n in range(count):
                noise = rng.normal(0, 30, (*size, 3))
                pixels = np.clip(colour * (0.6 + 0.4 * c / max(classes - 1, 1)) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(target / f"{n:03d}.png")
    return root
