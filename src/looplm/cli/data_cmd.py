"""``looplm data describe DATA [--json]``, ``looplm data export DATA --out FILE`` and
``looplm data show-batch DATA [--valid] [--bs N --sl N --model M] [--n 3] [--rows 8]``."""

from __future__ import annotations

import json

from looplm.atomic import atomic_write_text
from looplm.cli.args import MAX_BS, MAX_SL, SEED, count
from looplm.cli.common import add_data_flags, add_output_flags, data_inputs, data_options, output
from looplm.data.sources import describe_corpus, load_corpus
from looplm.outputs import TEXT


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="look at or export a data source")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))
    describe = data_sub.add_parser("describe", help="lines, tokens, vocab, most common target (the baseline)")
    add_data_flags(describe, positional=True)
    describe.add_argument("--seed", type=SEED, default=0, help="seed of generated data")
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.set_defaults(handle=handle_describe)
    export = data_sub.add_parser("export", help="write the source's token stream as text")
    add_data_flags(export, positional=True)
    export.add_argument("--seed", type=SEED, default=0, help="seed of generated data")
    add_output_flags(export, required=True, help="text file to write")
    export.set_defaults(handle=handle_export)
    show = data_sub.add_parser("show-batch", help="the first batches as text: each row, its target, where it continues")
    add_data_flags(show, positional=True, valid_flag=False)
    show.add_argument("--seed", type=SEED, default=0, help="seed of generated data")
    show.add_argument("--valid", nargs="?", const=True, default=None, metavar="PATH",
                      help="show the validation batches (text: of PATH, a validation file or folder, if given)")
    show.add_argument("--bs", type=count(MAX_BS), default=64, help="rows per batch (default 64)")
    show.add_argument("--sl", type=count(MAX_SL), default=16, help="tokens per row per batch (default 16)")
    show.add_argument("--model", default="lm4", help="lay the batches out as this model reads them (default lm4)")
    show.add_argument("--n", type=count(1000), default=3, help="batches to show (default 3)")
    show.add_argument("--rows", type=count(MAX_BS), default=8, help="rows shown per batch (default 8)")
    show.set_defaults(handle=handle_show_batch)


def handle_describe(args) -> int:
    options = data_options(args)
    info = describe_corpus(load_corpus(args.data, options), options)
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
    if "optimal_loss" in info:
        print(f"optimum:    {info['optimal_loss']:.4f} nats/token, accuracy {info['optimal_accuracy']:.4f} "
              f"(the true next-token distribution of the valid split, players {info['players']})")
    return 0


def handle_export(args) -> int:
    out = output(args, TEXT, data_inputs(args))
    corpus = load_corpus(args.data, data_options(args))
    streams = [corpus.tokens] if corpus.valid_tokens is None else [corpus.tokens, corpus.valid_tokens]
    tokenizer = getattr(corpus, "tokenizer", None)
    if tokenizer is not None:  # a text corpus: its own tokenizer writes the text back
        text = "".join(tokenizer.decode(s.tolist()) for s in streams)
    else:  # every token followed by one space: for bor-bor-zan this is the seed's document, byte for byte
        text = "".join(" ".join(corpus.vocab.decode(s.tolist())) + " " for s in streams)
    with out.writing() as path:
        atomic_write_text(path, text)
    print(f"wrote {args.out}: {sum(len(s) for s in streams):,} tokens")
    return 0


def handle_show_batch(args) -> int:
    from looplm.models.registry import model_spec

    spec = model_spec(args.model)
    sl = spec.fixed_sl or args.sl
    show_valid, args.valid = args.valid is not None, None if args.valid is True else args.valid
    corpus = load_corpus(args.data, data_options(args))
    print(corpus.show_batch(args.bs, sl, spec.layout, show_valid, args.n, group=spec.layout == "every",
                            rows=args.rows))
    return 0
