"""Tokenizers: ``char``, ``word`` (``word:N``) and ``bpe:N``, fitted on the training text only.

Every tokenizer turns text into int64 ids of its :class:`Vocab` and back::

    tok = fit_tokenizer("char", ["First Citizen:\\n"])
    tok.encode("Cit")        # array([5, 8, 12]): one id per character, (n,) int64
    tok.decode([5, 8, 12])   # 'Cit'

* ``char``: one token per character, sorted by code point (the distinct characters of the
  training text); ``word``: whitespace-separated words by frequency, ``word:N`` only the N
  most frequent; both map what they never saw to ``<unk>``.
* ``bpe:N``: byte-level BPE with N tokens trained by the ``tokenizers`` library (no unknowns).

All three hold ``<sep>``, the token written between two documents. Encoding is numpy or
Rust work, never a Python loop per token. A run directory keeps its tokenizer as
``tokenizer.json`` (:func:`save_tokenizer`, :func:`load_tokenizer`) so that evaluation and
generation read text exactly as training did; loading is JSON, nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from looplm.atomic import atomic_write_text
from looplm.files import read_json
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError

SEP, UNK = "<sep>", "<unk>"
TOKENIZER = "tokenizer.json"
SPECS = "char, word, word:N or bpe:N"
MAX_VOCAB = 1 << 24  # token ids are stored as uint32 at most, and a bigger vocab cannot be trained here
_FORMAT = 1
_PIECE = 1 << 16  # characters per piece handed to the BPE encoder (in parallel)
# A word (a run of non-whitespace) longer than MAX_WORD characters is read as pieces of
# MAX_WORD characters counted from its start, by every tokenizer: so BPE training is linear
# in the text (no pre-token is longer), and text read in blocks can be cut inside such a word
# at a piece boundary without changing a single token.
MAX_WORD = 256
# The greedy .* backs off to the last non-space that a whitespace character follows.
_LAST_CUT = re.compile(r".*\S(?=\s)", re.S)
_LAST_SPACE = re.compile(r".*\s", re.S)
# Python's whitespace (str.isspace, as str.split and the cuts above use it) spelled out for the
# tokenizers library, whose own \s is narrower (it takes U+001C-U+001F or U+3000 for letters)
_NOT_SPACE = "[^" + "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "]"


def safe_cut(text: str, lookback: int = 4096) -> int:
    """An index at which ``text`` can be cut without changing any tokenizer's output: just
    before the last whitespace run (within ``lookback`` characters of the end) that follows
    a non-space; else, the text ending inside a long word, a MAX_WORD boundary of that word
    (``text`` must start at a whitespace or such a boundary, as the previous cut leaves it).
    0 when there is none: the caller then reads on before cutting."""
    m = _LAST_CUT.match(text, max(0, len(text) - lookback))
    if m:
        return m.end()
    space = _LAST_SPACE.match(text)
    start = space.end() if space else 0
    pieces = (len(text) - start) // MAX_WORD  # never at the word's start: BPE joins a space to it
    return start + pieces * MAX_WORD if pieces else 0


def words(text: str) -> list[str]:
    """``text.split()``, a word longer than MAX_WORD cut into pieces of MAX_WORD characters."""
    found = text.split()
    if not found or max(map(len, found)) <= MAX_WORD:
        return found
    return [w[i : i + MAX_WORD] for w in found for i in range(0, len(w), MAX_WORD)]


def split_safely(text: str, size: int = _PIECE) -> list[str]:
    """``text`` as pieces of about ``size`` characters, cut where :func:`safe_cut` allows."""
    pieces, i = [], 0
    while len(text) - i > size:
        cut = safe_cut(text[i : i + size])
        j = i + (cut or size)  # size >= MAX_WORD: a cut is always found
        pieces.append(text[i:j])
        i = j
    pieces.append(text[i:])
    return pieces


class Tokenizer:
    """Text <-> ids. ``spec`` names it; ``vocab`` lists its tokens (an id is an index);
    ``joiner`` is what separates two decoded texts ("" or " ")."""

    spec: str
    vocab: Vocab
    joiner = ""

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        """Ids (n,) int64. ``strict``: text the vocab cannot write is an error, not ``<unk>``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "spec": self.spec, "itos": list(self.vocab.itos), "unk": self.vocab.unk}

    @property
    def sep_id(self) -> int | None:
        return self.vocab.stoi.get(SEP)

    def _unknown(self, what: str) -> LooplmError:
        return LooplmError(f"{what} not in the {self.spec} vocab of {len(self.vocab)} tokens "
                           "(the model reads only what its training text held)")


class CharTokenizer(Tokenizer):
    """One id per character: code points looked up with ``np.searchsorted``."""

    def __init__(self, vocab: Vocab, spec: str = "char"):
        self.spec, self.vocab = spec, vocab
        singles = [(ord(t), i) for i, t in enumerate(vocab.itos) if len(t) == 1]
        codes, ids = zip(*sorted(singles)) if singles else ((), ())
        self._codes = np.array(codes, dtype=np.uint32)
        self._ids = np.array(ids, dtype=np.int64)
        self._itos = np.array(vocab.itos, dtype=object)

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        pos = np.minimum(np.searchsorted(self._codes, cps), max(len(self._codes) - 1, 0))
        found = self._codes[pos] == cps if len(self._codes) else np.zeros(len(cps), dtype=bool)
        ids = self._ids[pos] if len(self._ids) else np.zeros(len(cps), dtype=np.int64)
        if not found.all():
            missing = np.unique(cps[~found])
            if strict or self.vocab.unk is None:
                chars = ", ".join(repr(chr(c)) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise self._unknown(f"the characters {chars} are" if len(missing) > 1 else f"the character {chars} is")
            ids = np.where(found, ids, self.vocab.stoi[self.vocab.unk])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._itos[np.asarray(list(ids), dtype=np.int64)])


