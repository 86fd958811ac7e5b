"""Robustness figures of the report: accuracy under image corruptions (Tables 5/12 as pictures,
bars and a heatmap that hatches the cells at chance level) and accuracy vs ε per attack (BIM,
FGSM, PGD; ε = 0 is the clean accuracy). Styling and saving from :mod:`flatkd.report.style`:
one colour per configuration over every configuration of the results (as in the other
figures), accuracy axes from 0, ± std held to [0, 100] %, legends wrapped to the figure width.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..evidence.results import Result, dataset_facts, group, robustness_constants
from .cells import ChanceRule
from .style import (CONTEXT, STYLE, accuracy_axis, clip_band, fit_legend, label_colors,
                    legend_below, method_dashes, new_figure, results_title)

#: what the corruption severity constants mean, for captions.
CONSTANTS_TEXT = {"imagenet-c": "imagenet-c (ImageNet-C's parameters, harsher at 32 px)",
                  "cifar-c": "cifar-c (CIFAR-10-C generator's severity tables)"}


def corruption_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per (result, corruption, severity): ``label, seed, corruption, severity, accuracy``."""
    rows = [{"label": k.label, "seed": r.seed, "corruption": c["corruption"],
             "severity": int(c["severity"]), "accuracy": 100.0 * c["accuracy"]}
            for k, rs in group(results).items() for r in rs
            for c in (r.robustness or {}).get("corruptions", [])]
    return pd.DataFrame(rows, columns=["label", "seed", "corruption", "severity", "accuracy"])


def constants_caption(results: Iterable[Result]) -> str:
    """Which corruption severity constants the results used (from their provenance)."""
    found = robustness_constants(results)
    if not found:
        return "severity constants: none recorded"
    if len(found) == 1:
        return f"severity constants: {CONSTANTS_TEXT.get(found[0], found[0])}"
    return f"severity constants MIXED across results ({', '.join(found)}): not comparable"


def chance_rule(results: Sequence[Result], num_classes: int | None = None) -> ChanceRule:
    """The chance-level rule of the results' dataset (one dataset expected): classes and test
    size from the dataset registry; ``num_classes`` (e.g. from a checkpoint) when it lacks them."""
    datasets = {r.dataset for r in results}
    if len(datasets) != 1:
        return ChanceRule(None, None)
    n_cls, n_test = dataset_facts(datasets.pop())
    return ChanceRule(n_cls or num_classes, n_test)


def _sd_in_range(v) -> tuple[float, float]:
    """Error bar of seaborn's ``errorbar``: mean ± sample std, held to [0, 100] %."""
    v = np.asarray(v, dtype=float)
    m = float(v.mean())
    s = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return max(0.0, m - s), min(100.0, m + s)


def corruption_bars(results: Sequence[Result]) -> Figure:
    """Grouped bars: accuracy (%) per corruption, one bar per method, one panel per severity.
    Reads ``robustness.corruptions`` (:func:`corruption_frame`).

    Bar = mean over seeds, error bar = ± std over seeds held to [0, 100] %; axis from 0.
    """
    df = corruption_frame(results)
    sevs = sorted(df["severity"].unique())
    keys = [k for k in group(results) if k.label in set(df["label"])]
    labels = [k.label for k in keys]
    colors = label_colors(group(results))          # every configuration: same as other figures
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(len(sevs), width=4.6, height=4.8, sharey=True)
        for ax, sev in zip(axes[0], sevs):
            sns.barplot(data=df[df["severity"] == sev], x="corruption", y="accuracy", hue="label",
                        hue_order=labels, palette={lab: colors[lab] for lab in labels},
                        saturation=1.0, errorbar=_sd_in_range, ax=ax, err_kws={"linewidth": 1})
            ax.set_title(f"severity {sev}")
            ax.set_xlabel("corruption")
            ax.set_ylabel("test accuracy (%)")
            accuracy_axis(ax)
            ax.tick_params(axis="x", labelrotation=40)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
        for ax in axes[0][1:]:
            ax.get_legend().remove()
        fig.suptitle(f"Accuracy under image corruptions (mean ± std over seeds) — "
                     f"{results_title(results)}\n{constants_caption(results)}")
        legend_below(fig, axes[0, 0], ncol=5)
    return fig


