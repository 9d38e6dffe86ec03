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
from looplm.reproduce.chapter12 import TWINS, Chapter12Result, ModelResult
from looplm.reproduce.pool import threads_per_job

FASTAI_SECONDS = "126-145"
AGREE, CLOSE = 0.001, 0.005  # valid accuracy: twins "agree" at an epoch within AGREE, stay close within CLOSE


def mean_std(values: list[float]) -> tuple[float, float]:
    return ModelResult.mean_std(values)


def pm(values: list[float], digits: int = 3) -> str:
    """"mean ± std" over seeds (just the mean for one seed)."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def environment_line(seeds: list[int], jobs: int = 1) -> str:
    """What ran the reproduction: versions, machine, threads (and runs at a time), seeds."""
    threads = (f"{torch.get_num_threads()} torch threads" if jobs == 1 else
               f"{jobs} runs at a time, {threads_per_job(jobs)} torch thread(s) each")
    return (f"looplm {__version__}, torch {torch.__version__}, {platform.machine()} with {os.cpu_count()} CPUs "
            f"({threads}); seeds {', '.join(map(str, seeds))}.")


def _results_table(res: Chapter12Result) -> list[str]:
    lines = [
        "| model | book | fastai, this CPU | looplm final | looplm best | needs (fastai − 0.03) | met "
        "| looplm bits/byte | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in res.models:
        final, _ = ModelResult.mean_std(m.finals())
        per_epoch = statistics.fmean(m.seconds.values()) / m.recipe.epochs
        if m.recipe.fastai_cpu is None:  # an extra run: nothing published to compare with
            book = fastai = need = met = "—"
        else:
            book, fastai, need = f"{m.recipe.book:.3f}", f"{m.recipe.fastai_cpu:.3f}", f"{m.recipe.fastai_cpu - 0.03:.3f}"
            met = "—" if res.epochs is not None else "yes" if final >= m.recipe.fastai_cpu - 0.03 else "**no**"
        lines.append(
            f"| {m.recipe.title} (`{m.recipe.model}`) | {book} | {fastai} | {pm(m.finals())} "
            f"| {pm(m.bests())} | {need} | {met} | {pm(list(m.bits_per_byte.values()))} | {per_epoch:.2f} |"
        )
    return lines


def _timing(res: Chapter12Result) -> str:
    """Seconds per seed for the chapter's models (comparable with fastai's) and for the extra runs."""
    def per_seed(models: list[ModelResult]) -> str:
        return ", ".join(f"seed {s}: {sum(m.seconds[s] for m in models):.1f} s" for s in res.seeds)

    chapter = [m for m in res.models if not m.recipe.extra]
    extra = [m for m in res.models if m.recipe.extra]
    text = (f"Training time of the chapter's {len(chapter)} models: {per_seed(chapter)} "
            f"(fastai, all seven on the same kind of CPU: {FASTAI_SECONDS} s per seed).") if chapter else ""
    if extra:
        text += f" Of the {len(extra)} extra runs: {per_seed(extra)}."
    if res.jobs > 1:
        text += (f" Those are the runs' own times; trained {res.jobs} at a time in worker processes, "
                 f"all {len(res.models) * len(res.seeds)} runs took {res.wall_seconds:.1f} s of wall time.")
    return text.strip()


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _mean_final(m: ModelResult) -> float:
    return statistics.fmean(m.finals())


def _mean_seconds(m: ModelResult) -> float:
    return statistics.fmean(m.seconds.values())


def _compare_section(res: Chapter12Result) -> list[str]:
    """The chapter's exercise: the GRU beside LModel6's LSTM, from scratch beside PyTorch's."""
    by_name = {m.recipe.model: m for m in res.models}
    lines = ["## Compare with PyTorch's GRU (the chapter's exercise)", "",
             "LModel6's setup (same epochs, lr, bs, sl, wd) with its recurrent layer swapped. Final valid accuracy",
             "and seconds per run are means over seeds.", ""]
    for scratch, builtin in TWINS:
        if scratch not in by_name or builtin not in by_name:
            continue
        a, b = by_name[scratch], by_name[builtin]
        gaps = [max(abs(a.curves[s][e] - b.curves[s][e]) for s in a.curves) for e in range(a.recipe.epochs)]
        if res.same_init[(scratch, builtin)]:
            start = ("start from the same weights under one seed (every tensor equal: the from-scratch layer "
                     "registers the same parameters in the same order and draws them as PyTorch does) and compute "
                     "the same function, so only float rounding separates them (the kernels sum in another order)")
        else:
            start = ("do **not** start from the same weights under one seed (the layers draw their parameters "
                     "differently), so they are two different trainings, not one computed twice")
        if max(gaps) <= CLOSE:
            curves = f"their curves stay within {max(gaps):.4f} of each other at every epoch"
        else:
            agree = next(e for e, gap in enumerate(gaps) if gap > AGREE)
            curves = (f"their curves agree within {AGREE} for the first {agree} of {_epochs(len(gaps))}, then drift "
                      f"apart (largest gap {max(gaps):.4f})")
            if res.same_init[(scratch, builtin)] and agree:
                curves += ": this setup amplifies rounding-sized differences as it trains"
        lines += [f"- **{a.recipe.title}** against **{b.recipe.title}**: the two {start}. Final accuracy "
                  f"{_mean_final(a):.4f} against {_mean_final(b):.4f}; over every seed, {curves}. Time "
                  f"{_mean_seconds(a):.1f} s against {_mean_seconds(b):.1f} s per run "
                  f"({_mean_seconds(a) / _mean_seconds(b):.2f}×)."]
    if "lm6-gru" in by_name and "lm6" in by_name:
        gru, lstm = by_name["lm6-gru"], by_name["lm6"]
        lines += [f"- **GRU against LSTM** (both PyTorch's): final accuracy {_mean_final(gru):.4f} against "
                  f"{_mean_final(lstm):.4f}, best {statistics.fmean(gru.bests()):.4f} against "
                  f"{statistics.fmean(lstm.bests()):.4f}, in {_mean_seconds(gru):.1f} s against "
                  f"{_mean_seconds(lstm):.1f} s per run."]
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
            f"| {m.recipe.title} | {e['n_targets']:,} | {e['n_errors']:,} | {e['accuracy_after_boundary']:.3f} "
            f"| {e['accuracy_elsewhere']:.3f} | {e['error_share_after_boundary']:.1%} |"
        )
    for m in res.models:
        e = m.errors
        lines += ["", f"### {m.recipe.title}", "", "Most frequent mistakes:", "",
                  "| context | target | predicted | count |", "|---|---|---|---|"]
        lines += [f"| `{t['context']}` | {t['target']} | {t['predicted']} | {t['count']} |" for t in e["top_mistakes"][:6]]
        worst = sorted(e["per_token"].items(), key=lambda kv: kv[1]["accuracy"])[:6]
        lines += ["", "Hardest targets: " + ", ".join(f"`{tok}` {v['accuracy']:.2f} (n={v['count']})" for tok, v in worst)]
    return lines


