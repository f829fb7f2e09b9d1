"""Figures for the reports: pure functions from tidy tables to matplotlib figures.

The reports only arrange these; every figure uses the Okabe–Ito colour-blind-safe palette and
leaves its alt text to the report cell (``fig-alt``).
"""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from sicp.report_data import interval, number

#: Okabe & Ito (2008) palette, safe for the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
GREY = "#999999"


def _figure(width: float = 7.5, height: float = 4.0) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def note_figure(text: str, title: str = "") -> Figure:
    """A figure that says why there is nothing to plot (a protocol not estimated, an empty
    store), so figure numbering and cross-references stay as the report states them."""
    fig, ax = plt.subplots(figsize=(7.5, 1.4), dpi=110)
    ax.set_axis_off()
    wrapped = textwrap.fill(text, 110)
    ax.text(
        0.5,
        0.5,
        wrapped,
        ha="center",
        va="center",
        fontsize=8,
        wrap=True,
        transform=ax.transAxes,
        color="#333333",
        bbox={"boxstyle": "round", "facecolor": "#f6f6f6", "edgecolor": GREY},
    )
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
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(7.5, 0.5 * len(rows) + 0.6), dpi=110, squeeze=False
    )
    for ax, row in zip(axes[:, 0], rows.itertuples(index=False), strict=True):
        est, low, high, ref = row.estimate, row.ci_low, row.ci_high, row.null_value
        note = getattr(row, "note", "") or ""
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.text(
            -0.02,
            0.5,
            getattr(row, label),
            transform=ax.transAxes,
            ha="right",
            va="center",
            fontsize=7,
        )
        if note or np.isnan(est):
            ax.set_xticks([])
            ax.spines["bottom"].set_visible(False)
            ax.text(
                0.0,
                0.5,
                _short(note or "no estimate", 62),
                transform=ax.transAxes,
                ha="left",
                va="center",
                fontsize=6.5,
                style="italic",
                color=OKABE_ITO[5],
            )
            continue
        finite_ci = not (np.isnan(low) or np.isnan(high))
        span = (
            max(abs(high - ref), abs(low - ref), 1e-12) if finite_ci else max(abs(est - ref), 1e-12)
        )
        ax.set_xlim(ref - 1.15 * span, ref + 1.15 * span)
        ax.errorbar(
            [est],
            [0],
            xerr=[[est - low], [high - est]] if finite_ci else None,
            fmt="o",
            ms=4,
            capsize=3,
            color=OKABE_ITO[4],
        )
        ax.axvline(ref, color=GREY, lw=1, ls="--")
        ax.text(
            1.02,
            0.5,
            f"{est:.3g} ({low:.3g} to {high:.3g})",
            transform=ax.transAxes,
            ha="left",
            va="center",
            fontsize=7,
        )
    fig.subplots_adjust(left=0.42, right=0.78, hspace=1.4, top=0.97, bottom=0.04)
    return fig


def its_plot(
    counterfactual: pd.DataFrame,
    time_labels: pd.Series | None = None,
    title: str = "",
    start: object = None,
) -> Figure:
    """Observed points, fitted line and the no-intervention counterfactual with its interval;
    ``start`` (on the x axis's scale) marks the intervention with a dotted line."""
    cf = counterfactual.reset_index(drop=True)
    x = time_labels.to_numpy() if time_labels is not None else cf.iloc[:, 0].to_numpy()
    fig, ax = _figure()
    ax.scatter(x, cf["observed"], s=8, color=GREY, label="observed")
    ax.plot(x, cf["fitted"], color=OKABE_ITO[4], lw=1.6, label="fitted")
    post = cf["post"].astype(bool).to_numpy() if "post" in cf else np.ones(len(cf), bool)
    cf_col = "counterfactual"
    ax.plot(
        x[post],
        cf.loc[post, cf_col],
        color=OKABE_ITO[5],
        lw=1.4,
        ls="--",
        label="counterfactual (no intervention)",
    )
    if {"counterfactual_low", "counterfactual_high"} <= set(cf.columns):
        ax.fill_between(
            x[post],
            cf.loc[post, "counterfactual_low"],
            cf.loc[post, "counterfactual_high"],
            color=OKABE_ITO[5],
            alpha=0.15,
        )
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
    for mask, colour, name in (
        (pre, OKABE_ITO[1], "before start"),
        (~pre, OKABE_ITO[5], "after start"),
    ):
        part = path[mask]
        ax.errorbar(
            part["event_time"],
            part["estimate"],
            yerr=[part["estimate"] - part["ci_low"], part["ci_high"] - part["estimate"]],
            fmt="o",
            color=colour,
            capsize=2,
            ms=4,
            label=name,
        )
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
        ax.plot(
            part["time"],
            part["gap"],
            color=OKABE_ITO[5] if is_treated else GREY,
            lw=2 if is_treated else 0.7,
            alpha=1 if is_treated else 0.6,
            label=str(unit) if is_treated else None,
            zorder=3 if is_treated else 1,
        )
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


