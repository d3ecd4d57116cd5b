"""A sweep is plain data: a versioned JSON spec, checked like a design, and the plan it resolves to.

A spec names a base design, a search space (axes), a training recipe, the
search (grid or random) and its number of trials, an early-stopping
scheduler on test accuracy, and what to measure for each trial:

    {"format": "kernel-studio-sweep", "version": 1, "name": "ResNet-20 stages",
     "base": {"network": {"source": "paper", "name": "resnet", "depth": 20, "dataset": "fashion-mnist"}},
     "space": [{"layers": "layer1.*", "choice": ["dense", "ASK_5a", "ASK_3b"]},
               {"layers": "layer3.*", "choice": ["dense", {"hetconv": 4}, {"block_n": 4, "prune_rate": 0.5},
                                                 {"lowrank_ratio": 2}]},
               {"hparam": "lr", "choice": [0.1, 0.05]}],
     "recipe": {"epochs": 1, "batch_size": 128, "data_limit": 12000, "start_from": null},
     "search": "grid", "trials": null, "seed": 0, "baseline": true,
     "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
     "measure": {"latency_batch_size": 1, "latency_repeats": 10, "latency_backend": "best"},
     "resources": {"cpus_per_trial": 1, "max_concurrent": null}}

- base: a design JSON (designer.designs.design); without "layers" it is the network's dense design.
- space: axes. A layer axis picks, for the convolutions whose module path matches `layers`
  (designer.networks.variants.matching_layers; a list of patterns: their union), one choice: "dense", "keep" (the base's
  choice), an ASK preset name (on the group's full 3x3 convs), {"hetconv": P} (the group's
  convs HetConv takes: every full 3x3 conv but the first, P dividing its channels),
  {"block_n": N, "prune_rate": R[, "rearrange": "paper"|"all"]} (1xN on the group's
  prunable convs), {"lowrank_ratio": R} (accnn ranks for an R-fold speed-up of the group,
  from the start weights or a seeded fresh network) or a layer JSON ({"kind": ...}) on
  every conv of the group it fits. Two layer axes may not share a convolution. An hparam
  axis picks a training hyper-parameter (HPARAM_AXES) per trial.
- recipe: training options (designer.runs.train.HParams field names; `start_from` is the
  weights file a trial starts from, the CLI's --checkpoint).
- search: "grid" runs every combination once (`trials` may be left out, or must equal
  their number); "random" samples `trials` combinations with Ray Tune's tune.choice
  (with replacement), seeded by `seed`.
- baseline: also train the dense network (all convs dense) with the recipe, unless a grid
  combination is exactly that; the Pareto charts mark it.
- scheduler: {"kind": "asha", ...} stops trials whose test accuracy falls behind at an
  epoch rung (Ray Tune's ASHAScheduler, time in epochs), or null / {"kind": "fifo"}.
- measure: params and MACs are always counted; latency is measured on the trial's node
  at `latency_batch_size` (0: not measured) with `latency_backend` ("best": the faster of
  reference and decomposed), the dense network timed in the same run (designer.bench.latency).

load_spec checks everything (every choice on its group, every hyper-parameter value)
before anything starts and raises one DesignError naming the field, e.g.
"space[1].choice[2]: ...". make_plan resolves a spec to plain JSON data: each axis's
choices as the layer choices they set, which a trial (anywhere in a cluster) and the
driver turn into the same design with design_for.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from designer.designs.design import (
    DESIGN_KEYS,
    Design,
    check_keys,
    design_from_json,
    did_you_mean,
    layer_from_json,
    load_json_text,
    read_text,
)
from designer.designs.kinds import DENSE, LayerChoice, describe_choice
from designer.designs.shapes import ASK_PRESETS
from designer.errors import DesignError, shown
from designer.networks.build import can_take, dense_design, design_layers, validate
from designer.runs.train import HParams

FORMAT_NAME = "kernel-studio-sweep"
FORMAT_VERSION = 1
READS_VERSIONS = (1,)
SPEC_KEYS = ("format", "version", "name", "base", "space", "recipe", "search", "trials", "seed", "baseline",
             "scheduler", "measure", "resources")
SEARCHES = ("grid", "random")
SCHEDULERS = ("asha", "fifo")
SCHEDULER_KEYS = ("kind", "grace_period", "reduction_factor")
MEASURE_KEYS = ("latency_batch_size", "latency_repeats", "latency_backend")
RESOURCE_KEYS = ("cpus_per_trial", "max_concurrent")
LATENCY_BACKENDS = ("best", "reference", "decomposed", "taichi", "auto")
BEST_OF = ("reference", "decomposed")  # latency_backend "best": the faster of these
HPARAM_AXES = ("lr", "momentum", "weight_decay", "batch_size", "seed", "warmup_epochs", "schedule", "backend")
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(HParams) if f.name != "init_from") + ("start_from",)
LAYER_AXIS_KEYS = ("layers", "choice")
HPARAM_AXIS_KEYS = ("hparam", "choice")
WORDS = ("dense", "keep")
MAX_TRIALS = 10_000
MAX_CHOICES = 64
MAX_AXES = 16


@dataclass(frozen=True)
class Scheduler:
    kind: str = "asha"  # asha | fifo
    grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 2  # ASHA keeps the best 1/reduction_factor at each rung


@dataclass(frozen=True)
class Measure:
    latency_batch_size: int = 1  # 0: no latency
    latency_repeats: int = 10
    latency_backend: str = "best"


@dataclass(frozen=True)
class SweepSpec:
    """A checked spec (load_spec); `raw` is the JSON it was read from, kept as given."""

    name: str
    base: Design
    axes: tuple[dict, ...]  # {"kind": "layers", "pattern", "choices": [raw...]} | {"kind": "hparam", "name", "choices"}
    recipe: HParams
    search: str
    trials: int  # trials the search runs, the baseline not counted
    seed: int
    baseline: bool
    scheduler: Scheduler
    measure: Measure
    cpus_per_trial: int
    max_concurrent: int | None
    raw: dict

    @property
    def total_trials(self) -> int:
        """Every trial, the baseline included."""
        return self.trials + (1 if self.baseline else 0)


def _expect(value, types, what: str, where: str):
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object", bool: "true or false",
             float: "a number"}
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise DesignError(f"{what} must be {' or '.join(names.get(t, t.__name__) for t in types)}, "
                          f"got {shown(value)}", where)
    return value


def _rewhere(err: DesignError, where: str) -> DesignError:
    """The same message, placed at `where` (a sweep field) instead of where it was found."""
    text = str(err)
    prefix = f"{err.where}: " if err.where else ""
    return DesignError(text[len(prefix):] if prefix and text.startswith(prefix) else text, where)


def _int_in(value, low: int, high: int, what: str, where: str) -> int:
    _expect(value, int, what, where)
    if not low <= value <= high:
        raise DesignError(f"{what} must be in {low}..{high}, got {shown(value)}", where)
    return value


def loads_spec(text: str | bytes, where: str = "sweep") -> SweepSpec:
    """A spec from JSON text (a file's, a text box's): DesignError on anything wrong."""
    return load_spec(load_json_text(text, where))


def read_spec(path: str | Path) -> SweepSpec:
    return loads_spec(read_text(str(path), "the sweep spec"), str(path))


def load_spec(raw) -> SweepSpec:
    """Check a parsed spec; DesignError naming the first thing wrong and where."""
    _expect(raw, dict, "a sweep spec", "sweep")
    check_keys(raw, SPEC_KEYS, "a sweep spec", "sweep", DESIGN_KEYS, "a design (put it under \"base\")")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise DesignError(f"format {shown(raw.get('format'))} is not a Kernel Studio sweep (\"{FORMAT_NAME}\")",
                          "sweep")
    version = raw.get("version", FORMAT_VERSION)
    if version not in READS_VERSIONS:
        raise DesignError(f"version {shown(version)} is not supported (this build reads versions "
                          f"{', '.join(map(str, READS_VERSIONS))})", "sweep")
    name = _expect(raw.get("name", ""), str, "name", "name")[:200]
    base = _base(raw.get("base"))
    recipe = _recipe(raw.get("recipe", {}), base)
    axes = _axes(raw.get("space"), base, recipe)
    search = raw.get("search", "grid")
    if search not in SEARCHES:
        raise DesignError(f"unknown search {shown(search)} (choose one of {', '.join(SEARCHES)})", "search")
    seed = _int_in(raw.get("seed", 0), 0, 2 ** 31 - 1, "seed", "seed")
    baseline = _expect(raw.get("baseline", True), bool, "baseline", "baseline")
    trials = _trials(raw.get("trials"), search, axes)
    scheduler = _scheduler(raw.get("scheduler", {"kind": "asha"}))
    measure = _measure(raw.get("measure", {}))
    resources = _expect(raw.get("resources", {}), dict, "resources", "resources")
    check_keys(resources, RESOURCE_KEYS, "resources", "resources")
    cpus = _int_in(resources.get("cpus_per_trial", 1), 1, 1024, "cpus_per_trial", "resources.cpus_per_trial")
    concurrent = resources.get("max_concurrent")
    if concurrent is not None:
        _int_in(concurrent, 1, 10_000, "max_concurrent", "resources.max_concurrent")
    if baseline and search == "grid" and baseline_in_grid({"base": base.to_json(), "recipe": recipe.to_json(),
                                                            "axes": _plan_axes(axes)}):
        baseline = False  # a combination is the dense baseline already: the charts mark that trial
    spec = SweepSpec(name, base, axes, recipe, search, trials, seed, baseline, scheduler, measure, cpus, concurrent,
                     raw)
    if spec.total_trials > MAX_TRIALS:
        raise DesignError(f"{spec.total_trials} trials is more than the limit of {MAX_TRIALS}", "trials")
    return spec


def _base(raw) -> Design:
    if raw is None:
        raise DesignError("the base design is missing: give at least its network, e.g. {\"network\": {\"source\": "
                          "\"paper\", \"name\": \"resnet\", \"depth\": 20, \"dataset\": \"fashion-mnist\"}}", "base")
    _expect(raw, dict, "base", "base")
    try:
        design = design_from_json(raw)
        if "layers" not in raw:
            design = dense_design(design.network, design.padfree)
        return validate(design)
    except DesignError as err:
        raise DesignError(str(err), "base") from None  # keeps the design's own place (layer 3, network)


def _recipe(raw, base: Design) -> HParams:
    _expect(raw, dict, "recipe", "recipe")
    if "init_from" in raw:
        raise DesignError("the weights a trial starts from are \"start_from\" in a sweep", "recipe.init_from")
    check_keys(raw, RECIPE_KEYS, "the recipe", "recipe")
    given = {("init_from" if k == "start_from" else k): v for k, v in raw.items()}
    try:
        hp = HParams(**given).checked_for(base)
    except DesignError as err:
        field = {"--checkpoint": "start_from", "--no-download": "download"}.get(
            err.where, (err.where or "").lstrip("-").replace("-", "_"))
        raise _rewhere(err, f"recipe.{field}" if field else "recipe") from None
    if hp.init_from is not None and not Path(hp.init_from).is_file():
        raise DesignError("no such weights file", "recipe.start_from")
    return hp


def _axes(raw, base: Design, recipe: HParams) -> tuple[dict, ...]:
    if raw is None:
        raise DesignError("the search space is missing: a list of axes such as {\"layers\": \"layer3.*\", "
                          "\"choice\": [\"dense\", \"ASK_5a\"]}", "space")
    _expect(raw, list, "space", "space")
    if not raw:
        raise DesignError("the search space has no axis", "space")
    if len(raw) > MAX_AXES:
        raise DesignError(f"{len(raw)} axes is more than the limit of {MAX_AXES}", "space")
    axes, claimed, names = [], {}, design_layers(base)
    for i, axis in enumerate(raw):
        where = f"space[{i}]"
        _expect(axis, dict, "an axis", where)
        if "hparam" in axis:
            check_keys(axis, HPARAM_AXIS_KEYS, "an hparam axis", where)
            axes.append(_hparam_axis(axis, base, recipe, where))
            continue
        check_keys(axis, LAYER_AXIS_KEYS, "a layer axis", where, HPARAM_AXIS_KEYS, "an hparam axis")
        patterns = _expect(axis.get("layers"), (str, list), "layers (a module path pattern or a list of them)",
                           f"{where}.layers")
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not patterns or len(patterns) > MAX_CHOICES:
            raise DesignError(f"layers lists 1 to {MAX_CHOICES} patterns, got {len(patterns)}", f"{where}.layers")
        group = sorted({index for j, p in enumerate(patterns) for index in
                        _group(base, _expect(p, str, "a pattern", f"{where}.layers[{j}]"), f"{where}.layers")})
        pattern = ",".join(patterns)
        for index in group:
            if index in claimed:
                raise DesignError(f"{names[index].name} is in this axis's group and in space[{claimed[index]}]'s: "
                                  f"a convolution belongs to one layer axis", f"{where}.layers")
            claimed[index] = i
        choices = _choice_list(axis, where)
        sets = [{str(index): layer.to_json() for index, layer in
                 assign_choice(base, group, choice, recipe, f"{where}.choice[{j}]").items()}
                for j, choice in enumerate(choices)]  # each raises if it fits no convolution of the group
        _unique([choice_label(c) for c in choices], where)
        axes.append({"kind": "layers", "pattern": pattern, "choices": choices, "sets": sets})
    return tuple(axes)


def _choice_list(axis: dict, where: str) -> list:
    choices = _expect(axis.get("choice"), list, "choice (a list)", f"{where}.choice")
    if not choices:
        raise DesignError("an axis needs at least one choice", f"{where}.choice")
    if len(choices) > MAX_CHOICES:
        raise DesignError(f"{len(choices)} choices is more than the limit of {MAX_CHOICES}", f"{where}.choice")
    return choices


def _unique(labels: list, where: str) -> None:
    seen = set()
    for j, label in enumerate(labels):
        if label in seen:
            raise DesignError(f"{shown(label)} is listed twice", f"{where}.choice[{j}]")
        seen.add(label)


def _hparam_axis(axis: dict, base: Design, recipe: HParams, where: str) -> dict:
    name = axis.get("hparam")
    if name not in HPARAM_AXES:
        raise DesignError(f"cannot sweep {shown(name)}{did_you_mean(str(name), HPARAM_AXES)} (hparam axes: "
                          f"{', '.join(HPARAM_AXES)})", f"{where}.hparam")
    choices = _choice_list(axis, where)
    for j, value in enumerate(choices):
        try:
            dataclasses.replace(recipe, **{name: value}).checked_for(base)
        except DesignError as err:
            raise _rewhere(err, f"{where}.choice[{j}]") from None
    _unique([json.dumps(v) for v in choices], where)
    return {"kind": "hparam", "name": name, "choices": choices}


def _group(base: Design, pattern: str, where: str) -> list[int]:
    from designer.networks.variants import matching_layers
    layers = design_layers(base)
    try:
        group = matching_layers(layers, pattern)
    except DesignError as err:
        raise _rewhere(err, where) from None
    if not group:
        raise DesignError(f"{shown(pattern)} matches no convolution of this network (its convs are named like "
                          f"{', '.join(c.name for c in layers[:3])}, ...)", where)
    return group


def choice_label(choice) -> str:
    """The short text a choice goes by in trial configs and names: 'ASK_5a', 'hetconv:4', '1x4:0.5',
    'lowrank:2x', a layer JSON's label."""
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict):
        if "hetconv" in choice:
            return f"hetconv:{choice['hetconv']}"
        if "block_n" in choice and "kind" not in choice:
            rearrange = f":{choice['rearrange']}" if choice.get("rearrange") else ""
            return f"1x{choice['block_n']}:{choice.get('prune_rate')}{rearrange}"
        if "lowrank_ratio" in choice:
            return f"lowrank:{choice['lowrank_ratio']}x"
        if "kind" in choice:
            return describe_choice(layer_from_json(choice, "choice"))
    return json.dumps(choice)


