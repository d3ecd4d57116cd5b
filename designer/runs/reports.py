"""Views over the run store for the app: benchmark summaries, the runs table, curves, exports as bytes.

Plain functions of what designer.runs.store returns (lists of dicts), so they are
testable without a browser and without Streamlit.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from designer.bench.timing import NOISY
from designer.designs.design import design_from_json
from designer.networks.build import validate
from designer.networks.editing import summarize

EXPORT_FORMATS = {  # format -> (file name, mime type)
    "design": ("design.json", "application/json"),
    "cfglist": ("cfglist.json", "application/json"),
    "weights": ("weights.pt", "application/octet-stream"),
    "onnx": ("model.onnx", "application/octet-stream"),
}


def best_backend(result: dict) -> tuple[str, dict] | None:
    """The fastest backend of a bench_design result that ran (name, timing), or None."""
    ran = [(name, t) for name, t in result.get("backends", {}).items() if "median_ms" in t]
    return min(ran, key=lambda item: item[1]["median_ms"]) if ran else None


def auto_shortfall(result: dict) -> tuple[str, float] | None:
    """(best fixed backend, how much slower auto was: 0.12 = 12%) when auto lost to a fixed backend timed in
    the same run; None when it did not or either is missing. Auto's own number is never altered."""
    backends = result.get("backends", {})
    auto = backends.get("auto", {})
    best = best_backend({"backends": {n: t for n, t in backends.items() if n != "auto"}})
    if "median_ms" not in auto or best is None or auto["median_ms"] <= best[1]["median_ms"]:
        return None
    return best[0], auto["median_ms"] / best[1]["median_ms"] - 1


def benchmark_bars(result: dict) -> list[dict]:
    """Whole-network rows for a bar chart: dense first, then each backend, with the speed-up over dense, the
    spread of its repeats (min, max, spread; None in results saved before they were kept), and a note on
    auto when it lost to a fixed backend."""
    dense = result["dense"]
    rows = [{"what": f"dense ({variant_label(dense)})", **_spread_of(dense), "speedup": 1.0, "note": None}]
    shortfall = auto_shortfall(result)
    for name, timing in result.get("backends", {}).items():
        if "median_ms" not in timing:
            rows.append({"what": name, "median_ms": None, "speedup": None, "error": timing.get("error", "failed")})
            continue
        note = None
        if name == "auto" and shortfall:
            note = f"auto's choice was {shortfall[1]:.0%} slower than {shortfall[0]} in this run"
        rows.append({"what": name, **_spread_of(timing), "speedup": timing["speedup_vs_dense"], "note": note})
    return rows


def variant_label(timing: dict) -> str:
    """How a network ran: its layout, and for inference whether BatchNorm was folded ('channels_last, folded')."""
    return ", ".join(part for part in (timing.get("layout", "nchw"), timing.get("form")) if part)


def _spread_of(timing: dict) -> dict:
    spread = timing.get("spread")
    return {"median_ms": timing["median_ms"], "min_ms": timing.get("min_ms"), "max_ms": timing.get("max_ms"),
            "spread": spread, "repeats": timing.get("repeats"), "noisy": spread is not None and spread > NOISY}


def benchmark_notes(result: dict) -> list[str]:
    """What a reader must know before trusting a result: a busy machine, repeats that disagree, auto losing."""
    notes = []
    load, cores = result.get("load_average"), result.get("cpu_count")
    if load is not None and cores and load > cores:
        notes.append(f"The machine was busy: load average {load:.1f} on {cores} cores when the benchmark "
                     "started, so other work shared the CPUs; the times are slower and noisier than on a quiet "
                     "machine.")
    for name, why in result.get("fold_notes", {}).items():
        notes.append(f"{name} ran as trained, not in its deployed form (BatchNorm left unfolded): {why}.")
    rows = benchmark_bars(result)
    noisy = [f"{r['what']} {r['spread']:.0%} ({r['min_ms']:.2f}..{r['max_ms']:.2f} ms)" for r in rows if r.get("noisy")]
    if noisy:
        notes.append(f"Repeats disagree by more than {NOISY:.0%} (max - min over the median): {'; '.join(noisy)}. "
                     "More repeats or a quieter machine give a firmer median.")
    for row in rows:
        if row.get("note"):
            notes.append(f"{row['note']}. Auto picks each layer's backend from a few timed calls on its first "
                         "call, so noise then (or layers that behave differently inside the whole network) can "
                         "make it pick worse; the number shown is what auto really took.")
    return notes


