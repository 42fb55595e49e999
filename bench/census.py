"""Where the operator's memory goes: a census of its live Python objects, taken on request.

``python -m bench.census -- run --kubeconfig=...`` is ``doks-access run --kubeconfig=...`` with one
addition, made here and not in the operator: a SIGUSR1 handler. On each SIGUSR1 it counts every
object the garbage collector tracks (``gc.get_objects()``), by type, with their shallow sizes
(``sys.getsizeof``), reads the process's RSS, and writes all of it as JSON, atomically (a temporary
file, then a rename), to ``<prefix>-<pid>-<n>.json``: ``<prefix>`` from the environment variable
:data:`ENV`, ``n`` counting the requests from 1. The benchmark sends the signal and waits for the
file (:meth:`bench.stack.OperatorProcess.census`).

What it does not see: objects the collector does not track, i.e. strings, bytes, numbers, and
containers holding only such (CPython stops tracking those), and memory outside Python objects
(the allocator's free lists, C libraries). :func:`breakdown` shows that rest as the difference
between the RSS and what the census counted.

The pure part (:func:`breakdown`) is what the report prints; it is unit-tested.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ENV = "DOKS_ACCESS_BENCH_CENSUS"  # the path prefix of the census files
TOP = 15  # types shown in a breakdown


def path_for(prefix: str | Path, *, pid: int, request: int) -> Path:
    """Where the census of request number ``request`` (from 1) of process ``pid`` is written."""
    return Path(f"{prefix}-{pid}-{request}.json")


def qualified_name(kind: type) -> str:
    module = getattr(kind, "__module__", None) or "?"
    return f"{module}.{getattr(kind, '__qualname__', kind.__name__)}"


def take() -> dict[str, Any]:
    """Count the live objects the garbage collector tracks, by type, and their shallow sizes."""
    started_wall, started = time.time(), time.monotonic()
    rss = _rss_bytes()  # first: what the census itself allocates is not the operator's
    by_type: dict[type, list[int]] = {}
    objects = gc.get_objects()
    for obj in objects:
        kind = type(obj)
        entry = by_type.get(kind)
        if entry is None:
            entry = by_type[kind] = [0, 0]
        entry[0] += 1
        entry[1] += _size(obj)
    del objects
    types: dict[str, dict[str, int]] = {}
    for kind, (count, size) in by_type.items():
        merged = types.setdefault(qualified_name(kind), {"count": 0, "bytes": 0})
        merged["count"] += count
        merged["bytes"] += size
    return {
        "pid": os.getpid(),
        "time": round(started_wall, 3),
        "rss_bytes": rss,
        "objects": sum(t["count"] for t in types.values()),
        "bytes": sum(t["bytes"] for t in types.values()),
        "seconds": round(time.monotonic() - started, 3),
        "types": types,
    }


def _size(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # a broken __sizeof__: the object is still counted, its size is not
        return 0


def write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none of it."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def install(prefix: str) -> None:
    """On each SIGUSR1, write a census to the next ``<prefix>-<pid>-<n>.json``."""
    requests = itertools.count(1)

    def on_request(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        path = path_for(prefix, pid=os.getpid(), request=next(requests))
        # Nothing may escape: an exception here would surface in whatever the operator was doing.
        try:
            text = json.dumps(take())
        except Exception as exc:  # reported in the file instead
            text = json.dumps({"pid": os.getpid(), "error": repr(exc)})
        try:
            write_atomically(path, text)
        except OSError as exc:
            print(f"bench.census: cannot write {path}: {exc}", file=sys.stderr)

    signal.signal(signal.SIGUSR1, on_request)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def breakdown(
    small: Mapping[str, Any],
    large: Mapping[str, Any],
    *,
    objects: int,
    top: int = TOP,
) -> dict[str, Any]:
    """Per watched object, what each type grew by between two censuses ``objects`` apart.

    The ``top`` types that grew most in bytes, each with bytes and count per object; then the
    other types together, everything the census counted, the RSS, and the RSS the census did not
    account for (untracked objects such as strings, the allocator's overhead, C memory).
    """
    if objects <= 0:
        raise ValueError(f"the censuses must be taken at different sizes, not {objects} apart")
    before: Mapping[str, Mapping[str, int]] = small["types"]
    after: Mapping[str, Mapping[str, int]] = large["types"]
    growth = {
        name: (
            after.get(name, {}).get("bytes", 0) - before.get(name, {}).get("bytes", 0),
            after.get(name, {}).get("count", 0) - before.get(name, {}).get("count", 0),
        )
        for name in set(before) | set(after)
    }
    ranked = sorted(growth.items(), key=lambda item: (-item[1][0], item[0]))
    rows = [
        {
            "type": name,
            "bytes_per_object": round(size / objects, 1),
            "count_per_object": round(count / objects, 2),
        }
        for name, (size, count) in ranked[:top]
    ]
    counted = (large["bytes"] - small["bytes"]) / objects
    shown = sum(size for _, (size, _) in ranked[:top]) / objects
    rss = (large["rss_bytes"] - small["rss_bytes"]) / objects
    return {
        "rows": rows,
        "other_types_bytes_per_object": round(counted - shown, 1),
        "census_bytes_per_object": round(counted, 1),
        "rss_bytes_per_object": round(rss, 1),
        "not_in_census_bytes_per_object": round(rss - counted, 1),
    }


def summary(census: Mapping[str, Any]) -> dict[str, Any]:
    """A census without its types: what the results JSON keeps of each one."""
    return {key: value for key, value in census.items() if key != "types"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    prefix = os.environ.get(ENV)
    if not prefix:
        print(f"bench.census: set {ENV} to the path prefix of the census files", file=sys.stderr)
        return 2
    install(prefix)
    from doks_access import cli  # after the handler: a signal during the imports is answered

    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
