"""The training loop: one small class that runs epochs and calls callbacks.

The learner owns the recurrent state between batches: it passes ``state`` to
the model, takes the new state back and detaches it (truncated BPTT: values
flow across batches, gradients stop at the boundary). Everything else (state
resets, AR/TAR, clipping, schedules, printing) is a callback.

No ``.item()`` per batch: losses and correct counts are summed on the device
and read once per epoch.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from looplm.allocator import keep_freed_memory
from looplm.callbacks import EVENTS, Callback, CancelFit, OneCycleScheduler, ResetState
from looplm.data.batching import StreamBatches
from looplm.distributed import Distributed
from looplm.errors import LooplmError
from looplm.progress import progress
from looplm.finite import CHECK_EVERY, FiniteWatch, NonFiniteTraining, check_weights
from looplm.evaluate import stream_outputs
from looplm.optim import OptimizerHypers, default_adam, param_groups
from looplm.losses import mean_cross_entropy, perplexity, summed_cross_entropy, top_token
from looplm.precision import Precision, resolve_precision
from looplm.schedule import OneCycle
from looplm.state import State, detach_state, map_state
from looplm.strategies import Chunks, Strategy




def returns_activations(model: nn.Module) -> bool:
    return "return_activations" in inspect.signature(model.forward).parameters


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    valid_loss: float
    accuracy: float
    perplexity: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TrainerSnapshot:
    """Where a fit is: the next batch ``batch`` of epoch ``epoch``, with the carried
    hidden state, the epoch's loss so far, the optimiser and the RNG."""

    epoch: int
    batch: int
    train_iter: int
    history: list[dict]
    loss_sum: float
    state: State
    optimizer: dict
    rng: Tensor
    rank_rngs: tuple[Tensor, ...] = ()  # data parallel: every rank's RNG (rng is rank 0's)
    strategy: dict = field(default_factory=dict)  # where the strategy's walk is (TBPTT's stream), if it keeps one


TABLE_HEADER = f"{'epoch':<7}{'train_loss':<12}{'valid_loss':<12}{'accuracy':<10}{'perplexity':<12}time"


def format_row(m: EpochMetrics) -> str:
    """One line of the fastai-style table."""
    minutes, seconds = divmod(int(round(m.seconds)), 60)
    return (f"{m.epoch:<7}{m.train_loss:<12.6f}{m.valid_loss:<12.6f}{m.accuracy:<10.6f}"
            f"{m.perplexity:<12.4f}{minutes:02d}:{seconds:02d}")


