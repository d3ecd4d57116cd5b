"""The CLI's `sweep` command: design sweeps on Ray Tune (designer.runs.sweeps), local by default.

    python -m designer sweep SPEC.json [--ray-address ADDR] [--max-concurrent N] [--json]
    python -m designer sweep --resume ID     # a stopped or killed sweep: finished trials are not rerun
    python -m designer sweep --stop ID       # a sweep running in another process (the app's)
    python -m designer sweep --list
    python -m designer sweep --delete ID     # its trials' runs and its experiment folder
"""
from __future__ import annotations

from designer.cli.options import HOME_HELP, int_in
from designer.errors import DesignError

MAX_ID = 2 ** 63 - 1


def _table(result: dict) -> None:
    front, fast = set(result["pareto"]), set(result["pareto_latency"])
    print(f"sweep {result['sweep_id']} {result['status']} on {result['address']}"
          + (f" in {result['wall_s']:.0f} s" if result.get("wall_s") else ""))
    print(f"{'run':>5} {'status':9} {'best acc':>8} {'params':>9} {'MACs (M)':>9} {'latency':>9}  pareto  choices")
    for t in result["trials"]:
        acc = f"{t['best_accuracy']:.2f}%" if t["best_accuracy"] is not None else "-"
        params = f"{t['params'] / 1e6:.4f}M" if t["params"] else "-"
        macs = f"{t['macs'] / 1e6:.2f}" if t["macs"] else "-"
        latency = f"{t['latency_ms']:.2f}ms" if t["latency_ms"] is not None else "-"
        marks = ("M" if t["run_id"] in front else "-") + ("L" if t["run_id"] in fast else "-")
        print(f"{t['run_id']:5d} {t['status']:9} {acc:>8} {params:>9} {macs:>9} {latency:>9}  {marks:6}  "
              f"{t['choices']}{' (dense baseline)' if t['baseline'] and t['choices'] != 'dense baseline' else ''}")
    print("pareto: M = on the accuracy/MACs front, L = on the accuracy/latency front (finished trials)")


def cmd_sweep(args) -> dict:
    from designer.runs import jobs
    from designer.runs.sweeps import records
    from designer.runs.sweeps.spec import read_spec

    given = [name for name in ("spec", "resume", "stop", "sweep_id", "delete") if getattr(args, name) is not None]
    given += ["list"] if args.list else []
    if len(given) != 1:
        raise DesignError("give one of SPEC.json, --resume ID, --stop ID, --delete ID, --list", "sweep")
    store = jobs.open_store(args.home)
    if args.delete is not None:
        records.delete_sweep(args.delete, store.path.parent)
        if not args.json:
            print(f"deleted sweep {args.delete}")
        return {"deleted": args.delete}
    if args.list:
        sweeps = records.list_sweeps(store)
        result = {"sweeps": [{k: s[k] for k in ("id", "name", "status", "trials", "address", "created", "wall_s",
                                               "error")} for s in sweeps]}
        if not args.json:
            for s in result["sweeps"]:
                print(f"{s['id']:5d} {s['status']:12s} {s['trials']:4d} trials  {s['address'] or 'local':20s} "
                      f"{s['name']}")
            if not sweeps:
                print("no sweeps yet: `python -m designer sweep examples/sweep-smoke.json`")
        return result
    if args.stop is not None:
        result = records.summary(store, records.stop_sweep(args.stop, store.path.parent)["id"])
        if not args.json:
            _table(result)
        return result
    from designer.runs.sweeps.engine import run_sweep
    if args.spec is not None:
        spec = read_spec(args.spec)
        sweep_id = records.create_sweep(store, spec, args.ray_address or "", args.max_concurrent, status="running")
        result = run_sweep(store, sweep_id, args.ray_address or "", args.max_concurrent)
    elif args.sweep_id is not None:  # a sweep the app recorded, driven by this background process
        result = run_sweep(store, args.sweep_id, args.ray_address, args.max_concurrent)
    else:
        records.refresh(store)
        sweep = records.get_sweep(store, args.resume)
        if sweep["status"] == "finished":
            raise DesignError(f"sweep {args.resume} has finished; nothing to resume", "--resume")
        result = run_sweep(store, args.resume, args.ray_address, args.max_concurrent, resume=True)
    if not args.json:
        _table(result)
    return result


def add_commands(commands) -> None:
    sweep = commands.add_parser("sweep", help="a design sweep on Ray Tune (local Ray by default, a cluster by "
                                              "--ray-address)")
    sweep.add_argument("spec", nargs="?", metavar="SPEC.json", help="the sweep spec (examples/sweep-*.json)")
    sweep.add_argument("--ray-address", metavar="ADDR",
                       help="an existing Ray cluster: host:port of `ray start --head`, ray://host:port or auto "
                            "(default: start a local Ray inside this command)")
    sweep.add_argument("--max-concurrent", type=int_in(1, 10_000, "--max-concurrent"), metavar="N",
                       help="trials at once (default: as many as the cluster's CPUs allow)")
    sweep.add_argument("--resume", type=int_in(1, MAX_ID, "--resume"), metavar="ID",
                       help="resume a stopped or killed sweep (Ray Tune's restore: finished trials stay)")
    sweep.add_argument("--stop", type=int_in(1, MAX_ID, "--stop"), metavar="ID",
                       help="stop a sweep running in another process (its trials keep their checkpoints)")
    sweep.add_argument("--delete", type=int_in(1, MAX_ID, "--delete"), metavar="ID",
                       help="delete a sweep that is not running: its trials' runs and its experiment folder")
    sweep.add_argument("--list", action="store_true", help="every sweep of the workspace")
    sweep.add_argument("--sweep-id", type=int_in(1, MAX_ID, "--sweep-id"), metavar="ID",
                       help="drive a recorded sweep (how the app starts sweeps)")
    sweep.add_argument("--home", help=HOME_HELP)
    sweep.set_defaults(run=cmd_sweep)
