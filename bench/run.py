"""The pipeline benchmark (``make bench``): wall time, peak memory and rows, stage by stage.

Every stage (generate, ingest, dbt build, each protocol, reports) runs in its own child process
(``bench.stages``) while this process samples the resident memory of the child's whole process
tree; the child's own peak (``wait4`` rusage) bounds the sampling from below. A stage whose first
run is shorter than ``--short`` seconds is repeated and its median reported. Scenarios run one
after another and the table puts them side by side, with the growth exponent of each stage's
time in its rows (1 = linear) between the smallest and the largest scale.

    python -m bench.run --scenarios default mid gm

The last stage, ``end_to_end``, is ``sicp demo`` in one process, the quantity of the 5-minute
target; it runs on the default world only (the target's world, and the protocols' scale).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import psutil

from analysis.protocol import load_protocols
from bench.estimators import markdown as estimators_markdown
from bench.estimators import read_comparisons
from bench.stages import rows_after, world_paths
from sicp.settings import PROJECT_ROOT

#: Targets from issue 8 (2-core, 24 GiB machine).
DEFAULT_END_TO_END_S = 300.0
GM_INGEST_DBT_S = 900.0
GM_PEAK_BYTES = 12 * 10**9
#: A growth exponent above this, in rows, counts as super-linear (timing noise allowance).
SUPERLINEAR_EXPONENT = 1.15
#: Rows must grow at least this much between scales for a growth exponent to mean anything
#: (the trial and area panels are the same size in every world; their time ratio is noise).
MIN_ROWS_RATIO = 2.0
SAMPLE_SECONDS = 0.05
#: The stage that is the whole demo, and the only scenario it runs on.
END_TO_END = "end_to_end"
END_TO_END_SCENARIO = "default"


@dataclass
class Measurement:
    scenario: str
    stage: str
    runs: int
    seconds: float  # median over the runs
    seconds_min: float
    seconds_max: float
    peak_rss_bytes: int  # largest over the runs
    rows: int
    load_1min: float  # machine load average when the stage started (other work on the box)
    error: str = ""  # why the stage failed (then seconds is NaN); empty when it ran


def _tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (0 once it has been reaped)."""
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in tree:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_stage(
    stage: str, root: Path, scenario: str, seed: int, protocol: str | None, log: Path
) -> tuple[float, int, int]:
    """Run one stage in a child process; return (seconds, peak RSS of its tree, rows)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_file = Path(fh.name)
    cmd = [
        sys.executable,
        "-m",
        "bench.stages",
        stage,
        str(root),
        "--scenario",
        scenario,
        "--seed",
        str(seed),
        "--result",
        str(result_file),
    ]
    if protocol:
        cmd += ["--protocol", protocol]
    peak = 0
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        child = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc))
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    # ru_maxrss is in KiB on Linux: the child's own high-water mark, which sampling can miss.
    peak = max(peak, usage.ru_maxrss * 1024)
    if child.returncode != 0:
        raise RuntimeError(
            f"stage {stage} ({scenario}) failed with exit code {child.returncode}; see {log}"
        )
    result = json.loads(result_file.read_text())
    result_file.unlink()
    rows = result["rows"]
    if rows is None:
        rows = rows_after(stage, world_paths(root), protocol)
    return float(result["seconds"]), peak, int(rows)


def measure(
    stage: str,
    label: str,
    root: Path,
    scenario: str,
    seed: int,
    protocol: str | None,
    repeats: int,
    short: float,
    log: Path,
) -> Measurement:
    """Run a stage once, and ``repeats`` times in all if that first run was short."""
    load = os.getloadavg()[0]
    seconds, peak, rows = run_stage(stage, root, scenario, seed, protocol, log)
    times = [seconds]
    if seconds < short:
        for _ in range(repeats - 1):
            s, p, r = run_stage(stage, root, scenario, seed, protocol, log)
            if r != rows:
                raise RuntimeError(f"{label} ({scenario}) processed {r} rows, then {rows}")
            times.append(s)
            peak = max(peak, p)
    m = Measurement(
        scenario,
        label,
        len(times),
        statistics.median(times),
        min(times),
        max(times),
        peak,
        rows,
        round(load, 2),
    )
    print(
        f"  {scenario:<8} {label:<45} {m.seconds:9.2f} s  x{m.runs}  "
        f"{m.peak_rss_bytes / 2**20:8.0f} MiB  {m.rows:>12,} rows  load {m.load_1min}",
        flush=True,
    )
    return m


def bench_scenario(
    scenario: str,
    workdir: Path,
    seed: int,
    repeats: int,
    short: float,
    stages: tuple[str, ...],
    protocols: tuple[str, ...] | None = None,
) -> Iterator[Measurement]:
    """Every stage of one scenario in order; ``protocols`` limits the protocol stages."""
    root = workdir / scenario
    root.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{scenario}.log"
    log.write_text("")
    for stage in stages:
        if stage == "protocol":
            for protocol in load_protocols(PROJECT_ROOT / "protocols"):
                if protocols is not None and protocol.id not in protocols:
                    continue
                yield _measured(
                    "protocol",
                    f"protocol {protocol.id}",
                    root,
                    scenario,
                    seed,
                    protocol.id,
                    repeats,
                    short,
                    log,
                )
        elif stage != END_TO_END or scenario == END_TO_END_SCENARIO:
            yield _measured(stage, stage, root, scenario, seed, None, repeats, short, log)


def _measured(
    stage: str,
    label: str,
    root: Path,
    scenario: str,
    seed: int,
    protocol: str | None,
    repeats: int,
    short: float,
    log: Path,
) -> Measurement:
    """:func:`measure`, with a failing stage recorded in the table rather than ending the run."""
    try:
        return measure(stage, label, root, scenario, seed, protocol, repeats, short, log)
    except RuntimeError as exc:
        print(f"  {scenario:<8} {label:<45} FAILED: {exc}", flush=True)
        nan = float("nan")
        return Measurement(
            scenario, label, 0, nan, nan, nan, 0, 0, round(os.getloadavg()[0], 2), str(exc)
        )


def growth_exponents(rows: list[Measurement]) -> dict[str, float]:
    """log(time ratio) / log(rows ratio) between the smallest and largest scale of each stage
    whose rows grow at least ``MIN_ROWS_RATIO`` times."""
    by_stage: dict[str, list[Measurement]] = {}
    for m in rows:
        if not m.error:
            by_stage.setdefault(m.stage, []).append(m)
    out = {}
    for stage, ms in by_stage.items():
        small, large = min(ms, key=lambda m: m.rows), max(ms, key=lambda m: m.rows)
        if large.rows >= MIN_ROWS_RATIO * small.rows > 0 and small.seconds > 0:
            out[stage] = math.log(large.seconds / small.seconds) / math.log(large.rows / small.rows)
    return out


def targets(rows: list[Measurement]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target whose scenario was run."""
    found = []
    whole = [m for m in rows if m.scenario == END_TO_END_SCENARIO and m.stage == END_TO_END]
    if whole:
        m = whole[0]
        found.append(
            (
                "default world end to end (`sicp demo`, one process) < 5 min",
                "failed" if m.error else f"{m.seconds:.0f} s",
                not m.error and m.seconds < DEFAULT_END_TO_END_S,
            )
        )
    gm = {m.stage: m for m in rows if m.scenario == "gm"}
    if "ingest" in gm and "dbt_build" in gm:
        total = gm["ingest"].seconds + gm["dbt_build"].seconds
        peak = max(gm["ingest"].peak_rss_bytes, gm["dbt_build"].peak_rss_bytes)
        found.append(("gm ingest + dbt build < 15 min", f"{total:.0f} s", total < GM_INGEST_DBT_S))
        found.append(
            ("gm ingest/dbt peak RSS < 12 GB", f"{peak / 1e9:.2f} GB", peak < GM_PEAK_BYTES)
        )
    if len({m.scenario for m in rows}) > 1:
        worst = max(growth_exponents(rows).items(), key=lambda kv: kv[1], default=None)
        if worst is not None:
            found.append(
                (
                    "no stage super-linear in rows",
                    f"largest exponent {worst[1]:.2f} ({worst[0]})",
                    worst[1] <= SUPERLINEAR_EXPONENT,
                )
            )
    return found


