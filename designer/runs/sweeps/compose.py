"""A sweep spec from a design and a few picks (what the Sweeps page builds): the design's layer groups, the
choices a group can be given by their short labels, and the spec JSON load_spec then checks."""
from __future__ import annotations

from dataclasses import dataclass

from designer.designs.design import Design
from designer.designs.shapes import ASK_PRESETS
from designer.errors import DesignError, shown
from designer.networks.editing import layer_groups
from designer.runs.sweeps.spec import FORMAT_NAME, FORMAT_VERSION

# The menu of choices by label (spec.choice_label's text); a spec file can give any other.
CHOICE_MENU = ("dense", "keep", *ASK_PRESETS, "hetconv:2", "hetconv:4", "1x4:0.5", "1x8:0.5", "1x16:0.5",
               "lowrank:2x", "lowrank:4x")


@dataclass(frozen=True)
class Recipe:
    """What each trial trains and how the sweep searches (the page's form)."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    data: str | None = None  # None: the design's data set; "synthetic"
    data_limit: int | None = None
    search: str = "grid"
    trials: int | None = None  # random search only
    asha: bool = True
    latency_batch_size: int = 1  # 0: no latency
    max_concurrent: int | None = None


def sweep_groups(design: Design) -> list[tuple[str, str]]:
    """(layers, label) of the design's stages, `layers` as a spec axis gives it: the stage's name pattern, or
    its blocks' patterns joined by commas for a stage merged by resolution (VGG's, MobileNetV2's)."""
    groups = []
    for stage in layer_groups(design):
        blocks = [stage] if stage.pattern else list(stage.blocks)
        if all(b.pattern for b in blocks):
            groups.append((",".join(_exact(design, b.pattern, b.indices) for b in blocks), stage.label))
    return groups


def _exact(design: Design, pattern: str, indices) -> str:
    """A pattern that selects exactly `indices` ('conv1' alone also matches 'layer1.0.conv1': '[c]onv1')."""
    from designer.networks.build import design_layers
    from designer.networks.variants import matching_layers
    return pattern if matching_layers(design_layers(design), pattern) == list(indices) else \
        f"[{pattern[0]}]{pattern[1:]}"


def layers_field(layers: str):
    """The spec's `layers` for a sweep_groups entry: one pattern, or the list of them."""
    patterns = layers.split(",")
    return patterns[0] if len(patterns) == 1 else patterns


def choice_from_label(label: str):
    """The spec's choice for a menu label: 'hetconv:4' -> {"hetconv": 4}, '1x8:0.5' -> {"block_n": 8,
    "prune_rate": 0.5}, 'lowrank:2x' -> {"lowrank_ratio": 2}; presets and words stay strings."""
    try:
        if label.startswith("hetconv:"):
            return {"hetconv": int(label.split(":")[1])}
        if label.startswith("1x"):
            block, rate = label[2:].split(":")
            return {"block_n": int(block), "prune_rate": float(rate)}
        if label.startswith("lowrank:") and label.endswith("x"):
            ratio = float(label[len("lowrank:"):-1])
            return {"lowrank_ratio": int(ratio) if ratio.is_integer() else ratio}
    except ValueError:
        raise DesignError(f"not a choice: {shown(label)}", "choice") from None
    return label


def compose_spec(design: Design, axes: dict[str, list[str]], recipe: Recipe, name: str = "") -> dict:
    """The spec JSON of a sweep over `axes` ({pattern: [choice labels]}, in order) from `design`."""
    given = {pattern: labels for pattern, labels in axes.items() if labels}
    if not given:
        raise DesignError("pick at least one choice for one layer group", "space")
    training = {"epochs": recipe.epochs, "batch_size": recipe.batch_size, "lr": recipe.lr}
    training.update({k: v for k, v in (("max_steps", recipe.max_steps), ("data", recipe.data),
                                       ("data_limit", recipe.data_limit)) if v})
    spec = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "name": name or f"sweep of {', '.join(given)}",
            "base": design.to_json(),
            "space": [{"layers": layers_field(pattern), "choice": [choice_from_label(label) for label in labels]}
                      for pattern, labels in given.items()],
            "recipe": training, "search": recipe.search, "baseline": True,
            "scheduler": {"kind": "asha" if recipe.asha else "fifo"},
            "measure": {"latency_batch_size": recipe.latency_batch_size},
            "resources": {"cpus_per_trial": 1, "max_concurrent": recipe.max_concurrent}}
    if recipe.search == "random":
        spec["trials"] = recipe.trials
    return spec
