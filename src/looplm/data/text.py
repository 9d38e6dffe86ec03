r"""Your own text as a corpus: one UTF-8 file, or a folder of ``.txt`` documents.

A folder's documents (every ``*.txt`` below it, sorted by path) are read as one text; when
there are several, each document ends with the ``<sep>`` token. The validation split is the
last ``valid_pct`` of the bytes, moved to the nearest word start (a byte that is not ASCII
whitespace after one that is, or a document's first byte), so that no word is cut in two and a
word tokenizer fitted on the train part never learns half a word; or a separate file or folder.
(Tiny Shakespeare: nanoGPT's cut at 1,003,854 falls inside "here?"; ours moves 3 bytes on, to
the "GREMIO:" that starts the next speech)::

    bytes:   doc 0 ........... | doc 1 ......................... | doc 2 ......
    tokens:  d0 d0 d0 d0 <sep>   d1 d1 d1 d1 d1 <sep> | d1 d1 <sep>  d2 d2 d2 <sep>
             \_____________________ train ___________/ \__________ valid _______/
                                    cut = the word start nearest int(n_bytes * (1 - valid_pct))

The train part of the document that the cut falls in ends with ``<sep>`` too, so that every
train document can be moved whole when documents are shuffled (``--shuffle-docs``).
The tokenizer is fitted on the train part only. Text is read in blocks and never held whole;
the token streams go to the memmap cache (:mod:`looplm.data.cache`) and the corpus's
tensors are views of it, uint16 or uint32; each batch is made int64 as it is read
(:meth:`looplm.data.batching.StreamBatches.batch`, and the strategies' own slices).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from looplm.data.batching import n_samples
from looplm.data.cache import cache_key, cached_json, cached_streams, token_dtype
from looplm.data.corpus import Corpus
from looplm.data.tokenize import MAX_WORD, SEP, Tokenizer, fit_tokenizer, parse_spec, safe_cut, tokenizer_from_dict
from looplm.errors import LooplmError
from looplm.files import check_file

BLOCK = 1 << 20  # bytes read at a time
SPLITS = ("word", "char")  # where --valid-pct cuts: the nearest word start, or (0.1) the next character
WHITESPACE = frozenset(b" \t\n\r\f\v")  # single bytes: never part of a multi-byte UTF-8 character


@dataclass(frozen=True)
class TextSource:
    """The documents of a path: ``files`` with their ``sizes`` in bytes (empty files left out)."""

    path: Path
    files: tuple[Path, ...]
    sizes: tuple[int, ...]

    @classmethod
    def open(cls, path: str | Path) -> "TextSource":
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise LooplmError(f"the folder {path} holds no .txt files: put the documents in .txt files "
                                  "or point --data at one text file")
        elif path.exists():
            files = [check_file(path, "the data file", "point --data at a UTF-8 text file or a folder of .txt files")]
        else:
            raise LooplmError(f"no such file or folder: {path}")
        sizes = [p.stat().st_size for p in files]
        kept = [(p, n) for p, n in zip(files, sizes) if n > 0]
        if not kept:
            what = "is empty" if path.is_file() else f"holds only empty .txt files ({len(files)})"
            raise LooplmError(f"{path} {what}: there is no text to train on")
        return cls(path, *map(tuple, zip(*kept)))

    @property
    def n_bytes(self) -> int:
        return sum(self.sizes)

    def digest(self) -> str:
        """A hash of the documents' names (relative, they set the order) and bytes."""
        h = hashlib.blake2b(digest_size=16)
        for f, size in zip(self.files, self.sizes):
            name = f.relative_to(self.path).as_posix() if self.path.is_dir() else ""
            h.update(f"{name}\0{size}\0".encode("utf-8", "surrogateescape"))
            with open(f, "rb") as fh:
                while block := fh.read(BLOCK):
                    h.update(block)
        return h.hexdigest()

    def char_boundary(self, pos: int) -> int:
        """``pos``, or the next byte that starts a UTF-8 character."""
        offset = 0
        for f, size in zip(self.files, self.sizes):
            if pos < offset + size:
                with open(f, "rb") as fh:
                    fh.seek(pos - offset)
                    head = fh.read(4)
                skip = next((i for i, b in enumerate(head) if b & 0xC0 != 0x80), len(head))
                return min(pos + skip, offset + size)
            offset += size
        return pos

    def word_start(self, pos: int) -> int:
        """The position nearest ``pos`` (the earlier of two as near) that starts a word: a byte
        that is not ASCII whitespace after one that is (never inside a UTF-8 character), or a
        document's first byte; if the text has none between its ends (one long word), ``pos``
        moved to a character boundary."""
        starts = [int(o) for o in np.cumsum((0, *self.sizes[:-1])) if 0 < o < self.n_bytes]
        width = 4096
        while True:
            lo, hi = max(pos - width, 1), min(pos + width, self.n_bytes - 1)
            found = [p for p in starts if lo <= p <= hi]
            data = self._bytes(lo - 1, hi + 1)  # data[i] is byte lo - 1 + i
            found += [lo - 1 + i for i in range(1, len(data)) if data[i - 1] in WHITESPACE and data[i] not in WHITESPACE]
            if found:
                return min(found, key=lambda p: (abs(p - pos), p))
            if lo == 1 and hi == self.n_bytes - 1:
                return self.char_boundary(pos)
            width *= 4

    def _bytes(self, start: int, stop: int) -> bytes:
        """Raw bytes ``start:stop`` across the documents."""
        out, offset = [], 0
        for f, size in zip(self.files, self.sizes):
            lo, hi = max(start - offset, 0), min(stop - offset, size)
            if lo < hi:
                with open(f, "rb") as fh:
                    fh.seek(lo)
                    out.append(fh.read(hi - lo))
            offset += size
        return b"".join(out)

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, str, bool]]:
        """Bytes ``start:stop`` of the documents as ``(doc, text, doc_ends)`` pieces of about
        ``BLOCK`` bytes, cut where no tokenizer would notice (:func:`safe_cut`); ``doc_ends``
        marks the last piece of a document that ends inside the range."""
        stop = self.n_bytes if stop is None else stop
        offset = 0
        for doc, (f, size) in enumerate(zip(self.files, self.sizes)):
            lo, hi = max(start - offset, 0), min(stop - offset, size)
            offset += size
            if lo < hi:
                yield from self._read_file(doc, f, lo, hi, hi == size)

    def _read_file(self, doc: int, f: Path, lo: int, hi: int, ends: bool) -> Iterator[tuple[int, str, bool]]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        carry, pos = "", lo
        with open(f, "rb") as fh:
            fh.seek(lo)
            while pos < hi:
                data = fh.read(min(BLOCK, hi - pos))
                if not data:
                    raise LooplmError(f"{f} changed while it was being read: try again")
                pending = len(decoder.getstate()[0])
                try:
                    text = carry + decoder.decode(data, final=pos + len(data) >= hi)
                except UnicodeDecodeError as err:
                    raise LooplmError(f"{f} is not UTF-8 text (a bad byte near offset {pos - pending + err.start}): "
                                      "convert it to UTF-8 or leave it out") from None
                pos += len(data)
                last = pos >= hi
                cut = len(text) if last else safe_cut(text)
                if cut == 0:  # no place to cut yet: read on
                    carry = text
                    continue
                yield doc, text[:cut], last and ends
                carry = text[cut:]


