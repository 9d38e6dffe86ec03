"""The brute-force reference for TBPTT(k1, k2): every window re-run from the state a full
forward pass has at its start, then plain backprop. Shared by the token and the float tests."""

import torch

from looplm.tbptt import summed_cross_entropy


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def state_at(model, inputs, p):
    """The state after the first p steps, from a full forward pass."""
    with torch.no_grad():
        return model(inputs[:, :p])[1] if p > 0 else None


def brute_force(model, inputs, targets, k1, k2, forward=None, loss_fn=summed_cross_entropy):
    """Per update: (gradients, reported loss, state at the stride's end).

    The window [w, t) starts from the full pass's state at w; the loss covers the
    stride's positions in it, [a, t) with a = max(s, w), run as their own call so
    that ``loss_fn`` sees only their outputs.
    """
    forward = forward or model
    bs, T = inputs.shape[:2]
    results = []
    for s in range(0, T, k1):
        t = min(s + k1, T)
        w = max(0, t - k2)
        a, n = max(s, w), bs * (t - s)
        with torch.no_grad():
            stride_out, end_state = forward(inputs[:, s:t], state_at(model, inputs, s))
        model.zero_grad()
        h = state_at(model, inputs, w)
        if a > w:
            h = forward(inputs[:, w:a], h)[1]
        out, _ = forward(inputs[:, a:t], h)
        (loss_fn(out, targets[:, a:t]) / n).backward()
        results.append((grads(model), loss_fn(stride_out, targets[:, s:t]) / n, end_state))
    model.zero_grad()
    return results
