r"""Data-parallel training: n processes, one copy of the model each, the same global batch.

    torchrun --nproc-per-node 2 -m looplm train --bs 64 ...     (or: looplm train --nproc 2 ...)

    stream layout, bs = 4, two ranks        rank 0: rows 0 1        rank 1: rows 2 3
    each rank: forward + backward on its bs/n rows, its hidden state (n_layers, bs/n, n_hidden)
    before every optimiser step: .grad all-reduced and divided by n -> the same step everywhere

Every rank's loss is the mean over its bs/n rows; the rows are split evenly, so the mean of
the n gradients is the gradient of the mean over all bs rows: the single-process update.
Resets happen at the same batch on every rank (one ``ResetState``), and the strategies'
random lengths come from generators seeded by (seed, epoch), never from a rank's own RNG.

Why not ``DistributedDataParallel``: a looplm update may run several backward passes
(stored TBPTT backpropagates a chain of retained segments, newest first, while
``frozen_weights`` swaps saved weights) and DDP's reducer all-reduces at every backward
unless each one but the last is wrapped in ``no_sync()``, and it expects one backward per
forward. Averaging ``.grad`` once per update, as the learner does just before the
``before_step`` callbacks (gradient clipping among them), is exact for every strategy and costs one all-reduce of one flat buffer
per update. What it gives up is DDP's overlap of communication with the backward pass, which
matters for large models on GPUs, not for small recurrent models (see docs/scaling.md).

Metrics are reduced as sums (loss and counts), so rank 0's table equals the single-process
one; only rank 0 prints, writes the run directory and checkpoints. A checkpoint holds the
full (.., bs, ..) hidden state gathered from the ranks, so it is the single-process format
and each rank slices its rows again on resume. Rendezvous is bounded by ``--dist-timeout``;
a rank that dies closes its sockets and the others fail at their next collective at once.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from looplm import __version__
from looplm.data.batching import check_divisible
from looplm.device import resolve_device
from looplm.errors import LooplmError
from looplm.state import State, map_state

T = TypeVar("T")


@dataclass(frozen=True)
class DistOptions:
    """rendezvous_timeout: seconds a rank waits for the others to join (and for the settings
    check); collective_timeout: seconds a collective waits for a live but stuck peer (a dead
    peer fails the collective at once)."""

    rendezvous_timeout: float = 60.0
    collective_timeout: float = 1800.0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise LooplmError(f"the environment variable {name}={text!r} is not a whole number: "
                          "launch with torchrun or looplm train --nproc") from None


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 without it)."""
    return _env_int("WORLD_SIZE", 1)


def env_rank() -> int:
    return _env_int("RANK", 0)


def is_main() -> bool:
    """True in a single process and on rank 0: the process that prints and writes."""
    return env_rank() == 0


def rank_prefix() -> str:
    """``"rank r: "`` for messages of a multi-process job, else empty."""
    try:
        return f"rank {env_rank()}: " if env_world_size() > 1 else ""
    except LooplmError:
        return ""


