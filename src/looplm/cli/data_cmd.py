"""``looplm data describe DATA [--json]``."""

from __future__ import annotations

import json

from looplm.data.sources import load_corpus


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="look at a data source")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))
    describe = data_sub.add_parser("describe", help="lines, tokens, vocab, most common target (the baseline)")
    describe.add_argument("data", help="a data source, e.g. human-numbers")
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.set_defaults(run=run_describe)


def run_describe(args) -> int:
    info = load_corpus(args.data).describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"data:       {info['name']}")
    print(f"lines:      {info['n_lines']:,}")
    print(f"tokens:     {info['n_tokens']:,}")
    print(f"vocab size: {info['vocab_size']}")
    print(f"samples:    {info['n_samples_3']:,} of 3 tokens")
    print(f"baseline:   always predicting {info['top_token']!r} is right {info['baseline_accuracy']:.4f} "
          "of the time on the validation samples")
    return 0
