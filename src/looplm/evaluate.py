"""Predictions over a whole stream, and what the mistakes are."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from looplm.data.batching import StreamBatches
from looplm.data.vocab import Vocab

CONTEXT = 3  # tokens of input shown beside each mistake


@dataclass
class StreamPredictions:
    """One entry per target of the stream, in row order: ``targets``, ``preds`` (N,),
    ``context`` (N, CONTEXT) the inputs just before each target (-1 where the row
    has none), and the summed cross-entropy."""

    targets: Tensor
    preds: Tensor
    context: Tensor
    loss_sum: float

    @property
    def accuracy(self) -> float:
        return (self.preds == self.targets).double().mean().item()

    @property
    def loss(self) -> float:
        return self.loss_sum / len(self.targets)


@torch.no_grad()
def predict_stream(model: nn.Module, batches: StreamBatches) -> StreamPredictions:
    """Run ``model`` over every batch in order, carrying its state, from a zero state."""
    model.eval()
    device = next(model.parameters()).device
    state, preds, loss_sum = None, [], torch.zeros((), dtype=torch.float64, device=device)
    for x, y in batches.to(device):
        logits, state = model(x, state)
        loss_sum += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        preds.append(logits.argmax(-1).reshape(x.shape[0], -1).cpu())  # (bs, sl) or (bs, 1)
    inputs, targets = batches.inputs.cpu(), batches.targets.cpu()
    if batches.layout == "every":
        padded = F.pad(inputs, (CONTEXT - 1, 0), value=-1)
        context = padded.unfold(1, CONTEXT, 1)  # (bs, L, CONTEXT): the inputs up to each position
    else:
        bs, n = targets.shape
        samples = F.pad(inputs.view(bs, n, batches.sl), (CONTEXT, 0), value=-1)
        context = samples[:, :, -CONTEXT:]
    return StreamPredictions(targets.reshape(-1), torch.cat(preds, 1).reshape(-1),
                             context.reshape(-1, CONTEXT), loss_sum.item())


def error_analysis(p: StreamPredictions, vocab: Vocab, top: int = 10, boundary: str | None = ".") -> dict:
    """Accuracy per target token, the most frequent (context, target, predicted)
    mistakes, and the share of mistakes made right after ``boundary`` (for Human
    Numbers: on the first word of a number)."""
    n_vocab = len(vocab)
    wrong = p.preds != p.targets
    totals = torch.bincount(p.targets, minlength=n_vocab)
    right = torch.bincount(p.targets[~wrong], minlength=n_vocab)
    per_token = {
        vocab.itos[i]: {"accuracy": right[i].item() / totals[i].item(), "count": totals[i].item()}
        for i in torch.argsort(totals, descending=True).tolist() if totals[i] > 0
    }
    ctx = p.context[wrong].tolist()
    mistakes = Counter(
        (" ".join(vocab.itos[i] for i in c if i >= 0), vocab.itos[t], vocab.itos[q])
        for c, t, q in zip(ctx, p.targets[wrong].tolist(), p.preds[wrong].tolist())
    )
    n_wrong = int(wrong.sum())
    result = {
        "n_targets": len(p.targets),
        "n_errors": n_wrong,
        "per_token": per_token,
        "top_mistakes": [
            {"context": c, "target": t, "predicted": q, "count": k} for (c, t, q), k in mistakes.most_common(top)
        ],
    }
    if boundary is not None and boundary in vocab.stoi:
        after = p.context[:, -1] == vocab.stoi[boundary]
        result["boundary"] = boundary
        result["error_share_after_boundary"] = (wrong & after).sum().item() / max(n_wrong, 1)
        result["accuracy_after_boundary"] = (~wrong & after).sum().item() / max(after.sum().item(), 1)
        result["accuracy_elsewhere"] = (~wrong & ~after).sum().item() / max((~after).sum().item(), 1)
    return result