@dataclass(frozen=True)
class TextCorpus(Corpus):
    """A :class:`Corpus` read from text: ``tokens``/``valid_tokens`` are memmap views (uint16
    or uint32); ``tokenizer`` made them; ``doc_starts`` (n_docs,) are where the train
    stream's documents begin; ``shuffle_seed`` set means a new document order every epoch."""

    tokenizer: Tokenizer | None = None
    doc_starts: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64), compare=False)
    shuffle_seed: int | None = None

    def train_tokens(self, epoch: int) -> Tensor:
        """The train stream for ``epoch``: as read, or its documents in the order drawn
        from ``(shuffle_seed, epoch)`` (a copy, in the stream's small dtype)."""
        if self.shuffle_seed is None or len(self.doc_starts) < 2:
            return self.tokens
        bounds = np.append(self.doc_starts, len(self.tokens))
        order = np.random.default_rng([self.shuffle_seed, epoch]).permutation(len(self.doc_starts))
        flat = self.tokens.numpy()
        return torch.from_numpy(np.concatenate([flat[bounds[i] : bounds[i + 1]] for i in order]))

    def describe(self) -> dict:
        """As :meth:`Corpus.describe`, counted with numpy on the memmap, plus the tokenizer."""
        valid = self.valid_tokens.numpy()
        targets = valid[3 : n_samples(len(valid), 3) * 3 + 1 : 3]
        counts = np.bincount(targets, minlength=len(self.vocab))
        top = int(counts.argmax())
        return {
            "name": self.name,
            "n_lines": self.n_lines,
            "n_tokens": self.n_tokens,
            "vocab_size": len(self.vocab),
            "n_samples_3": n_samples(self.n_tokens, 3),
            "top_token": self.tokenizer.decode([top]) if self.tokenizer else self.vocab.itos[top],
            "baseline_accuracy": float(counts[top]) / max(len(targets), 1),
            "tokenizer": self.tokenizer.spec if self.tokenizer else None,
            "n_docs": len(self.doc_starts),
            "n_train_tokens": len(self.tokens),
            "n_valid_tokens": len(self.valid_tokens),
        }


