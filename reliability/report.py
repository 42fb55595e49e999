"""The outcome of a run for people (a table and the checks) and for RELIABILITY.md (its rows)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reliability.scenarios import Outcome

RERUN = {
    "soak": "make soak",
    "secrecy": "make soak chaos",
}
HEADER = (
    "| scenario | load | duration | faults injected | consumer failures | objects lost "
    "| DigitalOcean calls | result | rerun |\n|---|---|---|---|---|---|---|---|---|"
)


def rerun(scenario: str) -> str:
    return RERUN.get(scenario, f"make chaos SCENARIO={scenario}")


def markdown_rows(outcomes: Sequence[Outcome]) -> str:
    rows = [HEADER]
    for o in outcomes:
        failures = (
            f"{o.consumer_refused} of {o.consumer_attempts:,}{o.refusals_expected}"
            if o.consumer_attempts
            else "—"
        )
        lost = f"{o.objects_lost} of {o.objects}" if o.objects else "—"
        result = "pass" if o.passed else "**FAIL**"
        rows.append(
            f"| {o.scenario} | {o.load} | {o.seconds / 60:.1f} min | {o.faults} | {failures} "
            f"| {lost} | {o.do_calls or '—'} | {result} | `{rerun(o.scenario)}` |"
        )
    return "\n".join(rows)


def text(outcomes: Sequence[Outcome]) -> str:
    lines = []
    for o in outcomes:
        verdict = "PASS" if o.passed else "FAIL"
        lines.append(f"{verdict}  {o.scenario}: {o.title} ({o.seconds:.0f} s)")
        for check in o.checks:
            mark = "ok " if check.passed else "NO "
            detail = f" [{check.detail}]" if check.detail else ""
            lines.append(f"   {mark} {check.what}{detail}")
        for what, value in o.figures.items():
            lines.append(f"       {what}: {json.dumps(value, ensure_ascii=False)}")
        lines += [f"     note: {note}" for note in o.notes]
    return "\n".join(lines)


def document(outcomes: Sequence[Outcome], *, target: dict[str, Any]) -> dict[str, Any]:
    return {"target": target, "outcomes": [o.as_dict() for o in outcomes]}
