"""Server time of the Design page's edits on networks of 20 to 150 convolutions (the app's speed target:
a mask edit under 0.5 s on a 150-conv network; DenseNet-169 has 168).

Each interaction reruns the whole page script through Streamlit's AppTest, in this process, as the server
does for a browser (the websocket and the browser's drawing are not included): a tap toggled on the selected
3x3 convs, an ASK preset applied, a stage picked, a name pattern typed, the Analyze page. Medians over the
repeats; the first render (building and tracing the network once) is reported apart.

    PYTHONPATH=. python benchmarks/bench_design_page.py [--nets torchvision:densenet121 ...] [--repeats 5] [--out FILE]
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import designer  # noqa: F401  (sets the OpenMP and Taichi environment before torch loads)

from streamlit.testing.v1 import AppTest

from designer.designs.design import Network
from designer.networks import editing
from designer.networks.build import dense_design

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NETS = ["torchvision:resnet18", "torchvision:resnet50", "torchvision:mobilenet_v2", "torchvision:efficientnet_b0",
        "torchvision:densenet121", "torchvision:densenet169"]
TARGET_S = 0.5


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(arch: str, repeats: int) -> dict:
    dense = dense_design(Network(arch, 0, "cifar10"))
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["design"] = dense
    first = timed(at.run)
    at.button(key="sel_eligible").click().run()  # every 3x3 conv: the taps draw
    selected = len(at.multiselect(key="sel_layers").value)
    times: dict[str, list[float]] = {"rerun": [], "tap toggle": [], "ASK preset": [], "stage filter": [],
                                     "name pattern": [], "Analyze page": []}
    stage = max(editing.layer_groups(dense), key=lambda g: len(g.indices)).name
    for i in range(repeats):
        times["rerun"].append(timed(at.run))
        times["tap toggle"].append(timed(lambda: at.button(key="tap_0_1").click().run()))
        times["ASK preset"].append(timed(lambda: at.button(key="apply_preset").click().run()))
        times["stage filter"].append(timed(lambda: at.selectbox(key="view_stage").set_value(
            stage if i % 2 == 0 else "").run()))
        times["name pattern"].append(timed(lambda: at.text_input(key="sel_pattern").input(
            "*conv2" if i % 2 == 0 else "").run()))
        at.switch_page("pages/analyze.py")
        times["Analyze page"].append(timed(at.run))
        at.switch_page("pages/design.py").run()
        at.selectbox(key="view_stage").set_value("").run()
        at.text_input(key="sel_pattern").input("").run()
        at.button(key="sel_eligible").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return {"arch": arch, "convs": len(dense.layers), "selected": selected, "first_render_s": first,
            **{f"{k}_s": statistics.median(v) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=NETS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("KERNEL_STUDIO_HOME", tempfile.mkdtemp(prefix="ks-bench-"))
    rows = [bench(arch, args.repeats) for arch in args.nets]
    keys = [k for k in rows[0] if k.endswith("_s")]
    print(f"{'network':28} {'convs':>5} {'sel':>4} " + " ".join(f"{k[:-2]:>13}" for k in keys))
    for r in rows:
        print(f"{r['arch']:28} {r['convs']:5d} {r['selected']:4d} " + " ".join(f"{r[k]:13.3f}" for k in keys))
    slow = [r["arch"] for r in rows if r["tap toggle_s"] > TARGET_S]
    print(f"target: a tap toggle under {TARGET_S} s: " + ("met" if not slow else f"MISSED on {', '.join(slow)}"))
    if args.out:
        args.out.write_text(json.dumps({"target_s": TARGET_S, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
