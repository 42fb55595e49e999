"""The session's witness: proof that no token material ever reached a log, an Event, a status or
a metrics scrape, in any test of the session.

Token material is every secret a DigitalOcean API emulator of this session held: the API tokens it
was configured with or given later (``DEMO_TOKEN``, the read-only one, the benchmark's, any a test
added), and every credential it issued (bearer tokens, client private keys); plus every credential
found in a Secret the operator wrote (label-selected watch), which also covers emulators in other
processes (the benchmark's) and real DigitalOcean against an external cluster; plus the API token in
every token Secret a DOClusterAccess names (so also wrong tokens no emulator knows).

Where it looks, once the session is over (``finish``):

- every ``*.log`` file under pytest's basetemp: the logs of every operator process the tests
  started (session operator, chart tests' operators, the demo's, the benchmark's with
  ``--keep-logs``), and ``witness/in-process.log``, what the ``doks_access`` and ``kopf`` loggers
  emitted inside the test process (integration tests run the operator in-process);
- ``witness/*.jsonl``: every Event and every DOClusterAccess (status included) the cluster held
  during the session, recorded by watches that run as long as the ``cluster`` fixture does;
- every ``*.prom`` file: /metrics scrapes the tests saved.

Other files under basetemp are deliberately *not* read: tests legitimately write credentials to
disk (``doks-access fetch --output``, kubeconfigs of ServiceAccounts and of the control plane).

What counts as a hit: a secret's full text, or any 16-character slice of it (a truncated or
partial leak); also of its base64 forms (at each of the three alignments, as it would appear
inside an encoded Secret or kubeconfig). Sixteen characters of a random token are 64 bits or more:
no accidental match. Certificates (the CA's, clients') are public and are not searched for; a
private key is searched for by its base64 body minus the fixed DER prefix every key of its type
shares, and minus the PEM armour. The emulator's admin token is not token material: it controls
the test double, never reaches an operator, and its CLI prints it by design.

A hit fails the session; it is reported by file, line and the first 6 characters of the secret
only, so that the report does not itself become a leak.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from doks_access_testkit.emulator import DEMO_READ_ONLY_TOKEN, DEMO_TOKEN, Emulator
from doks_access_testkit.emulator import server as emulator_server
from doks_access_testkit.emulator.state import AccountState

WINDOW = 16
# The benchmark's token (bench/stack.py); its emulator runs in the benchmark's own process.
BENCH_TOKEN = "dop_v1_" + "be7c" * 16
MANAGED_BY = "app.kubernetes.io/managed-by=doks-access-operator"
GROUP, VERSION, PLURAL = "doks-access.dev", "v1alpha1", "doclusteraccesses"
RECORDS_DIR = "witness"
PROC = Path("/proc")
# Characters a token, a hex string or base64 is made of; a leak is a run of them.
_RUN = re.compile(rf"[A-Za-z0-9+/=_-]{{{WINDOW},}}")
_ALPHABET = re.compile(r"[A-Za-z0-9+/=_-]+")
# Every EC P-256 key in PKCS#8 or SEC1 form starts with the same DER bytes: no secret in them.
_KEY_PREFIX_CHARS = 48
_LOGGERS = ("doks_access", "kopf")


@dataclasses.dataclass(frozen=True)
class Secret:
    """One piece of token material; ``what`` says where it came from and is safe to print."""

    value: str
    what: str

    @property
    def shown(self) -> str:
        return f"{self.value[:6]}... ({self.what})"


@dataclasses.dataclass(frozen=True)
class Hit:
    path: Path
    line: int
    secret: Secret

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: token material {self.secret.shown}"


@dataclasses.dataclass
class ScanFigures:
    files: int = 0
    lines: int = 0
    bytes: int = 0


# --- the scanner ----------------------------------------------------------------------------------


def needles(secrets: Iterable[Secret]) -> dict[str, Secret]:
    """Every ``WINDOW``-character slice of every searched form of each secret, to its secret."""
    found: dict[str, Secret] = {}
    for secret in secrets:
        for form in _forms(secret.value):
            for start in range(len(form) - WINDOW + 1):
                found.setdefault(form[start : start + WINDOW], secret)
    return found


def _forms(value: str) -> list[str]:
    """The secret as text, and its base64 encodings at each alignment (the stable middle only:
    the first and last characters depend on the bytes around it)."""
    raw = value.encode()
    forms = [value]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        skip = (shift * 4 + 2) // 3 + 1
        forms.append(encoded[skip:-4])
    return [form for form in forms if len(form) >= WINDOW]


def scan(paths: Iterable[Path], secrets: Iterable[Secret]) -> tuple[list[Hit], ScanFigures]:
    """Every place in ``paths`` where token material of ``secrets`` occurs; and what was read."""
    secrets = list(secrets)
    index = needles(secrets)
    # A secret of characters outside the alphabet of runs is searched for whole as well.
    odd = [s for s in secrets if not _ALPHABET.fullmatch(s.value)]
    hits: list[Hit] = []
    figures = ScanFigures()
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace")
        figures.files += 1
        figures.bytes += len(text)
        for number, line in enumerate(text.splitlines(), start=1):
            figures.lines += 1
            hit = _first_hit(line, index, odd)
            if hit is not None:
                hits.append(Hit(path=path, line=number, secret=hit))
    return hits, figures


def _first_hit(line: str, index: dict[str, Secret], odd: list[Secret]) -> Secret | None:
    for run in _RUN.finditer(line):
        text = run.group()
        for start in range(len(text) - WINDOW + 1):
            secret = index.get(text[start : start + WINDOW])
            if secret is not None:
                return secret
    return next((s for s in odd if s.value in line), None)


def files_to_scan(basetemp: Path) -> list[Path]:
    """Logs, the witness's records and saved scrapes under ``basetemp`` (see the module doc)."""
    patterns = ("*.log", f"{RECORDS_DIR}/*.jsonl", "*.prom")
    found = {p for pattern in patterns for p in basetemp.rglob(pattern) if p.is_file()}
    return sorted(found)


