"""The papers' own figures, in one place, to show beside ours.

Each figure names the configuration it belongs to (network, data set, the
kernel on every 3x3 conv), the counting convention it was measured under
and its source. `figures_for(design)` returns the ones that describe a
design, so the app can print the paper's numbers next to the counted ones.
"""
from __future__ import annotations

from dataclasses import dataclass

from designer.designs.design import Design
from designer.networks.editing import uniform_preset


@dataclass(frozen=True)
class PaperFigure:
    arch: str
    depth: int
    dataset: str
    kernel: str               # 'dense' or an ASK preset on every 3x3 conv
    convention: str           # the counting rules the figure follows
    params_m: float           # millions
    flops_m: float            # millions, per image
    source: str
    latency_ms: float | None = None   # the paper's measurement (RTX 3090, batch 1)
    accuracy: float | None = None     # top-1 %, as reported
    padfree: bool = False


ASK_README = "ASK README (lgzz/ASKs), CIFAR-10"
ASK_EXACT = "ASK paper's compute_flops.py, exact"
PADFREE = "Padding-free downsampling paper (BSConv profiler), CIFAR-100"

# name: (params M, FLOPs M, latency ms, accuracy %) of the ASK README's summary tables.
_ASK_TABLES = {
    ("vgg", 16): {
        "dense": (15.0, 314, 2.244, 93.53), "ASK_7": (11.7, 245, 1.667, 94.07), "ASK_6": (10.1, 210, 1.667, 94.13),
        "ASK_5a": (8.45, 175, 1.664, 94.04), "ASK_5b": (8.45, 175, 1.660, 93.90),
        "ASK_4a": (6.82, 140, 1.653, 93.94), "ASK_4b": (6.82, 140, 1.657, 93.92),
        "ASK_3a": (5.18, 106, 1.654, 93.89), "ASK_3b": (5.18, 106, 1.652, 93.68),
        "ASK_2": (3.55, 70.8, 1.645, 93.28),
    },
    ("resnet", 20): {
        "dense": (0.27, 41.1, 2.773, 92.05), "ASK_7": (0.21, 32.1, 2.336, 91.94), "ASK_6": (0.18, 27.6, 2.331, 91.65),
        "ASK_5a": (0.15, 23.1, 2.330, 91.44), "ASK_5b": (0.15, 23.1, 2.330, 91.78),
        "ASK_4a": (0.12, 18.6, 2.327, 90.79), "ASK_4b": (0.12, 18.6, 2.329, 91.12),
        "ASK_3a": (0.09, 14.1, 2.328, 89.95), "ASK_3b": (0.09, 14.1, 2.325, 90.26),
        "ASK_2": (0.06, 9.58, 2.323, 88.60),
    },
    ("resnet", 32): {
        "dense": (0.46, 69.8, 4.096, 92.82), "ASK_7": (0.36, 54.5, 3.419, 92.36), "ASK_6": (0.31, 46.8, 3.417, 92.25),
        "ASK_5a": (0.26, 39.2, 3.414, 91.83), "ASK_5b": (0.26, 39.2, 3.414, 92.19),
        "ASK_4a": (0.21, 31.5, 3.412, 91.72), "ASK_4b": (0.21, 31.5, 3.409, 91.94),
        "ASK_3a": (0.16, 23.9, 3.406, 90.54), "ASK_3b": (0.16, 23.9, 3.403, 90.57),
        "ASK_2": (0.11, 16.2, 3.385, 89.01),
    },
    ("resnet", 56): {
        "dense": (0.85, 127, 6.614, 93.06), "ASK_7": (0.66, 99.2, 5.639, 93.59), "ASK_6": (0.57, 85.3, 5.620, 93.12),
        "ASK_5a": (0.48, 71.3, 5.616, 92.86), "ASK_5b": (0.48, 71.3, 5.618, 93.02),
        "ASK_4a": (0.38, 57.4, 5.605, 92.31), "ASK_4b": (0.38, 57.4, 5.599, 92.55),
        "ASK_3a": (0.29, 43.4, 5.586, 91.54), "ASK_3b": (0.29, 43.4, 5.585, 91.50),
        "ASK_2": (0.19, 29.5, 5.519, 90.23),
    },
}

PAPER_FIGURES: tuple[PaperFigure, ...] = (
    *(PaperFigure(arch, depth, "cifar10", kernel, "ask", p, f, ASK_README, latency_ms=lat, accuracy=acc)
      for (arch, depth), rows in _ASK_TABLES.items() for kernel, (p, f, lat, acc) in rows.items()),
    # The exact figures of the ASK counting script (the acceptance figures of our `ask` convention).
    PaperFigure("vgg", 16, "cifar10", "dense", "ask", 14.988, 314.42, ASK_EXACT),
    PaperFigure("vgg", 16, "cifar10", "ASK_5a", "ask", 8.4497, 175.22, ASK_EXACT),
    PaperFigure("resnet", 20, "cifar10", "dense", "ask", 0.2697, 41.12, ASK_EXACT),
    # Padding-free downsampling and hybrid stem, BSConv's CIFAR MobileNetV3-large (w1), BSConv profiler.
    PaperFigure("mobilenetv3", 0, "cifar100", "dense", "bsconv", 3.0665, 68.54, PADFREE, accuracy=75.37),
    PaperFigure("mobilenetv3", 0, "cifar100", "dense", "bsconv", 3.0672, 54.61, PADFREE, accuracy=75.71,
                padfree=True),
)


def figures_for(design: Design, convention: str | None = None) -> list[PaperFigure]:
    """The paper figures that describe this design (optionally only those under `convention`)."""
    kernel = uniform_preset(design)
    if kernel is None:
        return []
    net = design.network
    return [f for f in PAPER_FIGURES
            if (f.arch, f.depth, f.dataset, f.kernel, f.padfree) == (net.arch, net.depth, net.dataset, kernel,
                                                                     design.padfree)
            and (convention is None or f.convention == convention)]
