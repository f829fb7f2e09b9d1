"""``sicp``: one command-line tool for every user-facing job of the evaluation platform."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sicp.settings import PROJECT_ROOT, Paths

DESCRIPTION = """\
SICP evaluation platform: synthetic data, ingest, warehouse, estimates and reports for the
evaluation of the Salford Integrated Care Programme.

Typical use:
  sicp demo                       whole pipeline on a synthetic world (what `make demo` runs)
  sicp synth --scenario default   write a synthetic world in the data contract's formats
  sicp ingest                     validate + pseudonymise + load input files into DuckDB (raw)
  sicp build                      dbt build: staging, exposure, outcome measures, marts
  sicp analyse                    run every protocol in protocols/ into the results store
  sicp report                     render the evaluation report and the outcome audit
  sicp export                     write the analysis panels as parquet and Stata .dta
  sicp validate --reps 200        Monte Carlo bias and coverage of the estimators

Paths come from SICP_INPUT_DIR, SICP_WAREHOUSE, SICP_RESULTS_DIR, SICP_REPORTS_DIR and
SICP_PROTOCOLS_DIR (defaults under data/, reports/output and protocols/).
"""


def cmd_synth(args: argparse.Namespace) -> int:
    from sicp.synth import generate_world

    summary = generate_world(args.scenario, args.seed, Path(args.out))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Exit 0: loaded; 1: a source could not be ingested, a delivered file was refused (no
    source, a duplicate, a link), the warehouse was in use or the disk full (or a bad
    setting); 3: loaded, but a reference table lost rows or a source lost more than the
    allowed share to quarantine. No traceback unless SICP_DEBUG is set."""
    import os

    from sicp.ingest.keys import REKEY_ENV

    if args.rekey:
        os.environ[REKEY_ENV] = "1"

    from sicp.ingest import (
        IngestError,
        IngestRunError,
        check_quarantine,
        ingest_all,
        max_quarantine_share,
    )
    from sicp.ingest.report import where_recorded

    paths = Paths.from_env()
    try:
        limit = max_quarantine_share(args.max_quarantine_share)
        report = ingest_all(paths.input_dir, paths.warehouse)
    except IngestError as exc:
        print(f"sicp ingest: {exc}", file=sys.stderr)
        if isinstance(exc, IngestRunError):
            where = where_recorded(exc.warehouse, exc.run_log, exc.manifest)
            if exc.outcome in ("in_use", "no_space"):   # the warehouse was not written
                where = f"run log: {exc.run_log}"
            print(where, file=sys.stderr)
        return 1
    except Exception as exc:   # a fault in sicp itself: plain words, traceback on request
        if os.environ.get("SICP_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"sicp ingest: unexpected {type(exc).__name__}: {first} (set SICP_DEBUG=1 for "
              f"the traceback)", file=sys.stderr)
        return 1
    print(report)
    try:
        check_quarantine(report, limit)
    except IngestError as exc:
        print(f"sicp ingest: {exc}", file=sys.stderr)
        return 3
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from sicp.ingest.journal import interrupted_ingest
    from sicp.warehouse import dbt_build

    paths = Paths.from_env()
    problem = interrupted_ingest(paths.warehouse)
    if problem:
        print(f"sicp build: {problem}", file=sys.stderr)
        return 1
    return dbt_build(paths, select=args.select)


def cmd_analyse(args: argparse.Namespace) -> int:
    from analysis.runner import run_all_protocols
    from analysis.store import STATUS_FAILED, STATUS_OK, read_results
    from sicp.warehouse import BuildError, check_current

    paths = Paths.from_env()
    try:
        check_current(paths.warehouse, allow_failed=args.allow_failed_build)
    except BuildError as exc:
        print(f"sicp analyse: {exc}", file=sys.stderr)
        return 1
    try:
        outcomes = run_all_protocols(paths, only=args.protocol or None)
    except ValueError as exc:
        print(f"sicp analyse: {exc}", file=sys.stderr)
        return 2
    for o in outcomes:
        detail = f"{len(o.rows)} rows" if o.status == STATUS_OK else o.reason
        print(f"  {o.protocol.id:<40} {o.status:<15} {detail}")
    failed = [o for o in outcomes if o.status == STATUS_FAILED]
    print(f"{len(read_results(paths.results_dir))} estimate rows in "
          f"{paths.results_dir / 'estimates.parquet'}; "
          f"{sum(o.status == STATUS_OK for o in outcomes)} of {len(outcomes)} protocols ok")
    if failed:
        print(f"sicp analyse: {len(failed)} protocol(s) failed: "
              f"{', '.join(o.protocol.id for o in failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sicp.reports import render_all
    from sicp.warehouse import BuildError, check_results_current

    paths = Paths.from_env()
    try:
        check_results_current(paths.warehouse, paths.results_dir)
    except BuildError as exc:
        print(f"sicp report: {exc}", file=sys.stderr)
        return 1
    written = render_all(paths, formats=tuple(args.format or ("html", "pdf")),
                         threshold=args.suppress_below, protocol_ids=tuple(args.protocol or ()))
    for out in written:
        print(out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sicp.export import export_marts
    from sicp.warehouse import BuildError, check_current

    paths = Paths.from_env()
    try:
        check_current(paths.warehouse)
    except BuildError as exc:
        print(f"sicp export: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else paths.results_dir / "panels"
    try:
        written = export_marts(paths.warehouse, out,
                               formats=tuple(args.format or ("parquet", "dta")),
                               reports_dir=paths.reports_dir)
    except ValueError as exc:
        print(f"sicp export: {exc}", file=sys.stderr)
        return 1
    for files in written.values():
        for path in files:
            print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sicp.validate import run_monte_carlo, update_monte_carlo

    if args.update:
        if not args.protocol:
            print("sicp validate: --update reruns the protocols named with --protocol",
                  file=sys.stderr)
            return 2
        table = update_monte_carlo(seed=args.seed, out=Path(args.out), protocols=args.protocol,
                                   scenario=args.scenario, workers=args.workers,
                                   resume=args.resume)
    else:
        table = run_monte_carlo(reps=args.reps, seed=args.seed, out=Path(args.out),
                                scenario=args.scenario, protocols=args.protocol or None,
                                workers=args.workers, resume=args.resume)
    print(table.to_string(index=False))
    return 0


def cmd_consent(args: argparse.Namespace) -> int:
    """The consent ledger: list it, or log a reinstatement (the only way an exclusion ends)."""
    import duckdb

    from sicp.contract import RAW
    from sicp.ingest.consent import reinstate
    from sicp.ingest.tables import qualified
    from sicp.warehouse import duckdb_config

    paths = Paths.from_env()
    if not paths.warehouse.exists():
        print(f"sicp consent: {paths.warehouse} does not exist; run `sicp ingest` first",
              file=sys.stderr)
        return 1
    if args.action == "list":
        with duckdb.connect(str(paths.warehouse), read_only=True) as con:
            rows = con.execute(f"SELECT * FROM {qualified(RAW.consent_ledger)} ORDER BY seq").df()
        print(rows.to_string(index=False) if len(rows) else "the consent ledger is empty")
        return 0
    if not (args.person and args.by and args.why):
        print("sicp consent reinstate: give PERSON_ID, --by and --why", file=sys.stderr)
        return 2
    with duckdb.connect(str(paths.warehouse), config=duckdb_config(paths.warehouse)) as con:
        try:
            seq = reinstate(con, args.person, args.scope, authorised_by=args.by, why=args.why)
        except ValueError as exc:
            print(f"sicp consent reinstate: {exc}", file=sys.stderr)
            return 1
    print(f"ledger entry {seq}: {args.person} reinstated in scope {args.scope}; run `sicp build` "
          f"so the marts follow the ledger")
    return 0


def cmd_contract(args: argparse.Namespace) -> int:
    from sicp.contract_docs import contract_markdown

    text = contract_markdown()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sicp.pipeline import PipelineError, run_demo

    started = time.perf_counter()
    try:
        summary = run_demo(Paths.from_env(), scenario=args.scenario, seed=args.seed)
    except PipelineError as exc:
        print(f"sicp demo: {exc}", file=sys.stderr)
        return 1
    print(summary)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sicp", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of unexpected errors (same as SICP_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("synth", cmd_synth, "Write a synthetic Salford world (every contract file + "
            "truth.json with the true effects).")
    p.add_argument("--scenario", default="default",
                   help="scenario name in scenarios/ (default, null, small, gm) or a YAML path")
    p.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes")
    p.add_argument("--out", default=str(PROJECT_ROOT / "data" / "raw"), help="output folder")

    p = add("ingest", cmd_ingest, "Validate, pseudonymise and load the input folder into the "
            "warehouse's raw schema; bad rows go to raw.quarantine. Exits 1 when a source "
            "cannot be ingested and 3 (data loaded) when a reference table lost rows or a "
            "source lost more than the allowed share of its rows to quarantine.")
    p.add_argument("--max-quarantine-share", type=float, default=None, metavar="SHARE",
                   help="largest share (0-1) of a source's rows that may be quarantined "
                        "before ingest fails (default: SICP_MAX_QUARANTINE_SHARE, else 0.05)")
    p.add_argument("--rekey", action="store_true",
                   help="pseudonymise with a new SICP_PSEUDONYM_KEY on purpose (same as "
                        "SICP_REKEY=1): every pseudonymised source is rebuilt under it")

    p = add("build", cmd_build, "Run dbt build (staging, exposure, outcome measures, marts, "
            "data tests).")
    p.add_argument("--select", default=None, help="dbt selection, e.g. 'marts'")

    p = add("analyse", cmd_analyse, "Run the pre-specified protocols into the results store.")
    p.add_argument("--protocol", action="append", help="protocol id (repeatable); default all")
    p.add_argument("--allow-failed-build", action="store_true",
                   help="analyse even though the warehouse's last dbt build failed")

    p = add("report", cmd_report, "Render the evaluation report and the outcome audit "
            "(HTML and PDF) from the results store.")
    p.add_argument("--format", action="append", choices=["html", "pdf"],
                   default=None, help="output format (repeatable); default both")
    p.add_argument("--suppress-below", type=int, default=5,
                   help="small-number suppression threshold for counts (default 5)")
    p.add_argument("--protocol", action="append",
                   help="report only this protocol id (repeatable); default all")

    p = add("export", cmd_export, "Export the analysis panels (marts) as parquet and Stata .dta.")
    p.add_argument("--out", default=None, help="output folder (default <results>/panels)")
    p.add_argument("--format", action="append", choices=["parquet", "dta"], default=None)

    p = add("validate", cmd_validate, "Monte Carlo study: bias, empirical SE, model SE and 95 per cent "
            "CI coverage of each estimator over re-generated worlds.")
    p.add_argument("--reps", type=int, default=200, help="replications per estimator")
    p.add_argument("--seed", type=int, default=20260101,
                   help="master seed (the replications' world seeds derive from it)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "validation"),
                   help="folder for the committed table")
    p.add_argument("--scenario", default="mc", help="scenario of the simulated worlds")
    p.add_argument("--protocol", action="append", default=[],
                   help="only this protocol (repeatable; default: every protocol with a truth)")
    p.add_argument("--update", action="store_true",
                   help="rerun only the --protocol protocols on the study in --out (same "
                        "seed and scenario), replace their rows and re-summarise")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run (or --update) from the replications it wrote")

    p = add("consent", cmd_consent, "The consent ledger: `list` it, or `reinstate` a person "
            "(logged with who and why); withdrawals are otherwise kept for good.")
    p.add_argument("action", choices=["list", "reinstate"])
    p.add_argument("person", nargs="?", help="pseudonymous person_id to reinstate")
    p.add_argument("--scope", choices=["all", "records"], default="all")
    p.add_argument("--by", help="who authorised the reinstatement")
    p.add_argument("--why", help="why (e.g. the consent form reference)")

    p = add("contract", cmd_contract, "Print the input data contract (from sicp/contract.py) "
            "as Markdown.")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")

    p = add("demo", cmd_demo, "Generate a synthetic world and run the whole pipeline on it.")
    p.add_argument("--scenario", default="default")
    p.add_argument("--seed", type=int, default=42)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an unexpected error is one line naming the command (exit 1), with the
    traceback only under ``--debug`` (or ``SICP_DEBUG``)."""
    import os

    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ["SICP_DEBUG"] = "1"
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - the user gets words, --debug the traceback
        if os.environ.get("SICP_DEBUG"):
            raise
        print(f"sicp {args.command}: {type(exc).__name__}: {exc} (run with --debug for the "
              f"traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
