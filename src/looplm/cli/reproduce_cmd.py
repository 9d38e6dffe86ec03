"""``looplm reproduce chapter12 [--seed S | --seeds 0,1,2] [--extra] [--only NAMES] [--epochs N] [--out DIR]``."""

from __future__ import annotations

from looplm.cli.args import MAX_EPOCHS, SEED, count, name_list, seed_list
from looplm.cli.common import add_device_flag, add_output_flags, add_precision_flag, output
from looplm.reproduce.chapter12 import reproduce_chapter12
from looplm.reproduce.report import write_report
from looplm.outputs import REPORT


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="reproduce a published result and write a report")
    p.add_argument("target", choices=["chapter12"], help="what to reproduce")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=SEED, default=0, help="one seed (default 0)")
    seeds.add_argument("--seeds", type=seed_list, help="several seeds, e.g. 0,1,2: the report gives mean ± std")
    p.add_argument("--extra", action="store_true",
                   help="also train LModel6's setup with PyTorch's GRU and the from-scratch GRU and LSTM")
    p.add_argument("--only", type=name_list, metavar="NAMES", help="train only these runs, e.g. lm6,lm6-gru")
    p.add_argument("--epochs", type=count(MAX_EPOCHS), help="train every model this many epochs (a quick look)")
    add_output_flags(p, default="runs/chapter12", help="directory for REPORT.md and its figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    add_precision_flag(p)
    p.set_defaults(handle=handle)


def handle(args) -> int:
    out = output(args, REPORT)
    seeds = args.seeds or [args.seed]
    result = reproduce_chapter12(seeds, device=args.device, progress=not args.quiet, extra=args.extra,
                                 only=args.only, epochs=args.epochs, precision=args.precision)
    with out.writing() as path:
        print(f"report: {write_report(result, path)}")
    return 0
