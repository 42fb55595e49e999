"""What the reliability scenarios run on: a control plane whose API server trusts the emulator.

One DigitalOcean API emulator serves the whole run and is the local kube-apiserver's webhook token
authenticator (and holds its client CA for certificate-mode clusters), so every credential the
operator writes is really accepted, and really refused once it expires. Each scenario gets its own
namespace, its own clusters in the emulator (so that calls are counted per object) and its own
operator process(es), which are stopped when it ends.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from bench.kubeapi import BenchKube
from bench.stack import TOKEN, UNLIMITED, OperatorProcess
from doks_access import bookkeeping
from doks_access_testkit.controlplane import ControlPlane
from doks_access_testkit.emulator import ApiToken, Cluster, Emulator, EmulatorConfig, RateLimits
from doks_access_testkit.emulator.state import ClusterMode
from reliability import ledger
from reliability.consumers import Consumer

TOKEN_SECRET = "digitalocean-api"


def emulator() -> Emulator:
    """The run's emulator: one API token, clusters added by each scenario (not started)."""
    return Emulator(
        config=EmulatorConfig(tokens=(ApiToken(token=TOKEN, name="reliability"),), clusters=())
    )


class Rig:
    """The control plane (``None`` on a borrowed cluster), the emulator, the admin client."""

    def __init__(
        self,
        *,
        kube: BenchKube,
        kubeconfig: Path,
        plane: ControlPlane | None,
        emulator: Emulator,
        work_dir: Path,
        stack: contextlib.ExitStack,
    ) -> None:
        self.kube, self.kubeconfig, self.plane = kube, kubeconfig, plane
        self.emulator, self.work_dir = emulator, work_dir
        self._stack = stack
        self._operators: list[OperatorProcess] = []
        self.namespaces: list[str] = []
        self.refreshes_requested: collections.Counter[str] = collections.Counter()

    # -- what a scenario sets up -------------------------------------------------------------------

    async def namespace(self, name: str) -> str:
        await self.kube.create_namespace(name)
        self.namespaces.append(name)
        await self.kube.create_token_secret(namespace=name, name=TOKEN_SECRET, token=TOKEN)
        return name

    def clusters(
        self,
        prefix: str,
        count: int,
        *,
        mode: ClusterMode = "token",
        max_lifetime: int | None = None,
    ) -> list[str]:
        """New clusters; ``max_lifetime`` caps their credentials (seconds, as DigitalOcean may)."""
        made = [
            self.emulator.add_cluster(
                Cluster(name=f"{prefix}-{i:02d}", mode=mode, max_lifetime=max_lifetime)
            )
            for i in range(count)
        ]
        return [c.id for c in made]

    def operator(
        self,
        namespace: str,
        *,
        name: str = "operator",
        extra_args: Sequence[str] = (),
        limits: RateLimits = UNLIMITED,
    ) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig=self.kubeconfig,
            emulator=self.emulator,
            namespaces=[namespace],
            log_path=self.work_dir / f"{namespace}-{name}.log",
            limits=limits,
            extra_args=extra_args,
        )
        self._stack.callback(process.stop)
        self._operators.append(process)
        return process

    async def create(
        self,
        namespace: str,
        name: str,
        *,
        cluster_id: str,
        lifetime: int,
        target: Mapping[str, Any] | None = None,
        renew_before: str | None = None,
        verify: bool = False,
    ) -> None:
        spec: dict[str, Any] = {
            "clusterID": cluster_id,
            "expirySeconds": lifetime,
            "tokenSecretRef": {"name": TOKEN_SECRET},
            "target": dict(target or {}),
        }
        if renew_before:
            spec["renewBefore"] = renew_before
        if verify:  # proved before written, and the lifetime guard
            spec["verify"] = True
        await self.kube.create_object(namespace=namespace, name=name, spec=spec)

    async def request_refresh(self, namespace: str, names: Iterable[str], value: str) -> None:
        patch = {"metadata": {"annotations": {bookkeeping.REFRESH_REQUESTED_AT: value}}}
        for name in names:
            await self.kube.merge_patch_object(namespace=namespace, name=name, patch=patch)
            self.refreshes_requested[namespace] += 1

    def stop_operators(self) -> None:
        """Stop them, keeping a last scrape of each one's metrics beside its log."""
        for process in self._operators:
            if process.alive():
                with contextlib.suppress(OSError):
                    process.log_path.with_suffix(".metrics").write_text(process.metrics())
            process.stop()
        self._operators.clear()

    async def record(self) -> None:
        """Write every namespace's Events and objects (status included) into the work directory,
        for :func:`leaks` to search along with the logs and metrics."""
        for namespace in self.namespaces:
            events = await self.kube.core.list_namespaced_event(namespace)
            texts = [
                f"{e.reason} {e.message} {e.involved_object.name if e.involved_object else ''}"
                for e in events.items
            ]
            objects = await self.objects(namespace)
            (self.work_dir / f"{namespace}.recorded").write_text(
                json.dumps({"events": texts, "objects": objects}, default=str)
            )

    def secrets(self) -> list[str]:
        """Everything that must never be printed: the API token and every issued bearer token."""
        issued = [c.token for c in self.emulator.issued_credentials() if c.token]
        return [TOKEN, *issued]

    async def clean_up(self) -> None:
        """Leave a borrowed cluster as it was."""
        self.stop_operators()
        for namespace in self.namespaces:
            await self.kube.strip_finalizers(namespace)
            await self.kube.delete_namespace(namespace)

    # -- what a scenario observes ------------------------------------------------------------------

    async def objects(self, namespace: str) -> dict[str, dict[str, Any]]:
        listing = await self.kube.list_objects(namespace)
        return {item["metadata"]["name"]: item for item in listing["items"]}

    async def wait_until(
        self,
        namespace: str,
        names: Iterable[str],
        condition: Callable[[dict[str, Any]], bool],
        *,
        within: float,
    ) -> bool:
        """Poll until ``condition`` holds for every named object; ``False`` if ``within`` passed."""
        wanted = set(names)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiException, OSError):
                found = await self.objects(namespace)
                if all(name in found and condition(found[name]) for name in wanted):
                    return True
            await asyncio.sleep(0.25)
        return False

    def issued(self, cluster_ids: Iterable[str]) -> dict[str, int]:
        return {
            cluster: len(self.emulator.issued_credentials(cluster_id=cluster))
            for cluster in cluster_ids
        }

    async def audit(self, namespace: str, names: Iterable[str], *, grace: float) -> list[str]:
        """Objects that are lost now (no Secret, expired, or kept past renewal), with why."""
        found = await self.objects(namespace)
        now = datetime.datetime.now(datetime.UTC)
        lost = []
        for name in names:
            annotations: dict[str, str] | None
            try:
                secret = await self.kube.core.read_namespaced_secret(
                    f"{name}-kubeconfig", namespace
                )
                metadata = secret.metadata
                annotations = dict((metadata.annotations if metadata else None) or {})
            except ApiException:
                annotations = None
            status = found.get(name, {}).get("status")
            why = ledger.audit(now, ledger.secret_state(annotations, status), grace=grace)
            if why is not None:
                lost.append(f"{name}: {why}")
        return lost


