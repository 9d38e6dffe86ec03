"""The fast path: each layer's time loop, with its backward pass written out by hand.

A recurrence takes the input projection of every step at once, ``xp = x W_ih^T + b``
(one matmul before the loop, done by the caller), and runs the hidden-to-hidden part::

    xp (T, bs, G*n_hid) ──► step 0 ──► step 1 ──► ... ──► step T-1 ──► out (T, bs, n_hid)
                  h0 ─────────┘  (h W_hh^T: the only product inside the loop)

Why it is fast (figures in ``benchmarks/cells.py``):

* Autograd would record ~10 small ops per step and replay them one by one. Here each
  ``torch.autograd.Function`` saves the activations and carries only the gradient through
  time, as cuDNN does: every factor that does not depend on the next step is computed for
  all steps at once before the loop, and ``dW_hh`` is one matmul after it.
* Ops write into preallocated buffers (``out=``, in place), so a step allocates little,
  and the backward pass makes few large temporaries (each costs page faults when first
  written). No op in a loop takes a Python scalar: wrapping one costs more than the op.
* The LSTM's cell gate uses tanh(x) = 2 sigmoid(2x) - 1, so one sigmoid covers all four
  gates: ``torch.tanh`` costs about four ``torch.sigmoid`` on this CPU.

What is left is Python's cost per op (a few microseconds each, ~7 ops a step each way),
which at hidden 64 is most of a step. So the LSTM's two loops also exist in C++
(:mod:`looplm.nn.native`, ``csrc/recurrence.cpp``): the same arithmetic, one call per
sequence, the step's gate math fused into one vectorised pass. ``lstm_recurrence`` uses them
when the extension builds (``LOOPLM_NO_EXT=1`` keeps this module's loops). Torch's own
compilers did not help: ``torch.jit.script`` of these loops measured within noise of plain
Python (and is deprecated in torch 2.13); ``torch.compile`` of the autograd loop took ~54 s
to compile for each new sequence length and ran no faster.
The readable step-by-step form stays in :mod:`looplm.nn.cells` as the reference.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from looplm.nn import native


def _previous(first: Tensor, seq: Tensor) -> Tensor:
    """The value before each step: (first, seq[0], ..., seq[T-2]), shape of seq (T, bs, n)."""
    return torch.cat([first.unsqueeze(0), seq[:-1]])


def _weight_grad(d_pre: Tensor, h_prev: Tensor) -> Tensor:
    """dW_hh = sum over steps and rows of d_pre^T h_prev: (G*n_hid, n_hid), one matmul."""
    return d_pre.flatten(0, 1).t() @ h_prev.flatten(0, 1)


class _RNNRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str):
        out = xp.new_empty(xp.shape)                    # (T, bs, n_hid)
        w_t, h = w_hh.t(), h0
        for xp_t, h_t in zip(xp, out):
            h = torch.addmm(xp_t, h, w_t, out=h_t)
            if nonlinearity == "tanh":
                h.tanh_()
            else:
                h.relu_()
        ctx.nonlinearity = nonlinearity
        ctx.save_for_backward(h0, w_hh, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor):
        h0, w_hh, out = ctx.saved_tensors
        d_act = 1 - out * out if ctx.nonlinearity == "tanh" else (out > 0).to(out.dtype)
        d_pre = torch.empty_like(out)                   # gradient of the pre-activation
        dh = d_out[-1]
        for t in range(len(out) - 1, -1, -1):
            torch.mul(dh, d_act[t], out=d_pre[t])
            if t:
                dh = torch.addmm(d_out[t - 1], d_pre[t], w_hh)
        d_w = _weight_grad(d_pre, _previous(h0, out)) if ctx.needs_input_grad[2] else None
        return d_pre, d_pre[0] @ w_hh, d_w, None


class _GRURecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None):
        n_hid = h0.shape[1]
        out = xp.new_empty(xp.shape[:2] + (n_hid,))     # (T, bs, n_hid)
        gates = torch.empty_like(xp)                    # activated r, z, n: (T, bs, 3*n_hid)
        hp = torch.empty_like(xp)                       # h W_hh^T + b_hh, per step
        w_t, h = w_hh.t(), h0
        for xp_t, hp_t, s, h_t in zip(xp, hp, gates, out):
            if b_hh is None:
                torch.mm(h, w_t, out=hp_t)
            else:
                torch.addmm(b_hh, h, w_t, out=hp_t)
            rz = torch.add(xp_t[:, :2 * n_hid], hp_t[:, :2 * n_hid], out=s[:, :2 * n_hid]).sigmoid_()
            r, z = rz.chunk(2, 1)
            n = torch.addcmul(xp_t[:, 2 * n_hid:], r, hp_t[:, 2 * n_hid:], out=s[:, 2 * n_hid:])
            h = torch.lerp(n.tanh_(), h, z, out=h_t)    # (1 - z) n + z h
        ctx.save_for_backward(h0, w_hh, out, gates, hp)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor):
        h0, w_hh, out, gates, hp = ctx.saved_tensors
        T, bs, n_hid = out.shape
        r, z, n = gates.chunk(3, 2)
        h_prev = _previous(h0, out)
        # Every gradient of a step is its dh times a factor known from the forward pass.
        d_n = (1 - z) * (1 - n * n)                     # d n_pre / dh
        d_z = (h_prev - n) * (z - z * z)                # d z_pre / dh
        d_r = d_n * hp[..., 2 * n_hid:] * (r - r * r)   # d r_pre / dh
        xp_per_dh = torch.cat([d_r, d_z, d_n], 2).view(T, bs, 3, n_hid)
        hp_per_dh = torch.cat([d_r, d_z, d_n * r], 2).view(T, bs, 3, n_hid)
        d_xp, d_hp = torch.empty_like(gates), torch.empty_like(gates)
        d_xp4, d_hp4 = d_xp.view(T, bs, 3, n_hid), d_hp.view(T, bs, 3, n_hid)
        dh = d_out[-1]
        for t in range(T - 1, -1, -1):
            torch.mul(dh.unsqueeze(1), xp_per_dh[t], out=d_xp4[t])
            torch.mul(dh.unsqueeze(1), hp_per_dh[t], out=d_hp4[t])
            if t:
                dh = torch.addmm(torch.addcmul(d_out[t - 1], dh, z[t]), d_hp[t], w_hh)
        d_h0 = torch.addmm(dh * z[0], d_hp[0], w_hh)
        d_w = _weight_grad(d_hp, h_prev) if ctx.needs_input_grad[2] else None
        d_b = d_hp.sum((0, 1)) if ctx.needs_input_grad[3] else None
        return d_xp, d_h0, d_w, d_b


class _LSTMRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor):
        n_hid = h0.shape[1]
        g_rows = slice(2 * n_hid, 3 * n_hid)
        out = xp.new_empty(xp.shape[:2] + (n_hid,))     # h at each step: (T, bs, n_hid)
        cs, tanh_cs = torch.empty_like(out), torch.empty_like(out)
        # gates (T, bs, 4*n_hid) starts as xp and ends as the activated i, f, g, o. The cell
        # gate's pre-activation is doubled (in xp and W_hh) so that one sigmoid serves all
        # four gates: tanh(x) = 2 sigmoid(2x) - 1, and torch.tanh costs ~4 sigmoids on CPU.
        gates = xp.clone()
        gates[..., g_rows] *= 2
        w_hh2 = w_hh.clone()
        w_hh2[g_rows] *= 2
        # Views made once (unbind is one call), not per step: each view costs about an op.
        steps, cs_t, tanh_cs_t, out_t = gates.unbind(0), cs.unbind(0), tanh_cs.unbind(0), out.unbind(0)
        i_t, f_t, g_t, o_t = (part.unbind(0) for part in gates.chunk(4, 2))
        w_t, h, c = w_hh2.t(), h0, c0
        for t in range(len(steps)):
            steps[t].addmm_(h, w_t).sigmoid_()          # g_t holds s = sigmoid(2x): tanh(x) = 2s - 1, so
            c = torch.mul(f_t[t], c, out=cs_t[t]).sub_(i_t[t]).addcmul_(i_t[t], g_t[t], value=2)
            h = torch.mul(o_t[t], torch.tanh(c, out=tanh_cs_t[t]), out=out_t[t])  # c = f c + i (2s - 1)
        g = gates[..., g_rows]
        g.mul_(2).sub_(1)                               # tanh(x) for the backward pass, all steps at once
        ctx.save_for_backward(h0, c0, w_hh, out, cs, tanh_cs, gates)
        return out, cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_cn: Tensor):
        h0, c0, w_hh, out, cs, tanh_cs, gates = ctx.saved_tensors
        T, bs, n_hid = out.shape
        i, f, g, o = gates.chunk(4, 2)
        # Few large temporaries (each costs page faults when first written): d_gates holds
        # the activations' derivatives until the loop overwrites it with the gradients.
        d_gates = torch.mul(gates, gates)
        torch.sub(gates, d_gates, out=d_gates)          # sigmoid' = s - s^2 ...
        d_i, d_f, d_g, d_o = d_gates.chunk(4, 2)
        torch.mul(g, g, out=d_g).neg_().add_(1)         # ... and tanh' = 1 - tanh^2
        # A step's gate gradients are dc (for i, f, g) or dh (for o) times these factors.
        factors = gates.new_empty(T, bs, 5, n_hid)
        per_dc, per_dh, dc_per_dh = factors[:, :, :3], factors[:, :, 3], factors[:, :, 4]
        torch.mul(g, d_i, out=per_dc[:, :, 0])
        torch.mul(c0, d_f[0], out=per_dc[0, :, 1])      # c before each step: c0, cs[0], ...
        torch.mul(cs[:-1], d_f[1:], out=per_dc[1:, :, 1])
        torch.mul(i, d_g, out=per_dc[:, :, 2])
        torch.mul(tanh_cs, d_o, out=per_dh)
        torch.mul(tanh_cs, tanh_cs, out=dc_per_dh).neg_().add_(1).mul_(o)
        # unbind once: indexing a tuple in the loop is cheaper than indexing a tensor
        d_gates4 = d_gates.view(T, bs, 4, n_hid)
        d_ifg, d_o = d_gates4[:, :, :3].unbind(0), d_gates4[:, :, 3].unbind(0)
        d_outs, d_gates_t, fs = d_out.unbind(0), d_gates.unbind(0), f.unbind(0)
        per_dc, per_dh, dc_per_dh = per_dc.unbind(0), per_dh.unbind(0), dc_per_dh.unbind(0)
        dh, dc = d_outs[-1], d_cn
        for t in range(T - 1, -1, -1):
            dc = torch.addcmul(dc, dh, dc_per_dh[t])
            torch.mul(dc.unsqueeze(1), per_dc[t], out=d_ifg[t])
            torch.mul(dh, per_dh[t], out=d_o[t])
            if t:
                dh = torch.addmm(d_outs[t - 1], d_gates_t[t], w_hh)
                dc = dc * fs[t]
        d_w = None
        if ctx.needs_input_grad[3]:                     # sum over t of d_gates_t^T h_{t-1}
            d_w = torch.addmm(d_gates[0].t() @ h0, d_gates[1:].flatten(0, 1).t(),
                              out[:-1].flatten(0, 1))
        return d_gates, d_gates[0] @ w_hh, dc * f[0], d_w


class _NativeLSTMRecurrence(torch.autograd.Function):
    """_LSTMRecurrence with both loops in C++ (:mod:`looplm.nn.native`): the same arithmetic,
    one call per sequence each way. ``dW_hh`` stays here: one matmul after the loop. The
    output and ``d_xp`` come in xp's memory order (batch-major for a batch_first layer)."""

    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor):
        out, cs, tanh_cs, gates = native.extension().lstm_forward(xp, h0, c0, w_hh)
        ctx.save_for_backward(h0, c0, w_hh, out, cs, tanh_cs, gates)
        return out, cs[-1].to(xp.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_cn: Tensor):
        h0, c0, w_hh, out, cs, tanh_cs, gates = ctx.saved_tensors
        d_xp, d_h0, d_c0 = native.extension().lstm_backward(d_out, d_cn, c0, w_hh, out, cs, tanh_cs, gates)
        d_w = _hh_weight_grad(d_xp, h0, out) if ctx.needs_input_grad[3] else None
        return d_xp, d_h0.to(h0.dtype), d_c0.to(c0.dtype), d_w


