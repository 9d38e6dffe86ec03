"""``looplm``: the entry point. Usage errors and bad input end with one line and exit code 2."""

from __future__ import annotations

import sys

from looplm.cli import data_cmd, eval_cmd, generate_cmd, lr_find_cmd, play_cmd, reproduce_cmd, train_cmd
from looplm.checkpoint import TrainingInterrupted
from looplm.cli.common import OneLineParser
from looplm.distributed import is_main, rank_prefix
from looplm.errors import LooplmError
from looplm.finite import NonFiniteTraining

COMMANDS = (data_cmd, train_cmd, reproduce_cmd, lr_find_cmd, eval_cmd, play_cmd, generate_cmd)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="looplm", description="Recurrent language models from scratch, trained with truncated BPTT.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return int(done.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc relaunches itself with them
    try:
        return args.handle(args) or 0
    except LooplmError as err:
        print(f"looplm: error: {rank_prefix()}{err}", file=sys.stderr)
        return 2
    except NonFiniteTraining as err:
        print(f"looplm: error: {rank_prefix()}{err}", file=sys.stderr)
        return 3
    except TrainingInterrupted as stop:
        if is_main():  # every rank stops; one says so
            print(f"looplm: {stop}; continue with: looplm train --resume {stop.path.parent}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("looplm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
