"""The results explorer: one self-contained HTML page over every estimate in the results store.

A reader filters the primary and sensitivity estimates by component, outcome, method and
analysis, sees a forest plot of the selection (one axis per scale, so ratios and differences
never share one) and, per row, the protocol, method, lineage and run status behind it. The page
needs no server and no network: the data travel inside it as JSON and vanilla JavaScript draws
the table and the SVG plot, inserting every text with ``textContent``. A Content Security Policy
allows only the page's own script and style (by hash), so nothing is fetched and no markup in a
protocol's text can run.

What leaves the platform follows the reports' disclosure rules: counts (``n_obs``,
``n_clusters``) below the threshold are replaced by ``[c]`` before the data are embedded, so the
page holds no suppressed value; estimates and intervals are not counts and are shown.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.protocol import COST_CONSEQUENCE_ID, Protocol
from sicp.disclosure import SUPPRESSED, suppress_value
from sicp.report_data import (
    SYNTHETIC_BANNER,
    ReportInputs,
    not_estimated_note,
    protocol_statuses,
    transform,
)

#: File name of the explorer in the reports folder.
EXPLORER_FILE = "explorer.html"
#: How an estimate is drawn: an exponentiated log-scale estimate (a ratio, no effect at 1), a
#: difference (no effect at 0) or a test statistic (no null line).
RATIO, DIFFERENCE, STATISTIC = "ratio", "difference", "statistic"
#: Store scales that are test statistics rather than effects.
STATISTIC_SCALES = ("chi2", "F")
#: Store scales in words, where the protocol's unit does not apply to a row.
SCALE_WORDS = {"identity": "difference on the outcome's scale", "log": "log scale"}
#: The analysis types the page filters on.
PRIMARY, SENSITIVITY, COST = "primary", "sensitivity", "cost consequence"


def _number(value: object) -> float | None:
    """A finite float, or None (JSON has no NaN, and a missing number must not look like 0)."""
    if value is None or pd.isna(value):
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _plain(value: object) -> Any:
    """Protocol content (method options) as JSON values; dates and the like as text."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _analysis_type(analysis_id: str) -> str:
    if analysis_id == "primary":
        return PRIMARY
    return COST if analysis_id == COST_CONSEQUENCE_ID else SENSITIVITY


def _scale(
    protocol: Protocol, scale: str, headline_scale: str | None, outcome: str
) -> tuple[str | None, dict[str, Any]]:
    """How a row is shown and drawn: the transform (``exp`` when its scale is log and the
    protocol reports on the exp scale, as the evaluation report does), then its kind, its unit
    (the protocol's where the row is on its headline's scale, else the store's scale) and the
    forest-plot axis it goes on."""
    how = protocol.reporting.transform if scale == "log" else None
    kind = RATIO if how == "exp" else STATISTIC if scale in STATISTIC_SCALES else DIFFERENCE
    unit = (
        protocol.reporting.unit
        if protocol.reporting.unit and scale == headline_scale
        else SCALE_WORDS.get(scale, scale)
    )
    if kind == RATIO:
        axis, title, null = f"{kind}|{unit}", f"{unit}: log axis, no effect at 1", 1.0
    elif kind == STATISTIC:
        axis, title, null = f"{kind}|{unit}", f"{unit} (test statistic)", None
    else:  # differences in different outcomes are not on one scale
        axis, title, null = f"{kind}|{unit}|{outcome}", f"{outcome}: {unit}, no effect at 0", 0.0
    return how, {"kind": kind, "unit": unit, "axis": axis, "axis_title": title, "null": null}


