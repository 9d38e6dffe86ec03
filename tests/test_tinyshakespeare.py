"""Real text: Tiny Shakespeare as the README trains on it (skipped, saying why, when it is absent)."""

from pathlib import Path

import pytest

from looplm.data.sources import DataOptions, load_corpus

PATH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare.txt"
CANDIDATES = [PATH, Path("/work/shared/data/tinyshakespeare.txt")]
FOUND = next((p for p in CANDIDATES if p.is_file()), None)


@pytest.mark.skipif(FOUND is None, reason="Tiny Shakespeare is not at ../shared/data/tinyshakespeare.txt")
def test_tiny_shakespeare_reads_as_the_readme_says():
    corpus = load_corpus(str(FOUND), DataOptions(tokenizer="char"))
    assert len(corpus.vocab) == 65 + 2 and corpus.n_tokens == 1_115_394  # its 65 characters, <unk>, <sep>
    assert len(corpus.valid_tokens) == 111_537  # the last 10%, cut at the nearest word start (3 bytes on)
    text = corpus.tokenizer.decode(corpus.valid_tokens[:40].tolist())
    assert text.startswith("GREMIO:\nGood morrow")
    head = corpus.show_batch(bs=4, sl=24, n=1, rows=1)
    assert "First Citizen:" in head
