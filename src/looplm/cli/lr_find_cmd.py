"""``looplm lr-find --data D --model M [--out PNG]``: fastai's exponential sweep."""

from __future__ import annotations

from pathlib import Path

from looplm.cli.common import add_data_flags, add_device_flag, data_options, positive_int
from looplm.lr_find import lr_find
from looplm.models.registry import MODELS, model_spec
from looplm.overrides import parse_overrides
from looplm.plots import plot_lr_find
from looplm.rundir import prepare_out_dir
from looplm.data.sources import load_corpus
from looplm.training import TrainConfig, build_learner


def add_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="sweep the learning rate exponentially and suggest one")
    add_data_flags(p)
    p.add_argument("--model", default="lm7", help=f"one of {', '.join(MODELS)}")
    p.add_argument("--bs", type=positive_int, default=64)
    p.add_argument("--sl", type=positive_int, default=16)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start-lr", type=float, default=1e-7)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--num-it", type=positive_int, default=100)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--out", default="lr_find.png", help="PNG of loss against learning rate")
    add_device_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    spec = model_spec(args.model)
    cfg = TrainConfig(data=args.data, model=args.model, bs=args.bs, sl=args.sl, wd=args.wd, seed=args.seed,
                      device=args.device, data_options=data_options(args),
                      model_config=parse_overrides(spec.config_cls, args.overrides))
    cfg.validate()
    out = Path(args.out)
    prepare_out_dir(out.parent if str(out.parent) else ".")
    learn = build_learner(cfg, load_corpus(cfg.data, cfg.data_options), log=None, progress=True)
    result = lr_find(learn, args.start_lr, args.end_lr, args.num_it)
    plot_lr_find(result.lrs, result.losses, result.suggestion, out)
    print(f"suggested learning rate: {result.suggestion:.2e} (valley); plot: {out}")
    return 0
