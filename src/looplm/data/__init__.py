"""Data: sources, vocab, and the stream batcher."""

from looplm.data.batching import StreamBatches, split_stream, stream_batches
from looplm.data.corpus import Corpus
from looplm.data.sources import SOURCES, load_corpus
from looplm.data.vocab import Vocab

__all__ = ["Corpus", "SOURCES", "StreamBatches", "Vocab", "load_corpus", "split_stream", "stream_batches"]
