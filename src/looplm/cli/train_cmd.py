"""``looplm train --data D --model M --epochs N --lr LR ... --out RUNDIR``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from looplm.cli.args import MAX_BS, MAX_EPOCHS, MAX_SECONDS, MAX_SL, SEED, count, real, whole
from looplm.cli.common import (add_data_flags, add_device_flag, add_model_flags, add_output_flags, add_precision_flag,
                               data_inputs, data_options, model_settings, output, path_arg)
from looplm.outputs import RUN
from looplm.data.batching import check_divisible
from looplm.data.sources import DataOptions, is_text_path
from looplm.errors import LooplmError
from looplm.resume import resume_training
from looplm.runconfig import TrainConfig, load_config, strategy_from_flags
from looplm.tbptt import MODES
from looplm.tensorboard import TensorBoard
from looplm.training import train
from looplm import distributed
from looplm.cli.launch import launch


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model and save a run directory")
    add_data_flags(p)
    add_model_flags(p)
    p.add_argument("--epochs", type=count(MAX_EPOCHS), default=None,
                   help="epochs of the one cycle (default: 15; with --time-budget, at most this many)")
    p.add_argument("--lr", type=real(above=0, max=1e6), default=1e-2, help="peak learning rate of the one cycle")
    p.add_argument("--wd", type=real(0, 1e6), default=0.01, help="decoupled weight decay (default: 0.01)")
    p.add_argument("--bs", type=count(MAX_BS), default=64, help="rows of the stream per batch")
    p.add_argument("--sl", type=count(MAX_SL), default=16, help="tokens per row per batch")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--alpha", type=real(0, 1e6), default=0.0, help="AR: activation regularisation (lm7: 2)")
    p.add_argument("--beta", type=real(0, 1e6), default=0.0, help="TAR: temporal activation regularisation (lm7: 1)")
    p.add_argument("--clip", type=real(above=0, max=1e12), default=None, help="clip the gradient norm to this")
    p.add_argument("--moms", type=real(0, below=1), nargs=3, default=(0.95, 0.85, 0.95), metavar=("START", "MID", "END"),
                   help="beta1 cycle of the one-cycle schedule")
    s = p.add_argument_group("training strategy (default: chunks of --sl, state carried and detached)")
    s.add_argument("--k1", type=count(MAX_SL), help="TBPTT(k1, k2): an update every k1 steps of the stream ...")
    s.add_argument("--k2", type=count(MAX_SL), help="... backpropagating through the last k2 steps")
    s.add_argument("--tbptt-mode", choices=MODES, default="stored",
                   help="stored: keep the graphs of the last k2 steps; recompute: re-run them (default: stored)")
    s.add_argument("--overlap", type=whole(0, MAX_SL), default=0, metavar="O",
                   help="stateless windows of --sl steps, each sharing O steps with the previous one")
    s.add_argument("--burn-in", type=whole(0, MAX_SL), default=0, metavar="K1",
                   help="stateless windows of --sl steps whose first K1 steps run without gradient")
    s.add_argument("--variable-sl", action="store_true",
                   help="AWD-LSTM's random sequence lengths around --sl (learning rate scaled by length)")
    s.add_argument("--sl-bucket", type=count(MAX_SL), default=8, metavar="N",
                   help="--variable-sl: round each length to a multiple of N, so oneDNN meets few shapes "
                        "(default: 8; 1: any length)")
    p.add_argument("--time-budget", type=real(above=0, max=MAX_SECONDS / 60), default=None, metavar="MINUTES",
                   help="train and validate within MINUTES: a short warm-up measures the speed, then the one-cycle "
                        "schedule is sized to fit (fractional epochs; --epochs, if given, caps it), and shortened after an "
                        "epoch if the machine has slowed down since")
    add_output_flags(p, help="run directory to write (required unless --resume)")
    p.add_argument("--resume", type=path_arg, metavar="RUNDIR", help="continue an interrupted run from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    p.add_argument("--tensorboard", action="store_true",
                   help='TensorBoard event files in RUNDIR/tb (needs: pip install -e ".[tensorboard]")')
    add_device_flag(p)
    add_precision_flag(p, default=None)
    d = p.add_argument_group("data parallel (see docs/scaling.md)")
    d.add_argument("--nproc", type=count(1024), default=None, metavar="N",
                   help="train with N processes on this machine (runs torchrun; --bs is split between them)")
    d.add_argument("--dist-timeout", type=real(above=0, max=MAX_SECONDS), default=60.0, metavar="S",
                   help="seconds a rank waits for the others to join the job (default: 60)")
    p.set_defaults(handle=handle)


def handle(args) -> int:
    if args.resume and args.out:
        raise LooplmError("--resume continues a run in its own directory: drop --out (or drop --resume)")
    if not args.resume and not args.out:
        raise LooplmError("looplm train needs --out RUNDIR (or --resume RUNDIR)")
    out = None if args.resume else output(args, RUN, data_inputs(args))  # checked before anything starts
    if args.nproc and args.nproc > 1 and distributed.env_world_size() == 1:  # not yet a rank: start torchrun
        if args.resume:  # before any process starts
            _check_resume_splits(args.resume, args.nproc)
        else:
            check_divisible(args.bs, args.nproc)
        return launch(args.nproc, getattr(args, "argv", None) or ["train"])
    args.quiet = args.quiet or not distributed.is_main()  # only rank 0 prints
    options = distributed.DistOptions(rendezvous_timeout=args.dist_timeout)
    if args.resume:
        result = resume_training(args.resume, log=None if args.quiet else print, progress=not args.quiet,
                                 dist_options=options, precision=args.precision)
        return _done(result, args.resume, args.quiet)
    model_config = model_settings(args)
    cfg = TrainConfig(
        data=absolute_if_path(args.data), model=args.model, epochs=args.epochs or (MAX_EPOCHS if args.time_budget else 15), lr=args.lr, wd=args.wd, bs=args.bs,
        sl=args.sl, seed=args.seed, alpha=args.alpha, beta=args.beta, clip=args.clip, moms=tuple(args.moms),
        device=args.device, data_options=_absolute_valid(data_options(args)), model_config=model_config,
        strategy=strategy_from_flags(args.k1, args.k2, args.tbptt_mode, args.overlap, args.burn_in,
                                     args.variable_sl, args.sl_bucket),
        precision=args.precision or "auto", time_budget=args.time_budget,
    )
    cbs = [TensorBoard(Path(args.out) / "tb", tensorboard_hparams(cfg))] if args.tensorboard and distributed.is_main() else []
    result = train(cfg, out=out, log=None if args.quiet else print, progress=not args.quiet,
                   dist_options=options, cbs=cbs)
    return _done(result, args.out, args.quiet)


def tensorboard_hparams(cfg: TrainConfig) -> dict:
    """The run's settings as TensorBoard's HParams table shows them: one flat level."""
    flat = {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, (int, float, str, bool))}
    flat.update({f"model.{k}": v for k, v in cfg.model_config.items()})
    return flat


def _check_resume_splits(run_dir: str, nproc: int) -> None:
    bs = load_config(run_dir).train.bs
    if bs % nproc:
        fits = ", ".join(str(n) for n in range(2, min(bs, 64) + 1) if bs % n == 0)
        how = f"resume it with --nproc {fits}" if fits else "resume it without --nproc"
        raise LooplmError(f"{run_dir} was trained with --bs {bs}, which does not split into {nproc} processes: {how}")


def absolute_if_path(data: str) -> str:
    """A data path as an absolute path (so --resume works from any directory); source names unchanged."""
    return str(Path(data).resolve()) if is_text_path(data) else data


def _absolute_valid(options: DataOptions) -> DataOptions:
    if options.valid is None:
        return options
    return dataclasses.replace(options, valid=str(Path(options.valid).resolve()))


def _done(result, out: str, quiet: bool) -> int:
    last = result.learner.history[-1]
    if not quiet:
        print(f"saved {out} (valid loss {last.valid_loss:.4f}, accuracy {last.accuracy:.4f})")
    return 0