def corruption_heatmap(results: Sequence[Result], rule: ChanceRule | None = None) -> Figure:
    """Heatmap of accuracy (%): rows = method, columns = corruption and severity (mean over
    seeds). Cells at chance level under ``rule`` (default :func:`chance_rule`) are hatched; the
    title names the rule and the severity constants."""
    rule = rule or chance_rule(results)
    df = corruption_frame(results)
    df["column"] = df["corruption"] + " s" + df["severity"].astype(str)
    labels = list(dict.fromkeys(df["label"]))
    order = {c: i for i, c in enumerate(dict.fromkeys(df["corruption"]))}
    ranked = df.assign(rank=df["corruption"].map(order)).sort_values(["rank", "severity"])
    cols = list(dict.fromkeys(ranked["column"]))
    table = df.pivot_table(index="label", columns="column", values="accuracy", aggfunc="mean")
    table = table.reindex(index=labels, columns=cols)
    with sns.axes_style("white"), sns.plotting_context(CONTEXT):
        label_width = 0.11 * max(len(lab) for lab in labels)      # inches for the row labels
        fig, axes = new_figure(width=max(7.5, 0.62 * len(cols) + 2.2 + label_width),
                                height=3.0 + 0.6 * len(labels))
        ax = axes[0, 0]
        sns.heatmap(table, annot=True, fmt=".1f", cmap="viridis", ax=ax,
                    annot_kws={"fontsize": 8}, cbar_kws={"label": "test accuracy (%)"})
        marked = 0
        for i, lab in enumerate(table.index):
            for j, col in enumerate(table.columns):
                v = table.iat[i, j]
                if v == v and rule.at_chance(v / 100.0):
                    ax.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, fill=False,
                                           hatch="//", edgecolor="#ff5a5a", lw=1.2,
                                           gid=f"chance:{lab}|{col}"))
                    marked += 1
        ax.set_xlabel("corruption and severity")
        ax.set_ylabel("method")
        ax.tick_params(axis="y", labelrotation=0)
        ax.tick_params(axis="x", labelrotation=50)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
        mark = (f"hatched red ({marked} cells): {rule.describe()}" if rule.num_classes
                else rule.describe())
        fig.suptitle(f"Accuracy under image corruptions (%), mean over seeds — {results_title(results)}"
                     f"\n{constants_caption(results)}\n{mark}", fontsize="medium")
    return fig


ATTACK_ORDER = ("BIM", "FGSM", "PGD")


def bim_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per (result, attack, ε): ``label, seed, attack, epsilon_255, accuracy`` (%);
    ε = 0 is the clean accuracy (repeated for each attack present)."""
    rows = []
    for k, rs in group(results).items():
        for r in rs:
            rob = r.robustness or {}
            by_attack: dict[str, list] = {}
            for a in rob.get("adversarial", []):
                by_attack.setdefault(a.get("attack", "BIM"), []).append(a)
            for attack, adv in by_attack.items():
                if rob.get("clean_accuracy") is not None:
                    rows.append({"label": k.label, "seed": r.seed, "attack": attack,
                                 "epsilon_255": 0.0, "accuracy": 100.0 * rob["clean_accuracy"]})
                rows += [{"label": k.label, "seed": r.seed, "attack": attack,
                          "epsilon_255": 255.0 * a["epsilon"], "accuracy": 100.0 * a["accuracy"]}
                         for a in adv]
    return pd.DataFrame(rows, columns=["label", "seed", "attack", "epsilon_255", "accuracy"])


def bim_figure(results: Sequence[Result]) -> Figure:
    """Accuracy (%) vs ε (× 1/255), one panel per attack present (BIM, then FGSM, PGD); line =
    mean over seeds, band = ± sample std over seeds held to [0, 100] %, axis from 0. Reads
    ``robustness.{clean_accuracy, adversarial}`` (:func:`bim_frame`)."""
    df = bim_frame(results)
    keys = [k for k in group(results) if k.label in set(df["label"])]
    colors = label_colors(group(results))          # every configuration: same as other figures
    present = set(df["attack"])
    attacks = [a for a in ATTACK_ORDER if a in present] + sorted(present - set(ATTACK_ORDER))
    with sns.axes_style(STYLE), sns.plotting_context(CONTEXT):
        fig, axes = new_figure(len(attacks), width=6.4 if len(attacks) == 1 else 5.0,
                               height=4.4, sharey=True)
        for ax, attack in zip(axes[0], attacks):
            d = df[df["attack"] == attack]
            for k in keys:
                g = d[d["label"] == k.label].groupby("epsilon_255")["accuracy"]
                if not len(g):
                    continue
                m, s = g.mean(), g.std(ddof=1).fillna(0.0)
                ax.plot(m.index, m.to_numpy(), marker="o", ms=5, mec="white", mew=0.6,
                        color=colors[k.label], ls=method_dashes(k.method), label=k.label,
                        clip_on=False)
                ax.fill_between(m.index, *clip_band(m - s, m + s, 0.0, 100.0),
                                color=colors[k.label], alpha=0.12, lw=0)
            ax.set_xticks(sorted(d["epsilon_255"].unique()))
            ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
            ax.set_xlabel(f"{attack} ε (× 1/255, L∞); 0 = clean")
            ax.set_ylabel("test accuracy (%)")
            accuracy_axis(ax)
            title = f"Adversarial robustness ({attack})"
            ax.set_title(f"{title} — {results_title(results)}\nmean ± std over seeds"
                         if len(attacks) == 1 else title, fontsize="medium")
        if len(attacks) > 1:
            fig.suptitle(f"Adversarial robustness — {results_title(results)}, mean ± std over seeds")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fit_legend(fig, handles, labels, ncol=4)
    return fig
