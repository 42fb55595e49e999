"""``python -m bench`` (``make bench``): run the scenarios, print the table, write the JSON."""

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

from bench import accounts, fleet, report, scenarios
from bench.kubeapi import BenchKube
from bench.stack import crd_documents, local_control_plane

# Idle last: it leaves the most objects behind (up to 20,000, for the rest of the run).
ORDER = (
    "latency",
    "burst",
    "restart",
    "sustained",
    "rate-limited",
    "workers",
    "fleet",
    "fleet-rate-limited",
    "accounts",
    "idle",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=ORDER,
        help="run only these (repeatable; default: all, in the order "
        f"{', '.join(ORDER)}; restart needs burst and runs it too)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        choices=ORDER,
        default=[],
        help="leave this one out (repeatable): --skip fleet-rate-limited saves its 4 minutes",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="benchmark the cluster this kubeconfig names (kind, say) instead of a local control "
        "plane; the operator and the emulator still run on this machine",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks the benchmark runs"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(".bench/results.json"), help="JSON results (%(default)s)"
    )
    parser.add_argument(
        "--keep-logs",
        type=Path,
        help="copy the operators' logs (and the idle scenario's censuses) into this directory",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the operators under cProfile; their stats go to this directory (slower: the "
        "figures of a profiled run are not benchmark figures)",
    )
    args = parser.parse_args(argv)
    wanted = set(args.scenario or ORDER) - set(args.skip)
    selected = [name for name in ORDER if name in wanted]
    if "restart" in selected and "burst" not in selected:
        selected.insert(selected.index("restart"), "burst")
    sizes = scenarios.Sizes.smoke() if args.smoke else scenarios.Sizes()
    results, target = asyncio.run(_run(selected, sizes, args))
    print(report.table(results), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.document(results, target=target), indent=2) + "\n")
    print(f"\nresults: {args.out}")
    return 0


async def _run(
    selected: list[str], sizes: scenarios.Sizes, args: argparse.Namespace
) -> tuple[list[scenarios.Result], dict[str, Any]]:
    work_dir = Path(tempfile.mkdtemp(prefix="doks-access-bench-"))
    results: list[scenarios.Result] = []
    try:
        with contextlib.ExitStack() as stack:
            target: dict[str, Any] = {"kind": "external" if args.kubeconfig else "local"}
            if args.kubeconfig:
                kubeconfig = args.kubeconfig
            else:
                started = time.monotonic()
                kubeconfig = local_control_plane(stack).admin_kubeconfig_path
                target["start_seconds"] = round(time.monotonic() - started, 1)
            async with BenchKube.connect(kubeconfig) as kube:
                target["version"] = await kube.server_version()
                for document in crd_documents():  # the operator needs every one of them
                    await kube.apply_crd(document)
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                bench = scenarios.Bench(
                    kube_=kube,
                    kubeconfig=kubeconfig,
                    work_dir=work_dir,
                    stack=stack,
                    profile=args.profile,
                )
                kept: dict[str, Any] = {}
                for name in selected:
                    print(f"==> scenario {name}", flush=True)
                    if name == "latency":
                        result = await scenarios.latency(bench, sizes)
                    elif name == "burst":
                        result = await scenarios.burst(bench, sizes, keep=kept)
                    elif name == "restart":
                        result = await scenarios.restart(bench, sizes, burst_state=kept)
                    elif name == "sustained":
                        result = await scenarios.sustained(bench, sizes)
                    elif name == "rate-limited":
                        result = await scenarios.rate_limited(bench, sizes)
                    elif name == "workers":
                        result = await scenarios.workers(bench, sizes)
                    elif name == "fleet":
                        result = await fleet.fleet(bench, sizes)
                    elif name == "fleet-rate-limited":
                        result = await fleet.fleet_rate_limited(bench, sizes)
                    elif name == "accounts":
                        result = await accounts.account_change(bench, sizes)
                    else:
                        result = await scenarios.idle(bench, sizes)
                    bench.stop_operators(keep=kept.get("operator") if name == "burst" else None)
                    print(report.table([result]), flush=True)
                    results.append(result)
                if args.kubeconfig:
                    await bench.clean_up()
    finally:
        _keep_logs(work_dir, args.keep_logs)
        shutil.rmtree(work_dir, ignore_errors=True)
    return results, target


def _keep_logs(work_dir: Path, keep: Path | None) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for kept in [*work_dir.glob("*.log"), *work_dir.glob("census-*.json")]:
            shutil.copy(kept, keep / kept.name)
