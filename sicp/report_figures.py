"""Figures for the reports: pure functions from tidy tables to matplotlib figures.

The reports only arrange these; every figure uses the Okabe–Ito colour-blind-safe palette and
leaves its alt text to the report cell (``fig-alt``).
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: Okabe & Ito (2008) palette, safe for the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000")
GREY = "#999999"


def _figure(width: float = 7.5, height: float = 4.0) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def rollout_diagram(practice_months: pd.DataFrame) -> Figure:
    """Practices (rows, grouped by neighbourhood) against months, coloured by roll-out wave;
    each wave is labelled with its start month (the earliest start of its practices)."""
    frame = practice_months.sort_values(["neighbourhood", "practice_code", "month"])
    practices = frame[["neighbourhood", "practice_code"]].drop_duplicates()
    order = {code: i for i, code in enumerate(practices["practice_code"])}
    waves = sorted(frame["rollout_wave"].dropna().unique())
    colour = {w: OKABE_ITO[i % len(OKABE_ITO)] for i, w in enumerate(waves)}
    starts = frame.dropna(subset=["rollout_wave"]).groupby("rollout_wave")["mdg_start_month"].min()
    fig, ax = _figure(8.0, max(4.0, 0.13 * len(order) + 1.5))
    exposed = frame[frame["in_mdg_scope"] == 1]
    for wave, group in exposed.groupby("rollout_wave"):
        start = starts.get(wave)
        label = f"wave {int(wave)}" + (f" ({pd.Timestamp(start):%Y-%m})" if start is not None
                                      and not pd.isna(start) else "")
        ax.scatter(pd.to_datetime(group["month"]), group["practice_code"].map(order), marker="s",
                   s=9, color=colour[wave], label=label, linewidths=0)
    never = frame[frame["never_treated"] == 1]["practice_code"].unique()
    for code in never:
        ax.axhline(order[code], color=GREY, lw=0.6, ls=":")
    ax.set_yticks(list(order.values()))
    ax.set_yticklabels([f"{n[:18]} · {c}" for n, c in practices.itertuples(index=False)],
                       fontsize=5.5)
    ax.invert_yaxis()
    months = pd.to_datetime(frame["month"])
    if len(months):
        ax.set_xlim(months.min() - pd.DateOffset(months=1), months.max() + pd.DateOffset(months=1))
    ax.set_xlabel("month")
    ax.set_title("MDG roll-out: practice-months in scope, by wave (dotted: never took part)",
                 fontsize=9)
    if waves:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False,
                  markerscale=2)
    fig.tight_layout()
    return fig


def note_figure(text: str, title: str = "") -> Figure:
    """A figure that says why there is nothing to plot (a protocol not estimated, an empty
    store), so figure numbering and cross-references stay as the report states them."""
    fig, ax = plt.subplots(figsize=(7.5, 1.4), dpi=110)
    ax.set_axis_off()
    wrapped = textwrap.fill(text, 110)
    ax.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=8, wrap=True,
            transform=ax.transAxes, color="#333333",
            bbox={"boxstyle": "round", "facecolor": "#f6f6f6", "edgecolor": GREY})
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def forest_plot(rows: pd.DataFrame, label: str = "label") -> Figure:
    """A forest plot whose rows may be on different scales: each row gets its own axis, its
    reference line (``null_value``: 1 for ratios, 0 for differences) and its numbers printed.
    A row without an estimate (``note``, e.g. "not estimated: <reason>") keeps its place and
    shows the note instead."""
    rows = rows.reset_index(drop=True)
    if rows.empty:
        return note_figure("No estimates: run `sicp analyse` first.")
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.5, 0.5 * len(rows) + 0.6), dpi=110,
                             squeeze=False)
    for ax, row in zip(axes[:, 0], rows.itertuples(index=False), strict=True):
        est, low, high, ref = row.estimate, row.ci_low, row.ci_high, row.null_value
        note = getattr(row, "note", "") or ""
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.text(-0.02, 0.5, getattr(row, label), transform=ax.transAxes, ha="right",
                va="center", fontsize=7)
        if note or np.isnan(est):
            ax.set_xticks([])
            ax.spines["bottom"].set_visible(False)
            ax.text(0.0, 0.5, _short(note or "no estimate", 62), transform=ax.transAxes,
                    ha="left", va="center", fontsize=6.5, style="italic", color=OKABE_ITO[5])
            continue
        finite_ci = not (np.isnan(low) or np.isnan(high))
        span = max(abs(high - ref), abs(low - ref), 1e-12) if finite_ci else \
            max(abs(est - ref), 1e-12)
        ax.set_xlim(ref - 1.15 * span, ref + 1.15 * span)
        ax.errorbar([est], [0], xerr=[[est - low], [high - est]] if finite_ci else None,
                    fmt="o", ms=4, capsize=3, color=OKABE_ITO[4])
        ax.axvline(ref, color=GREY, lw=1, ls="--")
        ax.text(1.02, 0.5, f"{est:.3g} ({low:.3g} to {high:.3g})", transform=ax.transAxes,
                ha="left", va="center", fontsize=7)
    fig.subplots_adjust(left=0.42, right=0.78, hspace=1.4, top=0.97, bottom=0.04)
    return fig


def its_plot(counterfactual: pd.DataFrame, time_labels: pd.Series | None = None,
             title: str = "", start: object = None) -> Figure:
    """Observed points, fitted line and the no-intervention counterfactual with its interval;
    ``start`` (on the x axis's scale) marks the intervention with a dotted line."""
    cf = counterfactual.reset_index(drop=True)
    x = time_labels.to_numpy() if time_labels is not None else cf.iloc[:, 0].to_numpy()
    fig, ax = _figure()
    ax.scatter(x, cf["observed"], s=8, color=GREY, label="observed")
    ax.plot(x, cf["fitted"], color=OKABE_ITO[4], lw=1.6, label="fitted")
    post = cf["post"].astype(bool).to_numpy() if "post" in cf else np.ones(len(cf), bool)
    cf_col = "counterfactual"
    ax.plot(x[post], cf.loc[post, cf_col], color=OKABE_ITO[5], lw=1.4, ls="--",
            label="counterfactual (no intervention)")
    if {"counterfactual_low", "counterfactual_high"} <= set(cf.columns):
        ax.fill_between(x[post], cf.loc[post, "counterfactual_low"],
                        cf.loc[post, "counterfactual_high"], color=OKABE_ITO[5], alpha=0.15)
    if start is not None:
        ax.axvline(start, color=GREY, ls=":", lw=1)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def event_study_plot(path: pd.DataFrame, title: str = "", unit: str = "quarters") -> Figure:
    """Coefficients by event time with intervals; the reference period sits at zero."""
    path = path.sort_values("event_time")
    fig, ax = _figure()
    pre = path["event_time"] < 0
    for mask, colour, name in ((pre, OKABE_ITO[1], "before start"),
                               (~pre, OKABE_ITO[5], "after start")):
        part = path[mask]
        ax.errorbar(part["event_time"], part["estimate"],
                    yerr=[part["estimate"] - part["ci_low"], part["ci_high"] - part["estimate"]],
                    fmt="o", color=colour, capsize=2, ms=4, label=name)
    ax.axhline(0, color=GREY, lw=1)
    ax.axvline(-0.5, color=GREY, lw=1, ls=":")
    ax.set_xlabel(f"{unit} since start")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def gap_plot(gaps: pd.DataFrame, treated: str, start: object, title: str = "") -> Figure:
    """Synthetic-control gaps: the treated unit in colour, each placebo in grey; ``start`` (on
    the scale of ``gaps["time"]``: a period or a month) marks the treatment's start."""
    fig, ax = _figure()
    for unit, part in gaps.groupby("unit"):
        is_treated = str(unit) == str(treated)
        ax.plot(part["time"], part["gap"], color=OKABE_ITO[5] if is_treated else GREY,
                lw=2 if is_treated else 0.7, alpha=1 if is_treated else 0.6,
                label=str(unit) if is_treated else None, zorder=3 if is_treated else 1)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(start, color=GREY, ls=":")
    ax.set_ylabel("treated minus synthetic")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def bar_counts(frame: pd.DataFrame, x: str, y: str, title: str = "") -> Figure:
    fig, ax = _figure(7.0, 3.5)
    ax.bar(frame[x].astype(str), frame[y], color=OKABE_ITO[4])
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.tight_layout()
    return fig


def monthly_series(frame: pd.DataFrame, x: str, ys: list[str], title: str = "",
                   ylabel: str = "") -> Figure:
    fig, ax = _figure(7.5, 3.2)
    for i, col in enumerate(ys):
        ax.plot(pd.to_datetime(frame[x]), frame[col], color=OKABE_ITO[(i + 4) % 8], lw=1.3,
                label=col.replace("_", " "))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(ys) > 1:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def series_by_group(frame: pd.DataFrame, x: str, y: str, group: str, title: str = "",
                    ylabel: str = "") -> Figure:
    """One line per group over time (Okabe–Ito colours, cycling line styles beyond eight
    groups); missing values (suppressed points) leave gaps rather than being bridged."""
    fig, ax = _figure(7.5, 3.8)
    styles = ("-", "--", ":", "-.")
    for i, (name, part) in enumerate(frame.sort_values([group, x]).groupby(group, sort=True)):
        ax.plot(pd.to_datetime(part[x]), part[y], color=OKABE_ITO[i % len(OKABE_ITO)],
                ls=styles[(i // len(OKABE_ITO)) % len(styles)], lw=1.2, label=str(name))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6.5, frameon=False, ncol=2)
    fig.tight_layout()
    return fig


def lineage_figure(nodes: dict[str, tuple[str, int]], edges: list[tuple[str, str]]) -> Figure:
    """The lineage graph drawn left to right (raw files, then the models by depth, the panels
    and the protocols), one column per depth; within a column, raw files in name order and
    every other node near the mean height of the nodes it reads (fewer crossings)."""
    columns: dict[int, list[str]] = {}
    for uid, (_, col) in sorted(nodes.items(), key=lambda kv: kv[1][0]):
        columns.setdefault(col, []).append(uid)
    parents: dict[str, list[str]] = {}
    for parent, child in edges:
        parents.setdefault(child, []).append(parent)
    where: dict[str, tuple[int, float]] = {}
    for col in sorted(columns):   # each node near the mean height of what it reads
        ids = columns[col]
        if col > min(columns):
            ids.sort(key=lambda u: -np.mean([where[p][1] for p in parents.get(u, [])
                                              if p in where] or [0.5]))
        where |= {uid: (col, 1 - (i + 0.5) / len(ids)) for i, uid in enumerate(ids)}
    tallest = max(len(v) for v in columns.values())
    fig, ax = plt.subplots(figsize=(11, max(4.0, 0.16 * tallest + 1)), dpi=110)
    for parent, child in edges:
        (x0, y0), (x1, y1) = where[parent], where[child]
        ax.plot([x0, x1], [y0, y1], color="#bbbbbb", linewidth=0.4, zorder=1)
    for uid, (x, y) in where.items():
        kind = uid.split(".", 1)[0]
        colour = {"source": "#fde0c5", "seed": "#e5e5e5", "protocol": "#d4e6f1"}.get(
            kind, "#e8f5e9" if nodes[uid][0].startswith(("stg_", "int_")) else "#c8e6c9")
        ax.text(x, y, nodes[uid][0], fontsize=4.5, ha="center", va="center", zorder=2,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": GREY,
                      "linewidth": 0.3})
    ax.set_xlim(-0.6, max(columns) + 0.6)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    fig.tight_layout()
    return fig
