"""``looplm eval --run RUNDIR [--file PATH] [--bs N] [--sl N] [--warmup N] [--json]``.

Scores a trained model on every position of a stream (:func:`looplm.evaluate.score_stream`):
by default the validation stream of the data it was trained on, rebuilt from its config;
with ``--file``, a UTF-8 text read by the run's tokenizer (older runs of a generated source
that saved none: split on whitespace and looked up in the run's vocab). A text run's data must
still be the text it was trained on. A char run's loss is also given in bits per character, and
every run's (but lm1-lm3's, which score one token in sl) in nats per character and bits per
UTF-8 byte of the scored text (:func:`looplm.evaluate.per_text`), comparable across tokenizers.
On a bor-bor-zan run it adds the scores against the exact optimum
(:func:`looplm.games.borborzan_scores`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from looplm.cli.args import MAX_BS, MAX_SL, count, whole
from looplm.cli.common import add_precision_flag, path_arg
from looplm.data.batching import stream_batches
from looplm.data.sources import is_text_path, load_corpus
from looplm.data.tokenize import TOKENIZER, Tokenizer, WordTokenizer, load_tokenizer
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError
from looplm.files import check_file
from looplm.fingerprint import check_fingerprint, fingerprint
from looplm.evaluate import WARMUP, per_text, predict_stream, score_stream, text_size
from looplm.losses import perplexity
from looplm.precision import precision_for_run
from looplm.rundir import load_run


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="loss, perplexity, bits and accuracy of a trained model on a stream")
    p.add_argument("--run", dest="rundir", type=path_arg, metavar="RUNDIR", required=True, help="run directory written by looplm train")
    p.add_argument("--file", type=path_arg, help="score this UTF-8 text (read by the run's tokenizer) instead of the run's valid data")
    p.add_argument("--bs", type=count(MAX_BS), help="rows scored at once (default: the run's bs)")
    p.add_argument("--sl", type=count(MAX_SL), help="tokens per row per model call (default: the run's sl)")
    p.add_argument("--warmup", type=whole(0, MAX_SL), default=WARMUP,
                   help=f"tokens each row reads before its first scored one (default {WARMUP}; 0: cold rows)")
    p.add_argument("--players", help="borborzan: the players who wrote --file (default: the run's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_precision_flag(p, default=None)
    p.set_defaults(handle=handle)


def shown_path(data: str) -> str:
    """A data path as the user would type it here: relative to the working directory when that
    is shorter (runs keep absolute paths so that they resume from anywhere); names unchanged."""
    if not is_text_path(data):
        return data
    try:
        rel = os.path.relpath(data)
    except ValueError:  # another drive (Windows)
        return data
    return rel if len(rel) < len(data) else data


def run_tokenizer(rundir: str, vocab: Vocab, data: str | None = None) -> Tokenizer:
    """The run's saved tokenizer; a run of a generated source (``data``) without one (written
    before tokenizers were saved) read whitespace-separated tokens. A text run needs its own."""
    if (Path(rundir) / TOKENIZER).is_file() or data is None or is_text_path(data):
        return load_tokenizer(rundir, vocab)
    return WordTokenizer(vocab)


def read_tokens(path: str, tok: Tokenizer) -> torch.Tensor:
    """A UTF-8 file as ids of ``tok``; text its vocab cannot write is an error."""
    check_file(path, "--file", "point --file at a UTF-8 text file")
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise LooplmError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise LooplmError(f"{path} is not UTF-8 text (bad byte at offset {err.start}): convert it to UTF-8") from None
    ids = tok.encode(text, strict=True)
    if len(ids) < 2:
        raise LooplmError(f"{path} holds {len(ids)} token(s): scoring needs at least 2")
    return torch.from_numpy(ids)


def game_scores(probs, tokens: torch.Tensor, players: str, vocab) -> dict:
    from looplm.games import borborzan_scores

    s = borborzan_scores(probs, tokens.numpy(), players, vocab.itos)
    return {
        "players": players,
        "optimal_loss": s["optimal_loss"],
        "loss_gap": s["loss_gap"],
        "loss_gap_pct": 100 * s["loss_gap"] / s["optimal_loss"],
        "optimal_accuracy": s["optimal_accuracy"],
        "kl": s["kl"],
        "unaffordable_mass": s["unaffordable_mass"],
        "end_precision": s["end_precision"],
        "end_recall": s["end_recall"],
    }


def evaluate(args) -> dict:
    if args.warmup < 0:
        raise LooplmError(f"--warmup must not be negative, got {args.warmup}")
    loaded = load_run(args.rundir)
    trained = loaded.config.train
    data, options = trained.data, trained.data_options
    bs, sl = args.bs or trained.bs, args.sl or trained.sl
    tok = run_tokenizer(args.rundir, loaded.vocab, data)
    if args.file:
        tokens = read_tokens(args.file, tok)
    else:  # the valid split exactly as training cut it (at the training sl), read by the run's tokenizer
        corpus = load_corpus(data, options, tokenizer=tok, same_data=True)
        check_fingerprint(args.rundir, fingerprint(corpus, data, options.valid), "eval")
        tokens = corpus.split(trained.sl)[1]
    out = {"run": str(args.rundir), "model": loaded.config.model, "data": args.file or f"{shown_path(options.valid or data)} (valid)",
           "tokenizer": tok.spec, "n_tokens": len(tokens)}
    every = getattr(loaded.model, "layout", "every") == "every"
    game = every and data == "borborzan"
    model = precision_for_run(args.precision, trained.precision, "cpu", loaded.model).wrap(loaded.model)
    if every:
        scores = score_stream(model, tokens, bs, sl, args.warmup, keep_probs=game)
        loss, accuracy = scores.loss, scores.accuracy
        out.update(n_predicted=scores.n_predicted, bs=scores.bs, sl=scores.sl, warmup=scores.warmup)
    else:  # lm1-lm3 predict one token per sample: score the samples as training does
        pred = predict_stream(model, stream_batches(tokens, bs, sl, "last"))
        loss, accuracy = pred.loss, pred.accuracy
        out.update(n_predicted=len(pred.targets), bs=bs, sl=sl, warmup=0)
    out.update(loss=loss, perplexity=perplexity(loss), bits_per_token=loss / math.log(2), accuracy=accuracy)
    if tok.spec == "char":  # one token is one character
        out["bits_per_char"] = out["bits_per_token"]
    if every:  # every token 1..N-1 scored: the whole text but the first token's
        n_chars, n_bytes = text_size(tok, tokens)
        out.update(n_chars=n_chars, n_bytes=n_bytes, **per_text(loss, out["n_predicted"], n_chars, n_bytes))
    if game:
        players = args.players or options.players
        try:
            out.update(game_scores(scores.probs, tokens, players, loaded.vocab))
        except LooplmError as err:
            if not args.file or args.players:
                raise
            out["note"] = f"no bor-bor-zan scores (is --file a game record of players {players}? use --players): {err}"
    return out


def handle(args) -> int:
    r = evaluate(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"run:         {r['run']} ({r['model']})")
    print(f"data:        {r['data']}: {r['n_tokens']:,} tokens, {r['n_predicted']:,} predicted "
          f"(bs {r['bs']}, sl {r['sl']}, warmup {r['warmup']})")
    unit = "char" if r["tokenizer"] == "char" else "token"
    print(f"loss:        {r['loss']:.4f} nats/{unit}   perplexity {r['perplexity']:.4f}   "
          f"{r['bits_per_token']:.4f} bits/{unit}")
    if "bits_per_byte" in r:
        print(f"text:        {r['loss_per_char']:.4f} nats/char   {r['bits_per_byte']:.4f} bits/byte   "
              f"({r['n_chars']:,} characters, {r['n_bytes']:,} UTF-8 bytes)")
    print(f"accuracy:    {r['accuracy']:.4f}")
    if "optimal_loss" in r:
        print(f"optimum:     {r['optimal_loss']:.4f} nats/token, accuracy {r['optimal_accuracy']:.4f} "
              f"(players {r['players']})")
        print(f"gap:         {r['loss_gap']:.4f} nats/token ({r['loss_gap_pct']:.2f}% of the optimum)   "
              f"KL(true || model) {r['kl']:.4f} nats")
        print(f"unaffordable moves: {100 * r['unaffordable_mass']:.3f}% of the probability before a move")
        print(f"'end':       precision {r['end_precision']:.4f}, recall {r['end_recall']:.4f}")
    if "note" in r:
        print(f"note:        {r['note']}")
    return 0