class _Lookup(dict):
    """token -> id; an unknown token gives ``missing`` (no exception per token)."""

    def __init__(self, stoi: dict[str, int], missing: int):
        super().__init__(stoi)
        self.missing = missing

    def __missing__(self, key: str) -> int:
        return self.missing


class WordTokenizer(Tokenizer):
    """Whitespace-separated words; decoding joins them with one space."""

    joiner = " "

    def __init__(self, vocab: Vocab, spec: str = "word"):
        self.spec, self.vocab = spec, vocab
        self._lookup = _Lookup(vocab.stoi, -1)

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        found = words(text)
        ids = np.fromiter(map(self._lookup.__getitem__, found), dtype=np.int64, count=len(found))
        unknown = ids < 0
        if unknown.any():
            if strict or self.vocab.unk is None:
                first = found[int(np.argmax(unknown))]
                raise self._unknown(f"the word {first!r} is")
            ids[unknown] = self.vocab.stoi[self.vocab.unk]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab.itos[int(i)] for i in ids)


class BPETokenizer(Tokenizer):
    """Byte-level BPE of the ``tokenizers`` library: any text encodes, no ``<unk>``."""

    def __init__(self, hf, spec: str):
        self.spec, self.hf = spec, hf
        self.vocab = Vocab(tuple(hf.id_to_token(i) for i in range(hf.get_vocab_size())))

    def encode(self, text: str, strict: bool = False) -> np.ndarray:
        encodings = self.hf.encode_batch_fast(split_safely(text), add_special_tokens=False)
        return np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "spec": self.spec, "hf": json.loads(self.hf.to_str())}


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``"bpe:2000"`` -> ``("bpe", 2000)``; ``"char"`` -> ``("char", None)``."""
    kind, sep, size = spec.partition(":")
    if kind == "char" and not sep:
        return kind, None
    if kind == "word" and not sep:
        return kind, None
    if kind in ("word", "bpe") and size.isdigit():
        n = int(size)
        least = 257 if kind == "bpe" else 1  # byte-level BPE starts from 256 bytes, plus <sep>
        if not least <= n <= MAX_VOCAB:
            raise LooplmError(f"tokenizer {spec!r}: {kind}:N needs N between {least} and {MAX_VOCAB:,}")
        return kind, n
    raise LooplmError(f"unknown tokenizer {spec!r}: choose {SPECS} (e.g. bpe:2000)")


def fit_tokenizer(spec: str, texts: Iterable[str]) -> Tokenizer:
    """Fit tokenizer ``spec`` on ``texts`` (the training split, piece by piece)."""
    kind, n = parse_spec(spec)
    if kind == "char":
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return CharTokenizer(Vocab((UNK, SEP, *sorted(chars)), unk=UNK), spec)
    if kind == "word":
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(words(text))
        for special in (UNK, SEP):
            counts.pop(special, None)
        common = [w for w, _ in counts.most_common(n)]
        return WordTokenizer(Vocab((UNK, SEP, *common), unk=UNK), spec)
    return BPETokenizer(_train_bpe(texts, n), spec)


def _train_bpe(texts: Iterable[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([  # no pre-token longer than MAX_WORD characters
        pre_tokenizers.Split(Regex(f"{_NOT_SPACE}{{{MAX_WORD}}}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SEP], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator((piece for text in texts for piece in split_safely(text)), trainer)
    return hf


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """The inverse of ``Tokenizer.to_dict`` (KeyError/TypeError/ValueError on a bad dict)."""
    if data["format"] != _FORMAT:
        raise ValueError(f"tokenizer format {data['format']} (this looplm reads {_FORMAT})")
    spec = data["spec"]
    kind, _ = parse_spec(spec)
    if kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(json.dumps(data["hf"])), spec)
    vocab = Vocab(tuple(data["itos"]), data.get("unk"))
    return CharTokenizer(vocab, spec) if kind == "char" else WordTokenizer(vocab, spec)


def tokenizer_for(corpus) -> Tokenizer:
    """The corpus's own tokenizer, or for the generated sources (whitespace tokens) a word
    tokenizer over their vocab."""
    return getattr(corpus, "tokenizer", None) or WordTokenizer(corpus.vocab)


def save_tokenizer(tok: Tokenizer, run_dir: str | Path) -> None:
    """Write ``RUNDIR/tokenizer.json`` atomically."""
    atomic_write_text(Path(run_dir) / TOKENIZER, json.dumps(tok.to_dict(), ensure_ascii=False))


def load_tokenizer(run_dir: str | Path, vocab: Vocab | None = None) -> Tokenizer:
    """The tokenizer of a run directory; with ``vocab`` (the run's), check that they agree."""
    path = Path(run_dir) / TOKENIZER
    if not path.is_file():
        raise LooplmError(f"the run directory {run_dir} has no {TOKENIZER}: retrain it with this looplm "
                          "(or point --run at a complete run directory)")
    try:
        tok = tokenizer_from_dict(read_json(path, "the tokenizer"))
    except LooplmError:
        raise
    except Exception as err:  # bad JSON, missing keys, or the tokenizers library's own parse errors
        raise LooplmError(f"{path} is damaged ({type(err).__name__}: {err}): retrain or restore it") from None
    if vocab is not None and tuple(tok.vocab.itos) != tuple(vocab.itos):
        raise LooplmError(f"{path} ({len(tok.vocab)} tokens) and the run's vocab ({len(vocab)} tokens) differ: "
                          "the run directory mixes files of different runs")
    return tok
