"""The CLI's `train` and `runs` commands: option parsing only, the work is in designer.runs.

`train` also takes the ASK reference code's flags (--arch vgg_any --depth 16
--anycfg ASK_5a --save DIR --epochs --lr --batch-size --momentum
--weight-decay/--wd --seed --log-interval --test-batch-size).
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from designer.cli.options import HOME_HELP, CliParser, add_model_options, design_from_args, int_in
from designer.runs import jobs
from designer.runs.store import RunStore, repair_store
from designer.runs.train import INT_RANGES, OPTIONAL_INT_RANGES, SCHEDULES, HParams
from designer.workspace import workspace_home

DEFAULTS = HParams()
MAX_RUN_ID = 2 ** 63 - 1  # SQLite's largest integer key


def _bounded(field: str):
    """The argparse type of an integer hyper-parameter: its HParams range, refused at parse time."""
    low, high = {**INT_RANGES, **OPTIONAL_INT_RANGES}[field]
    return int_in(low, high, "--" + field.replace("_", "-"))


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Hyper-parameter options; each defaults to HParams' field (None here = not given)."""
    group = parser.add_argument_group("training options")
    group.add_argument("--epochs", type=_bounded("epochs"), help=f"default {DEFAULTS.epochs}")
    group.add_argument("--max-steps", type=_bounded("max_steps"), help="stop after this many steps in total")
    group.add_argument("--batch-size", type=_bounded("batch_size"), help=f"default {DEFAULTS.batch_size}")
    group.add_argument("--lr", type=float, help=f"peak learning rate (default {DEFAULTS.lr})")
    group.add_argument("--momentum", type=float, help=f"default {DEFAULTS.momentum}")
    group.add_argument("--weight-decay", "--wd", dest="weight_decay", type=float,
                       help=f"default {DEFAULTS.weight_decay}")
    group.add_argument("--schedule", choices=SCHEDULES,
                       help="cosine (default) or step: x0.1 at 50%% and 75%% (the ASK recipe)")
    group.add_argument("--warmup-epochs", type=float, help=f"linear warm-up (default {DEFAULTS.warmup_epochs})")
    group.add_argument("--seed", type=_bounded("seed"), help=f"default {DEFAULTS.seed}")
    group.add_argument("--backend", help=f"ASK backend (default {DEFAULTS.backend})")
    group.add_argument("--workers", type=_bounded("workers"), help="DataLoader workers (default 0)")
    group.add_argument("--log-every", "--log-interval", dest="log_every", type=_bounded("log_every"),
                       help=f"steps between step metrics (default {DEFAULTS.log_every})")
    group.add_argument("--checkpoint-every", type=_bounded("checkpoint_every"), help="steps between extra checkpoints (default: by epoch and time)")
    group.add_argument("--checkpoint-every-s", type=float, metavar="S",
                       help=f"seconds of training between extra checkpoints: a kill loses at most that "
                            f"(default {DEFAULTS.checkpoint_every_s:g}; 0: off)")
    group.add_argument("--log-every-s", type=float, metavar="S",
                       help=f"seconds between step metrics, besides --log-every (default {DEFAULTS.log_every_s:g}; 0: off)")
    group.add_argument("--data-limit", type=_bounded("data_limit"), metavar="N", help="train and test on the first N images of each split")
    group.add_argument("--eval-batch-size", "--test-batch-size", dest="eval_batch_size", type=_bounded("eval_batch_size"))
    group.add_argument("--data", choices=["synthetic"], help="train on the small synthetic set (tests)")
    group.add_argument("--data-root", metavar="DIR", help="where data sets are (default <workspace>/data)")
    group.add_argument("--data-dir", metavar="DIR",
                       help="train on your images: DIR/train/<class>/ and DIR/val/<class>/, or DIR/<class>/ split "
                            "90/10 (sets --dataset image-folder; without --num-classes the design takes the "
                            "folder's classes)")
    group.add_argument("--no-download", dest="download", action="store_false", default=None,
                       help="never download a missing data set")
    group.add_argument("--home", help=HOME_HELP)
    group.add_argument("--name", default="", help="a label for the run")


def hparams_from_args(args) -> HParams:
    """The options given, over HParams' defaults; --checkpoint FILE is the start weights (init_from)."""
    given = {f.name: getattr(args, f.name) for f in fields(HParams) if getattr(args, f.name, None) is not None}
    if getattr(args, "checkpoint", None):
        given["init_from"] = args.checkpoint
    return HParams(**given).checked()


def _home(args) -> Path | None:
    """--store DB puts the workspace at DB's folder; else --home; else the default."""
    return Path(args.store).parent if getattr(args, "store", None) else args.home