def markdown(rows: list[Measurement], header: str) -> str:
    scenarios = list(dict.fromkeys(m.scenario for m in rows))
    stages = list(dict.fromkeys(m.stage for m in rows))
    cell = {(m.scenario, m.stage): m for m in rows}
    exponents = growth_exponents(rows)
    lines = [
        header,
        "",
        "Wall time is the median of the runs (n) when a stage is short; peak RSS is the "
        "largest resident memory of the stage's process tree over its runs; load is the "
        "1-minute load average when the stage started.",
        "",
    ]
    cols = " | ".join(f"{s}: s (n) | {s}: peak MiB | {s}: rows | {s}: load" for s in scenarios)
    lines.append(f"| stage | {cols} | growth exponent |")
    lines.append("|---" * (1 + 4 * len(scenarios) + 1) + "|")
    for stage in stages:
        parts = []
        for s in scenarios:
            m = cell.get((s, stage))
            if m is None:
                parts += ["", "", "", ""]
            elif m.error:
                parts += ["failed", "", "", f"{m.load_1min:.1f}"]
            else:
                parts += [
                    f"{m.seconds:.2f} ({m.runs})",
                    f"{m.peak_rss_bytes / 2**20:.0f}",
                    f"{m.rows:,}",
                    f"{m.load_1min:.1f}",
                ]
        exp = f"{exponents[stage]:.2f}" if stage in exponents else ""
        lines.append(f"| {stage} | {' | '.join(parts)} | {exp} |")
    totals = []
    for s in scenarios:
        ms = [m for m in rows if m.scenario == s and m.stage != END_TO_END]
        totals += [
            f"{sum(m.seconds for m in ms if not m.error):.1f}",
            f"{max(m.peak_rss_bytes for m in ms) / 2**20:.0f}",
            "",
            "",
        ]
    lines.append(
        f"| **stages summed** (each in its own process; not end to end) | {' | '.join(totals)} | |"
    )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in targets(rows)]
    return "\n".join(lines) + "\n"


