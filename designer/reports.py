"""Views over the run store for the app: benchmark summaries, the runs table, curves, exports as bytes.

Plain functions of what designer.store returns (lists of dicts), so they are
testable without a browser and without Streamlit.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from designer.design import design_from_json
from designer.editing import summarize

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


def benchmark_bars(result: dict) -> list[dict]:
    """Whole-network rows for a bar chart: dense first, then each backend, with the speed-up over dense."""
    dense = result["dense"]
    rows = [{"what": f"dense ({dense.get('layout', 'nchw')})", "median_ms": dense["median_ms"], "speedup": 1.0}]
    for name, timing in result.get("backends", {}).items():
        if "median_ms" in timing:
            rows.append({"what": name, "median_ms": timing["median_ms"], "speedup": timing["speedup_vs_dense"]})
        else:
            rows.append({"what": name, "median_ms": None, "speedup": None, "error": timing.get("error", "failed")})
    return rows


def latency_for(design_json: dict, benchmarks: list[dict], batch_size: int | None = None) -> dict | None:
    """The newest saved inference benchmark of exactly this design: {median_ms, backend, batch_size, speedup}."""
    for bench in benchmarks:  # newest first
        if bench["design"] != design_json or bench.get("mode") != "infer":
            continue
        if batch_size is not None and bench["batch_size"] != batch_size:
            continue
        if all(layer.get("kind", "dense") == "dense" for layer in design_json.get("layers", [])):
            dense = bench["result"]["dense"]  # a dense design runs fastest as the baseline itself
            return {"median_ms": dense["median_ms"], "backend": f"dense ({dense.get('layout', 'nchw')})",
                    "batch_size": bench["batch_size"], "speedup": 1.0}
        best = best_backend(bench["result"])
        if best:
            return {"median_ms": best[1]["median_ms"], "backend": best[0], "batch_size": bench["batch_size"],
                    "speedup": best[1]["speedup_vs_dense"]}
    return None


def describe_design_json(raw: dict) -> str:
    try:
        return summarize(design_from_json(raw))
    except Exception:  # an old or foreign row: show what we can
        return str(raw.get("network", "?"))


def runs_table(runs: list[dict], benchmarks: list[dict]) -> list[dict]:
    """One row per run: id, name, status, design, epoch, best accuracy, params, FLOPs, measured latency."""
    rows = []
    for run in runs:
        latency = run.get("latency_ms")
        source = None
        if latency is None:
            found = latency_for(run["design"], benchmarks)
            if found:
                latency, source = found["median_ms"], f"{found['backend']}, batch {found['batch_size']}"
        hp = run.get("hparams") or {}
        rows.append({
            "id": run["id"], "name": run.get("name", ""), "status": run["status"],
            "design": describe_design_json(run["design"]),
            "epoch": f"{run.get('epoch', 0)}/{hp.get('epochs', '?')}", "step": run.get("step", 0),
            "best acc (%)": run.get("best_acc"),
            "params (M)": run["params"] / 1e6 if run.get("params") else None,
            "FLOPs (M)": run["flops"] / 1e6 if run.get("flops") else None,
            "latency (ms)": latency, "latency from": source,
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
    from designer.export import export

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
    from designer.build import build_model
    from designer.checkpoints import load_latest
    from designer.errors import DesignError

    found = load_latest(Path(run["run_dir"])) if run.get("run_dir") else None
    if not found:
        raise DesignError(f"run {run['id']} has no checkpoint yet (one is written at the end of each epoch)",
                          "export")
    state, _path = found
    model = build_model(design)
    model.load_state_dict(state["state_dict"])
    return model.eval()
