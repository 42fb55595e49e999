"""The benchmark's output: a table for people, JSON for scripts, and facts about the machine."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Sequence
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
    return "\n".join(lines)


def document(results: Sequence[Result], *, target: dict[str, Any]) -> dict[str, Any]:
    return {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "cluster": target,
        "results": [r.as_dict() for r in results],
    }