def load_text_corpus(path: str | Path, tokenizer: str = "char", valid: str | Path | None = None,
                     valid_pct: float = 0.1, shuffle_seed: int | None = None,
                     fitted: Tokenizer | None = None, same_data: bool = False,
                     split_at: str = "word") -> TextCorpus:
    """The corpus of a UTF-8 file or a folder of ``.txt`` files (see the module docstring).

    ``tokenizer`` is a spec (``char``, ``word``, ``word:N``, ``bpe:N``) fitted on the train
    part, unless ``fitted`` (e.g. a run's saved tokenizer) is given. Fitted tokenizers and
    token streams are cached, keyed by the bytes, the split and the tokenizer.
    ``same_data`` (with ``fitted``): refuse text whose own fit gives another vocab than
    ``fitted``'s, i.e. not the text a run was trained on (char and word; any text fits bpe).
    """
    src = TextSource.open(path)
    valid_src = TextSource.open(valid) if valid is not None else None
    if valid_src is None:
        if not 0.0 < valid_pct < 1.0:
            raise LooplmError(f"--valid-pct must be between 0 and 1, got {valid_pct} (or give --valid PATH)")
        if split_at not in SPLITS:
            raise LooplmError(f"split_at must be one of {', '.join(SPLITS)}, got {split_at!r}")
        at = int(src.n_bytes * (1 - valid_pct))
        cut = src.word_start(at) if split_at == "word" else src.char_boundary(at)  # "char": looplm 0.1's runs
        if cut in (0, src.n_bytes):
            raise LooplmError(f"{path} ({src.n_bytes} bytes) is too short to split into train and valid text")
        parts = {"train": (lambda: src.read(0, cut), len(src.files), path),
                 "valid": (lambda: src.read(cut), len(src.files), path)}
        split = f"{src.digest()}|cut={cut}"
    else:
        parts = {"train": (src.read, len(src.files), path), "valid": (valid_src.read, len(valid_src.files), valid)}
        split = f"{src.digest()}|valid={valid_src.digest()}"

    def fit(spec: str) -> Tokenizer:
        train_text = (text for _, text, _ in parts["train"][0]())
        return cached_json(cache_key("fit", spec, split, f"max_word={MAX_WORD},py-space"), lambda: fit_tokenizer(spec, train_text).to_dict(),
                           tokenizer_from_dict)

    tok = fit(tokenizer) if fitted is None else fitted
    if fitted is not None and same_data and parse_spec(fitted.spec)[0] != "bpe":
        _check_same_vocab(path, fitted, fit(fitted.spec))
    # the tokenizer itself is part of the key: same bytes and same tokenizer, same streams
    streams = cached_streams(cache_key("streams", split, json.dumps(tok.to_dict(), sort_keys=True)),
                             token_dtype(len(tok.vocab)), lambda writer: _encode(writer, tok, parts), len(tok.vocab))
    return TextCorpus(str(path), tok.vocab, streams.train, streams.meta["n_lines"], valid_pct,
                      streams.valid, tokenizer=tok, doc_starts=np.asarray(streams.meta["doc_starts"], np.int64),
                      shuffle_seed=shuffle_seed)


def _check_same_vocab(path, run: Tokenizer, now: Tokenizer) -> None:
    """Refuse text that ``run`` (a run's tokenizer) was not fitted on: ``now`` is its own fit."""
    if tuple(now.vocab.itos) == tuple(run.vocab.itos):
        return
    old, new = set(run.vocab.itos), set(now.vocab.itos)
    show = lambda tokens: ", ".join(map(repr, sorted(tokens)[:5])) + (" ..." if len(tokens) > 5 else "")  # noqa: E731
    changes = [f"new: {show(new - old)}" if new - old else "", f"gone: {show(old - new)}" if old - new else ""]
    what = "; ".join(c for c in changes if c) or "the same tokens in another order"
    raise LooplmError(f"{path} is not the text the run was trained on: its {run.spec} vocab is now "
                      f"{len(now.vocab)} tokens ({what}), the run's is {len(run.vocab)}; "
                      "give the run its own data back (or score other text with eval --file)")


def _encode(writer, tok: Tokenizer, parts: dict) -> dict:
    """Tokenise each stream's pieces into ``writer``; ``parts`` maps "train"/"valid" to
    ``(pieces, n_docs, path)``. Returns what the cache keeps beside the streams."""
    n_lines, doc_starts = 0, []
    for stream, (pieces, n_docs, path) in parts.items():
        if n_docs > 1 and tok.sep_id is None:
            raise LooplmError(f"the {tok.spec} tokenizer has no {SEP} token to put between the documents of {path}")
        doc, ends = None, True
        for d, text, ends in pieces():
            if stream == "train" and d != doc:
                doc_starts.append(writer.lengths["train"])
            doc = d
            n_lines += text.count("\n")
            writer.write(stream, tok.encode(text))
            if ends and n_docs > 1:
                writer.write(stream, np.array([tok.sep_id]))
        if not ends and n_docs > 1:  # the head of the document that the split cut: a document too
            writer.write(stream, np.array([tok.sep_id]))
        if writer.lengths[stream] < 2:
            raise LooplmError(f"the {stream} text of {path} holds {writer.lengths[stream]} {tok.spec} token(s): "
                              "it needs at least 2")
    return {"n_lines": n_lines, "doc_starts": doc_starts, "tokenizer": tok.spec}