class Learner:
    """Train ``model`` on stream batches. ``log`` receives the table's lines.

    One update, all here: ``begin_update`` (callbacks set the learning rate) -> :meth:`update`
    (forward from the carried state, loss, callbacks' terms, backward, detach) -> gradients
    averaged over the ranks -> ``before_step`` callbacks (clipping) -> optimiser step. The
    strategy decides only how the stream is cut into updates (:class:`looplm.strategies.Trainee`
    is all it sees of the learner).

    ``precision`` is a :class:`looplm.precision.Precision` or its name (``fp32``, the default,
    ``bf16``, ``fp16`` or ``auto``): the dtype the forward pass computes in; it owns the
    backward pass and the step too (fp16's gradient scaler)."""

    def __init__(
        self,
        model: nn.Module,
        train_data: StreamBatches,
        valid_data: StreamBatches,
        *,
        wd: float = 0.01,
        cbs: Iterable[Callback] = (),
        device: torch.device | str = "cpu",
        loss_fn: Callable[[Tensor, Tensor], Tensor] = mean_cross_entropy,
        log: Callable[[str], None] | None = print,
        progress: bool = True,
        strategy: Strategy | None = None,
        dist: Distributed | None = None,
        precision: Precision | str = "fp32",
    ):
        layout = getattr(model, "layout", "every")
        if train_data.layout != layout or valid_data.layout != layout:
            raise LooplmError(f"the model reads {layout!r} batches, the data is laid out as {train_data.layout!r}")
        self.device = torch.device(device)
        keep_freed_memory()  # each step's activations reused, not page-faulted in again (looplm.allocator)
        self.dist = Distributed(self.device) if dist is None else dist  # this process's place in the job
        self.model = model.to(self.device)
        self.precision = (precision if isinstance(precision, Precision)
                          else resolve_precision(precision, self.device, self.model))
        self.train_data, self.valid_data = train_data.to(self.device), valid_data.to(self.device)
        self.wd, self.loss_fn, self.log, self.progress = wd, loss_fn, log, progress
        self.strategy = strategy or Chunks()
        self.cbs: list[Callback] = sorted([ResetState(), *cbs], key=lambda cb: cb.order)
        self.opt: torch.optim.Optimizer | None = None
        self.hypers: OptimizerHypers | None = None
        self.state = None
        self.loss_grad: Tensor | None = None
        self.activations: tuple[Tensor, Tensor] | None = None
        self.history: list[EpochMetrics] = []
        self.train_iter = self.total_iters = self.epoch = self.batch = 0
        self.needs_activations = False
        self.finite = FiniteWatch(self.device)
        self.watch_finite = True  # stop on a non-finite loss (the LR finder watches its own)
        self._handlers: dict[str, list[Callback]] = {}

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    # -- events -------------------------------------------------------------
    def event(self, name: str) -> None:
        """Call every callback of the current fit that handles event ``name``."""
        for cb in self._handlers.get(name, ()):
            getattr(cb, name)(self)

    def forward(self, x: Tensor, state: State = None, **kwargs):
        """The model's forward pass in the run's precision: logits and state come back float32."""
        return self.precision.forward(self.model, x, state, **kwargs)

    # -- one update (the strategies' interface, looplm.strategies.Trainee) ----------
    def begin_update(self) -> None:
        self.event("before_batch")

    def update(self, x: Tensor, y: Tensor) -> Tensor:
        """Forward a chunk from the carried state, add the callbacks' terms, backward;
        the chunk's mean loss (detached)."""
        self.begin_update()
        if self.needs_activations:
            logits, state, self.activations = self.forward(x, self.state, return_activations=True)
        else:
            logits, state = self.forward(x, self.state)
        loss = self.loss_fn(logits, y)
        self.loss_grad = loss
        self.event("after_loss")
        self.precision.backward(self.loss_grad)
        self.state = detach_state(state)
        return loss.detach()

    def carry(self, state: State) -> None:
        self.state = state

    def scaled_lr(self, factor: float):
        return self.hypers.scaled_lr(factor)

    def stream_hooks(self):
        """``forward``/``loss_fn`` for looplm.tbptt in the run's precision, keeping AR/TAR when
        the callbacks use them (their terms are means, so they are weighted by the positions
        counted); (None, None) when looplm.tbptt's own plain ones do."""
        if not self.needs_activations and not self.precision.mixed:
            return None, None
        acts = self.needs_activations

        def forward(x, state):
            if not acts:
                return self.forward(x, state)
            logits, state, activations = self.forward(x, state, return_activations=True)
            return (logits, activations), state

        def loss_fn(out, targets):
            logits, self.activations = out if acts else (out, None)
            summed = summed_cross_entropy(logits, targets)
            if acts:
                self.loss_grad = summed.new_zeros(())
                self.event("after_loss")
                summed = summed + self.loss_grad * targets.numel()
            return self.precision.scale(summed)  # fp16: the gradient scaled, the value as it is

        return forward, loss_fn

    # -- fitting ------------------------------------------------------------
    def fit(self, n_epochs: int, lr: float, wd: float | None = None, cbs: Iterable[Callback] = (),
            resume: TrainerSnapshot | None = None, max_updates: int | None = None) -> list[EpochMetrics]:
        """Train ``n_epochs`` at learning rate ``lr`` (callbacks may schedule it).

        ``resume`` continues an interrupted fit from a :meth:`snapshot` taken with
        the same settings: the losses then equal those of an uninterrupted fit.
        ``max_updates`` stops after that many updates in all, inside the last epoch at a
        batch boundary (then validated as any epoch); schedules end there.
        """
        cbs = self.check_fit(n_epochs, lr, cbs)
        self.needs_activations = any(cb.needs_activations for cb in cbs)
        wd = self.wd if wd is None else wd
        self.opt = default_adam(param_groups(self.model, wd), lr, wd)
        self.hypers = OptimizerHypers(self.opt)
        self.total_iters = sum(self.strategy.n_updates(self.train_data, e) for e in range(n_epochs))
        if max_updates is not None:
            self.total_iters = min(self.total_iters, max_updates)
        self.epoch = self.batch = self.train_iter = 0
        self._loss_sum = torch.zeros((), device=self.device)
        if resume is not None:
            self._restore(resume)
        self._handlers = {e: [cb for cb in cbs if hasattr(cb, e)] for e in EVENTS}
        self._say(TABLE_HEADER)
        for row in self.history:
            self._say(format_row(row))
        self.event("before_fit")
        try:
            self._fit_epochs(n_epochs)
        except CancelFit:
            pass
        self.event("after_fit")
        return self.history

    def check_fit(self, n_epochs: int, lr: float, cbs: Iterable[Callback] = ()) -> list[Callback]:
        """Refuse a fit that cannot run (before anything is written); the callbacks in order."""
        if n_epochs < 1:
            raise LooplmError(f"the number of epochs must be at least 1, got {n_epochs}")
        if not 0 < lr < math.inf:
            raise LooplmError(f"the learning rate must be a positive finite number, got {lr}")
        cbs = sorted([*self.cbs, *cbs], key=lambda cb: cb.order)
        if any(cb.needs_activations for cb in cbs) and not returns_activations(self.model):
            raise LooplmError(
                f"AR/TAR need a model that returns its activations; {type(self.model).__name__} does not "
                "(use lm7 or awd-lstm, or set alpha and beta to 0)"
            )
        return cbs

    def _fit_epochs(self, n_epochs: int) -> None:
        while self.epoch < n_epochs and self.train_iter < self.total_iters:  # max_updates may end it sooner
            start = time.perf_counter()
            self.event("before_epoch")
            train_loss = self._train_epoch()
            self.event("before_validate")
            valid_loss, accuracy = self.validate()
            if self.watch_finite and not math.isfinite(valid_loss):
                raise NonFiniteTraining(self.epoch, None, "validation loss")
            self.history.append(
                EpochMetrics(self.epoch, train_loss, valid_loss, accuracy, perplexity(valid_loss),
                             time.perf_counter() - start)
            )
            self._say(format_row(self.history[-1]))
            self.epoch, self.batch = self.epoch + 1, 0
            self.event("after_epoch")

    def fit_one_cycle(
        self,
        n_epochs: int,
        lr_max: float,
        wd: float | None = None,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        cbs: Iterable[Callback] = (),
        resume: TrainerSnapshot | None = None,
        max_updates: int | None = None,
    ) -> list[EpochMetrics]:
        """fastai's one-cycle policy (see :class:`looplm.schedule.OneCycle`), over
        ``max_updates`` updates when given (a fractional last epoch)."""
        schedule = OneCycle(lr_max, div, div_final, pct_start, moms)
        return self.fit(n_epochs, lr_max, wd, [OneCycleScheduler(schedule), *cbs], resume=resume,
                        max_updates=max_updates)

    def _train_epoch(self) -> float:
        """Run the epoch's updates from ``self.batch`` on (0 unless resuming mid-epoch);
        return the mean of the updates' losses."""
        self.model.train()
        if self.batch == 0:
            self._loss_sum = torch.zeros((), device=self.device)
            self.event("before_train")
        n_updates = self.strategy.n_updates(self.train_data, self.epoch)
        self.opt.zero_grad(set_to_none=True)
        updates = self.strategy.updates(self, self.train_data, self.batch)
        self.finite.reset()
        for loss in progress(updates, n_updates, self.batch, f"epoch {self.epoch}", self.progress):
            self.dist.sync_gradients(self.model.parameters())  # every rank takes the step of the whole batch
            self.event("before_step")
            self.precision.step(self.opt)
            self.opt.zero_grad(set_to_none=True)
            self._loss_sum += loss
            if self.watch_finite:
                self.finite.observe(loss, self.batch)
            self.train_iter, self.batch = self.train_iter + 1, self.batch + 1
            if self.watch_finite and self.train_iter % CHECK_EVERY == 0:
                self.finite.check(self.epoch, self.dist)
            self.event("after_batch")
            if self.train_iter >= self.total_iters:  # a planned stop inside the last epoch
                break
        self.activations = None
        if self.watch_finite:
            self.finite.check(self.epoch, self.dist)
        loss_sum = self.dist.weighted_mean(self._loss_sum, self.train_data.bs)
        return (loss_sum / self.batch).item()  # the updates of this epoch (all, unless stopped early)

    # -- snapshots (for checkpoints) -------------------------------------------
    def snapshot(self) -> TrainerSnapshot:
        """Everything a resumed fit needs, taken between two batches (on every rank of a
        job: the full hidden state and the rows' mean loss are gathered). Refused
        (:class:`NonFiniteTraining`) when training has turned non-finite: a checkpoint is
        always finite."""
        if self.watch_finite:
            self.finite.check(self.epoch, self.dist)
            check_weights(self.model, self.epoch)
        state, rngs = self.dist.gather_state(self.state), self.dist.gather_rngs()
        loss_sum = self.dist.weighted_mean(self._loss_sum, self.train_data.bs)
        return TrainerSnapshot(
            epoch=self.epoch, batch=self.batch, train_iter=self.train_iter,
            history=[m.as_dict() for m in self.history], loss_sum=loss_sum.item(),
            state=state, optimizer=self.opt.state_dict(), rng=torch.get_rng_state(), rank_rngs=rngs,
            strategy=self._walk_state(),
        )

    def _walk_state(self) -> dict:
        """The strategy's walk, with every rank's rows of it (see :meth:`Strategy.row_dims`)."""
        walk = self.strategy.state_dict()
        dims = self.strategy.row_dims(walk)
        return {k: self.dist.gather_rows(v, dims[k]) if k in dims else v for k, v in walk.items()}

    def _own_walk(self, walk: dict) -> dict:
        """A checkpoint's strategy walk on this device, with this rank's share of its rows."""
        dims = self.strategy.row_dims(walk)
        on_device = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in walk.items()}
        return {k: self.dist.own_rows(v, dims[k], "strategy's walk") if k in dims else v for k, v in on_device.items()}

    def _restore(self, snap: TrainerSnapshot) -> None:
        self.epoch, self.batch, self.train_iter = snap.epoch, snap.batch, snap.train_iter
        self.history = [EpochMetrics(**row) for row in snap.history]
        self._loss_sum = torch.tensor(snap.loss_sum, device=self.device)
        state, rng = self.dist.rows_of(snap.state), self.dist.own_rng(snap.rng, snap.rank_rngs)
        self.state = map_state(state, lambda t: t.to(self.device))
        try:
            self.opt.load_state_dict(snap.optimizer)
        except (ValueError, KeyError, RuntimeError) as err:  # another grouping of the parameters
            raise LooplmError(f"the checkpoint's optimiser state does not fit this model ({err}): "
                              "resume is not possible, retrain") from None
        torch.set_rng_state(rng)
        self.strategy.restore(self, self._own_walk(snap.strategy))

    @torch.no_grad()
    def validate(self, data: StreamBatches | None = None) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over every target of ``data`` (default: valid)."""
        data = self.valid_data if data is None else data.to(self.device)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for logits, y in stream_outputs(self.precision.wrap(self.model), data):
            loss_sum += summed_cross_entropy(logits, y)
            correct += (top_token(logits) == y).sum()
        loss_sum, correct, n = self.dist.sum(loss_sum, correct, data.n_targets)  # over every rank's rows
        return (loss_sum / n).item(), (correct / n).item()