SHORTHANDS = {"hetconv": ("hetconv",), "blocksparse": ("block_n", "prune_rate", "rearrange"),
              "lowrank": ("lowrank_ratio",)}


def assign_choice(base: Design, group: list[int], choice, recipe: HParams, where: str) -> dict[int, LayerChoice]:
    """The layer choices one axis choice sets on its group: {conv index: choice}; DesignError if it fits none."""
    from designer.networks import variants
    layers = design_layers(base)
    if isinstance(choice, str):
        if choice == "keep":
            return {}
        if choice == "dense":
            return {i: DENSE for i in group}
        if choice not in ASK_PRESETS:
            raise DesignError(f"unknown choice {shown(choice)}{did_you_mean(choice, [*WORDS, *ASK_PRESETS])} "
                              f"(a string is dense, keep or an ASK preset: {', '.join(ASK_PRESETS)})", where)
        preset = LayerChoice.preset(choice, where)
        fits = {i: preset for i in group if can_take(preset, layers[i])}
        return _nonempty(fits, f"{choice} fits no convolution of the group (it takes full 3x3 convs)", where)
    _expect(choice, dict, "a choice", where)
    if "kind" in choice:
        layer = layer_from_json(choice, where)
        fits = {i: layer for i in group if can_take(layer, layers[i])}
        return _nonempty(fits, f"{describe_choice(layer)} fits no convolution of the group", where)
    family = next((name for name, keys in SHORTHANDS.items() if keys[0] in choice), None)
    if family is None:
        raise DesignError(f"unknown choice {shown(choice)}: an object is {{\"hetconv\": P}}, {{\"block_n\": N, "
                          f"\"prune_rate\": R}}, {{\"lowrank_ratio\": R}} or a layer JSON with \"kind\"", where)
    check_keys(choice, SHORTHANDS[family], f"a {family} choice", where)
    if family == "hetconv":
        part = _int_in(choice["hetconv"], 1, 4096, "hetconv", where)
        fits = {i: LayerChoice.hetconv(part) for i in variants.hetconv_layers(layers, part) if i in group}
        return _nonempty(fits, f"HetConv P={part} fits no convolution of the group (every full 3x3 conv but the "
                               f"first, P dividing its channels)", where)
    if family == "blocksparse":
        block_n = _int_in(choice["block_n"], 1, 4096, "block_n", where)
        from designer.designs.kinds import check_prune_rate
        rate = choice.get("prune_rate")
        if rate is None:
            raise DesignError("prune_rate is missing", where)
        check_prune_rate(rate, where)
        rearrange = choice.get("rearrange", False)
        if rearrange not in (False, *variants.REARRANGE):
            raise DesignError(f"rearrange must be false, \"paper\" or \"all\", got {shown(rearrange)}", where)
        choices = variants.pruning_choices(base, block_n, rate, rearrange or None)
        fits = {i: c for i, c in choices.items() if i in group}
        return _nonempty(fits, f"1x{block_n} fits no convolution of the group (not the first nor the classifier, "
                               f"N dividing the output channels)", where)
    ratio = _expect(choice["lowrank_ratio"], (int, float), "lowrank_ratio", where)
    if not 1 < ratio <= 1000:
        raise DesignError(f"lowrank_ratio must be above 1 (a speed-up), at most 1000, got {shown(ratio)}", where)
    targets = [i for i in variants.lowrank_layers(layers) if i in group]
    if not targets:
        raise DesignError("low-rank fits no convolution of the group", where)
    from designer.networks.editing import lowrank_by_ratio
    weights = None
    if recipe.init_from:
        from designer.networks.weights import dense_start_weights
        weights = dense_start_weights(base, recipe.init_from)[0]
    ranked = lowrank_by_ratio(base, targets, float(ratio), weights=weights)
    return {i: ranked.layers[i] for i in targets}