def monthly_series(
    frame: pd.DataFrame, x: str, ys: list[str], title: str = "", ylabel: str = ""
) -> Figure:
    fig, ax = _figure(7.5, 3.2)
    for i, col in enumerate(ys):
        ax.plot(
            pd.to_datetime(frame[x]),
            frame[col],
            color=OKABE_ITO[(i + 4) % 8],
            lw=1.3,
            label=col.replace("_", " "),
        )
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(ys) > 1:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def series_by_group(
    frame: pd.DataFrame, x: str, y: str, group: str, title: str = "", ylabel: str = ""
) -> Figure:
    """One line per group over time (Okabe–Ito colours, cycling line styles beyond eight
    groups); missing values (suppressed points) leave gaps rather than being bridged."""
    fig, ax = _figure(7.5, 3.8)
    styles = ("-", "--", ":", "-.")
    for i, (name, part) in enumerate(frame.sort_values([group, x]).groupby(group, sort=True)):
        ax.plot(
            pd.to_datetime(part[x]),
            part[y],
            color=OKABE_ITO[i % len(OKABE_ITO)],
            ls=styles[(i // len(OKABE_ITO)) % len(styles)],
            lw=1.2,
            label=str(name),
        )
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
    for col in sorted(columns):  # each node near the mean height of what it reads
        ids = columns[col]
        if col > min(columns):
            ids.sort(
                key=lambda u: (
                    -np.mean([where[p][1] for p in parents.get(u, []) if p in where] or [0.5])
                )
            )
        where |= {uid: (col, 1 - (i + 0.5) / len(ids)) for i, uid in enumerate(ids)}
    tallest = max(len(v) for v in columns.values())
    fig, ax = plt.subplots(figsize=(11, max(4.0, 0.16 * tallest + 1)), dpi=110)
    for parent, child in edges:
        (x0, y0), (x1, y1) = where[parent], where[child]
        ax.plot([x0, x1], [y0, y1], color="#bbbbbb", linewidth=0.4, zorder=1)
    for uid, (x, y) in where.items():
        kind = uid.split(".", 1)[0]
        colour = {"source": "#fde0c5", "seed": "#e5e5e5", "protocol": "#d4e6f1"}.get(
            kind, "#e8f5e9" if nodes[uid][0].startswith(("stg_", "int_")) else "#c8e6c9"
        )
        ax.text(
            x,
            y,
            nodes[uid][0],
            fontsize=4.5,
            ha="center",
            va="center",
            zorder=2,
            bbox={
                "boxstyle": "round,pad=0.2",
                "facecolor": colour,
                "edgecolor": GREY,
                "linewidth": 0.3,
            },
        )
    ax.set_xlim(-0.6, max(columns) + 0.6)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


#: Smallest font size (points, at the figure's own size) of the figures added for the
#: evaluation report; figures are drawn at most 7.5 in wide, about the text width, so they are
#: printed near that size (tests/test_report_document.py checks both).
MIN_FONT_PT = 7.0


def _ratio_ticks(low: float, high: float) -> list[float]:
    """Round ratios inside [low, high] for a log axis (1 always among them)."""
    candidates = (0.1, 0.2, 0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0, 5.0, 10.0)
    inside = [t for t in candidates if low <= t <= high]
    return inside if len(inside) >= 2 else [low, 1.0, high]


def forest_by_component(rows: pd.DataFrame) -> Figure:
    """A forest plot grouped by component, one axis per scale: ratios share a log axis, and a
    difference shares one only with rows on the same scale (``scale``), so no two numbers
    of different units are ever drawn against one axis. ``rows`` (sicp.report_data.forest_rows,
    in order) carry ``component_label``, ``scale``, ``axis_label``, ``transform``, ``label``,
    the estimate and interval, ``null_value`` and ``note`` (a row without an estimate prints
    its note in place of a point)."""
    if rows.empty:
        return note_figure("No estimates: run `sicp analyse` first.")
    width, left, plot = 7.5, 2.75, 2.55
    row_h, axis_pad, header_h = 0.26, 0.4, 0.28
    blocks: list[tuple[str, pd.DataFrame | str]] = []
    for component, part in rows.groupby("component_label", sort=False):
        blocks.append(("header", str(component)))
        blocks += [("axis", group) for _, group in part.groupby("scale", sort=False)]
    height = 0.15 + sum(
        header_h if kind == "header" else row_h * len(part) + axis_pad for kind, part in blocks
    )
    fig = plt.figure(figsize=(width, height), dpi=110)
    top = height - 0.1
    for kind, part in blocks:
        if kind == "header":
            fig.text(
                0.1 / width,
                (top - 0.2) / height,
                str(part),
                fontsize=9,
                fontweight="bold",
                va="center",
            )
            top -= header_h
            continue
        assert isinstance(part, pd.DataFrame)
        h = row_h * len(part)
        ax = fig.add_axes((left / width, (top - h) / height, plot / width, h / height))
        top -= h + axis_pad
        _forest_axis(ax, part.reset_index(drop=True))
    return fig


def _forest_axis(ax: plt.Axes, part: pd.DataFrame) -> None:
    """One scale's rows on one axis: labels at the left, numbers at the right."""
    n = len(part)
    ys = np.arange(n)[::-1].astype(float)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(ys)
    ax.set_yticklabels(
        [textwrap.fill(str(label), 46) for label in part["label"]], fontsize=MIN_FONT_PT
    )
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=MIN_FONT_PT, length=2, pad=1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    estimated = part[(part["note"].fillna("") == "") & part["estimate"].notna()]
    ratio = bool((part["transform"] == "exp").all())
    ref = float(part["null_value"].iloc[0])
    if estimated.empty:
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
    else:
        values = np.concatenate(
            [estimated[c].to_numpy(float) for c in ("estimate", "ci_low", "ci_high")]
        )
        values = values[np.isfinite(values)]
        if ratio:
            values = values[values > 0]
            span = max(float(np.max(np.abs(np.log(values)))), 0.02) * 1.15
            ax.set_xscale("log")
            ax.set_xlim(math.exp(-span), math.exp(span))
            ax.set_xticks(_ratio_ticks(math.exp(-span), math.exp(span)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            span = max(float(np.max(np.abs(values - ref))), 1e-12) * 1.15
            ax.set_xlim(ref - span, ref + span)
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.axvline(ref, color=GREY, lw=1, ls="--")
        ax.set_xlabel(str(part["axis_label"].iloc[0]), fontsize=MIN_FONT_PT, labelpad=1)
    for y, row in zip(ys, part.itertuples(index=False), strict=True):
        note = row.note or ("" if np.isfinite(row.estimate) else "no estimate")
        if note:
            ax.text(
                0.0,
                y,
                _short(str(note), 60),
                transform=ax.get_yaxis_transform(),
                ha="left",
                va="center",
                fontsize=MIN_FONT_PT,
                style="italic",
                color=OKABE_ITO[5],
            )
            continue
        finite = np.isfinite(row.ci_low) and np.isfinite(row.ci_high)
        ax.errorbar(
            [row.estimate],
            [y],
            xerr=[[row.estimate - row.ci_low], [row.ci_high - row.estimate]] if finite else None,
            fmt="o",
            ms=4,
            capsize=3,
            color=OKABE_ITO[4],
        )
        numbers = (
            interval(row.estimate, row.ci_low, row.ci_high) if finite else number(row.estimate)
        )
        ax.text(
            1.03,
            y,
            numbers,
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=MIN_FONT_PT,
        )


def consort_diagram(flow: pd.DataFrame) -> Figure:
    """The trial's flow as CONSORT-style boxes (sicp.report_data.trial_flow, counts already
    suppressed): the cohort and the randomised in the middle, the exclusions beside the line
    between them, then one column per arm; lines run behind the boxes, which are opaque."""
    centre = flow[flow["kind"] == "cohort"]
    excluded = flow[flow["kind"] == "excluded"]
    arms = flow[flow["kind"] == "arm"]
    step = 0.62
    height = 0.25 + step * (len(centre) + len(arms))
    # 7.2 in: the inline backend pads a whole-figure axes by 0.1 in each side
    fig = plt.figure(figsize=(7.2, height), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 7.5)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    line = {"color": GREY, "lw": 0.8, "zorder": 1}

    def box(x: float, y: float, text: str, fill: str = "#f2f7fb") -> None:
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=MIN_FONT_PT + 0.5,
            zorder=2,
            bbox={
                "boxstyle": "round,pad=0.35",
                "facecolor": fill,
                "edgecolor": GREY,
                "linewidth": 0.6,
            },
        )

    x_centre, x_arms = 2.7, {"offer": 1.9, "control": 5.45}
    top = height - 0.35
    ys = [top - step * i for i in range(len(centre))]
    ax.plot([x_centre, x_centre], [ys[0], ys[-1]], **line)
    for y, row in zip(ys, centre.itertuples(index=False), strict=True):
        box(x_centre, y, f"{row.stage}\nn = {row.total}")
    if len(excluded) and len(ys) > 1:
        middle = (ys[0] + ys[1]) / 2
        ax.plot([x_centre, 5.5], [middle, middle], **line)
        lines = "\n".join(f"{r.stage}: {r.total}" for r in excluded.itertuples(index=False))
        box(5.5, middle, f"Not randomised\n{lines}", "#fbf3ea")
    y_arm = ys[-1] - step
    split = (ys[-1] + y_arm) / 2
    ax.plot([x_centre, x_centre], [ys[-1], split], **line)
    ax.plot([x_arms["offer"], x_arms["control"]], [split, split], **line)
    for column, title in (("offer", "Offered coaching"), ("control", "Control (not contacted)")):
        x = x_arms[column]
        shown = [
            (y_arm - step * i, row)
            for i, row in enumerate(arms.itertuples(index=False))
            if getattr(row, column) != ""
        ]
        ax.plot([x, x], [split, shown[-1][0]], **line)
        for y, row in shown:
            stage = f"{title}: allocated" if row.stage == "Allocated" else row.stage
            box(x, y, f"{textwrap.fill(stage, 50)}\nn = {getattr(row, column)}")
    return fig


def rollout_by_neighbourhood(practice_months: pd.DataFrame) -> Figure:
    """The roll-out grid legible in print: practices (rows) against months, coloured by
    roll-out wave, labelled by neighbourhood (practice codes would need a font too small to
    read at dozens of practices), a rule between neighbourhoods, dotted rows for practices that
    never took part."""
    frame = practice_months.sort_values(["neighbourhood", "practice_code", "month"])
    practices = frame[["neighbourhood", "practice_code"]].drop_duplicates()
    order = {code: i for i, code in enumerate(practices["practice_code"])}
    waves = sorted(frame["rollout_wave"].dropna().unique())
    colour = {w: OKABE_ITO[i % len(OKABE_ITO)] for i, w in enumerate(waves)}
    starts = frame.dropna(subset=["rollout_wave"]).groupby("rollout_wave")["mdg_start_month"].min()
    fig, ax = _figure(7.5, max(3.5, 0.085 * len(order) + 1.4))
    marker = max(2.0, min(9.0, 400 / max(len(order), 1)))
    for wave, group in frame[frame["in_mdg_scope"] == 1].groupby("rollout_wave"):
        start = starts.get(wave)
        label = f"wave {int(wave)}" + (
            f" ({pd.Timestamp(start):%b %Y})" if start is not None and not pd.isna(start) else ""
        )
        ax.scatter(
            pd.to_datetime(group["month"]),
            group["practice_code"].map(order),
            marker="s",
            s=marker,
            color=colour[wave],
            label=label,
            linewidths=0,
        )
    for code in frame[frame["never_treated"] == 1]["practice_code"].unique():
        ax.axhline(order[code], color=GREY, lw=0.5, ls=":")
    rows = practices.assign(row=practices["practice_code"].map(order))
    bounds = rows.groupby("neighbourhood", sort=False)["row"].agg(["min", "max"])
    for low in bounds["min"].iloc[1:]:
        ax.axhline(low - 0.5, color="#cccccc", lw=0.6)
    ax.set_yticks(((bounds["min"] + bounds["max"]) / 2).tolist())
    ax.set_yticklabels(
        [textwrap.shorten(str(n), 28) for n in bounds.index], fontsize=MIN_FONT_PT + 0.5
    )
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", labelsize=MIN_FONT_PT + 0.5)
    ax.set_ylim(len(order) - 0.5, -0.5)
    months = pd.to_datetime(frame["month"])
    if len(months):
        ax.set_xlim(months.min() - pd.DateOffset(months=1), months.max() + pd.DateOffset(months=1))
    ax.set_xlabel("month", fontsize=MIN_FONT_PT + 0.5)
    ax.set_title("Practice-months in scope of an MDG, by roll-out wave", fontsize=9)
    if waves:
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=min(len(waves), 4),
            fontsize=MIN_FONT_PT + 0.5,
            frameon=False,
            markerscale=1.5,
        )
    fig.tight_layout()
    return fig