def _collective(method: Callable[..., T]) -> Callable[..., T]:
    """A failed collective means another rank ended (its own error is shown by that rank):
    one line naming that, not a traceback from inside gloo/NCCL."""

    @functools.wraps(method)
    def wrapper(self: "TorchrunJob", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except RuntimeError as err:  # torch.distributed.DistError is one
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise LooplmError(f"another rank of the job ended or cannot be reached ({reason}): "
                              "see that rank's error, fix it and start the job again") from None

    return wrapper


@dataclass
class Distributed:
    """This process's place in the job and the collectives training needs. This base class is
    the single process every run without torchrun is: rank 0 of 1, whose reductions return
    their input and whose "rank 0 does, the others hear" just does. :class:`TorchrunJob` is
    one rank of a job; :func:`setup` decides which, once, and everything else asks this object.
    """

    device: torch.device = torch.device("cpu")
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    stop_check_every = 1  # updates between two agreements on a stop request (Ctrl-C)

    @property
    def is_main(self) -> bool:
        """The process that prints and writes the run directory."""
        return self.rank == 0

    # -- reductions --------------------------------------------------------------
    def sum(self, *values: Tensor | float | int) -> list[Any]:
        """Each value summed over the ranks: here, the values themselves."""
        return list(values)

    def weighted_mean(self, value: Tensor, weight: int) -> Tensor:
        """sum_r(value_r * weight_r) / sum_r(weight_r): a mean over rows from per-rank means."""
        return value

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        return flag

    def should_stop(self, requested: bool, train_iter: int) -> bool:
        """Whether to stop after update ``train_iter``, given this rank's Ctrl-C: every rank
        must stop at the same update (a rank that stops alone leaves the others waiting in
        a collective), so a job agrees only every ``stop_check_every`` updates."""
        return requested

    def sync_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Replace every ``.grad`` by its mean over the ranks (one process: nothing to do)."""

    # -- state, weights, RNG -------------------------------------------------------
    def join_model(self, model: nn.Module, seed: int) -> None:
        """Make ``model`` this rank's copy: rank 0's weights, and ranks other than 0 their own
        RNG stream (dropout masks must differ), after identical initialisation."""

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere."""

    def gather_state(self, state: State) -> State:
        """The ranks' states (.., bs/n, ..) joined on the batch dim into (.., bs, ..)."""
        return map_state(state, lambda t: self.gather_rows(t, 1))

    def rows_of(self, state: State) -> State:
        """This rank's rows of a full state (.., bs, ..) -> (.., bs/n, ..)."""
        return map_state(state, lambda t: self.own_rows(t, 1, "hidden state"))

    def gather_rows(self, t: Tensor, dim: int) -> Tensor:
        """The ranks' ``t`` joined on ``dim``, the batch's dim (in rank order)."""
        return t

    def own_rows(self, t: Tensor, dim: int, what: str) -> Tensor:
        """This rank's share of the batch dim ``dim`` of a full ``t``; ``what`` names it in an error."""
        return t

    def gather_rngs(self) -> tuple[Tensor, ...]:
        """Every rank's CPU RNG state, in rank order, for checkpoints (one process: none
        beyond the checkpoint's own ``rng``)."""
        return ()

    def own_rng(self, rng: Tensor, rank_rngs: Sequence[Tensor]) -> Tensor:
        """This rank's RNG state from a checkpoint (``rng``: rank 0's)."""
        return rng

    # -- rank 0 does, the others hear -------------------------------------------------
    def main_only(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and hand its result (or its LooplmError) to every rank."""
        return fn()

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then (if it succeeded) on the other ranks: e.g. a corpus that
        rank 0 tokenises into the cache and the others then read from it."""
        return fn()

    def check_same(self, settings: dict[str, Any]) -> None:
        """Refuse to train when the ranks were started with different settings."""

    def close(self) -> None:
        """Leave the job."""


@dataclass
class TorchrunJob(Distributed):
    """One rank of a job torchrun started; every collective runs on ``group``."""

    group: Any = None

    stop_check_every = 8  # each agreement is a collective: not after every update

    @_collective
    def sum(self, *values: Tensor | float | int) -> list[Tensor]:
        """Each value summed over the ranks (one all-reduce, float64): 0-dim tensors out."""
        flat = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(self.device).reshape(()) for v in values])
        tdist.all_reduce(flat, group=self.group)
        return list(flat.unbind())

    def weighted_mean(self, value: Tensor, weight: int) -> Tensor:
        total, weights = self.sum(value.detach() * weight, weight)
        return total / weights
    def any(self, flag: bool) -> bool:
        return bool(self.sum(float(flag))[0] > 0)

    def should_stop(self, requested: bool, train_iter: int) -> bool:
        return train_iter % self.stop_check_every == 0 and self.any(requested)

    @_collective
    def sync_gradients(self, params: Iterable[nn.Parameter]) -> None:
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for p in params:
            if p.grad is not None:
                by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            tdist.all_reduce(flat, group=self.group)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def join_model(self, model: nn.Module, seed: int) -> None:
        self.broadcast_module(model)
        if self.rank:
            torch.manual_seed(seed * 1_000_003 + self.rank)

    @_collective
    def broadcast_module(self, module: nn.Module) -> None:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                tdist.broadcast(t.data, src=0, group=self.group)

    @_collective
    def gather_rows(self, t: Tensor, dim: int) -> Tensor:
        # gloo gathers no narrow integers (a uint16 memmap's ids): such tensors travel as int64
        wide = t.to(torch.int64) if not t.is_floating_point() and t.dtype != torch.int64 else t
        wide = wide.contiguous()
        parts = [torch.empty_like(wide) for _ in range(self.world_size)]
        tdist.all_gather(parts, wide, group=self.group)
        return torch.cat(parts, dim=dim).to(t.dtype)

    def own_rows(self, t: Tensor, dim: int, what: str) -> Tensor:
        if t.shape[dim] % self.world_size:
            raise LooplmError(f"the checkpoint's {what} has {t.shape[dim]} rows, not divisible by "
                              f"the world size {self.world_size}: resume with --bs {t.shape[dim]}")
        n = t.shape[dim] // self.world_size
        return t.narrow(dim, self.rank * n, n).contiguous()

    @_collective
    def gather_rngs(self) -> tuple[Tensor, ...]:
        mine = torch.get_rng_state().to(self.device)
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        tdist.all_gather(parts, mine, group=self.group)
        return tuple(p.cpu() for p in parts)

    def own_rng(self, rng: Tensor, rank_rngs: Sequence[Tensor]) -> Tensor:
        """Its own if the checkpoint has one per rank, else one derived from rank 0's,
        distinct per rank (dropout masks must differ)."""
        if len(rank_rngs) == self.world_size:
            return rank_rngs[self.rank]
        if self.rank == 0:
            return rng
        digest = hashlib.sha256(rng.numpy().tobytes() + self.rank.to_bytes(4, "little")).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1).get_state()

    def main_only(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0; its result (JSON: None, numbers, strings, lists, dicts) or its
        LooplmError reaches every rank. Values that are not JSON stay on rank 0: use
        :meth:`main_first` to have every rank compute its own."""
        value, error, told = None, None, ["ok", None]
        if self.is_main:
            try:
                value = fn()
                told = ["ok", value if _is_json(value) else None]
            except LooplmError as err:
                error, told = err, ["error", str(err)]
        kind, shared = self._broadcast_json(told)
        if error is not None:
            raise error
        if kind == "error":
            raise LooplmError(f"rank 0 failed: {shared}")
        return value if self.is_main else shared

    @_collective
    def _broadcast_json(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank, sent as JSON bytes in a tensor: nothing from
        another rank is ever unpickled (``broadcast_object_list`` would)."""
        data = json.dumps(value).encode("utf-8") if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        tdist.broadcast(size, src=0, group=self.group)
        buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_main and data
               else torch.zeros(int(size), dtype=torch.uint8)).to(self.device)
        tdist.broadcast(buf, src=0, group=self.group)
        return json.loads(bytes(buf.cpu().numpy()).decode("utf-8"))

    def main_first(self, fn: Callable[[], T]) -> T:
        result: list[Any] = []
        self.main_only(lambda: result.append(fn()))  # only success or the LooplmError is shared
        return result[0] if self.is_main else fn()

    def check_same(self, settings: dict[str, Any]) -> None:
        """Refuse, on every rank, a job whose ranks were started with other settings than rank 0
        (rank 0's settings are broadcast as JSON; each rank compares, then all agree)."""
        mine = json.loads(json.dumps(settings, default=str))
        diff = _differences(self._broadcast_json(mine if self.is_main else None), mine)
        differing = int(self.sum(float(bool(diff)))[0])
        if differing:
            where = f"this rank: {'; '.join(diff[:3])}" if diff else "see their errors"
            raise LooplmError(f"{differing} rank(s) were started with other settings than rank 0 ({where}): "
                              "start every rank with the same looplm train arguments and looplm version")

    def close(self) -> None:
        _destroy()