def latency_for(design_json: dict, benchmarks: list[dict], batch_size: int | None = None,
                runtime: str = "torch") -> dict | None:
    """The newest saved inference benchmark of exactly this design in `runtime` (torch, or onnxruntime: its fast
    ONNX export): {median_ms, backend, batch_size, speedup}."""
    for bench in benchmarks:  # newest first
        if bench.get("mode") != "infer" or bench["result"].get("runtime", "torch") != runtime:
            continue
        if batch_size is not None and bench["batch_size"] != batch_size:
            continue
        if not same_design(bench["design"], design_json):
            continue
        if all(layer.get("kind", "dense") == "dense" for layer in design_json.get("layers", [])):
            dense = bench["result"]["dense"]  # a dense design runs fastest as the baseline itself
            return {"median_ms": dense["median_ms"], "backend": f"dense ({variant_label(dense)})",
                    "batch_size": bench["batch_size"], "speedup": 1.0}
        best = best_backend(bench["result"])
        if best:
            return {"median_ms": best[1]["median_ms"], "backend": best[0], "batch_size": bench["batch_size"],
                    "speedup": best[1]["speedup_vs_dense"]}
    return None


def same_design(a: dict, b: dict) -> bool:
    """Whether two design JSONs describe one design (a version 1 row and its version 2 rewrite do)."""
    return a == b or _canonical(json.dumps(a, sort_keys=True)) == _canonical(json.dumps(b, sort_keys=True))


@lru_cache(maxsize=1024)
def _canonical(text: str):
    try:
        return validate(design_from_json(json.loads(text)))
    except Exception:  # an old or foreign row: it is only equal to itself
        return text


def describe_design_json(raw: dict) -> str:
    try:
        return summarize(design_from_json(raw))
    except Exception:  # an old or foreign row: show what we can
        return str(raw.get("network", "?"))


def runs_table(runs: list[dict], benchmarks: list[dict]) -> list[dict]:
    """One row per run: id, name, status, design, epoch, best accuracy, params, FLOPs, measured latency in torch
    and of its ONNX export in onnxruntime (the newest saved benchmarks of the same design)."""
    rows = []
    for run in runs:
        latency = run.get("latency_ms")
        source = None
        if latency is None:
            found = latency_for(run["design"], benchmarks)
            if found:
                latency, source = found["median_ms"], f"{found['backend']}, batch {found['batch_size']}"
        exported = latency_for(run["design"], benchmarks, runtime="onnxruntime")
        hp = run.get("hparams") or {}
        rows.append({
            "id": run["id"], "name": run.get("name", ""), "status": run["status"], "sweep": run.get("sweep_id"),
            "design": describe_design_json(run["design"]),
            "epoch": f"{run.get('epoch', 0)}/{hp.get('epochs', '?')}", "step": run.get("step", 0),
            "best acc (%)": run.get("best_acc"),
            "params (M)": run["params"] / 1e6 if run.get("params") else None,
            "FLOPs (M)": run["flops"] / 1e6 if run.get("flops") else None,
            "latency (ms)": latency, "latency from": source,
            "ONNX latency (ms)": exported["median_ms"] if exported else None,
            "ONNX from": f"onnxruntime, batch {exported['batch_size']}" if exported else None,
            "error": run.get("error") or "",
        })
    return rows


def curves(store, run_ids: list[int], split: str, name: str, labels: dict[int, str] | None = None) -> list[dict]:
    """Long-form rows {run, step, epoch, value} of one metric for several runs (for an overlay chart)."""
    rows = []
    for run_id in run_ids:
        label = (labels or {}).get(run_id, f"run {run_id}")
        for m in store.metrics(run_id, split=split, name=name):
            rows.append({"run": label, "step": m["step"], "epoch": m["epoch"], "value": m["value"]})
    return rows


def export_bytes(run: dict, fmt: str) -> tuple[str, bytes, str]:
    """A run's design, cfglist, weights (its newest good checkpoint) or ONNX as (file name, bytes, mime).

    Weights and ONNX load the checkpoint with torch.load(weights_only=True); DesignError when the run has
    no usable checkpoint or the format cannot hold the design.
    """
    from designer.errors import DesignError
    from designer.networks.export import export

    if fmt not in EXPORT_FORMATS:
        raise DesignError(f"unknown format {fmt!r} (choose one of {', '.join(EXPORT_FORMATS)})", "export")
    design = design_from_json(run["design"])
    file_name, mime = EXPORT_FORMATS[fmt]
    model = None
    if fmt in ("weights", "onnx"):
        model = _trained_model(run, design)
    with tempfile.TemporaryDirectory(prefix="ks-export-") as tmp:
        path = export(design, fmt, Path(tmp) / file_name, model=model)
        return f"run{run['id']}-{file_name}", Path(path).read_bytes(), mime


def _trained_model(run: dict, design):
    from designer.errors import DesignError
    from designer.networks.build import build_model
    from designer.runs.checkpoints import load_latest

    found = load_latest(Path(run["run_dir"])) if run.get("run_dir") else None
    if not found:
        raise DesignError(f"run {run['id']} has no checkpoint yet (one is written at the end of each epoch)",
                          "export")
    state, _path = found
    model = build_model(design)
    model.load_state_dict(state["state_dict"])
    return model.eval()
