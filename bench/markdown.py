"""Results JSON → the Markdown tables of BENCHMARKS.md, so that no figure is copied by hand.

``python -m bench.markdown AFTER.json [BEFORE.json] [--scenario NAME ...]`` prints one table per
scenario (only those named, with ``--scenario``); with a second file, a column of that run's
figures too (matched by scenario and figure name).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.report import DetailTable, detail_tables, format_value


def _figures(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (result["scenario"], figure["what"]): figure
        for result in document["results"]
        for figure in result["figures"]
    }


def tables(after: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    earlier = _figures(before) if before else {}
    lines: list[str] = []
    for result in after["results"]:
        lines += ["", f"**{result['title']}**", ""]
        head = ["figure", *(["before", "after"] if before else ["measured"]), "target", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for figure in result["figures"]:
            old = earlier.get((result["scenario"], figure["what"]))
            row = [figure["what"]]
            if before:
                row.append(_shown(old) if old else "")
            verdict = {True: "met", False: "**not met**", None: ""}[figure["met"]]
            row += [_shown(figure), figure["target"], verdict]
            lines.append("| " + " | ".join(row) + " |")
        lines += [f"\n_{note}_" for note in result["notes"]]
        for detail in detail_tables(result):  # this run's only: no before column
            lines += _detail(detail)
    return "\n".join(lines)


def _detail(detail: DetailTable) -> list[str]:
    return [
        "",
        f"_{_cell(detail.caption)}:_",
        "",
        "| " + " | ".join(detail.header) + " |",
        "|" + "---|" * len(detail.header),
        *("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in detail.rows),
    ]


def _cell(text: str) -> str:
    """Type names such as ``f.<locals>.g`` must not read as HTML; a ``|`` would split the cell."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _shown(figure: dict[str, Any]) -> str:
    return format_value(figure["value"], figure["unit"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.markdown", description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+", metavar="AFTER.json [BEFORE.json]")
    parser.add_argument("--scenario", action="append", help="only this one (repeatable)")
    args = parser.parse_args(argv)
    if len(args.runs) > 2:
        parser.error("one or two results files")
    after = json.loads(args.runs[0].read_text())
    if args.scenario:
        after["results"] = [r for r in after["results"] if r["scenario"] in args.scenario]
    before = json.loads(args.runs[1].read_text()) if len(args.runs) == 2 else None
    print(tables(after, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
