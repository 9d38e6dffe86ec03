"""Argument types and flags shared by several commands."""

from __future__ import annotations

import argparse

from looplm.data.sources import SOURCES, DataOptions
from looplm.device import DEVICES


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (exit code 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"looplm: error: {message} (see '{self.prog} --help')\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, got {text}") from None


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train (default: auto)")


def add_data_flags(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    """DATA, the options of generated sources (bor-bor-zan's games and players) and of text."""
    what = f"{', '.join(SOURCES)}, or a UTF-8 text file or a folder of .txt files"
    if positional:
        parser.add_argument("data", help=f"a data source: {what}")
    else:
        parser.add_argument("--data", default="human-numbers", help=f"{what} (default: human-numbers)")
    parser.add_argument("--games", type=positive_int, default=DataOptions.games, help="borborzan: games to generate")
    parser.add_argument("--players", default=DataOptions.players, help="borborzan: the two players, e.g. random,cautious")
    parser.add_argument("--tokenizer", default=DataOptions.tokenizer,
                        help=f"text: char, word, word:N (the N commonest words) or bpe:N (default: {DataOptions.tokenizer})")
    parser.add_argument("--valid", default=None, metavar="PATH", help="text: validation file or folder (default: a split)")
    parser.add_argument("--valid-pct", type=float, default=DataOptions.valid_pct,
                        help=f"text without --valid: the last fraction kept for validation (default: {DataOptions.valid_pct})")
    parser.add_argument("--shuffle-docs", action="store_true", help="text folder: a new document order every epoch")


def data_options(args: argparse.Namespace) -> DataOptions:
    return DataOptions(games=args.games, players=args.players, seed=args.seed, tokenizer=args.tokenizer,
                       valid=args.valid, valid_pct=args.valid_pct, shuffle_docs=args.shuffle_docs)
