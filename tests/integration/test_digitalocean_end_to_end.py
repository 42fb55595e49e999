"""Our DigitalOcean client against the emulator, and the credentials against a real kube-apiserver.

The emulator is the session's: it is the apiserver's webhook token authenticator, so a bearer token
it issued is accepted until its expiry and rejected after, by the apiserver itself; in certificate
mode it mints client certificates from the control plane's client CA that expire with the
credential.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from doks_access import digitalocean
from doks_access.kubeconfig import AuthKind, Credential
from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, DEMO_TOKEN, QUIRKS, Emulator, Fault
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from doks_access_testkit.emulator.state import SsoRefusal
from tests import kube

TOKEN_CLUSTER = DEMO_CLUSTER_IDS["prod-cluster-01"]
CERTIFICATE_CLUSTER = DEMO_CLUSTER_IDS["legacy-cluster"]
EMULATOR_USER = "doks-emulator-admin"
# How long after its expiry the apiserver may still accept a token: the webhook is asked on every
# request (cache TTL 0), but an authentication already under way can finish.
REJECTION_GRACE = datetime.timedelta(seconds=15)


def _client(emulator: Emulator, **options: object) -> digitalocean.DigitalOceanClient:
    return digitalocean.DigitalOceanClient(
        base_url=emulator.api_url, verify=emulator.client_ssl_context(), **options
    )


async def _fetch(emulator: Emulator, *, cluster_id: str, expiry_seconds: int | None) -> Credential:
    async with _client(emulator) as do:
        return await do.fetch_kubeconfig(
            token=DEMO_TOKEN, cluster_id=cluster_id, expiry_seconds=expiry_seconds
        )


def _username(credential: Credential, tmp_path: Path) -> str:
    """Who the apiserver says the credential is (a SelfSubjectReview needs no RBAC)."""
    path = tmp_path / "consumer.kubeconfig"
    path.write_bytes(credential.raw)
    with config.new_client_from_config(config_file=str(path)) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
    username: str = review.status.user_info.username
    return username


def _rejected(credential: Credential, tmp_path: Path) -> bool:
    try:
        _username(credential, tmp_path)
    except ApiException as exc:
        if exc.status == 401:
            return True
        raise
    return False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("cluster_id", "auth_kind"),
    [(TOKEN_CLUSTER, AuthKind.TOKEN), (CERTIFICATE_CLUSTER, AuthKind.CLIENT_CERTIFICATE)],
    ids=["bearer-token", "client-certificate"],
)
async def test_a_fetched_kubeconfig_authenticates_until_it_expires(
    fresh_digitalocean: Emulator, tmp_path: Path, cluster_id: str, auth_kind: AuthKind
) -> None:
    credential = await _fetch(fresh_digitalocean, cluster_id=cluster_id, expiry_seconds=6)

    assert credential.auth_kind is auth_kind
    assert credential.expires_at - credential.issued_at <= datetime.timedelta(seconds=6)
    assert _username(credential, tmp_path) == EMULATOR_USER

    # Real time has to pass for the apiserver to reject the credential; poll until it does.
    first_rejection = await asyncio.to_thread(
        kube.eventually,
        lambda: _rejected(credential, tmp_path) and datetime.datetime.now(datetime.UTC),
        what="the apiserver to reject the expired credential",
        timeout=6 + REJECTION_GRACE.total_seconds(),
    )
    assert first_rejection >= credential.expires_at - datetime.timedelta(seconds=1)
    assert first_rejection <= credential.expires_at + REJECTION_GRACE


@pytest.mark.asyncio
async def test_the_credential_lifetime_is_what_was_asked_for_or_seven_days(
    fresh_digitalocean: Emulator,
) -> None:
    before = len(fresh_digitalocean.issued_credentials(cluster_id=TOKEN_CLUSTER))
    asked = await _fetch(fresh_digitalocean, cluster_id=TOKEN_CLUSTER, expiry_seconds=3600)
    default = await _fetch(fresh_digitalocean, cluster_id=TOKEN_CLUSTER, expiry_seconds=None)

    assert asked.lifetime == datetime.timedelta(seconds=3600)
    assert default.lifetime == datetime.timedelta(days=7)
    issued = fresh_digitalocean.issued_credentials(cluster_id=TOKEN_CLUSTER)
    assert len(issued) == before + 2  # one minted token per call, no more
    assert fresh_digitalocean.request_count("kubeconfig") == 2


@pytest.mark.asyncio
async def test_clusters_are_listed_and_read_with_the_same_token(
    fresh_digitalocean: Emulator,
) -> None:
    async with _client(fresh_digitalocean) as do:
        clusters = await do.list_clusters(token=DEMO_TOKEN)
        one = await do.get_cluster(token=DEMO_TOKEN, cluster_id=TOKEN_CLUSTER)

    assert {c.name: c.id for c in clusters} == DEMO_CLUSTER_IDS
    assert (one.id, one.name, one.region) == (TOKEN_CLUSTER, "prod-cluster-01", "nyc1")


FAULTS = [
    pytest.param(Fault(kind="status", status=401), digitalocean.UnauthorizedError, id="401"),
    pytest.param(Fault(kind="status", status=404), digitalocean.NotFoundError, id="404"),
    pytest.param(
        Fault(kind="status", status=429, retry_after=3600), digitalocean.RateLimitedError, id="429"
    ),
    pytest.param(Fault(kind="status", status=500), digitalocean.ServerError, id="500"),
    pytest.param(Fault(kind="status", status=503), digitalocean.ServerError, id="503"),
    pytest.param(
        Fault(kind="error_rate", probability=1.0), digitalocean.ServerError, id="error-rate"
    ),
    pytest.param(Fault(kind="drop"), digitalocean.TransportError, id="connection-drop"),
    pytest.param(Fault(kind="hang", seconds=30), digitalocean.TransportError, id="hang"),
    pytest.param(
        Fault(kind="malformed_body"), digitalocean.InvalidResponseError, id="malformed-yaml"
    ),
    pytest.param(
        Fault(kind="oversized_body"), digitalocean.InvalidResponseError, id="oversized-body"
    ),
    pytest.param(
        Fault(kind="exec_kubeconfig"), digitalocean.InvalidResponseError, id="exec-kubeconfig"
    ),
    pytest.param(
        Fault(kind="auth_provider_kubeconfig"),
        digitalocean.InvalidResponseError,
        id="auth-provider-kubeconfig",
    ),
    pytest.param(Fault(kind="wrong_server"), digitalocean.InvalidResponseError, id="wrong-server"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "expected"), FAULTS)
async def test_every_injected_fault_maps_to_its_client_error(
    fresh_digitalocean: Emulator, fault: Fault, expected: type[digitalocean.DigitalOceanError]
) -> None:
    fresh_digitalocean.add_fault(fault)
    quick = _client(
        fresh_digitalocean,
        retry_policy=digitalocean.RetryPolicy(attempts=1),
        timeouts=digitalocean.Timeouts(read=1.0),
    )

    async with quick as do:
        with pytest.raises(expected) as raised:
            await do.fetch_kubeconfig(
                token=DEMO_TOKEN, cluster_id=TOKEN_CLUSTER, expiry_seconds=600
            )

    assert type(raised.value) is expected
    assert DEMO_TOKEN not in str(raised.value)


@pytest.mark.asyncio
async def test_added_latency_slows_the_answer_but_it_still_succeeds(
    fresh_digitalocean: Emulator,
) -> None:
    fresh_digitalocean.add_fault(Fault(kind="latency", seconds=0.5))
    loop = asyncio.get_running_loop()
    started = loop.time()

    credential = await _fetch(fresh_digitalocean, cluster_id=TOKEN_CLUSTER, expiry_seconds=600)

    assert loop.time() - started >= 0.5
    assert credential.auth_kind is AuthKind.TOKEN


@pytest.mark.asyncio
async def test_transient_server_errors_are_retried_until_success(
    fresh_digitalocean: Emulator,
) -> None:
    fresh_digitalocean.add_fault(Fault(kind="status", status=503, count=2))
    patient = _client(
        fresh_digitalocean,
        retry_policy=digitalocean.RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1),
    )

    async with patient as do:
        credential = await do.fetch_kubeconfig(
            token=DEMO_TOKEN, cluster_id=TOKEN_CLUSTER, expiry_seconds=600
        )

    assert credential.server.startswith("https://")
    assert fresh_digitalocean.stats()["kubeconfig"] == {"503": 2, "200": 1}


def test_the_fetch_command_saves_a_working_kubeconfig_and_prints_no_secret(
    fresh_digitalocean: Emulator, tmp_path: Path
) -> None:
    output = tmp_path / "prod.kubeconfig"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "doks_access",
            "fetch",
            f"--cluster-id={TOKEN_CLUSTER}",
            "--expiry-seconds=600",
            f"--api-url={fresh_digitalocean.api_url}",
            f"--ca-file={fresh_digitalocean.ca_file}",
            f"--output={output}",
            "--show-secret=prod",
        ],
        env={**os.environ, "DIGITALOCEAN_ACCESS_TOKEN": DEMO_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    summary_text, secret_text = completed.stdout.split("\n}\n", 1)
    summary = json.loads(summary_text + "}")
    preview = json.loads(secret_text)
    assert preview["metadata"]["name"] == "prod-kubeconfig"
    assert preview["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "doks-access-operator"
    assert preview["data"]["kubeconfig"].startswith("<redacted: ")
    assert summary["cluster"] == "do-nyc1-prod-cluster-01"
    assert summary["auth"] == "token"
    saved = yaml.safe_load(output.read_text())
    saved_token = saved["users"][0]["user"]["token"]
    assert saved_token not in completed.stdout + completed.stderr
    assert DEMO_TOKEN not in completed.stdout + completed.stderr
    assert output.stat().st_mode & 0o777 == 0o600
    with config.new_client_from_config(config_file=str(output)) as api:
        assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"


def _fetch_command(emulator: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    """``doks-access fetch`` as a user runs it, token from the environment."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "doks_access",
            "fetch",
            f"--api-url={emulator.api_url}",
            f"--ca-file={emulator.ca_file}",
            *args,
        ],
        env={**os.environ, "DIGITALOCEAN_ACCESS_TOKEN": DEMO_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_fetch_command_reports_an_unknown_cluster_clearly(
    fresh_digitalocean: Emulator,
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"

    completed = _fetch_command(fresh_digitalocean, f"--cluster-id={unknown}")

    assert completed.returncode == 1
    assert completed.stderr.startswith(
        f"doks-access: ClusterNotFound: GET /v2/kubernetes/clusters/{unknown}/kubeconfig: HTTP 404"
    )
    assert completed.stdout == ""
    assert DEMO_TOKEN not in completed.stderr


def test_the_fetch_command_names_a_refused_request_as_the_operator_does(
    fresh_digitalocean: Emulator,
) -> None:
    said = "expiry_seconds must be at most 604800"
    fresh_digitalocean.add_fault(
        Fault(kind="status", endpoint="kubeconfig", status=422, message=said, count=1)
    )

    completed = _fetch_command(fresh_digitalocean, f"--cluster-id={TOKEN_CLUSTER}")

    assert completed.returncode == 1
    assert completed.stderr.startswith("doks-access: RequestRefused: GET /v2/kubernetes/clusters/")
    assert completed.stderr.rstrip().endswith(f": {said}")
    assert completed.stdout == ""


@pytest.mark.parametrize(("refusal", "flags"), [("api", []), ("cluster", ["--verify"])])
def test_the_fetch_command_says_when_a_cluster_requires_sso(
    fresh_digitalocean: Emulator, refusal: SsoRefusal, flags: list[str]
) -> None:
    cluster = fresh_digitalocean.add_cluster(
        EmulatedCluster(name="sso-only", sso=True, sso_required=True, sso_refusal=refusal)
    )

    completed = _fetch_command(fresh_digitalocean, f"--cluster-id={cluster.id}", *flags)

    assert completed.returncode == 1
    assert completed.stderr == (
        f"doks-access: SSORequired: cluster {cluster.id} has sso.required set; turn it off in "
        "DigitalOcean, or give consumers another way in\n"
    )


def test_the_fetch_command_verifies_and_prints_the_identity(fresh_digitalocean: Emulator) -> None:
    completed = _fetch_command(fresh_digitalocean, f"--cluster-id={TOKEN_CLUSTER}", "--verify")

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["identity"] == EMULATOR_USER


# --- DigitalOcean as it answers beyond its spec -------------------------------------------------


@pytest.fixture
def quirky_digitalocean(fresh_digitalocean: Emulator) -> Iterator[Emulator]:
    """The emulator with every realism quirk on: listings without ``links``, errors without a
    request id in the body or the headers, and the old 500 for ``expiry_seconds=0``."""
    fresh_digitalocean.set_quirks(QUIRKS)
    try:
        yield fresh_digitalocean
    finally:
        fresh_digitalocean.set_quirks(())


@pytest.mark.asyncio
async def test_the_client_copes_with_every_quirk_of_the_real_api(
    quirky_digitalocean: Emulator,
) -> None:
    async with _client(quirky_digitalocean) as do:
        listed = await do.list_clusters(token=DEMO_TOKEN)
        credential = await do.fetch_kubeconfig(
            token=DEMO_TOKEN, cluster_id=TOKEN_CLUSTER, expiry_seconds=None
        )
        with pytest.raises(digitalocean.NotFoundError) as raised:
            await do.fetch_kubeconfig(
                token=DEMO_TOKEN,
                cluster_id="00000000-0000-4000-8000-000000000000",
                expiry_seconds=600,
            )

    assert {cluster.id for cluster in listed} >= {TOKEN_CLUSTER, CERTIFICATE_CLUSTER}
    # Absent expiry_seconds, never 0: the 7-day default, without the old 500.
    assert credential.lifetime == datetime.timedelta(days=7)
    assert quirky_digitalocean.request_count("kubeconfig", outcome=500) == 0
    assert raised.value.request_id is None
    assert str(raised.value).endswith("HTTP 404 not_found")


@pytest.mark.asyncio
async def test_a_capped_certificate_expires_at_its_not_after_not_at_the_requested_lifetime(
    fresh_digitalocean: Emulator,
) -> None:
    fresh_digitalocean.update_cluster(CERTIFICATE_CLUSTER, max_lifetime=30)
    try:
        credential = await _fetch(
            fresh_digitalocean, cluster_id=CERTIFICATE_CLUSTER, expiry_seconds=3600
        )
    finally:
        fresh_digitalocean.update_cluster(CERTIFICATE_CLUSTER, max_lifetime=0)

    (issued,) = fresh_digitalocean.issued_credentials(cluster_id=CERTIFICATE_CLUSTER)[-1:]
    assert credential.auth_kind is AuthKind.CLIENT_CERTIFICATE
    assert credential.expires_at.timestamp() == issued.expires_at
    assert credential.lifetime <= datetime.timedelta(seconds=30)
