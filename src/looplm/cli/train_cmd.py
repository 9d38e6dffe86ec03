"""``looplm train --data D --model M --epochs N --lr LR ... --out RUNDIR``."""

from __future__ import annotations

from looplm.cli.common import add_data_flags, add_device_flag, data_options, positive_float, positive_int
from looplm.models.registry import MODELS, model_spec
from looplm.overrides import parse_overrides
from looplm.errors import LooplmError
from looplm.training import TrainConfig, resume_training, train


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model and save a run directory")
    add_data_flags(p)
    p.add_argument("--model", default="lm7", help=f"one of {', '.join(MODELS)} (default: lm7)")
    p.add_argument("--epochs", type=positive_int, default=15)
    p.add_argument("--lr", type=positive_float, default=1e-2, help="peak learning rate of the one cycle")
    p.add_argument("--wd", type=float, default=0.01, help="decoupled weight decay (default: 0.01)")
    p.add_argument("--bs", type=positive_int, default=64, help="rows of the stream per batch")
    p.add_argument("--sl", type=positive_int, default=16, help="tokens per row per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.0, help="AR: activation regularisation (lm7: 2)")
    p.add_argument("--beta", type=float, default=0.0, help="TAR: temporal activation regularisation (lm7: 1)")
    p.add_argument("--clip", type=positive_float, default=None, help="clip the gradient norm to this")
    p.add_argument("--moms", type=float, nargs=3, default=(0.95, 0.85, 0.95), metavar=("START", "MID", "END"),
                   help="beta1 cycle of the one-cycle schedule")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="a model setting, e.g. --set n_hidden=128 --set p=0.3 (repeatable)")
    p.add_argument("--out", help="run directory to write (required unless --resume)")
    p.add_argument("--resume", metavar="RUNDIR", help="continue an interrupted run from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    add_device_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.resume:
        result = resume_training(args.resume, log=None if args.quiet else print, progress=not args.quiet)
        return _done(result, args.resume, args.quiet)
    if not args.out:
        raise LooplmError("looplm train needs --out RUNDIR (or --resume RUNDIR)")
    spec = model_spec(args.model)
    cfg = TrainConfig(
        data=args.data, model=args.model, epochs=args.epochs, lr=args.lr, wd=args.wd, bs=args.bs, sl=args.sl,
        seed=args.seed, alpha=args.alpha, beta=args.beta, clip=args.clip, moms=tuple(args.moms),
        device=args.device, data_options=data_options(args), model_config=parse_overrides(spec.config_cls, args.overrides),
    )
    result = train(cfg, out=args.out, log=None if args.quiet else print, progress=not args.quiet)
    return _done(result, args.out, args.quiet)


def _done(result, out: str, quiet: bool) -> int:
    last = result.learner.history[-1]
    if not quiet:
        print(f"saved {out} (valid loss {last.valid_loss:.4f}, accuracy {last.accuracy:.4f})")
    return 0
