"""looplm: recurrent language models from scratch, trained with truncated BPTT.

The data flows one way::

    data (sources, vocab, stream batches) -> models -> learner (callbacks)
         -> evaluate / report -> cli
"""

__version__ = "0.1.0"
