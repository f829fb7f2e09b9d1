"""``sicp``: one command-line tool for every user-facing job of the evaluation platform."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sicp.settings import CONFIG_ENV, CONFIG_FILE, PROJECT_ROOT, ConfigError, Paths, config_file

if TYPE_CHECKING:
    from analysis.protocol import Protocol
    from analysis.runner import Lineage

DESCRIPTION = """\
SICP evaluation platform: synthetic data, ingest, warehouse, estimates and reports for the
evaluation of the Salford Integrated Care Programme.

Typical use:
  sicp demo                       whole pipeline on a synthetic world (what `make demo` runs)
  sicp synth --scenario default   write a synthetic world in the data contract's formats
  sicp ingest                     validate + pseudonymise + load input files into DuckDB (raw)
  sicp build                      dbt build: staging, exposure, outcome measures, marts
  sicp analyse                    run every protocol in protocols/ into the results store
  sicp report                     render the evaluation report, the outcome audit, the explorer
  sicp export                     write the analysis panels as parquet and Stata .dta
  sicp validate --reps 200        Monte Carlo bias and coverage of the estimators
  sicp status                     input folder, warehouse, last build and results: current?

Paths come from SICP_INPUT_DIR, SICP_WAREHOUSE, SICP_RESULTS_DIR, SICP_REPORTS_DIR and
SICP_PROTOCOLS_DIR, else from sicp.toml (in the current directory, or named by SICP_CONFIG),
else the defaults under data/, reports/output and protocols/.

Exit codes: 0 done; 1 the data or the run failed; 2 a mistake in the command (what to do is
said in one line); 3 ingest lost more rows to quarantine than allowed.
"""


class UsageError(Exception):
    """A mistake of the caller's (a wrong name, a missing folder, a step run too early): one
    line saying what is wrong, where and what to do, exit code 2. Failures of the data or of
    the run exit 1 instead, so a script can tell the two apart."""


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _user_mistake(exc: Exception) -> bool:
    """Whether an error is the caller's to fix (exit 2): besides :class:`UsageError`, a
    settings file or a protocol file that cannot be used, which name the file and field."""
    from analysis.protocol import ProtocolError

    return isinstance(exc, UsageError | ConfigError | ProtocolError)


def _check_scenario(name: str) -> None:
    """A ``--scenario`` names a scenario before any work starts (synth, demo, validate)."""
    from sicp.synth.scenario import load_scenario

    try:
        load_scenario(name)
    except FileNotFoundError as exc:
        raise UsageError(f"--scenario: {exc} (scenarios/*.yml, or a path to a YAML file)") from None


def _require_build(paths: Paths, *, allow_failed: bool = False) -> None:
    """The marts may be read: no warehouse or no recorded build is a step skipped (exit 2);
    a failed or stale build is the data's state (:class:`sicp.warehouse.BuildError`, exit 1)."""
    from sicp.warehouse import check_current, last_build

    if not paths.warehouse.exists():
        raise UsageError(
            f"the warehouse {paths.warehouse} does not exist; run `sicp ingest` "
            f"and `sicp build` first (or set SICP_WAREHOUSE)"
        )
    if last_build(paths.warehouse) is None:
        raise UsageError(f"{paths.warehouse} has no recorded dbt build; run `sicp build` first")
    check_current(paths.warehouse, allow_failed=allow_failed)


def _selected_protocols(paths: Paths, wanted: Sequence[str] | None) -> list[Protocol]:
    """The protocols named with ``--protocol`` (all when none is), each of which must be a
    protocol file of the protocols folder."""
    from analysis.protocol import load_protocols
    from analysis.runner import unknown_protocols

    protocols = load_protocols(paths.protocols_dir)
    unknown = unknown_protocols(protocols, wanted or ())
    if unknown:
        raise UsageError(
            f"--protocol: no protocol {', '.join(unknown)} in "
            f"{paths.protocols_dir}; known: {', '.join(p.id for p in protocols)}"
        )
    return [p for p in protocols if not wanted or p.id in wanted]


