"""Running the operator with exactly a ServiceAccount's permissions, and reading what it logged.

The operator runs as a process on this machine (there is no kubelet), but it authenticates as the
chart's ServiceAccount: with a token from the TokenRequest API, in a kubeconfig of its own. The
apiserver then authorizes every request it makes against the chart's RBAC and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.processes import ManagedProcess
from tests.chart.conftest import installed
from tests.chart.helm import Helm
from tests.conftest import Cluster

TOKEN_SECONDS = 3600
_REFUSAL = re.compile(r"forbidden|\b403\b", re.IGNORECASE)
# Namespaces the test suites create: tests' own, and the benchmark rigs' (the bench smoke run
# comes earlier in the same session and may leave its namespaces terminating).
_TEST_NAMESPACE = re.compile(r"\b(?:test-[0-9a-f]{10}|bench-[a-z0-9-]+)\b")


def service_account_kubeconfig(
    api: client.ApiClient,
    *,
    admin_kubeconfig: Path,
    namespace: str,
    service_account: str,
    path: Path,
) -> Path:
    """A kubeconfig for ``namespace/service_account``: the admin's server and CA, a bound token."""
    request = {"spec": {"expirationSeconds": TOKEN_SECONDS}}
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(service_account, namespace, request)
        .status.token
    )
    server, ca_data = _admin_cluster(admin_kubeconfig)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "cluster",
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def installed_as_service_account(
    helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    *,
    namespace: str,
    values: Mapping[str, Any],
    path: Path,
) -> Iterator[Path]:
    """The chart released in ``namespace``; yields a kubeconfig of its ServiceAccount."""
    with installed(helm, release=namespace, namespace=namespace, values=values):
        yield service_account_kubeconfig(
            api,
            admin_kubeconfig=cluster.kubeconfig_path,
            namespace=namespace,
            service_account=f"{namespace}-doks-access-operator",
            path=path,
        )


def _admin_cluster(kubeconfig: Path) -> tuple[str, str]:
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    ca_data = cluster.get("certificate-authority-data")
    if ca_data is None:
        ca_path = (kubeconfig.parent / cluster["certificate-authority"]).resolve()
        ca_data = base64.b64encode(ca_path.read_bytes()).decode()
    return cluster["server"], ca_data


@contextlib.contextmanager
def operator_running(
    *,
    kubeconfig: Path,
    digitalocean: Emulator,
    log_path: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[ManagedProcess]:
    """``doks-access run --kubeconfig=...`` against the session's emulator; stopped afterwards."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DOKS_ACCESS_")}
    process = ManagedProcess(
        name="doks-access-as-service-account",
        args=[
            sys.executable,
            "-m",
            "doks_access",
            "run",
            f"--kubeconfig={kubeconfig}",
            *args,
        ],
        log_path=log_path,
        env={
            **inherited,
            "DOKS_ACCESS_DIGITALOCEAN_API_URL": digitalocean.api_url,
            "DOKS_ACCESS_DIGITALOCEAN_CA_FILE": str(digitalocean.ca_file),
            "DOKS_ACCESS_LOG_FORMAT": "json",
            "DOKS_ACCESS_LOG_LEVEL": "DEBUG",
            **(env or {}),
        },
    )
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def chart_operator(
    helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    *,
    namespace: str,
    directory: Path,
    served: str | None = None,
    extra_values: Mapping[str, Any] | None = None,
) -> Iterator[ManagedProcess]:
    """The chart released in ``namespace`` and the operator running as its ServiceAccount, with
    exactly its permissions: cluster-wide, or only for the namespace ``served`` (namespaced mode,
    ``watchNamespaces``); ``extra_values`` for the chart besides."""
    values = {**({"watchNamespaces": [served]} if served else {}), **(extra_values or {})}
    with (
        installed_as_service_account(
            helm,
            cluster,
            api,
            namespace=namespace,
            values=values,
            path=directory / "operator.kubeconfig",
        ) as kubeconfig,
        operator_running(
            kubeconfig=kubeconfig,
            digitalocean=digitalocean,
            log_path=directory / "operator.log",
            args=[f"--namespace={served}"] if served else [],
            # What the chart's Deployment sets: the account namespace is the release's.
            env={"DOKS_ACCESS_ACCOUNT_NAMESPACE": namespace},
        ) as process,
    ):
        yield process


def log_entries(log_path: Path) -> list[str]:
    """Each log record as one string (message and exception); other lines as they are."""
    entries = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            entries.append(line)
            continue
        if isinstance(record, dict):
            # The object a record is about reads as in the text form: "[namespace/name] message".
            subject = f"[{record['object']}] " if "object" in record else ""
            text = f"{subject}{record.get('message', '')} {record.get('exception', '')}"
            entries.append(text.strip())
        else:
            entries.append(line)
    return entries


def refusals(entries: Sequence[str], *, ours: set[str]) -> list[str]:
    """Entries reporting a refusal (403 Forbidden), except those only about other tests' objects.

    Objects that earlier tests left in namespaces being deleted are no concern of this one: the
    apiserver refuses new content in a terminating namespace with a 403 too. An entry counts
    unless it names some test namespace and none of ``ours``; a refusal of a cluster-wide request
    names the ServiceAccount, and so its namespace, which is one of ours.
    """
    found = []
    for entry in entries:
        if not _REFUSAL.search(entry):
            continue
        named = set(_TEST_NAMESPACE.findall(entry))
        if named and not named & ours:
            continue
        found.append(entry)
    return found


def explained(refused: Sequence[str]) -> str:
    """The refusals, with the likely cause when Kopf's own cluster discovery was refused."""
    text = "the operator was refused:\n" + "\n".join(refused)
    if any("customresourcedefinitions" in e or "/api/v1/namespaces" in e for e in refused):
        text += (
            "\n\nKopf lists and watches CRDs (and, with --namespace, all namespaces) to discover"
            " resources, which the chart deliberately does not allow. The operator must declare"
            " that it needs no discovery: `settings.scanning.disabled = True` in its startup"
            " handler. Without it Kopf retries these requests, and with --namespace it waits about"
            " 55 s before watching anything."
        )
    return text
