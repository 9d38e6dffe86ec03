"""PNG figures (matplotlib, no display needed), each written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from looplm.atomic import atomic_write  # noqa: E402


def _save(fig, path: str | Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> None:
    """Train/valid loss and valid accuracy per epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["valid_loss"] for r in history], label="valid")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["accuracy"] for r in history], color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="valid accuracy")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_accuracy_by_model(curves: Mapping[str, Sequence[float]], path: str | Path, baseline: float) -> None:
    """Valid accuracy per epoch, one line per model, with the baseline."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, accs in curves.items():
        ax.plot(range(len(accs)), accs, marker=".", label=name)
    ax.axhline(baseline, color="grey", linestyle="--", label="baseline")
    ax.set(xlabel="epoch", ylabel="valid accuracy", ylim=(0, 1), title="Human Numbers: valid accuracy per epoch")
    ax.legend(loc="lower right", fontsize="small")
    _save(fig, path)


def plot_loss_by_model(curves: Mapping[str, Sequence[float]], path: str | Path,
                       optimum: Mapping[str, float]) -> None:
    """Valid loss per epoch, one line per model, each model's optimum dotted in its colour."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, losses in curves.items():
        line, = ax.plot(range(len(losses)), losses, marker=".", label=name)
        ax.axhline(optimum[name], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set(xlabel="epoch", ylabel="valid loss (nats/token)", yscale="log",
           title="Bor-bor-zan: valid loss per epoch (dotted: the exact optimum)")
    ax.legend(loc="upper right", fontsize="small")
    _save(fig, path)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], suggestion: float, path: str | Path) -> None:
    losses = list(losses)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2e}")
    # clip the explosion: from just below the lowest loss to just above the loss before it
    low = min(losses)
    before = losses[: losses.index(low) + 1]
    top = max(before) if max(before) > low else max(losses)
    margin = 0.1 * (top - low) or 0.1
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title="LR finder",
           ylim=(low - margin, top + margin))
    ax.legend()
    _save(fig, path)
