"""Argument types and flags shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from looplm.cli.args import MAX_COUNT, MAX_LAYERS, MAX_SIZE, count, real
from looplm.data.sources import SOURCES, DataOptions
from looplm.device import DEVICES
from looplm.outputs import Output, OutputKind, utf8_path
from looplm.precision import PRECISIONS


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"looplm: error: {message} (see '{self.prog} --help')\n")


def path_arg(text: str) -> str:
    """A path flag: refused at parse time when its name is not valid UTF-8."""
    try:
        utf8_path(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_output_flags(parser: argparse.ArgumentParser, help: str, default: str | None = None,
                     required: bool = False) -> None:
    """``--out`` and ``--overwrite``: every command that writes takes both (see looplm.outputs)."""
    parser.add_argument("--out", type=path_arg, default=default, required=required, help=help)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out, if it is a previous output of this command")


def output(args: argparse.Namespace, kind: OutputKind, inputs: tuple = ()) -> Output:
    """The command's checked ``--out`` (nothing is written yet)."""
    return Output(args.out, kind, inputs=inputs, overwrite=args.overwrite)


def data_inputs(args: argparse.Namespace) -> tuple[Path, ...]:
    """The files and folders a command reads its data from (an output must stay out of them)."""
    from looplm.data.sources import is_text_path

    return tuple(Path(p) for p in (args.data, args.valid) if p is not None and is_text_path(p))


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train (default: auto)")


def add_precision_flag(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help="dtype of the forward pass: auto (bf16 where the hardware has bf16 units and the model "
                             "is wide enough), fp32, bf16, or fp16 (CUDA only); weights stay fp32 "
                             f"(default: {default or 'auto; a resumed run: its own'})")


def add_data_flags(parser: argparse.ArgumentParser, positional: bool = False, valid_flag: bool = True) -> None:
    """DATA, the options of generated sources (bor-bor-zan's games and players) and of text
    (``valid_flag=False``: the command defines its own ``--valid``, still a PATH or None)."""
    what = f"{', '.join(SOURCES)}, or a UTF-8 text file or a folder of .txt files"
    if positional:
        parser.add_argument("data", type=path_arg, help=f"a data source: {what}")
    else:
        parser.add_argument("--data", type=path_arg, default="human-numbers", help=f"{what} (default: human-numbers)")
    parser.add_argument("--games", type=count(MAX_COUNT), default=DataOptions.games, help="borborzan: games to generate")
    parser.add_argument("--players", default=DataOptions.players, help="borborzan: the two players, e.g. random,cautious")
    parser.add_argument("--tokenizer", default=DataOptions.tokenizer,
                        help=f"text: char, word, word:N (the N commonest words) or bpe:N (default: {DataOptions.tokenizer})")
    if valid_flag:
        parser.add_argument("--valid", type=path_arg, default=None, metavar="PATH",
                            help="text: validation file or folder (default: a split)")
    parser.add_argument("--valid-pct", type=real(above=0, below=1), default=DataOptions.valid_pct,
                        help=f"text without --valid: the last fraction kept for validation (default: {DataOptions.valid_pct})")
    parser.add_argument("--shuffle-docs", action="store_true", help="text folder: a new document order every epoch")


def data_options(args: argparse.Namespace) -> DataOptions:
    return DataOptions(games=args.games, players=args.players, seed=args.seed, tokenizer=args.tokenizer,
                       valid=args.valid, valid_pct=args.valid_pct, shuffle_docs=args.shuffle_docs)


def add_model_flags(parser: argparse.ArgumentParser, default: str = "lm7") -> None:
    """--model and its settings, the same for every command that builds a model."""
    from looplm.models.registry import MODELS

    parser.add_argument("--model", default=default, help=f"one of {', '.join(MODELS)} (default: {default})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="a model setting, e.g. --set n_hidden=128 --set p=0.3 (repeatable)")
    parser.add_argument("--preset", help="named model settings, applied before --set (awd-lstm: fastai, paper)")
    parser.add_argument("--emb-sz", type=count(MAX_SIZE), help="embedding size (lstm, gru, awd-lstm)")
    parser.add_argument("--n-hidden", type=count(MAX_SIZE), help="units per recurrent layer")
    parser.add_argument("--n-layers", type=count(MAX_LAYERS), help="stacked recurrent layers")


def model_settings(args: argparse.Namespace) -> dict:
    """The model settings the flags of :func:`add_model_flags` ask for: the preset, then the
    sizes, then each --set (later ones win)."""
    from looplm.models.registry import model_spec
    from looplm.overrides import parse_overrides

    spec = model_spec(args.model)
    settings = spec.preset(args.preset) if args.preset else {}
    settings.update(spec.sizes(args.emb_sz, args.n_hidden, args.n_layers))
    settings.update(parse_overrides(spec.config_cls, args.overrides))
    return settings
