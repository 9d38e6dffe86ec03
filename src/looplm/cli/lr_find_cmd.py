"""``looplm lr-find --data D --model M [--emb-sz/--n-hidden/--n-layers/--preset/--set] [--out PNG]``:
fastai's exponential sweep, on the model ``train`` would build from the same flags."""

from __future__ import annotations

from looplm.cli.args import MAX_BS, MAX_COUNT, MAX_SL, SEED, count, real
from looplm.cli.common import (add_data_flags, add_device_flag, add_model_flags, add_output_flags, add_precision_flag,
                               data_inputs, data_options, model_settings, output)
from looplm.lr_find import lr_find
from looplm.plots import plot_lr_find
from looplm.errors import LooplmError
from looplm.outputs import PNG
from looplm.data.sources import load_corpus
from looplm.training import TrainConfig, build_learner


def add_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="sweep the learning rate exponentially and suggest one")
    add_data_flags(p)
    add_model_flags(p)
    p.add_argument("--bs", type=count(MAX_BS), default=64)
    p.add_argument("--sl", type=count(MAX_SL), default=16)
    p.add_argument("--wd", type=real(0, 1e6), default=0.01)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--start-lr", type=real(above=0, max=1e6), default=1e-7)
    p.add_argument("--end-lr", type=real(above=0, max=1e6), default=10.0)
    p.add_argument("--num-it", type=count(MAX_COUNT), default=100)
    add_output_flags(p, default="lr_find.png", help="PNG of loss against learning rate")
    add_device_flag(p)
    add_precision_flag(p)
    p.set_defaults(handle=handle)


def handle(args) -> int:
    cfg = TrainConfig(data=args.data, model=args.model, bs=args.bs, sl=args.sl, wd=args.wd, seed=args.seed,
                      device=args.device, data_options=data_options(args), precision=args.precision,
                      model_config=model_settings(args))
    cfg.validate()
    if not args.start_lr < args.end_lr:
        raise LooplmError(f"--start-lr {args.start_lr:g} must be below --end-lr {args.end_lr:g}")
    if args.num_it < 2:
        raise LooplmError(f"--num-it {args.num_it} is too few to sweep: use at least 2 (default 100)")
    out = output(args, PNG, data_inputs(args))
    learn = build_learner(cfg, load_corpus(cfg.data, cfg.data_options), log=None, progress=True)
    print(learn.precision.reason)
    result = lr_find(learn, args.start_lr, args.end_lr, args.num_it)
    with out.writing() as path:
        plot_lr_find(result.lrs, result.losses, result.suggestion, path)
    print(f"suggested learning rate: {result.suggestion:.2e} (where the loss falls fastest); plot: {out.path}")
    return 0