def _nonempty(fits: dict, message: str, where: str) -> dict:
    if not fits:
        raise DesignError(message, where)
    return fits


def _trials(raw, search: str, axes) -> int:
    combos = 1
    for axis in axes:
        combos *= len(axis["choices"])
    if search == "grid":
        if raw is not None and raw != combos:
            raise DesignError(f"a grid runs every combination once: {combos} here "
                              f"({' x '.join(str(len(a['choices'])) for a in axes)}); leave trials out, or use "
                              f"search \"random\" to sample {shown(raw)}", "trials")
        if combos > MAX_TRIALS:
            raise DesignError(f"the grid has {combos} combinations, more than the limit of {MAX_TRIALS}: use "
                              f"search \"random\" with a number of trials", "space")
        return combos
    if raw is None:
        raise DesignError("a random search needs its number of trials", "trials")
    return _int_in(raw, 1, MAX_TRIALS, "trials", "trials")


def _scheduler(raw) -> Scheduler:
    if raw is None:
        return Scheduler("fifo")
    if isinstance(raw, str):
        raw = {"kind": raw}
    _expect(raw, dict, "scheduler", "scheduler")
    check_keys(raw, SCHEDULER_KEYS, "the scheduler", "scheduler")
    kind = raw.get("kind", "asha")
    if kind not in SCHEDULERS:
        raise DesignError(f"unknown scheduler {shown(kind)} (choose one of {', '.join(SCHEDULERS)})",
                          "scheduler.kind")
    return Scheduler(kind, _int_in(raw.get("grace_period", 1), 1, 100_000, "grace_period", "scheduler.grace_period"),
                     _int_in(raw.get("reduction_factor", 2), 2, 100, "reduction_factor",
                             "scheduler.reduction_factor"))


