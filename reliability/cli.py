"""``python -m reliability`` (``make soak``, ``make chaos``): run scenarios, print the checks.

Exits 1 if any check of any scenario failed. The JSON results (``--out``) hold every figure, and
``--markdown`` prints the rows of the table in RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.kubeapi import BenchKube
from bench.stack import crd_documents
from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.controlplane import ControlPlane
from reliability import report, rig, scenarios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*scenarios.SCENARIOS, "chaos"],
        help="run only these (repeatable; 'chaos' is every fault scenario; default: all)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suites run")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(".reliability/results.json"),
        help="JSON results (%(default)s)",
    )
    parser.add_argument("--markdown", action="store_true", help="print RELIABILITY.md's rows")
    parser.add_argument(
        "--keep-logs", type=Path, help="copy the operators' logs into this directory"
    )
    args = parser.parse_args(argv)
    chosen = set(args.scenario or scenarios.SCENARIOS)
    if "chaos" in chosen:
        chosen |= set(scenarios.CHAOS)
    selected = [name for name in scenarios.SCENARIOS if name in chosen]
    sizes = scenarios.Sizes.smoke() if args.smoke else scenarios.Sizes()
    outcomes, target = asyncio.run(_run(selected, sizes, keep_logs=args.keep_logs))
    print(report.text(outcomes), flush=True)
    if args.markdown:
        print("\n" + report.markdown_rows(outcomes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.document(outcomes, target=target), indent=2) + "\n")
    print(f"\nresults: {args.out}")
    return 0 if all(o.passed for o in outcomes) else 1


async def _run(
    selected: list[str], sizes: scenarios.Sizes, *, keep_logs: Path | None
) -> tuple[list[scenarios.Outcome], dict[str, Any]]:
    work_dir = Path(tempfile.mkdtemp(prefix="doks-access-reliability-"))
    outcomes: list[scenarios.Outcome] = []
    try:
        with contextlib.ExitStack() as stack:
            emulator = stack.enter_context(rig.emulator())
            started = time.monotonic()
            plane = ControlPlane(
                bin_dir=control_plane_bin_dir(), token_webhook=emulator.token_webhook
            )
            stack.enter_context(plane)
            emulator.use_control_plane(plane)
            target: dict[str, Any] = {"start_seconds": round(time.monotonic() - started, 1)}
            async with BenchKube.connect(plane.admin_kubeconfig_path) as kube:
                target["version"] = await kube.server_version()
                for document in crd_documents():  # the operator needs every CRD
                    await kube.apply_crd(document)
                the_rig = rig.Rig(
                    kube=kube,
                    kubeconfig=plane.admin_kubeconfig_path,
                    plane=plane,
                    emulator=emulator,
                    work_dir=work_dir,
                    stack=stack,
                )
                for name in selected:
                    print(f"==> scenario {name}", flush=True)
                    outcome = await scenarios.SCENARIOS[name](the_rig, sizes)
                    the_rig.stop_operators()
                    print(report.text([outcome]), flush=True)
                    outcomes.append(outcome)
                await the_rig.record()
                outcomes.append(_secrecy(work_dir, the_rig.secrets()))
    finally:
        _keep_logs(work_dir, keep_logs)
        shutil.rmtree(work_dir, ignore_errors=True)
    return outcomes, target


def _secrecy(work_dir: Path, secrets: list[str]) -> scenarios.Outcome:
    """Search everything the run's operators produced for the secrets the emulator knows."""
    outcome = scenarios.Outcome("secrecy", "No token or key material in logs, events, status")
    files = [p for p in work_dir.rglob("*") if p.is_file()]
    found = rig.leaks(work_dir, secrets)
    outcome.load = (
        f"{len(files)} files (operator logs, last metrics scrapes, every namespace's Events "
        f"and objects), {sum(p.stat().st_size for p in files):,} bytes"
    )
    outcome.faults = f"searched for {len(secrets)} tokens and private-key markers"
    outcome.figures["hits"] = len(found)
    outcome.check("no secret found", not found, "; ".join(found[:10]))
    return outcome


def _keep_logs(work_dir: Path, keep: Path | None) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for log in work_dir.glob("*.log"):
            shutil.copy(log, keep / log.name)
