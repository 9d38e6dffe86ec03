"""Before a run resumes: check its directory, and read its data as training read it.

``looplm train --resume RUNDIR`` (:func:`resume_training`) either continues the run or stops
with one line saying why, before anything in RUNDIR is written. :func:`open_resume` checks,
in order:

    config.json           looplm training settings (read by :func:`looplm.runconfig.load_config`)
    checkpoint-N/         (the newest) trainer.json, model.safetensors, trainer.safetensors all there
    vocab.json            readable, and as long as config.json's vocab_sz
    tokenizer.json        (text runs) readable and agreeing with vocab.json; the data is
                          read with it, and must still be the text it was fitted on

The checkpoint itself (its weights' shapes, then its contents) is checked where it is
loaded, by :func:`looplm.checkpoint.load_checkpoint`, which ``train(resume=True)`` calls
before it writes anything.

A generated source (human-numbers, borborzan) is rebuilt from its settings and its vocab
compared with vocab.json.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from looplm.checkpoint import latest_checkpoint
from looplm.data.corpus import Corpus
from looplm.data.sources import is_text_path, load_corpus
from looplm.data.tokenize import load_tokenizer
from looplm.data.vocab import Vocab
from looplm.errors import LooplmError
from looplm.files import check_file
from looplm.fingerprint import check_fingerprint, fingerprint
from looplm.distributed import DistOptions
from looplm.rundir import VOCAB
from looplm.runconfig import RunConfig, TrainConfig, load_config
from looplm.training import TrainResult, train

CHECKPOINT_FILES = ("trainer.json", "model.safetensors", "trainer.safetensors")


def open_resume(run_dir: str | Path, config: RunConfig) -> tuple[TrainConfig, Corpus]:
    """The settings and the corpus to resume the run in ``run_dir`` with (``config``: its
    config.json); a :class:`LooplmError` naming the problem when it cannot resume."""
    run_dir = Path(run_dir)
    cfg = config.train
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise LooplmError(f"{run_dir} has no checkpoint to resume from (one is written after every epoch "
                          "and on Ctrl-C): train again")
    missing = [name for name in CHECKPOINT_FILES if not (ckpt / name).exists()]
    if missing:
        raise LooplmError(f"the checkpoint in {ckpt} is incomplete (no {', '.join(missing)}): "
                          "resume is not possible, retrain")
    for name in CHECKPOINT_FILES:
        check_file(ckpt / name, "the checkpoint file", "resume is not possible, retrain")
    if not (run_dir / VOCAB).exists():
        raise LooplmError(f"the run directory {run_dir} has no {VOCAB}: resume is not possible, retrain")
    vocab = Vocab.load(run_dir / VOCAB)
    vocab_sz = config.model_config.vocab_sz
    if vocab_sz != len(vocab):
        raise LooplmError(f"{run_dir}: config.json describes a vocab of {vocab_sz} tokens but {VOCAB} has "
                          f"{len(vocab)}: the run directory mixes files of different runs")
    if is_text_path(cfg.data):
        tok = load_tokenizer(run_dir, vocab)  # the run's own: never fitted again
        corpus = load_corpus(cfg.data, cfg.data_options, tokenizer=tok, same_data=True)
    else:
        corpus = load_corpus(cfg.data, cfg.data_options)
        if tuple(corpus.vocab.itos) != tuple(vocab.itos):
            raise LooplmError(f"the data {cfg.data} now has a vocab of {len(corpus.vocab)} tokens, the run's "
                              f"{VOCAB} has {len(vocab)}: resume needs the data the run was trained on")
    check_fingerprint(run_dir, fingerprint(corpus, cfg.data, cfg.data_options.valid), "resume")
    return cfg, corpus


def resume_training(run_dir: str | Path, log: Callable[[str], None] | None = print, progress: bool = True,
                    dist_options: DistOptions | None = None, precision: str | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint, with its own settings
    (every rank of a data-parallel job reads them: ``run_dir`` must be visible to all).
    ``precision`` changes the run's precision from here on (weights and checkpoints are
    float32 in every precision, so any run resumes in any other)."""
    config = load_config(run_dir, missing="nothing to resume", damaged="resume is not possible, retrain")
    cfg, corpus = open_resume(run_dir, config)
    if precision is not None:
        cfg = dataclasses.replace(cfg, precision=precision)
    return train(cfg, out=run_dir, corpus=corpus, log=log, progress=progress, resume=True,
                 dist_options=dist_options)
