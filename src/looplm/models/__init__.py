"""Language models by name. Every model follows one protocol::

    logits, state = model(x, state)          # x (bs, sl) token ids; state None = zeros

``model.layout`` says which batches it reads: ``"last"`` (one target after sl
tokens; logits (bs, vocab)) or ``"every"`` (a target at every step; logits
(bs, sl, vocab)). Models that can feed AR/TAR accept ``return_activations=True``
and then also return ``(raw, dropped)``.
"""

from looplm.models.registry import MODELS, ModelSpec, build_model, model_spec

__all__ = ["MODELS", "ModelSpec", "build_model", "model_spec"]