def _measure(raw) -> Measure:
    _expect(raw, dict, "measure", "measure")
    check_keys(raw, MEASURE_KEYS, "measure", "measure")
    backend = raw.get("latency_backend", Measure.latency_backend)
    if backend not in LATENCY_BACKENDS:
        raise DesignError(f"unknown backend {shown(backend)} (choose one of {', '.join(LATENCY_BACKENDS)})",
                          "measure.latency_backend")
    return Measure(_int_in(raw.get("latency_batch_size", 1), 0, 1024, "latency_batch_size",
                           "measure.latency_batch_size"),
                   _int_in(raw.get("latency_repeats", 10), 1, 1000, "latency_repeats", "measure.latency_repeats"),
                   backend)


# --- the plan: plain data a trial and the driver both read ------------------------------------------------

def make_plan(spec: SweepSpec, data_root: str | None = None) -> dict:
    """The spec resolved to JSON data: each layer axis's choices as {conv index: layer JSON}, the recipe as
    HParams JSON (data root pinned), what to measure. Trial configs name choices by their labels."""
    recipe = spec.recipe
    if recipe.data_root is None and data_root is not None:
        recipe = dataclasses.replace(recipe, data_root=str(data_root))
    return {"base": spec.base.to_json(), "recipe": recipe.to_json(), "axes": _plan_axes(spec.axes),
            "measure": dataclasses.asdict(spec.measure), "cpus_per_trial": spec.cpus_per_trial}


