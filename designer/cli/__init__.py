"""`python -m designer COMMAND`: everything the app does, scriptable.

Errors go to stderr as one line: exit 2 for bad input (DesignError, bad
options, unreadable files), 1 for anything else that fails. `--json` prints
exactly one JSON object on stdout. Each command lives in a module of this
package that registers it (add_commands); options.py holds what they share.
"""
from __future__ import annotations

import json
import sys

from designer.cli import bench_command, design_commands, run_commands, sweep_command
from designer.cli.options import CliParser, check_output_path
from designer.errors import MAX_MESSAGE, DesignError

# Every command's output-file options: checked before any work, so a bad path fails at once, not after it.
OUTPUT_OPTIONS = ("out", "output")


def build_parser() -> CliParser:
    parser = CliParser(prog="python -m designer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)
    for module in (design_commands, bench_command, run_commands, sweep_command):
        module.add_commands(commands)
    for sub in commands.choices.values():
        sub.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        for dest in OUTPUT_OPTIONS:
            if getattr(args, dest, None) is not None:
                check_output_path(getattr(args, dest), f"--{dest}")
        result = args.run(args)
    except DesignError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a failure, not bad input: still one line (torch's messages can be pages long)
        lines = str(err).strip().splitlines()
        print(f"failed: {type(err).__name__}: {lines[0][:MAX_MESSAGE] if lines else ''}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(result))
    return 0