# --- collecting secrets ---------------------------------------------------------------------------


class SecretRegistry:
    """The token material of the session, gathered as emulators are created and Secrets written."""

    def __init__(self) -> None:
        self._states: list[AccountState] = []
        self._harvested: dict[str, Secret] = {}
        self._lock = threading.Lock()

    def watch_emulator(self, emulator: Emulator) -> None:
        with self._lock:
            self._states.append(emulator.emulation.state)

    def harvest(self, secret: Secret) -> None:
        with self._lock:
            self._harvested.setdefault(secret.value, secret)

    def secrets(self) -> list[Secret]:
        with self._lock:
            states, harvested = list(self._states), list(self._harvested.values())
        found = {
            DEMO_TOKEN: Secret(DEMO_TOKEN, "DEMO_TOKEN"),
            DEMO_READ_ONLY_TOKEN: Secret(DEMO_READ_ONLY_TOKEN, "DEMO_READ_ONLY_TOKEN"),
            BENCH_TOKEN: Secret(BENCH_TOKEN, "the benchmark's token"),
        }
        for state in states:
            for token in state.tokens():
                found.setdefault(token.token, Secret(token.token, f"API token {token.name!r}"))
            for credential in state.credentials():
                what = f"credential issued for cluster {credential.cluster_id}"
                if credential.token:
                    found.setdefault(credential.token, Secret(credential.token, what))
                if credential.client_key_pem:
                    for key in private_key_secrets(credential.client_key_pem, what=what):
                        found.setdefault(key.value, key)
        for secret in harvested:
            found.setdefault(secret.value, secret)
        return list(found.values())


def private_key_secrets(key_pem: bytes, *, what: str) -> list[Secret]:
    """A private key as it could leak: its PEM body lines, and the base64 of the whole PEM (as in
    ``client-key-data``), in both cases without the armour and the DER prefix all keys share."""
    lines = [
        line for line in key_pem.decode().splitlines() if line and not line.startswith("-----")
    ]
    body = "".join(lines)[_KEY_PREFIX_CHARS:]
    encoded = base64.b64encode(key_pem).decode()
    # The armour and shared prefix take the first ~110 characters of the encoded PEM, the closing
    # armour the last ~40.
    middle = encoded[112:-44]
    what = f"private key of a {what}"
    return [Secret(body, what), Secret(middle, what)]


def credentials_in_secret(secret: Any) -> list[Secret]:
    """The bearer tokens and client keys in one Secret the operator wrote (any format)."""
    name = f"{secret.metadata.namespace}/{secret.metadata.name}"
    found: list[Secret] = []
    for value in (secret.data or {}).values():
        with contextlib.suppress(ValueError, UnicodeDecodeError, yaml.YAMLError):
            document = yaml.safe_load(base64.b64decode(value).decode())
            found += _credentials_in(document, what=f"credential in Secret {name}")
    return found


