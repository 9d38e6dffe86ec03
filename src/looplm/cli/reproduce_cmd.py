"""``looplm reproduce chapter12|borborzan [--seed S | --seeds 0,1,2] [--only NAMES] [--epochs N] [--out DIR]``.

Both take ``--jobs N``; chapter12 also takes ``--extra``; borborzan takes ``--games N`` and ``--dropout torch|scratch``."""

from __future__ import annotations

from looplm.cli.args import MAX_COUNT, MAX_JOBS, MAX_EPOCHS, SEED, count, name_list, seed_list
from looplm.cli.common import add_device_flag, add_output_flags, add_precision_flag, output
from looplm.errors import LooplmError
from looplm.reproduce.borborzan import reproduce_borborzan
from looplm.reproduce.borborzan_report import write_borborzan_report
from looplm.reproduce.chapter12 import reproduce_chapter12
from looplm.reproduce.report import write_report
from looplm.outputs import REPORT


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="reproduce a published result and write a report")
    p.add_argument("target", choices=["chapter12", "borborzan"], help="what to reproduce")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=SEED, default=0, help="one seed (default 0)")
    seeds.add_argument("--seeds", type=seed_list, help="several seeds, e.g. 0,1,2: the report gives mean ± std")
    p.add_argument("--extra", action="store_true",
                   help="also train LModel6's setup with PyTorch's GRU and the from-scratch GRU and LSTM")
    p.add_argument("--only", type=name_list, metavar="NAMES", help="train only these runs, e.g. lm6,lm6-gru")
    p.add_argument("--epochs", type=count(MAX_EPOCHS), help="train every model this many epochs (a quick look)")
    p.add_argument("--games", type=count(MAX_COUNT), default=100_000,
                   help="borborzan: games to generate (default: the notebook's 100,000)")
    p.add_argument("--limit-games", type=count(MAX_COUNT), default=400_000,
                   help="borborzan: fresh games that estimate the view limit (default: 400,000)")
    p.add_argument("--dropout", choices=["torch", "scratch"], default="torch",
                   help="borborzan: LModel7's dropout, torch (nn.Dropout's distribution, looplm's fast "
                        "mask) or scratch (the chapter's bernoulli_ one) (default: torch)")
    add_output_flags(p, help="directory for REPORT.md and its figures (default: runs/TARGET)")
    p.add_argument("--jobs", type=count(MAX_JOBS), default=1,
                   help="train this many runs at once, in worker processes sharing the threads "
                        "(default 1; 2 on a 2-core CPU: the chapter's small models gain little from a second "
                        "thread inside a run, and a whole core from a second run beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    add_precision_flag(p)
    p.set_defaults(handle=handle)


def handle(args) -> int:
    if args.target == "borborzan" and args.extra:
        raise LooplmError("--extra is for chapter12: borborzan trains the notebook's seven models")
    args.out = args.out or f"runs/{args.target}"
    out = output(args, REPORT)
    seeds = args.seeds or [args.seed]
    if args.target == "borborzan":
        result = reproduce_borborzan(seeds, games=args.games, device=args.device, progress=not args.quiet,
                                     only=args.only, epochs=args.epochs, dropout=args.dropout,
                                     limit_games=args.limit_games, precision=args.precision, jobs=args.jobs)
        with out.writing() as path:
            print(f"report: {write_borborzan_report(result, path)}")
        return 0
    result = reproduce_chapter12(seeds, device=args.device, progress=not args.quiet, extra=args.extra,
                                 only=args.only, epochs=args.epochs, precision=args.precision,
                                 jobs=args.jobs)
    with out.writing() as path:
        print(f"report: {write_report(result, path)}")
    return 0