def _destroy() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if a == b else [f"{path}: {a!r} on rank 0, {b!r} here"]


def setup(cfg: Any, options: DistOptions | None = None) -> Distributed:
    """This process's :class:`Distributed`: the single process unless torchrun started several
    ranks; then join the job: check ``cfg.bs`` splits evenly, rendezvous within the timeout,
    and check every rank has the same ``cfg``."""
    world = env_world_size()
    if world <= 1:
        return Distributed(resolve_device(cfg.device))
    check_divisible(cfg.bs, world)
    options = options or DistOptions()
    rank, local = env_rank(), _env_int("LOCAL_RANK", env_rank())
    if not 0 <= rank < world:
        raise LooplmError(f"RANK={rank} is not one of WORLD_SIZE={world} ranks: launch with torchrun")
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not tdist.is_initialized():
        _rendezvous(backend, rank, world, options)
    # a process that ends with the group alive can abort in its teardown ("terminate called
    # without an active exception"), hiding its exit code: destroy it on every way out
    atexit.register(_destroy)
    group = tdist.new_group(backend=backend, timeout=timedelta(seconds=options.collective_timeout))
    job = TorchrunJob(device, rank, world, local, group)
    job.check_same({"looplm": __version__, "torch": torch.__version__, "world_size": world,
                    "settings": dataclasses.asdict(cfg)})
    return job


def _rendezvous(backend: str, rank: int, world: int, options: DistOptions) -> None:
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        tdist.init_process_group(backend, timeout=timedelta(seconds=options.rendezvous_timeout))
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LooplmError(
            f"rank {rank} of {world} could not join the rendezvous at {where} within "
            f"{options.rendezvous_timeout:g} s ({reason}): start every rank with the same "
            "MASTER_ADDR/MASTER_PORT (torchrun --rdzv-endpoint), check that it is reachable, "
            "or give the other ranks more time with --dist-timeout") from None