def _credentials_in(document: Any, *, what: str) -> list[Secret]:
    found: list[Secret] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("token", "bearerToken") and isinstance(value, str) and value:
                found.append(Secret(value, what))
            elif key in ("client-key-data", "keyData") and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    found += private_key_secrets(base64.b64decode(value), what=what)
            elif key == "config" and isinstance(value, str):  # ArgoCD: JSON inside a string
                with contextlib.suppress(ValueError):
                    found += _credentials_in(json.loads(value), what=what)
            else:
                found += _credentials_in(value, what=what)
    elif isinstance(document, list):
        for item in document:
            found += _credentials_in(item, what=what)
    return found


# --- recording what the cluster said --------------------------------------------------------------


class ClusterRecorder:
    """Watches Events, DOClusterAccess objects and the operator's Secrets cluster-wide, in
    background threads, until stopped: the first two into JSONL files, the last into ``registry``
    (in memory only: a credential is never written anywhere by the witness)."""

    _WATCH_SECONDS = 2  # how long one watch request lasts, and so how long stopping can take

    def __init__(self, *, kubeconfig: Path, out_dir: Path, registry: SecretRegistry) -> None:
        self._api = config.new_client_from_config(config_file=str(kubeconfig))
        self._out_dir = out_dir
        self._registry = registry
        self._stopping = threading.Event()
        self.counts = {"events": 0, "doclusteraccesses": 0, "secrets": 0}
        core = client.CoreV1Api(self._api)
        custom = client.CustomObjectsApi(self._api)
        self._threads = [
            threading.Thread(
                target=self._follow,
                args=("events", core.list_event_for_all_namespaces, {}, self._record("events")),
                name="witness-events",
                daemon=True,
            ),
            threading.Thread(
                target=self._follow,
                args=(
                    "doclusteraccesses",
                    custom.list_cluster_custom_object,
                    {"group": GROUP, "version": VERSION, "plural": PLURAL},
                    self._record("doclusteraccesses", then=self._harvest_token),
                ),
                name="witness-doclusteraccesses",
                daemon=True,
            ),
            threading.Thread(
                target=self._follow,
                args=(
                    "secrets",
                    core.list_secret_for_all_namespaces,
                    {"label_selector": MANAGED_BY},
                    self._harvest,
                ),
                name="witness-secrets",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(self._WATCH_SECONDS * 5)
        self._api.close()

    def _record(
        self, kind: str, *, then: Callable[[Any], None] | None = None
    ) -> Callable[[Any], None]:
        path = self._out_dir / f"{kind}.jsonl"

        def record(item: Any) -> None:
            document = self._api.sanitize_for_serialization(item)
            with path.open("a") as out:
                out.write(json.dumps(document, sort_keys=True) + "\n")
            self.counts[kind] += 1
            if then is not None:
                then(document)

        return record

    def _harvest_token(self, access: dict[str, Any]) -> None:
        """The API token an object names, whether or not an emulator knows it (a wrong token is
        still a token); read once the object exists, as the operator would."""
        ref = (access.get("spec") or {}).get("tokenSecretRef") or {}
        namespace = access.get("metadata", {}).get("namespace")
        if not ref.get("name") or not namespace:
            return
        with contextlib.suppress(client.ApiException):
            secret = client.CoreV1Api(self._api).read_namespaced_secret(ref["name"], namespace)
            value = (secret.data or {}).get(ref.get("key", "token"))
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                token = base64.b64decode(value or "").decode().strip()
                if len(token) >= WINDOW:
                    self._registry.harvest(
                        Secret(token, f"API token in Secret {namespace}/{ref['name']}")
                    )

    def _harvest(self, secret: Any) -> None:
        for found in credentials_in_secret(secret):
            self._registry.harvest(found)
        self.counts["secrets"] += 1

    def _follow(
        self, kind: str, lister: Callable[..., Any], arguments: dict[str, Any], sink: Any
    ) -> None:
        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                stream = watch.Watch().stream(
                    lister,
                    **arguments,
                    resource_version=resource_version,
                    timeout_seconds=self._WATCH_SECONDS,
                    _request_timeout=self._WATCH_SECONDS * 3,
                )
                for event in stream:
                    item = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = None  # 410 Gone: list anew
                        break
                    sink(item)
                    resource_version = _resource_version(item) or resource_version
            except client.ApiException as exc:
                # The CRD comes a little after the cluster; an expired version means list anew.
                resource_version = None
                if exc.status not in (404, 410):
                    logging.getLogger(__name__).warning("witness: watching %s: %s", kind, exc)
                self._stopping.wait(0.5)
            except Exception as exc:  # a restarting apiserver must not end the watch
                logging.getLogger(__name__).debug("witness: watching %s: %r", kind, exc)
                self._stopping.wait(0.5)


def _resource_version(item: Any) -> str | None:
    if isinstance(item, dict):
        version = item.get("metadata", {}).get("resourceVersion")
        return str(version) if version else None
    version = getattr(getattr(item, "metadata", None), "resource_version", None)
    return str(version) if version else None


# --- the session -------------------------------------------------------------------------------


@dataclasses.dataclass
class Witness:
    """One per test session: see the module docstring."""

    registry: SecretRegistry = dataclasses.field(default_factory=SecretRegistry)
    recorders: list[ClusterRecorder] = dataclasses.field(default_factory=list)
    in_process_log: logging.Handler | None = None

    def start(self, basetemp: Path) -> None:
        emulator_server.creation_hooks.append(self.registry.watch_emulator)
        records = basetemp / RECORDS_DIR
        records.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(records / "in-process.log", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name in _LOGGERS:
            logging.getLogger(name).addHandler(handler)
        self.in_process_log = handler

    @contextlib.contextmanager
    def recording(self, *, kubeconfig: Path, basetemp: Path) -> Iterator[None]:
        recorder = ClusterRecorder(
            kubeconfig=kubeconfig, out_dir=basetemp / RECORDS_DIR, registry=self.registry
        )
        recorder.start()
        self.recorders.append(recorder)
        try:
            yield
        finally:
            recorder.stop()

    def finish(self, basetemp: Path) -> tuple[list[Hit], str]:
        """Scan everything; the hits, and a one-line account of what was read."""
        with contextlib.suppress(ValueError):
            emulator_server.creation_hooks.remove(self.registry.watch_emulator)
        if self.in_process_log is not None:
            for name in _LOGGERS:
                logging.getLogger(name).removeHandler(self.in_process_log)
            self.in_process_log.close()
        secrets = self.registry.secrets()
        paths = files_to_scan(basetemp)
        hits, figures = scan(paths, secrets)
        counts = {k: sum(r.counts[k] for r in self.recorders) for k in ("events", "secrets")}
        counts["status"] = sum(r.counts["doclusteraccesses"] for r in self.recorders)
        scrapes = sum(1 for p in paths if p.suffix == ".prom")
        summary = (
            f"witness: {len(secrets)} secrets searched in {figures.files} files"
            f" ({figures.lines} lines, {figures.bytes} bytes; {scrapes} metrics scrapes),"
            f" {counts['events']} Events and {counts['status']} DOClusterAccess versions"
            f" recorded, {counts['secrets']} operator Secrets harvested: {len(hits)} hits"
        )
        return hits, summary


SESSION = Witness()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the operator starts no children today; if it ever does,
    their arguments count too)."""
    children: dict[int, list[int]] = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += children.get(current, [])
    return found


def arguments_and_environment(pid: int) -> str:
    """The command lines and environments of ``pid`` and its descendants, as text."""
    texts = []
    for process in _process_tree(pid):
        for name in ("cmdline", "environ"):
            raw = (PROC / str(process) / name).read_bytes()
            texts.append(raw.replace(b"\0", b"\n").decode(errors="replace"))
    return "\n".join(texts)


def known_secrets() -> list[Secret]:
    """The token material known so far in this session (for tests that check a place directly)."""
    return SESSION.registry.secrets()


def leaked_in(text: str, secrets: Iterable[Secret]) -> list[str]:
    """What of ``secrets`` occurs in ``text``, shown safely (first 6 characters and origin)."""
    secrets = list(secrets)
    index = needles(secrets)
    odd = [s for s in secrets if not _ALPHABET.fullmatch(s.value)]
    found: dict[str, Secret] = {}
    for line in text.splitlines():
        hit = _first_hit(line, index, odd)
        if hit is not None:
            found[hit.value] = hit
    return [s.shown for s in found.values()]