def write_report(res: Chapter12Result, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {m.recipe.title: [statistics.fmean(c[e] for c in m.curves.values()) for e in range(m.recipe.epochs)]
              for m in res.models}
    plot_accuracy_by_model(curves, out / "accuracy.png", res.baseline)
    cut = ([f"Every model trained {_epochs(res.epochs)} instead of the chapter's: a quick look, not comparable with "
            "the book or fastai.", ""] if res.epochs is not None else [])
    extra = any(m.recipe.extra for m in res.models)
    lines = [
        "# Chapter 12 reproduced: A Language Model from Scratch",
        "",
        environment_line(res.seeds, res.jobs),
        "",
        "Final and best valid accuracy (mean ± standard deviation over seeds) beside the book's figure and",
        "beside fastai 2.8.12 running the chapter's own code on a 2-core CPU (mean of seeds 0, 1, 2).",
        f"Baseline (always predict the most common target, `thousand`): {res.baseline:.4f}.",
        "*Bits/byte*: the final valid loss in bits over the UTF-8 bytes of the valid text the table",
        "scored (the numbers written out, a space before each word), comparable with any tokenizer.",
        "",
        *cut,
        *_results_table(res),
        "",
        _timing(res),
        "",
        "![valid accuracy per epoch, mean over seeds](accuracy.png)",
        "",
        *(_compare_section(res) + [""] if extra else []),
        *_errors_section(res),
        "",
    ]
    atomic_write_text(out / "REPORT.md", "\n".join(lines))
    data = {
        "seeds": res.seeds,
        "baseline": res.baseline,
        "seconds_per_seed": res.seconds_per_seed,
        "jobs": res.jobs,
        "wall_seconds": res.wall_seconds,
        "epochs": res.epochs,
        "same_init": [{"scratch": a, "builtin": b, "equal": equal} for (a, b), equal in res.same_init.items()],
        "models": {
            m.recipe.model: {"title": m.recipe.title, "book": m.recipe.book, "fastai_cpu": m.recipe.fastai_cpu,
                          "curves": m.curves, "seconds": m.seconds, "errors": m.errors,
                          "bits_per_byte": m.bits_per_byte}
            for m in res.models
        },
    }
    atomic_write_text(out / "results.json", json.dumps(data, indent=1) + "\n")
    return out / "REPORT.md"
