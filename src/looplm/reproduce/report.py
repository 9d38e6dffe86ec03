"""Write the chapter 12 reproduction as ``REPORT.md``, ``accuracy.png`` and ``results.json``."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

import torch

from looplm import __version__
from looplm.atomic import atomic_write_text
from looplm.plots import plot_accuracy_by_model
from looplm.reproduce.chapter12 import Chapter12Result, ModelResult

FASTAI_SECONDS = "126-145"


def _pm(values: list[float]) -> str:
    mean, std = ModelResult.mean_std(values)
    return f"{mean:.3f} ± {std:.3f}" if len(values) > 1 else f"{mean:.3f}"


def _results_table(res: Chapter12Result) -> list[str]:
    lines = [
        "| model | book | fastai, this CPU | looplm final | looplm best | needs (fastai − 0.03) | met | s/epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in res.models:
        final, _ = ModelResult.mean_std(m.finals())
        need = m.run.fastai_cpu - 0.03
        per_epoch = statistics.fmean(m.seconds.values()) / m.run.epochs
        lines.append(
            f"| {m.run.title} (`{m.run.model}`) | {m.run.book:.3f} | {m.run.fastai_cpu:.3f} | {_pm(m.finals())} "
            f"| {_pm(m.bests())} | {need:.3f} | {'yes' if final >= need else '**no**'} | {per_epoch:.2f} |"
        )
    return lines


def _errors_section(res: Chapter12Result) -> list[str]:
    lines = [
        f"## Error analysis (seed {res.seeds[0]}, validation stream)",
        "",
        "Accuracy on the first word of a number (the target right after `.`) against the rest,",
        "and the share of all mistakes that fall on that first word. The validation stream starts",
        "near 8082, so the thousands word of 9000-9999 never occurs in training.",
        "",
        "| model | targets | mistakes | first word: accuracy | elsewhere: accuracy | mistakes on first word |",
        "|---|---|---|---|---|---|",
    ]
    for m in res.models:
        e = m.errors
        lines.append(
            f"| {m.run.title} | {e['n_targets']:,} | {e['n_errors']:,} | {e['accuracy_after_boundary']:.3f} "
            f"| {e['accuracy_elsewhere']:.3f} | {e['error_share_after_boundary']:.1%} |"
        )
    for m in res.models:
        e = m.errors
        lines += ["", f"### {m.run.title}", "", "Most frequent mistakes:", "",
                  "| context | target | predicted | count |", "|---|---|---|---|"]
        lines += [f"| `{t['context']}` | {t['target']} | {t['predicted']} | {t['count']} |" for t in e["top_mistakes"][:6]]
        worst = sorted(e["per_token"].items(), key=lambda kv: kv[1]["accuracy"])[:6]
        lines += ["", "Hardest targets: " + ", ".join(f"`{tok}` {v['accuracy']:.2f} (n={v['count']})" for tok, v in worst)]
    return lines


def write_report(res: Chapter12Result, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {m.run.title: [statistics.fmean(c[e] for c in m.curves.values()) for e in range(m.run.epochs)]
              for m in res.models}
    plot_accuracy_by_model(curves, out / "accuracy.png", res.baseline)
    seeds = ", ".join(map(str, res.seeds))
    per_seed = ", ".join(f"seed {s}: {t:.1f} s" for s, t in res.seconds_per_seed.items())
    lines = [
        "# Chapter 12 reproduced: A Language Model from Scratch",
        "",
        f"looplm {__version__}, torch {torch.__version__}, {platform.machine()} with {os.cpu_count()} CPUs "
        f"({torch.get_num_threads()} torch threads); seeds {seeds}.",
        "",
        "Final and best valid accuracy (mean ± standard deviation over seeds) beside the book's figure and",
        "beside fastai 2.8.12 running the chapter's own code on a 2-core CPU (mean of seeds 0, 1, 2).",
        f"Baseline (always predict the most common target, `thousand`): {res.baseline:.4f}.",
        "",
        *_results_table(res),
        "",
        f"Time for all seven models: {per_seed} (fastai on the same kind of CPU: {FASTAI_SECONDS} s per seed).",
        "",
        "![valid accuracy per epoch, mean over seeds](accuracy.png)",
        "",
        *_errors_section(res),
        "",
    ]
    atomic_write_text(out / "REPORT.md", "\n".join(lines))
    data = {
        "seeds": res.seeds,
        "baseline": res.baseline,
        "seconds_per_seed": res.seconds_per_seed,
        "models": {
            m.run.model: {"title": m.run.title, "book": m.run.book, "fastai_cpu": m.run.fastai_cpu,
                          "curves": m.curves, "seconds": m.seconds, "errors": m.errors}
            for m in res.models
        },
    }
    atomic_write_text(out / "results.json", json.dumps(data, indent=1) + "\n")
    return out / "REPORT.md"