def condition(obj: Mapping[str, Any], kind: str) -> tuple[str, str] | None:
    """(status, reason) of the condition ``kind`` on ``obj``."""
    for entry in obj.get("status", {}).get("conditions", []):
        if entry.get("type") == kind:
            return str(entry.get("status")), str(entry.get("reason"))
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    found = condition(obj, "Ready")
    return found is not None and found[0] == "True"


@contextlib.asynccontextmanager
async def running(consumers: Sequence[Consumer], *others: Callable[[asyncio.Event], Any]) -> Any:
    """Run the consumers (and other loops taking a stop event) for the body of the block."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in consumers]
    tasks += [asyncio.create_task(run(stop)) for run in others]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def log_entries(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON log lines of an operator's log file (other lines, from the runtime, skipped)."""
    with path.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    yield json.loads(line)


def epoch(entry: Mapping[str, Any]) -> float:
    return datetime.datetime.fromisoformat(str(entry["time"])).timestamp()


def log_problems(path: Path) -> int:
    """Entries at ERROR or above, or with a traceback."""
    return sum(
        1
        for entry in log_entries(path)
        if entry.get("level") in ("ERROR", "CRITICAL") or "exception" in entry
    )


def _base64_prefix(text: str) -> str:
    """The base64 of ``text``'s longest whole-group prefix: how it starts inside a kubeconfig."""
    whole = len(text) - len(text) % 3
    return base64.b64encode(text[:whole].encode()).decode()


# Key material that no log, event, status or metric may carry, whatever the key: a PEM private key
# as text, or base64-encoded as a kubeconfig's client-key-data holds it.
KEY_MARKERS = (
    "PRIVATE KEY-----",
    *(_base64_prefix(f"-----BEGIN {kind}PRIVATE KEY-----") for kind in ("", "EC ", "RSA ")),
)


def leaks(directory: Path, secrets: Sequence[str]) -> list[str]:
    """Files under ``directory`` that contain a secret or key material: "file: what" (the secret
    named by its first six characters only)."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        found += [f"{path.name}: {s[:6]}…" for s in secrets if s in text]
        found += [f"{path.name}: {marker}" for marker in KEY_MARKERS if marker in text]
    return found