def read_csv(path: Path) -> list[Measurement]:
    """Measurements of an earlier run, so a scenario can be re-run and merged (``--merge``)."""
    if not path.exists():
        return []
    types = {f.name: f.type for f in fields(Measurement)}
    cast = {"str": str, "int": int, "float": float}
    with path.open(encoding="utf-8") as fh:
        return [
            Measurement(**{k: cast[types[k]](v) for k, v in r.items()}) for r in csv.DictReader(fh)
        ]


def merge(earlier: list[Measurement], new: list[Measurement]) -> list[Measurement]:
    """``earlier`` with each (scenario, stage) measured again replaced in place by its new row;
    new stages follow. So one protocol or one scenario's dbt build can be re-measured alone."""
    position = {(m.scenario, m.stage): i for i, m in enumerate(earlier)}
    merged = list(earlier)
    for m in new:
        key = (m.scenario, m.stage)
        if key in position:
            merged[position[key]] = m
        else:
            position[key] = len(merged)
            merged.append(m)
    return merged


def write_csv(rows: list[Measurement], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(m) for m in rows)


def main(argv: list[str] | None = None) -> list[Measurement]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios",
        nargs="*",
        default=["default", "mid", "gm"],
        help="none with --merge: only re-render the table from --csv",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3, help="runs of a short stage")
    parser.add_argument(
        "--short",
        type=float,
        default=60.0,
        help="a stage whose first run takes less (s) is repeated",
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        default=["generate", "ingest", "dbt_build", "protocol", "reports", END_TO_END],
    )
    parser.add_argument("--protocols", nargs="+", help="protocol ids (default: all)")
    parser.add_argument("--workdir", type=Path, default=PROJECT_ROOT / "data" / "bench")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmark.md")
    parser.add_argument("--csv", type=Path, default=PROJECT_ROOT / "docs" / "benchmark.csv")
    parser.add_argument(
        "--estimators-csv",
        type=Path,
        default=PROJECT_ROOT / "docs" / "benchmark_estimators.csv",
        help="estimator comparison (bench.estimators), run on the default world",
    )
    parser.add_argument(
        "--notes",
        type=Path,
        default=PROJECT_ROOT / "docs" / "benchmark_notes.md",
        help="hand-written findings (profiles, fixes) appended to --out as is",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows already in --csv that this run does not measure "
        "again (re-run one stage, add a scenario)",
    )
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    earlier = read_csv(args.csv) if args.merge else []
    rows: list[Measurement] = []
    header = (
        f"# Pipeline benchmark\n\n`python -m bench.run` on {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, seed {args.seed}; "
        "each stage in its own process. A load average well above the core count means "
        "other work shared the CPUs, so those times are upper bounds."
    )

    def save() -> str:
        # after every stage, so a long run leaves what it has measured behind
        text = markdown(merge(earlier, rows), header)
        if args.estimators_csv.exists():
            text += "\n" + estimators_markdown(read_comparisons(args.estimators_csv))
        if args.notes.exists():
            text += "\n" + args.notes.read_text(encoding="utf-8")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        write_csv(merge(earlier, rows), args.csv)
        return text

    for scenario in args.scenarios:
        print(f"scenario {scenario}", flush=True)
        for m in bench_scenario(
            scenario,
            workdir,
            args.seed,
            args.repeats,
            args.short,
            tuple(args.stages),
            tuple(args.protocols) if args.protocols else None,
        ):
            rows.append(m)
            save()
        if scenario == "default" and "dbt_build" in args.stages:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.estimators",
                    "--warehouse",
                    str(world_paths(workdir / scenario).warehouse),
                    "--csv",
                    str(args.estimators_csv),
                ],
                cwd=PROJECT_ROOT,
                check=True,
            )
    print(save())
    return rows


if __name__ == "__main__":
    main()