def cmd_synth(args: argparse.Namespace) -> int:
    from sicp.synth import generate_world

    summary = generate_world(args.scenario, args.seed, Path(args.out))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Exit 0: loaded; 1: a source could not be ingested, a delivered file was refused (no
    source, a duplicate, a link), the warehouse was in use or the disk full (or a bad
    quarantine limit); 2: there is no input folder; 3: loaded, but a reference table lost
    rows or a source lost more than the allowed share to quarantine. No traceback unless
    SICP_DEBUG is set."""
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
    if not paths.input_dir.is_dir():
        raise UsageError(
            f"the input folder {paths.input_dir} does not exist; set "
            f"SICP_INPUT_DIR (or input_dir in {CONFIG_FILE}) to the delivery's "
            f"folder, or write a synthetic one with `sicp synth`"
        )
    try:
        limit = max_quarantine_share(args.max_quarantine_share)
        report = ingest_all(paths.input_dir, paths.warehouse)
    except IngestError as exc:
        print(f"sicp ingest: {exc}", file=sys.stderr)
        if isinstance(exc, IngestRunError):
            where = where_recorded(exc.warehouse, exc.run_log, exc.manifest)
            if exc.outcome in ("in_use", "no_space"):  # the warehouse was not written
                where = f"run log: {exc.run_log}"
            print(where, file=sys.stderr)
        return 1
    except Exception as exc:  # a fault in sicp itself: plain words, traceback on request
        if os.environ.get("SICP_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"sicp ingest: unexpected {type(exc).__name__}: {first} (set SICP_DEBUG=1 for "
            f"the traceback)",
            file=sys.stderr,
        )
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
    from sicp.warehouse import dbt_build, dbt_target

    paths = Paths.from_env()
    if dbt_target() is None and not paths.warehouse.exists():
        raise UsageError(
            f"the warehouse {paths.warehouse} does not exist; run `sicp ingest` "
            f"first (or set SICP_WAREHOUSE)"
        )
    problem = interrupted_ingest(paths.warehouse)
    if problem:
        print(f"sicp build: {problem}", file=sys.stderr)
        return 1
    return dbt_build(paths, select=args.select)


def cmd_analyse(args: argparse.Namespace) -> int:
    """Run the protocols whose stored result is not current (all with ``--force``), saying of
    each whether it ran and why, or was kept (:func:`analysis.runner.rerun_reason`)."""
    from analysis.runner import ProtocolOutcome, current_lineage, rerun_reasons, run_all_protocols
    from analysis.store import STATUS_FAILED, STATUS_OK, read_protocol_runs, read_results
    from sicp.warehouse import BuildError

    paths = Paths.from_env()
    selected = _selected_protocols(paths, args.protocol)
    try:
        _require_build(paths, allow_failed=args.allow_failed_build)
    except BuildError as exc:
        print(f"sicp analyse: {exc}", file=sys.stderr)
        return 1
    now = current_lineage(paths)
    reasons = (
        dict.fromkeys((p.id for p in selected), "of --force")
        if args.force
        else rerun_reasons(selected, now, paths.results_dir)
    )
    to_run = [p.id for p in selected if reasons[p.id] is not None]

    def done(o: ProtocolOutcome) -> None:  # a line as each protocol is stored, not at the end
        detail = f"{len(o.rows)} rows" if o.status == STATUS_OK else o.reason
        print(
            f"  [{len(outcomes) + 1}/{len(to_run)}] {o.protocol.id:<40} {o.status:<15} "
            f"{detail}; ran because {reasons[o.protocol.id]} ({o.seconds:.1f} s)",
            flush=True,
        )
        outcomes[o.protocol.id] = o

    outcomes: dict[str, ProtocolOutcome] = {}
    if to_run:
        run_all_protocols(paths, only=to_run, on_done=done)
    stored = read_protocol_runs(paths.results_dir).set_index("protocol_id")
    for p in selected:
        if p.id not in outcomes:
            print(
                f"  {p.id:<40} {stored.at[p.id, 'status']:<15} unchanged, kept "
                f"({stored.at[p.id, 'n_estimates']} rows)"
            )
    failed = [o for o in outcomes.values() if o.status == STATUS_FAILED]
    n_ok = sum(stored.at[p.id, "status"] == STATUS_OK for p in selected)
    print(
        f"{len(read_results(paths.results_dir))} estimate rows in "
        f"{paths.results_dir / 'estimates.parquet'}; {n_ok} of {len(selected)} protocols ok; "
        f"{len(outcomes)} run, {len(selected) - len(outcomes)} unchanged and kept"
    )
    if len(outcomes) < len(selected) and now.code_version.endswith("-dirty"):
        print(
            f"note: the code version {now.code_version} does not change with further "
            f"uncommitted edits; after editing the code, run with --force"
        )
    if failed:
        print(
            f"sicp analyse: {len(failed)} protocol(s) failed: "
            f"{', '.join(o.protocol.id for o in failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.store import read_protocol_runs
    from sicp.reports import render_all
    from sicp.warehouse import BuildError, check_results_current

    paths = Paths.from_env()
    _selected_protocols(paths, args.protocol)
    try:
        _require_build(paths)
        if read_protocol_runs(paths.results_dir).empty:
            raise UsageError(f"no results in {paths.results_dir}; run `sicp analyse` first")
        check_results_current(paths.warehouse, paths.results_dir)
    except BuildError as exc:
        print(f"sicp report: {exc}", file=sys.stderr)
        return 1
    written = render_all(
        paths,
        formats=tuple(args.format or ("html", "pdf")),
        threshold=args.suppress_below,
        protocol_ids=tuple(args.protocol or ()),
    )
    for out in written:
        print(out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sicp.export import ExportError, export_marts
    from sicp.warehouse import BuildError

    paths = Paths.from_env()
    try:
        _require_build(paths)
    except BuildError as exc:
        print(f"sicp export: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else paths.results_dir / "panels"
    try:
        written = export_marts(
            paths.warehouse,
            out,
            formats=tuple(args.format or ("parquet", "dta")),
            reports_dir=paths.reports_dir,
            dta_compression=args.dta_compression,
        )
    except ExportError as exc:
        raise UsageError(f"--out: {exc}; choose a folder outside it") from None
    except ValueError as exc:
        print(f"sicp export: {exc}", file=sys.stderr)
        return 1
    for files in written.values():
        for path in files:
            print(path)
    return 0


#: Where ``sicp validate --update-docs`` writes: the committed study the README cites.
COMMITTED_VALIDATION = PROJECT_ROOT / "docs" / "validation"


def cmd_validate(args: argparse.Namespace) -> int:
    """A study goes to ``<results>/validation`` unless ``--out`` or ``--update-docs`` (the
    committed tables in docs/validation/) says otherwise, so a trial run never overwrites
    what the README cites."""
    from sicp.validate import run_monte_carlo, truth_protocols, update_monte_carlo

    out = (
        Path(args.out)
        if args.out
        else COMMITTED_VALIDATION
        if args.update_docs
        else Paths.from_env().results_dir / "validation"
    )
    if args.reps < 2:
        raise UsageError(f"--reps {args.reps}: a Monte Carlo study needs at least 2 replications")
    try:
        truth_protocols(args.protocol or None)
    except ValueError as exc:
        raise UsageError(
            f"--protocol: {exc} (only the protocols in protocols/ that declare a "
            f"truth can be validated)"
        ) from None
    if args.update:
        if not args.protocol:
            raise UsageError(
                "--update reruns the protocols named with --protocol; name at least one"
            )
        if not (out / "replications.csv").exists():
            raise UsageError(
                f"--update: no study in {out} (no replications.csv); run the "
                f"study first, or give --out or --update-docs for the one to "
                f"update"
            )
        table = update_monte_carlo(
            seed=args.seed,
            out=out,
            protocols=args.protocol,
            scenario=args.scenario,
            workers=args.workers,
            resume=args.resume,
        )
    else:
        table = run_monte_carlo(
            reps=args.reps,
            seed=args.seed,
            out=out,
            scenario=args.scenario,
            protocols=args.protocol or None,
            workers=args.workers,
            resume=args.resume,
        )
    print(table.to_string(index=False))
    return 0


def cmd_consent(args: argparse.Namespace) -> int:
    """The consent ledger: list it, or log a reinstatement (the only way an exclusion ends)."""
    import duckdb

    from sicp.contract import RAW
    from sicp.ingest.consent import reinstate
    from sicp.ingest.tables import qualified
    from sicp.warehouse import connect_writer

    paths = Paths.from_env()
    if not paths.warehouse.exists():
        raise UsageError(
            f"the warehouse {paths.warehouse} does not exist; run `sicp ingest` "
            f"first (or set SICP_WAREHOUSE)"
        )
    if args.action == "list":
        with duckdb.connect(str(paths.warehouse), read_only=True) as con:
            rows = con.execute(f"SELECT * FROM {qualified(RAW.consent_ledger)} ORDER BY seq").df()
        print(rows.to_string(index=False) if len(rows) else "the consent ledger is empty")
        return 0
    if not (args.person and args.by and args.why):
        raise UsageError("reinstate: give PERSON_ID, --by and --why")
    with connect_writer(paths.warehouse) as con:
        try:
            seq = reinstate(con, args.person, args.scope, authorised_by=args.by, why=args.why)
        except ValueError as exc:  # not excluded in that scope: nothing was written
            raise UsageError(f"reinstate: {exc} (see `sicp consent list`)") from None
    print(
        f"ledger entry {seq}: {args.person} reinstated in scope {args.scope}; run `sicp build` "
        f"so the marts follow the ledger"
    )
    return 0


def cmd_contract(args: argparse.Namespace) -> int:
    from sicp.contract_docs import contract_markdown, dbt_sources_yaml

    text = dbt_sources_yaml() if args.dbt_sources else contract_markdown()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _short(fingerprint: str) -> str:
    return fingerprint[:12] if fingerprint else "none"


def _warehouse_state(warehouse: Path) -> tuple[str, int, dict[str, object] | None]:
    """(input fingerprint, consent ledger entry, last build), read with read-only connections,
    which never take the writer lock; :class:`sicp.warehouse.WarehouseInUse` while a writer
    holds the file (DuckDB then refuses readers too)."""
    import duckdb

    from sicp.warehouse import inputs_state, last_build, warehouse_in_use

    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            fingerprint, consent = inputs_state(con)
        return fingerprint, consent, last_build(warehouse)
    except duckdb.IOException as exc:
        in_use = warehouse_in_use(warehouse, exc)
        if in_use is None:
            raise
        raise in_use from None


def _input_folder_state(input_dir: Path, ingested: str | None) -> str:
    """The folder's fingerprint, computed as ingest does (contract files only) without
    writing anything, against the one the warehouse holds (``ingested``)."""
    from sicp.contract import SOURCES
    from sicp.ingest import IngestError, contract_files, input_fingerprint

    if not input_dir.is_dir():
        return f"{input_dir}: missing; set SICP_INPUT_DIR or input_dir in {CONFIG_FILE}"
    try:
        files = contract_files(input_dir, SOURCES.values())
    except IngestError as exc:  # a refused delivery: ingest would stop on it
        return f"{input_dir}: {_one_line(str(exc))}"
    now = input_fingerprint(files)
    against = (
        ""
        if ingested is None
        else "; as last ingested"
        if now == ingested
        else f"; changed since the last ingest ({_short(ingested)}): run `sicp ingest`"
    )
    return f"{input_dir}: fingerprint {_short(now)} ({len(files)} files){against}"


def _build_state(build: dict[str, object] | None, fingerprint: str, consent: int) -> str:
    if build is None:
        return "none recorded; run `sicp build`"
    outcome = (
        "passed"
        if build["success"]
        else (
            f"FAILED ({build['n_failed']} failed: {build['failed_nodes'] or '-'}, "
            f"{build['n_skipped']} skipped)"
        )
    )
    current = (
        "marts current"
        if (build["input_fingerprint"], build["consent_seq"]) == (fingerprint, consent)
        else "marts stale (ingested or consent changed since): run `sicp build`"
    )
    return (
        f"#{build['build_seq']} at {build['built_at']} ({build['invoked_by']}): "
        f"{outcome}, {build['n_nodes']} nodes; {current}"
    )


def _results_state(results_dir: Path, protocols: list[Protocol], now: Lineage) -> str:
    """How many protocols' stored results are current (:func:`analysis.runner.rerun_reason`)
    and why the others would run again."""
    from analysis.runner import rerun_reasons
    from analysis.store import read_protocol_runs

    if read_protocol_runs(results_dir).empty:
        return f"{results_dir}: none; run `sicp analyse`"
    by_reason: dict[str, list[str]] = {}
    for pid, why in rerun_reasons(protocols, now, results_dir).items():
        if why is not None:
            by_reason.setdefault(why, []).append(pid)
    current = len(protocols) - sum(map(len, by_reason.values()))
    others = "".join(
        f"; {len(ids)} to run again, as {why}: {', '.join(ids[:3])}"
        f"{', ...' if len(ids) > 3 else ''}"
        for why, ids in by_reason.items()
    )
    return f"{results_dir}: {current} of {len(protocols)} protocols current{others}"


def status_lines(paths: Paths) -> list[tuple[str, str]]:
    """(item, state) for ``sicp status``, reading only: settings, input folder, warehouse, last
    build, results, protocols, code version."""
    from analysis.protocol import load_protocols
    from analysis.runner import Lineage
    from analysis.store import code_version
    from sicp.warehouse import WarehouseInUse

    settings = config_file()
    version = ("code version", code_version(PROJECT_ROOT))
    lines = [
        (
            "settings",
            f"{settings} (environment variables win over it)"
            if settings
            else f"environment and defaults (no {CONFIG_FILE}; {CONFIG_ENV} unset)",
        )
    ]
    try:
        state = _warehouse_state(paths.warehouse) if paths.warehouse.exists() else None
    except WarehouseInUse as exc:
        return [
            *lines,
            ("input folder", _input_folder_state(paths.input_dir, None)),
            ("warehouse", str(exc)),
            version,
        ]
    lines.append(
        ("input folder", _input_folder_state(paths.input_dir, state[0] if state else None))
    )
    if state is None:
        return [*lines, ("warehouse", f"{paths.warehouse}: missing; run `sicp ingest`"), version]
    fingerprint, consent, build = state
    protocols = load_protocols(paths.protocols_dir)
    now = Lineage(fingerprint, int(build["build_seq"]) if build else 0, version[1])
    return [
        *lines,
        (
            "warehouse",
            f"{paths.warehouse}: last ingest {_short(fingerprint)}, consent ledger entry {consent}",
        ),
        ("last build", _build_state(build, fingerprint, consent)),
        ("results", _results_state(paths.results_dir, protocols, now)),
        ("protocols", f"{len(protocols)} in {paths.protocols_dir}"),
        version,
    ]


def cmd_status(args: argparse.Namespace) -> int:
    """Where things stand, one line per item, changing nothing (exit 0 whatever the state)."""
    for item, state in status_lines(Paths.from_env()):
        print(f"{item:<13} {state}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster_project.pipeline import PipelineError, run_demo

    started = time.perf_counter()
    try:
        summary = run_demo(
            Paths.from_env(), scenario=args.scenario, seed=args.seed, verbose=args.verbose
        )
    except PipelineError as exc:
        print(f"sicp demo: {exc}", file=sys.stderr)
        return 1
    print(summary)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


#: The distribution ``sicp`` is installed as (pyproject.toml).
DISTRIBUTION = "sicp-eval"


def version_text() -> str:
    """The installed package's version and, in a git checkout, the commit, in the form the
    results store cites it (``analysis.store.code_version``)."""
    from importlib.metadata import PackageNotFoundError, version

    from analysis.store import code_version

    try:
        package = version(DISTRIBUTION)
    except PackageNotFoundError:
        package = "(not installed)"
    commit = code_version(PROJECT_ROOT)
    return f"sicp {package}" + (f" (git {commit})" if commit != "unknown" else "")


class _VersionAction(argparse.Action):
    """``--version``, worked out only when asked for (it imports the results store and runs
    git, which every other command would pay for with argparse's own version action)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Errors in the arguments (a bad --format, an unknown command) as one line naming the
    argument, raised as :class:`UsageError` for :func:`main`, instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sicp", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks of unexpected errors (same as SICP_DEBUG=1)",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the package version and git commit, and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add(
        "synth",
        cmd_synth,
        "Write a synthetic Salford world (every contract file + truth.json with the true effects).",
    )
    p.add_argument(
        "--scenario",
        default="default",
        help="scenario name in scenarios/ (default, null, small, gm) or a YAML path",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes")
    p.add_argument("--out", default=str(PROJECT_ROOT / "data" / "raw"), help="output folder")

    p = add(
        "ingest",
        cmd_ingest,
        "Validate, pseudonymise and load the input folder into the "
        "warehouse's raw schema; bad rows go to raw.quarantine. Exits 1 when a source "
        "cannot be ingested and 3 (data loaded) when a reference table lost rows or a "
        "source lost more than the allowed share of its rows to quarantine.",
    )
    p.add_argument(
        "--max-quarantine-share",
        type=float,
        default=None,
        metavar="SHARE",
        help="largest share (0-1) of a source's rows that may be quarantined "
        "before ingest fails (default: SICP_MAX_QUARANTINE_SHARE, else 0.05)",
    )
    p.add_argument(
        "--rekey",
        action="store_true",
        help="pseudonymise with a new SICP_PSEUDONYM_KEY on purpose (same as "
        "SICP_REKEY=1): every pseudonymised source is rebuilt under it",
    )

    p = add(
        "build",
        cmd_build,
        "Run dbt build (staging, exposure, outcome measures, marts, data tests).",
    )
    p.add_argument("--select", default=None, help="dbt selection, e.g. 'marts'")

    p = add("analyse", cmd_analyse, "Run the pre-specified protocols into the results store.")
    p.add_argument("--protocol", action="append", help="protocol id (repeatable); default all")
    p.add_argument(
        "--allow-failed-build",
        action="store_true",
        help="analyse even though the warehouse's last dbt build failed",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run every protocol, also those whose stored result is current (same "
        "protocol hash, input fingerprint, build and code version)",
    )

    p = add(
        "report",
        cmd_report,
        "Render the evaluation report and the outcome audit "
        "(HTML and PDF) and the results explorer (HTML) from the results store.",
    )
    p.add_argument(
        "--format",
        action="append",
        choices=["html", "pdf"],
        default=None,
        help="output format (repeatable); default both",
    )
    p.add_argument(
        "--suppress-below",
        type=int,
        default=5,
        help="small-number suppression threshold for counts (default 5)",
    )
    p.add_argument(
        "--protocol", action="append", help="report only this protocol id (repeatable); default all"
    )

    p = add("export", cmd_export, "Export the analysis panels (marts) as parquet and Stata .dta.")
    p.add_argument("--out", default=None, help="output folder (default <results>/panels)")
    p.add_argument("--format", action="append", choices=["parquet", "dta"], default=None)
    p.add_argument(
        "--dta-compression",
        choices=["auto", "zip", "none"],
        default="auto",
        help="zip the .dta files: auto (default) zips those above 100 MB",
    )

    p = add(
        "validate",
        cmd_validate,
        "Monte Carlo study: bias, empirical SE, model SE and 95 per cent "
        "CI coverage of each estimator over re-generated worlds.",
    )
    p.add_argument("--reps", type=int, default=200, help="replications per estimator")
    p.add_argument(
        "--seed",
        type=int,
        default=20260101,
        help="master seed (the replications' world seeds derive from it)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--out", default=None, help="folder for the study (default <results>/validation)"
    )
    where.add_argument(
        "--update-docs",
        action="store_true",
        help="write the committed tables in docs/validation/ (what the README cites) instead",
    )
    p.add_argument("--scenario", default="mc", help="scenario of the simulated worlds")
    p.add_argument(
        "--protocol",
        action="append",
        default=[],
        help="only this protocol (repeatable; default: every protocol with a truth)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="rerun only the --protocol protocols on the study in --out (same "
        "seed and scenario), replace their rows and re-summarise",
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped run (or --update) from the replications it wrote",
    )

    p = add(
        "consent",
        cmd_consent,
        "The consent ledger: `list` it, or `reinstate` a person "
        "(logged with who and why); withdrawals are otherwise kept for good.",
    )
    p.add_argument("action", choices=["list", "reinstate"])
    p.add_argument("person", nargs="?", help="pseudonymous person_id to reinstate")
    p.add_argument("--scope", choices=["all", "records"], default="all")
    p.add_argument("--by", help="who authorised the reinstatement")
    p.add_argument("--why", help="why (e.g. the consent form reference)")

    add(
        "status",
        cmd_status,
        "Where things stand, one line each: settings, input folder "
        "(fingerprint against the last ingest), warehouse, last dbt build, whether the results "
        "are current, protocols and code version. Writes nothing and takes no lock.",
    )

    p = add(
        "contract",
        cmd_contract,
        "Print the input data contract (from sicp/contract.py) "
        "as Markdown, or as dbt's declaration of the raw tables.",
    )
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.add_argument(
        "--dbt-sources",
        action="store_true",
        help="print dbt's sources file (dbt/models/staging/_sources.yml) instead",
    )

    p = add("demo", cmd_demo, "Generate a synthetic world and run the whole pipeline on it.")
    p.add_argument("--scenario", default="default")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show the Dagster and dbt logs live instead of one line per stage "
        "(the logs otherwise go to a file named at the end)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user mistake is one line naming the command, what is wrong and what
    to do (exit 2); any other error is one line too (exit 1). ``--debug`` (or ``SICP_DEBUG``)
    lets the traceback through instead. A ``--scenario`` is checked before the command runs."""
    import os

    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version have printed what was asked
        return int(exc.code or 0)
    if args.debug:
        os.environ["SICP_DEBUG"] = "1"
    try:
        if getattr(args, "scenario", None):
            _check_scenario(args.scenario)
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - the user gets words, --debug the traceback
        if os.environ.get("SICP_DEBUG"):
            raise
        if _user_mistake(exc):
            print(f"sicp {args.command}: {_one_line(str(exc))}", file=sys.stderr)
            return 2
        print(
            f"sicp {args.command}: {type(exc).__name__}: {_one_line(str(exc))} (run with "
            f"--debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