def _plan_axes(axes) -> list[dict]:
    planned = []
    for i, axis in enumerate(axes):
        key = f"a{i}"
        if axis["kind"] == "hparam":
            planned.append({"key": key, "kind": "hparam", "name": axis["name"], "title": axis["name"],
                            "labels": [_hparam_label(v) for v in axis["choices"]], "values": axis["choices"]})
        else:
            planned.append({"key": key, "kind": "layers", "title": axis["pattern"],
                            "labels": [choice_label(c) for c in axis["choices"]], "sets": axis["sets"]})
    return planned


def _hparam_label(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def baseline_config(plan: dict) -> dict:
    """The trial config of the dense baseline (every axis fixed, so Tune makes exactly one trial of it)."""
    return {"baseline": True, **{axis["key"]: axis["labels"][0] for axis in plan["axes"]}}


def design_for(plan: dict, config: dict) -> tuple[Design, HParams, str]:
    """(design, hyper-parameters, label) of a trial config: the same on the driver and on any node."""
    base = design_from_json(plan["base"])
    recipe = HParams.from_json(plan["recipe"])
    if config.get("baseline"):
        return validate(dense_design(base.network, base.padfree)), recipe, "dense baseline"
    layers, hp, parts = list(base.layers), {}, []
    for axis in plan["axes"]:
        label = config[axis["key"]]
        j = axis["labels"].index(label)
        if axis["kind"] == "hparam":
            hp[axis["name"]] = axis["values"][j]
        else:
            for index, layer in axis["sets"][j].items():
                layers[int(index)] = layer_from_json(layer, f"layer {int(index) + 1}")
        parts.append(f"{axis['title']}={label}")
    return validate(base.with_layers(layers)), dataclasses.replace(recipe, **hp), " ".join(parts)


def grid_configs(plan: dict) -> list[dict]:
    """Every combination's config in Tune's grid order (the first axis varies fastest)."""
    axes = plan["axes"][::-1]
    return [{axis["key"]: label for axis, label in zip(axes, combo)}
            for combo in itertools.product(*(axis["labels"] for axis in axes))]


def baseline_in_grid(plan: dict) -> bool:
    """Is some grid combination exactly the dense baseline (same design, same recipe)?"""
    dense = design_for(plan, baseline_config(plan))[:2]
    return any(design_for(plan, config)[:2] == dense for config in grid_configs(plan))


def is_dense(design_json: dict) -> bool:
    return all(layer.get("kind", "dense") == "dense" for layer in design_json.get("layers", []))
