"""The benchmark's output: a table for people, JSON for scripts, and facts about the machine."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.scenarios import Figure, Result


def machine() -> dict[str, Any]:
    """Where the figures came from: they mean little without it."""
    model = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = next(
        (
            line.split()[1]
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        "0",
    )
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def format_value(value: float | None, unit: str) -> str:
    """A figure as people read it: thousands separated, a sensible number of decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, int) or abs(value) >= 100 or (value.is_integer() and abs(value) >= 10):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def _value(figure: Figure) -> str:
    return format_value(figure.value, figure.unit)


def _verdict(figure: Figure) -> str:
    return {True: "met", False: "NOT MET", None: ""}[figure.met]


def table(results: Sequence[Result]) -> str:
    lines: list[str] = []
    for result in results:
        lines.append("")
        lines.append(f"{result.title}  ({result.seconds:.0f} s)")
        width = max((len(f.what) for f in result.figures), default=10)
        for figure in result.figures:
            target = f"target {figure.target}" if figure.target else ""
            row = f"  {figure.what:<{width}}  {_value(figure):>14}  {target:<32} {_verdict(figure)}"
            lines.append(row.rstrip())
        lines.extend(f"  note: {note}" for note in result.notes)
        for detail in detail_tables(result.as_dict()):
            lines += ["", f"  {detail.caption}:", *_aligned(detail)]
    return "\n".join(lines)


def _aligned(detail: DetailTable) -> list[str]:
    widths = [
        max(len(row[i]) for row in [detail.header, *detail.rows]) for i in range(len(detail.header))
    ]
    return [
        "    "
        + "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [detail.header, *detail.rows]
    ]


@dataclasses.dataclass(frozen=True)
class DetailTable:
    """A table of a scenario's details, beside its figures: cells already formatted."""

    caption: str
    header: list[str]
    rows: list[list[str]]


def detail_tables(result: Mapping[str, Any]) -> list[DetailTable]:
    """The details a scenario's result (as in the JSON) has a table for; none in older files."""
    details: Mapping[str, Any] = result.get("details") or {}
    tables: list[DetailTable] = []
    breakdown = (details.get("census") or {}).get("breakdown")
    if breakdown and breakdown.get("rows"):
        tables.append(_census_table(breakdown))
    runs = details.get("runs")
    if result.get("scenario") == "workers" and runs:
        tables.append(_workers_table(runs))
    run = details.get("run")
    if str(result.get("scenario", "")).startswith("fleet") and run and "api_requests" in run:
        tables.append(_fleet_table(run))
    return tables


def _census_table(breakdown: Mapping[str, Any]) -> DetailTable:
    rows = [
        [
            row["type"],
            format_value(row["bytes_per_object"], "B"),
            format_value(row["count_per_object"], ""),
        ]
        for row in breakdown["rows"]
    ]
    totals = [
        ("the other types (net)", "other_types_bytes_per_object"),
        ("all the census counted", "census_bytes_per_object"),
        ("RSS", "rss_bytes_per_object"),
        ("RSS not in the census (str, bytes, int, allocator, C)", "not_in_census_bytes_per_object"),
    ]
    rows += [[label, format_value(breakdown.get(key), "B"), ""] for label, key in totals]
    return DetailTable(
        caption=(
            "Where the memory per object goes: growth from "
            f"{breakdown['objects_from']:,} to {breakdown['objects_to']:,} objects, per object "
            "(live objects the garbage collector tracks, by type, shallow sizes)"
        ),
        header=["type", "bytes per object", "count per object"],
        rows=rows,
    )


def _workers_table(runs: Sequence[Mapping[str, Any]]) -> DetailTable:
    return DetailTable(
        caption="By number of workers (each a fresh operator and namespace)",
        header=[
            "workers",
            "all Ready after",
            "Ready p50",
            "Ready p95",
            "operator CPU",
            "peak RSS",
            "DigitalOcean calls per object",
        ],
        rows=[
            [
                f"{run['workers']}" + (" (default)" if run.get("default") else ""),
                format_value(run.get("all_ready_s"), "s"),
                format_value(run.get("ready_p50_s"), "s"),
                format_value(run.get("ready_p95_s"), "s"),
                format_value(run.get("cpu_s"), "s"),
                format_value(run.get("peak_rss_mib"), "MiB"),
                format_value(run.get("digitalocean_calls_per_object"), ""),
            ]
            for run in runs
        ],
    )


def _fleet_table(run: Mapping[str, Any]) -> DetailTable:
    quiet: Mapping[str, Any] = run.get("quiet") or {}
    columns: list[Mapping[str, int]] = [
        run["api_requests"],
        quiet.get("api_requests") or {},
        (run.get("resync") or {}).get("api_requests") or {},
    ]
    names = sorted(set().union(*columns))
    return DetailTable(
        caption=(
            "Kubernetes API requests on sets, their children, Secrets and events, by everyone "
            "(GETs include kube-controller-manager's garbage collector checking owners): from the "
            f"set's creation until it was Ready, in the {quiet.get('seconds', 0):.0f} s after, "
            "and for a resync asked for after that"
        ),
        header=["request", "until Ready", "after", "resync"],
        rows=[[name, *(format_value(c.get(name, 0), "") for c in columns)] for name in names],
    )


def document(results: Sequence[Result], *, target: dict[str, Any]) -> dict[str, Any]:
    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "cluster": target,
        "results": [r.as_dict() for r in results],
    }