def _methods(protocol: Protocol) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each analysis id of the protocol with its method name and options as pre-specified."""
    analyses = protocol.analyses()
    cost = protocol.cost_consequence()
    if cost is not None:
        analyses.append(cost.analysis)
    return {a.analysis_id: (a.method.name, _plain(dict(a.method.options))) for a in analyses}


def _protocol_entry(
    protocol: Protocol, status: str, reason: str, run: pd.Series | None
) -> dict[str, Any]:
    """What the page says about a protocol: its pre-specification and its last run."""

    def recorded(key: str) -> str:
        value = None if run is None else run.get(key)
        return "" if value is None or pd.isna(value) else str(value)

    return {
        "title": protocol.title,
        "question": protocol.question,
        "component": protocol.component,
        "design": protocol.method.name,
        "level": protocol.level,
        "protocol_hash": recorded("protocol_hash") or protocol.hash,
        "input_fingerprint": recorded("input_fingerprint"),
        "code_version": recorded("code_version"),
        "build_seq": recorded("build_seq"),
        "status": status.replace("_", " "),
        "reason": reason,
    }


def explorer_data(inputs: ReportInputs, threshold: int, subset: str = "") -> dict[str, Any]:
    """The page's data: every stored estimate of the selected protocols (``subset``, as the
    reports take it) on its reporting scale with its lineage, one row with the reason for each
    protocol without estimates, counts suppressed below ``threshold``."""
    protocols = inputs.protocols(subset)
    estimates = inputs.estimates()
    runs = inputs.protocol_runs()
    statuses = protocol_statuses(protocols, runs, estimates)
    recorded = runs.drop_duplicates("protocol_id", keep="last").set_index("protocol_id")
    entries: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for pid, protocol in sorted(protocols.items()):
        run = recorded.loc[pid] if pid in recorded.index else None
        note = not_estimated_note(statuses, pid)
        entries[pid] = _protocol_entry(protocol, str(statuses.at[pid, "status"]), note or "", run)
        methods = _methods(protocol)
        if note is not None:
            name, options = methods["primary"]
            headline = "log" if protocol.reporting.transform == "exp" else ""
            _, scale = _scale(protocol, headline, headline, protocol.outcome)
            rows.append(
                {
                    "protocol_id": pid,
                    "analysis_id": "primary",
                    "analysis_type": PRIMARY,
                    "term": protocol.reporting.term,
                    "outcome": protocol.outcome,
                    "outcome_label": protocol.outcome_label,
                    "method_name": name,
                    "options": options,
                    "estimator": "",
                    "se_type": "",
                    "estimate": None,
                    "ci_low": None,
                    "ci_high": None,
                    "p_value": None,
                    "n_obs": suppress_value(pd.NA, threshold),
                    "n_clusters": suppress_value(pd.NA, threshold),
                    "note": note,
                    **scale,
                }
            )
            continue
        own = estimates[estimates["protocol_id"] == pid]
        headline = own[(own["analysis_id"] == "primary") & (own["term"] == protocol.reporting.term)]
        headline_scale = str(headline["scale"].iloc[0]) if len(headline) else None
        order = list(methods)
        ranked = sorted(
            own.iterrows(),
            key=lambda item: (
                order.index(item[1]["analysis_id"])
                if item[1]["analysis_id"] in order
                else len(order),
                item[1]["term"] != protocol.reporting.term,
                item[0],
            ),
        )
        for _, row in ranked:
            analysis_id = str(row["analysis_id"])
            how, scale = _scale(protocol, str(row["scale"]), headline_scale, str(row["outcome"]))
            shown = transform(row, how)
            rows.append(
                {
                    "protocol_id": pid,
                    "analysis_id": analysis_id,
                    "analysis_type": _analysis_type(analysis_id),
                    "term": str(row["term"]),
                    "outcome": str(row["outcome"]),
                    "outcome_label": (
                        protocol.outcome_label
                        if row["outcome"] == protocol.outcome
                        else str(row["outcome"])
                    ),
                    "method_name": str(row["method_name"]),
                    "options": methods.get(analysis_id, ("", {}))[1],
                    "estimator": str(row["method"]),
                    "se_type": str(row["se_type"]),
                    **{k: _number(v) for k, v in shown.items()},
                    "p_value": _number(row["p_value"]),
                    "n_obs": suppress_value(row["n_obs"], threshold),
                    "n_clusters": suppress_value(row["n_clusters"], threshold),
                    "input_fingerprint": str(row["input_fingerprint"]),
                    "code_version": str(row["code_version"]),
                    "protocol_hash": str(row["protocol_hash"]),
                    "note": "",
                    **scale,
                }
            )
    return {"threshold": threshold, "protocols": entries, "rows": rows}


def script_json(payload: dict[str, Any]) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` is left, so no
    text (a protocol title holding ``</script>``) can end the element or open markup."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    """The Content Security Policy source that lets exactly this inline script or style run."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def explorer_html(payload: dict[str, Any], synthetic: bool) -> str:
    """The page: static markup, the data as JSON, and the script that draws it."""
    csp = (
        f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; "
        f"style-src {_csp_hash(_STYLE)}; base-uri 'none'; form-action 'none'"
    )
    banner = (
        f'<div class="banner" role="note">{html.escape(SYNTHETIC_BANNER)}</div>\n'
        if synthetic
        else ""
    )
    threshold = int(payload["threshold"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SICP results explorer</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>SICP results explorer</h1>
{banner}<p class="lede">Every estimate in the results store, primary and sensitivity, with the
protocol, method and lineage behind it. Ratios (exponentiated log-scale estimates) are drawn on a
log axis with no effect at 1, differences with no effect at 0; each scale has its own axis.
Counts below {threshold} are shown as {html.escape(SUPPRESSED)}.</p>
</header>
<div class="filters" id="filters">
<label>Component <select id="filter-component"></select></label>
<label>Outcome <select id="filter-outcome"></select></label>
<label>Method <select id="filter-method"></select></label>
<label>Analysis <select id="filter-analysis"></select></label>
<label>Search <input type="search" id="filter-search" placeholder="protocol, term, title"></label>
</div>
<p id="count" role="status"></p>
<section>
<h2>Forest plot</h2>
<div id="forest"></div>
</section>
<section>
<h2>Estimates</h2>
<div class="table-wrap">
<table id="estimates">
<thead><tr><th>Protocol</th><th>Outcome</th><th>Analysis</th><th>Method</th><th>Term</th>
<th>Estimate</th><th>95% CI</th><th>Scale</th><th>p</th><th>n</th><th></th></tr></thead>
<tbody></tbody>
</table>
</div>
</section>
<noscript><p>The explorer needs JavaScript to show the estimates.</p></noscript>
<svg id="svg-ns" hidden aria-hidden="true"></svg>
<script type="application/json" id="explorer-data">{script_json(payload)}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def write_explorer(inputs: ReportInputs, out: Path, threshold: int, subset: str = "") -> Path:
    """Write the explorer for ``inputs`` to ``out``; the same store gives the same bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    page = explorer_html(explorer_data(inputs, threshold, subset), inputs.is_synthetic())
    out.write_text(page, encoding="utf-8")
    return out


_STYLE = """
body { max-width: 90em; margin: 0 auto; padding: 1em 2em; line-height: 1.45; color: #1a1a1a;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.banner { border: 2px solid #b45309; background: #fff7e6; color: #3d2a00; padding: 0.7em 1em;
          margin: 1em 0; border-radius: 4px; font-weight: 600; }
.lede { color: #333; max-width: 60em; }
.filters { display: flex; flex-wrap: wrap; gap: 0.6em 1.2em; margin: 1em 0; }
.filters label { display: flex; flex-direction: column; font-size: 0.85em; color: #444; }
.filters select, .filters input { font-size: 1rem; padding: 0.2em; min-width: 11em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left;
         vertical-align: top; }
th { border-bottom: 2px solid #666; }
td.num { text-align: right; white-space: nowrap; }
td.not-estimated { color: #8a1c1c; font-style: italic; }
tr.details-row td { background: #f6f8fa; }
dl.details { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em; margin: 0; }
dl.details dt { font-weight: 600; color: #444; }
dl.details dd { margin: 0; overflow-wrap: anywhere; }
button.toggle { font-size: 0.85em; }
#forest svg { display: block; margin: 0.5em 0 1.5em; max-width: 100%; height: auto; }
#forest text { font-size: 11px; fill: #222; }
#forest .axis-title { font-size: 12px; font-weight: 600; }
#forest .axis line, #forest .axis-line { stroke: #888; }
#forest .null { stroke: #b45309; stroke-dasharray: 4 3; }
#forest .ci { stroke: #1f4e79; stroke-width: 1.5; }
#forest .estimate { fill: #1f4e79; }
#forest .forest-row { cursor: pointer; }
#forest .forest-row:hover text { fill: #b45309; }
#forest .empty { color: #555; font-style: italic; }
"""

_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const SVG_NS = document.getElementById("svg-ns").namespaceURI;
  const rows = data.rows;
  const protocols = data.protocols;
  const selects = {
    component: document.getElementById("filter-component"),
    outcome: document.getElementById("filter-outcome"),
    method: document.getElementById("filter-method"),
    analysis: document.getElementById("filter-analysis"),
  };
  const search = document.getElementById("filter-search");
  const tbody = document.querySelector("#estimates tbody");
  const forest = document.getElementById("forest");
  const open = new Set();

  const fields = {
    component: (r) => protocols[r.protocol_id].component || "(none)",
    outcome: (r) => r.outcome,
    method: (r) => r.method_name,
    analysis: (r) => r.analysis_type,
  };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    return (v === null || !Number.isFinite(v)) ? "\u2013" : String(Number(v.toPrecision(3)));
  }

  function fmtP(p) {
    if (p === null || !Number.isFinite(p)) return "\u2013";
    return p < 0.001 ? "<0.001" : p.toFixed(3);
  }

  function interval(r) {
    return (r.ci_low === null || r.ci_high === null) ? "\u2013"
      : fmt(r.ci_low) + " to " + fmt(r.ci_high);
  }

  function fill(select, values) {
    select.appendChild(new Option("all", ""));
    for (const value of values) select.appendChild(new Option(value, value));
  }

  for (const [name, select] of Object.entries(selects)) {
    fill(select, Array.from(new Set(rows.map(fields[name]))).sort());
    select.addEventListener("change", render);
  }
  search.addEventListener("input", render);

  function haystack(r) {
    const p = protocols[r.protocol_id];
    return [r.protocol_id, p.title, r.outcome_label, r.outcome, r.analysis_id, r.term,
            r.method_name, r.estimator, r.note].join(" ").toLowerCase();
  }

  function selected() {
    const words = search.value.toLowerCase().split(/\s+/).filter((w) => w);
    return rows.map((r, i) => i).filter((i) => {
      const r = rows[i];
      for (const [name, select] of Object.entries(selects)) {
        if (select.value && fields[name](r) !== select.value) return false;
      }
      const text = haystack(r);
      return words.every((w) => text.includes(w));
    });
  }

  function detailsRow(i) {
    const r = rows[i];
    const p = protocols[r.protocol_id];
    const tr = el("tr", "details-row");
    tr.dataset.row = String(i);
    const td = el("td");
    td.colSpan = 11;
    const dl = el("dl", "details");
    const items = [
      ["Protocol", r.protocol_id], ["Title", p.title], ["Question", p.question],
      ["Component", p.component], ["Level", p.level],
      ["Outcome", r.outcome_label + " (" + r.outcome + ")"],
      ["Design (primary method)", p.design],
      ["Analysis", r.analysis_id + " (" + r.analysis_type + ")"],
      ["Method", r.method_name], ["Method options", JSON.stringify(r.options)],
      ["Estimator", r.estimator || "\u2013"], ["Standard errors", r.se_type || "\u2013"],
      ["Term", r.term], ["Estimate (95% CI)", r.note || fmt(r.estimate) + " (" + interval(r) + ")"],
      ["Scale", r.unit + " (" + r.kind + ")"], ["p-value", fmtP(r.p_value)],
      ["Observations (n)", r.n_obs], ["Clusters", r.n_clusters],
      ["Protocol hash", r.protocol_hash || p.protocol_hash],
      ["Input fingerprint", r.input_fingerprint || p.input_fingerprint || "\u2013"],
      ["Code version", r.code_version || p.code_version || "\u2013"],
      ["Build sequence", p.build_seq || "\u2013"], ["Run status", p.status],
    ];
    if (p.reason) items.push(["Reason", p.reason]);
    for (const [key, value] of items) {
      dl.appendChild(el("dt", "", key));
      const dd = el("dd", "", String(value));
      dd.dataset.field = key;
      dl.appendChild(dd);
    }
    td.appendChild(dl);
    tr.appendChild(td);
    return tr;
  }

  function toggle(i) {
    if (open.has(i)) open.delete(i); else open.add(i);
    render();
  }

  function table(indices) {
    tbody.replaceChildren();
    for (const i of indices) {
      const r = rows[i];
      const tr = el("tr", "estimate-row");
      tr.dataset.row = String(i);
      tr.id = "row-" + i;
      for (const text of [r.protocol_id, r.outcome_label, r.analysis_id, r.method_name, r.term]) {
        tr.appendChild(el("td", "", text));
      }
      if (r.note) {
        tr.appendChild(el("td", "not-estimated", r.note));
        tr.appendChild(el("td", "num", "\u2013"));
      } else {
        tr.appendChild(el("td", "num", fmt(r.estimate)));
        tr.appendChild(el("td", "num", interval(r)));
      }
      tr.appendChild(el("td", "", r.unit));
      tr.appendChild(el("td", "num", fmtP(r.p_value)));
      tr.appendChild(el("td", "num", r.n_obs));
      const cell = el("td");
      const button = el("button", "toggle", open.has(i) ? "hide" : "details");
      button.type = "button";
      button.setAttribute("aria-expanded", open.has(i) ? "true" : "false");
      button.addEventListener("click", () => toggle(i));
      cell.appendChild(button);
      tr.appendChild(cell);
      tbody.appendChild(tr);
      if (open.has(i)) tbody.appendChild(detailsRow(i));
    }
  }

  function niceStep(span) {
    const raw = span / 5;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / power;
    return power * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }

  function ticks(lo, hi, log) {
    if (log && hi / lo > 20) {
      const out = [];
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
        for (const m of [1, 2, 5]) {
          const v = m * Math.pow(10, e);
          if (v >= lo && v <= hi) out.push(v);
        }
      }
      return out;
    }
    const step = niceStep(hi - lo);
    const out = [];
    for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9; k++) {
      out.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
    }
    return out.filter((v) => !log || v > 0);
  }

  function panel(title, kind, nullValue, members) {
    const log = kind === "ratio";
    const f = log ? Math.log : (v) => v;
    const values = [];
    for (const i of members) {
      for (const v of [rows[i].estimate, rows[i].ci_low, rows[i].ci_high]) {
        if (v !== null && (!log || v > 0)) values.push(v);
      }
    }
    if (nullValue !== null) values.push(nullValue);
    let lo = f(Math.min(...values));
    let hi = f(Math.max(...values));
    if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.04;
    lo -= pad; hi += pad;
    const width = 1000, left = 400, right = 24, top = 28, rowHeight = 16, bottom = 36;
    const height = top + members.length * rowHeight + bottom;
    const x = (v) => left + (f(v) - lo) / (hi - lo) * (width - left - right);
    const root = svg("svg", {viewBox: "0 0 " + width + " " + height, width: width,
                             height: height, role: "img", "aria-label": title,
                             "class": "forest-panel"});
    root.dataset.kind = kind;
    root.appendChild(svg("text", {x: 0, y: 16, "class": "axis-title"}, title));
    const axisY = top + members.length * rowHeight + 4;
    const axis = svg("g", {"class": "axis"});
    axis.appendChild(svg("line", {x1: left, x2: width - right, y1: axisY, y2: axisY}));
    const lin = (v) => log ? Math.exp(v) : v;
    for (const t of ticks(lin(lo), lin(hi), log)) {
      axis.appendChild(svg("line", {x1: x(t), x2: x(t), y1: axisY, y2: axisY + 4}));
      axis.appendChild(svg("text", {x: x(t), y: axisY + 16, "text-anchor": "middle"}, fmt(t)));
    }
    root.appendChild(axis);
    if (nullValue !== null) {
      root.appendChild(svg("line", {x1: x(nullValue), x2: x(nullValue), y1: top - 6,
                                     y2: axisY, "class": "null"}));
    }
    members.forEach((i, k) => {
      const r = rows[i];
      const y = top + k * rowHeight + rowHeight / 2;
      const g = svg("g", {"class": "forest-row"});
      g.dataset.row = String(i);
      const label = r.protocol_id + " \u00b7 " + r.analysis_id + " \u00b7 " + r.term;
      const shown = label.length > 66 ? label.slice(0, 65) + "\u2026" : label;
      g.appendChild(svg("title", {}, label + ": " + fmt(r.estimate) + " (" + interval(r) + ")"));
      g.appendChild(svg("text", {x: 0, y: y + 4}, shown));
      if (r.ci_low !== null && r.ci_high !== null && (!log || r.ci_low > 0)) {
        g.appendChild(svg("line", {x1: x(r.ci_low), x2: x(r.ci_high), y1: y, y2: y,
                                   "class": "ci"}));
      }
      g.appendChild(svg("circle", {cx: x(r.estimate), cy: y, r: 3.5, "class": "estimate"}));
      g.addEventListener("click", () => {
        open.add(i);
        render();
        document.getElementById("row-" + i).scrollIntoView({block: "center"});
      });
      root.appendChild(g);
    });
    return root;
  }

  function plot(indices) {
    forest.replaceChildren();
    const axes = new Map();
    let missing = 0;
    for (const i of indices) {
      const r = rows[i];
      if (r.estimate === null || (r.kind === "ratio" && r.estimate <= 0)) { missing++; continue; }
      if (!axes.has(r.axis)) axes.set(r.axis, []);
      axes.get(r.axis).push(i);
    }
    for (const members of axes.values()) {
      const r = rows[members[0]];
      forest.appendChild(panel(r.axis_title, r.kind, r.null, members));
    }
    if (!axes.size) forest.appendChild(el("p", "empty", "No estimate in the selection."));
    if (missing) {
      forest.appendChild(el("p", "empty", missing + (missing === 1 ? " row has" : " rows have")
        + " no estimate to draw (see the table for the reason)."));
    }
  }

  function render() {
    const indices = selected();
    document.getElementById("count").textContent =
      indices.length + " of " + rows.length + " rows shown";
    table(indices);
    plot(indices);
  }

  render();
})();
"""
