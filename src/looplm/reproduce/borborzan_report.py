"""Write the bor-bor-zan notebook reproduction as ``results.json``, ``REPORT.md`` and ``loss.png``.

``results.json`` is written first and holds everything the report says, so a report can be
rewritten from it (``read_results``), and runs of different seeds merged (``merge_results``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from looplm.atomic import atomic_write_text
from looplm.errors import LooplmError
from looplm.plots import plot_loss_by_model
from looplm.reproduce.borborzan import BS, NOTEBOOK_RUNS, BorborzanResult, NotebookRun, RunResult
from looplm.reproduce.report import environment_line, mean_std, pm

RESULTS, REPORT, FIGURE = "results.json", "REPORT.md", "loss.png"
NOTEBOOK_SLACK = 0.005  # nats: "as good as the notebook" means at most this much above its valid loss
OPTIMUM_SLACK = 0.005  # the LSTM models' valid loss within 0.5% of the exact optimum
# LModel7's final valid loss for seeds 0, 1, 2 on the notebook's 100,000 games, measured side by
# side by benchmarks/borborzan_lm7.py (one thread, each run after the other in one invocation):
# fastai of the notebook's time (TextLearner without AR/TAR), fastai now (with them), and looplm
# both ways.
LM7_SIDE_BY_SIDE = {
    "when": "1 Dec 2026, one thread, fastai on torch 2.14.1",
    "fastai_then": ("2.8.2", (0.5673, 0.5674, 0.5672)),
    "fastai_now": ("2.8.12", (0.5707, 0.5704, 0.5704)),
    "looplm": (0.5673, 0.5673, 0.5673),
    "looplm_ar_tar": (0.5709, 0.5706, 0.5705),
}


def results_json(res: BorborzanResult) -> dict:
    return {
        "seeds": res.seeds, "games": res.games, "epochs": res.epochs, "bs": BS, "environment": res.environment,
        "limits": res.limits, "entropies": {str(k): v for k, v in res.entropies.items()},
        "runs": [{"run": asdict(r.run), "losses": r.losses, "accuracies": r.accuracies, "seconds": r.seconds,
                  "text": r.text}
                 for r in res.runs],
    }


def read_results(path: str | Path) -> BorborzanResult:
    """The result saved in ``results.json`` (or the folder holding it)."""
    path = Path(path)
    path = path / RESULTS if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runs = []
        for r in data["runs"]:
            run = NotebookRun(**{**r["run"], "moms": tuple(r["run"]["moms"])})
            keyed = lambda d: {int(s): v for s, v in d.items()}  # noqa: E731  (JSON keys are strings)
            runs.append(RunResult(run, keyed(r["losses"]), keyed(r["accuracies"]), keyed(r["seconds"]),
                                  r.get("text", {})))
        entropies = {int(k): v for k, v in data["entropies"].items()}
        return BorborzanResult(data["seeds"], data["games"], runs, data["limits"], entropies, data["epochs"],
                               data.get("environment", ""))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LooplmError(f"{path} does not hold a bor-bor-zan reproduction ({err})") from None


def merge_results(parts: list[BorborzanResult]) -> BorborzanResult:
    """One result from runs of the same models and settings under different seeds."""
    first = parts[0]
    if any((p.games, p.epochs, [r.run for r in p.runs]) != (first.games, first.epochs, [r.run for r in first.runs])
           for p in parts):
        raise LooplmError("these results trained different models or settings: they do not merge")
    runs = [RunResult(r.run) for r in first.runs]
    for part in parts:
        for merged, r in zip(runs, part.runs):
            merged.losses.update(r.losses)
            merged.accuracies.update(r.accuracies)
            merged.seconds.update(r.seconds)
            merged.text = merged.text or r.text
    seeds = sorted({s for p in parts for s in p.seeds})
    environment = first.environment.split("; seeds")[0] + f"; seeds {', '.join(map(str, seeds))}." \
        if first.environment else ""
    return BorborzanResult(seeds, first.games, runs, first.limits, first.entropies, first.epochs, environment)


def _finals(values: dict[int, list[float]]) -> list[float]:
    return [v[-1] for v in values.values()]


def _results_table(res: BorborzanResult) -> list[str]:
    lines = [
        "| model | notebook loss | looplm loss | within 0.005 | looplm bits/byte | notebook acc. | looplm acc. "
        "| view limit (valid) | optimum (valid) | gap: view | gap: training | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res.runs:
        loss, _ = mean_std(_finals(r.losses))
        lim = res.limits[r.run.model]
        view = lim.get("view_loss", lim["optimal_loss"])
        met = "—" if res.epochs is not None else "yes" if loss <= r.run.notebook_loss + NOTEBOOK_SLACK else "**no**"
        per_epoch = statistics.fmean(r.seconds.values()) / r.run.epochs
        lines.append(
            f"| {r.run.title} (`{r.run.model}`) | {r.run.notebook_loss:.4f} | {pm(_finals(r.losses), 4)} | {met} "
            f"| {f'{r.bits_per_byte(loss):.4f}' if r.text else '—'} "
            f"| {r.run.notebook_accuracy:.4f} | {pm(_finals(r.accuracies), 4)} "
            f"| {view:.4f} | {lim['optimal_loss']:.4f} | {view - lim['optimal_loss']:+.4f} "
            f"| {loss - view:+.4f} | {per_epoch:.0f} |")
    return lines


def _gap_lines(res: BorborzanResult) -> list[str]:
    """Model by model: how much of the gap to the optimum is the view, how much training."""
    lines = []
    for r in res.runs:
        loss, _ = mean_std(_finals(r.losses))
        lim = res.limits[r.run.model]
        opt = lim["optimal_loss"]
        gap = loss - opt
        if "view_loss" in lim:
            view = lim["view_loss"] - opt
            lines.append(
                f"- **{r.run.title}** sees {r.run.sl} tokens of its sample: {gap:.4f} nats above the optimum, of which "
                f"{view:.4f} ({view / gap:.0%}) is its view (the best model seeing only those tokens scores "
                f"{lim['view_loss']:.4f}) and {gap - view:+.4f} training.")
        else:
            rel = gap / opt
            lstm = " (an LSTM: " + ("within" if rel <= OPTIMUM_SLACK else "**not** within") + " 0.5%)" \
                if r.run.model in ("lm6", "lm7") else ""
            lines.append(
                f"- **{r.run.title}** carries its state along the stream, so it can see the whole game: "
                f"{gap:.4f} nats ({rel:.2%}) above the optimum{lstm}, all of it training (and the cold start "
                f"of the {BS} rows).")
    return lines


def _lm7_lines(res: BorborzanResult) -> list[str]:
    """Why LModel7 trains without AR/TAR here, and both ways beside fastai on the same games."""
    run = next((r for r in res.runs if r.run.model == "lm7"), None)
    if run is None or res.epochs is not None:
        return []
    opt, side = res.limits["lm7"]["optimal_loss"], LM7_SIDE_BY_SIDE
    (then, then_losses), (now, now_losses) = side["fastai_then"], side["fastai_now"]

    def above(losses: tuple[float, ...]) -> str:
        mean, std = mean_std(list(losses))
        return f"{mean:.4f} ± {std:.4f} ({mean / opt - 1:.2%} above the optimum)"
    return [
        "## LModel7 and AR/TAR",
        "",
        "The notebook builds LModel7's learner with `TextLearner`, whose defaults name AR α = 2 and TAR β = 1,",
        "but fastai up to 2.8.3 built that learner's callbacks with `rnn_cbs()` and its zero defaults, so AR",
        "and TAR never ran ([fastai#3605](https://github.com/fastai/fastai/issues/3605), fixed in 2.8.4 by",
        "[fastai#4119](https://github.com/fastai/fastai/pull/4119), August 2025; an image in the notebook is",
        "named by its upload time, 22 June 2025). Its LModel7 trained with dropout 0.4 and weight decay 0.1",
        "only, and so does this reproduction. Side by side on these games (`benchmarks/borborzan_lm7.py`,",
        f"seeds 0, 1, 2, {side['when']}): fastai {then} running the notebook's cell ends at",
        f"{above(then_losses)}, looplm as the notebook ran at {above(side['looplm'])}. With AR and TAR",
        f"applied, as the cell reads and as fastai {now} does: fastai {above(now_losses)}, looplm",
        f"{above(side['looplm_ar_tar'])}. AR (α = 2 times the mean square of the dropped output) holds the",
        "activations down, and through the output tied to the embedding small activations make small logits:",
        "it costs confidence on the tokens a game forces.",
    ]


def _entropy_lines(res: BorborzanResult) -> list[str]:
    lines = []
    for reads, e in sorted(res.entropies.items()):
        lines.append(
            f"- {reads} tokens seen: H(T | V) = {e['entropy']:.4f} ± {e['stderr']:.4f} nats "
            f"({e['n_samples']:,} samples of {e['n_games']:,} fresh games in {e['chunks']} chunks, "
            f"{e['n_views']:,} distinct views).")
    return lines


def _report_text(res: BorborzanResult, note: str = "") -> str:
    lm7 = _lm7_lines(res)
    cut = ([f"Every model trained {res.epochs} epoch(s) instead of the notebook's: a quick look, not comparable "
            "with the notebook.", ""] if res.epochs is not None else [])
    return "\n".join([
        "# The bor-bor-zan notebook reproduced",
        "",
        (res.environment or environment_line(res.seeds)) + f" {res.games:,} random,random games (data seed 0), bs {BS}.",
        *([note] if note else []),
        "",
        "Final valid loss (nats/token) and accuracy, mean ± standard deviation over the seeds, beside the",
        "notebook's last epoch and beside two limits computed on the same valid targets: the **view limit**,",
        "the best loss of any model that sees only what this model sees (LMModel1-3 see their sample only),",
        "and the **optimum**, the best loss given the whole game so far (`looplm.games.optimum`). The gap",
        "to the optimum splits into *view* (view limit − optimum) and *training* (loss − view limit).",
        "*Bits/byte* is the same total loss in bits over the UTF-8 bytes of the valid text the table",
        "scored (the game log written out, a space before each token), comparable with any tokenizer.",
        "",
        *cut,
        *_results_table(res),
        "",
        "![valid loss per epoch, mean over seeds, with the optimum](loss.png)",
        "",
        "## Where each model's gap to the optimum comes from",
        "",
        *_gap_lines(res),
        "",
        *lm7,
        *([""] if lm7 else []),
        "## The data layout (kept from the notebook)",
        "",
        "LMModel1-3 read samples of 6 tokens cut every 6 tokens from the stream, the target being the token",
        "after each sample, batched in stream order (no `group_chunks`). LMModel1 reads only the first 3",
        "tokens of each sample (`x[:,0]`, `x[:,1]`, `x[:,2]`), so it names the token **4 places** after the",
        "last one it saw; LMModel2 and LMModel3 loop over all 6. A game is 4 tokens per pair plus",
        "`end .`, so every target sits on an even stream position: always a move or `end`, the hard tokens,",
        "which is why these three score about 1.2-1.4 nats while a model predicting every token scores 0.57.",
        "LMModel4 to LModel7 read 128 continuing rows in chunks of 6 with a target after every token.",
        "",
        "## How the view limit is computed",
        "",
        "For views of k tokens, P(target | view) is the mean of the exact distributions P(target | whole",
        "past) (`looplm.games.stream_truth`) over every sample with that view (a Rao-Blackwellised",
        "estimate, free of the targets' own noise), on fresh games (seeds 1000+) laid out as the notebook",
        "lays its samples; H(target | view) weights each view's entropy by its frequency. The error is the",
        "spread of the chunks' estimates over √chunks. The *view limit (valid)* column scores that table",
        "on this valid set's own targets (the valid samples join the table so every view they hold has an",
        "estimate).",
        "",
        *_entropy_lines(res),
        "",
    ])


def write_borborzan_report(res: BorborzanResult, out: str | Path, note: str = "") -> Path:
    """results.json first (everything), then the figure and REPORT.md (``note``: how it was run)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RESULTS, json.dumps(results_json(res), indent=1) + "\n")
    curves = {r.run.title: [statistics.fmean(c[e] for c in r.losses.values()) for e in range(r.run.epochs)]
              for r in res.runs}
    plot_loss_by_model(curves, out / FIGURE, {r.run.title: res.limits[r.run.model]["optimal_loss"] for r in res.runs})
    atomic_write_text(out / REPORT, _report_text(res, note))
    return out / REPORT


__all__ = ["NOTEBOOK_RUNS", "merge_results", "read_results", "results_json", "write_borborzan_report"]