def _hh_weight_grad(d_pre: Tensor, h0: Tensor, out: Tensor) -> Tensor:
    """dW_hh = sum over t of d_pre_t^T h_{t-1}: one matmul over rows in d_pre's memory order
    (T, bs, G*n_hid), either (T, bs) or batch-major; out (T, bs, n_hid) in the same order."""
    if d_pre.stride(0) >= d_pre.stride(1):
        return torch.addmm(d_pre[0].t() @ h0, d_pre[1:].flatten(0, 1).t(), out[:-1].flatten(0, 1))
    d_rows = d_pre.transpose(0, 1).reshape(-1, d_pre.shape[2])       # (bs*T, G*n_hid), a view
    h_prev = torch.cat([h0.unsqueeze(1), out.transpose(0, 1)[:, :-1]], 1)   # (bs, T, n_hid)
    return d_rows.t() @ h_prev.flatten(0, 1)


def _autocast(fn):
    """Run a recurrence under autocast in the autocast dtype (bf16 or fp16), as autocast would
    run a matmul: its floating inputs are cast once, and its loop runs with autocast off,
    because the loop's ``out=`` buffers and in-place ops take one dtype. Outside autocast,
    ``fn`` runs as it is."""

    @functools.wraps(fn)
    def wrapper(xp: Tensor, *args):
        kind = xp.device.type
        if not torch.is_autocast_enabled(kind):
            return fn(xp, *args)
        dtype = torch.get_autocast_dtype(kind)
        cast = [a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in (xp, *args)]
        with torch.autocast(kind, enabled=False):
            return fn(*cast)

    return wrapper


@_autocast
def rnn_recurrence(xp: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """h_t = act(xp_t + h_{t-1} W_hh^T). xp (T, bs, n_hid) holds both biases; h0 (bs, n_hid).

    Returns out (T, bs, n_hid); the final state is ``out[-1]``.
    """
    return _RNNRecurrence.apply(xp, h0, w_hh, nonlinearity)


@_autocast
def gru_recurrence(xp: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None = None) -> Tensor:
    """GRU over time. xp (T, bs, 3*n_hid) holds b_ih; b_hh stays apart (r scales its n part).

    Returns out (T, bs, n_hid); the final state is ``out[-1]``.
    """
    return _GRURecurrence.apply(xp, h0, w_hh, b_hh)


@_autocast
def lstm_recurrence(xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM over time. xp (T, bs, 4*n_hid) holds both biases; h0, c0 (bs, n_hid).

    Returns (out (T, bs, n_hid), c_n (bs, n_hid)); the final hidden state is ``out[-1]``.
    """
    if xp.device.type == "cpu" and native.extension() is not None:
        return _NativeLSTMRecurrence.apply(xp, h0, c0, w_hh)
    return _LSTMRecurrence.apply(xp, h0, c0, w_hh)