def cmd_train(args) -> dict:
    if args.run_id is not None:
        result = jobs.run_training(args.run_id, RunStore(args.store) if args.store else jobs.open_store(args.home))
    else:
        result = jobs.start_foreground(design_from_args(args), hparams_from_args(args), _home(args),
                                       save=args.save, resume=args.resume, name=args.name)
    if not args.json:
        print(f"run {result['run_id']} {result['status']}: test accuracy {result['test_acc']:.2f}% "
              f"(best {result['best_acc']:.2f}%) after {result['steps']} steps in {result['wall_s']:.0f} s, "
              f"{result['images_per_s'] or 0:.0f} images/s; checkpoint {result['checkpoint']}")
    return result


def cmd_runs(args) -> dict:
    home = args.home
    if args.action == "start":
        run_id = jobs.start_run(design_from_args(args), hparams_from_args(args), home, name=args.name)
        result = {"run": _summary(jobs.open_store(home).get_run(run_id))}
    elif args.action == "list":
        result = {"runs": [_summary(run) for run in jobs.list_runs(home)]}
    elif args.action == "tick":
        result = {"started": jobs.tick(home)}
    elif args.action == "delete":
        jobs.delete_run(args.run_id, home, force=args.force)
        result = {"deleted": args.run_id}
    elif args.action == "repair":
        result = {"repaired": repair_store(workspace_home(home).resolve() / "runs.db")}
    else:
        action = {"stop": jobs.stop_run, "resume": jobs.resume_run}[args.action]
        result = {"run": _summary(action(args.run_id, home))}
    if not args.json:
        if result.get("runs") == []:
            print("no runs yet: start one with `python -m designer runs start [model options]`")
        for run in result.get("runs", [result["run"]] if "run" in result else []):
            best = f"{run['best_acc']:.2f}%" if run["best_acc"] is not None else "-"
            resumes = f"resumes from step {run['resume_step']}" if run["status"] in ("stopped", "interrupted",
                                                                                    "failed") else ""
            print(f"{run['id']:5d} {run['status']:12s} epoch {run['epoch']:3d} step {run['step']:6d} "
                  f"best {best:>7s}  {run['name']}  {resumes}".rstrip())
        if "started" in result:
            print(f"started {result['started'] or 'nothing'}")
        if "deleted" in result:
            print(f"deleted run {result['deleted']}")
        if "repaired" in result:
            repaired = result["repaired"]
            kept = ", ".join(f"{n} {table}" for table, n in repaired["rows"].items())
            print(f"salvaged {kept} rows into a fresh {repaired['store']}; the old file is {repaired['corrupt_copy']}")
    return result


def _summary(run: dict) -> dict:
    keys = ("id", "name", "status", "pid", "epoch", "step", "resume_step", "best_acc", "params", "flops", "run_dir",
            "error", "created", "started", "finished")
    return {k: run[k] for k in keys}


def add_commands(commands) -> None:
    """Register train and runs on the CLI's subparsers."""
    train = commands.add_parser("train", help="train a design (in this process; see `runs start` for background)")
    add_model_options(train)
    add_train_options(train)
    train.add_argument("--save", metavar="DIR", help="run folder for checkpoints (default <workspace>/runs/<id>)")
    train.add_argument("--store", metavar="DB", help="run store (default <workspace>/runs.db)")
    train.add_argument("--resume", action="store_true", help="continue the run in --save DIR from its checkpoint")
    train.add_argument("--run-id", type=int_in(1, MAX_RUN_ID, "--run-id"),
                       help="train a recorded run (how the job manager starts runs)")
    train.set_defaults(run=cmd_train)

    runs = commands.add_parser("runs", help="background runs: start, list, stop, resume, delete, tick")
    actions = runs.add_subparsers(dest="action", required=True, parser_class=CliParser)
    start = actions.add_parser("start", help="queue a run (starts when a slot is free)")
    add_model_options(start)
    add_train_options(start)
    actions.add_parser("list", help="every run, newest first").add_argument("--home", help=HOME_HELP)
    actions.add_parser("tick", help="mark dead runs, start queued ones").add_argument("--home", help=HOME_HELP)
    for name in ("stop", "resume", "delete"):
        sub = actions.add_parser(name, help=f"{name} a run")
        sub.add_argument("run_id", type=int_in(1, MAX_RUN_ID, "the run id"), metavar="ID")
        sub.add_argument("--home", help=HOME_HELP)
    actions.choices["delete"].add_argument("--force", action="store_true",
                                           help="stop a queued or running run first (else refused)")
    actions.add_parser("repair", help="salvage a corrupted run store's readable rows into a fresh one "
                                      "(the old file is kept; stop training runs first)").add_argument(
        "--home", help=HOME_HELP)
    for sub in actions.choices.values():
        sub.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    runs.set_defaults(run=cmd_runs)
