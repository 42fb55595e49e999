"""``doks-access-demo``: the whole product offline, on embedded defaults.

Starts the DigitalOcean API emulator, a local control plane whose apiserver trusts the emulator's
tokens, and the operator; applies the CRD, a token Secret and a ``DOClusterAccess`` whose
credentials live one minute; waits for ``Ready`` with ``kubectl wait``; proves the Secret's
kubeconfig authenticates; then keeps everything running so that renewals can be watched, until
Ctrl-C. ``--once`` stops after the checks (that is how the tests run it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.controlplane import ControlPlane
from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, DEMO_TOKEN, Emulator, EmulatorConfig
from doks_access_testkit.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "demo"


def _sample(*, token: str, cluster_id: str, expiry_seconds: int) -> str:
    """The demo's namespace, token Secret and DOClusterAccess."""
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: {NAMESPACE}
        ---
        apiVersion: v1
        kind: Secret
        metadata:
          name: digitalocean-api
          namespace: {NAMESPACE}
        stringData:
          token: {token}
        ---
        apiVersion: doks-access.dev/v1alpha1
        kind: DOClusterAccess
        metadata:
          name: prod
          namespace: {NAMESPACE}
        spec:
          clusterID: {cluster_id}
          expirySeconds: {expiry_seconds}
          tokenSecretRef:
            name: digitalocean-api
        """
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doks-access-demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the checks")
    parser.add_argument(
        "--workdir", type=Path, default=Path(".demo"), help="where to write kubeconfigs and logs"
    )
    parser.add_argument(
        "--cluster-id",
        help="use the real DigitalOcean API for this DOKS cluster, with the token in "
        "$DIGITALOCEAN_ACCESS_TOKEN, in the cluster $KUBECONFIG names (credentials live 1 h)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            if args.cluster_id:
                _run_real(stack, workdir=args.workdir.resolve(), cluster_id=args.cluster_id)
            else:
                _run(stack, workdir=args.workdir.resolve(), once=args.once)
    except KeyboardInterrupt:
        _say("stopped")
    return 0


def _run(stack: contextlib.ExitStack, *, workdir: Path, once: bool) -> None:
    bin_dir = control_plane_bin_dir()
    emulator = stack.enter_context(Emulator(config=EmulatorConfig.demo()))
    plane = ControlPlane(bin_dir=bin_dir, token_webhook=emulator.token_webhook)
    emulator.use_control_plane(plane)
    _say(f"DigitalOcean API emulator on {emulator.api_url}")
    stack.enter_context(plane)
    kubeconfig = workdir / "admin.kubeconfig"
    shutil.copyfile(plane.admin_kubeconfig_path, kubeconfig)
    kubeconfig.chmod(0o600)
    _say(f"Kubernetes API server on {plane.server}; kubeconfig: {kubeconfig}")
    kubectl = _kubectl(bin_dir, kubeconfig)
    kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/doclusteraccesses.doks-access.dev",
        "crd/doclusteraccesssets.doks-access.dev",
    )
    api = {
        "DOKS_ACCESS_DIGITALOCEAN_API_URL": emulator.api_url,
        "DOKS_ACCESS_DIGITALOCEAN_CA_FILE": str(emulator.ca_file),
    }
    operator = _start_operator(kubeconfig, workdir / "operator.log", api=api)
    stack.callback(operator.stop)
    _say(f"operator running; log: {workdir / 'operator.log'}")
    sample = _sample(
        token=DEMO_TOKEN, cluster_id=DEMO_CLUSTER_IDS["prod-cluster-01"], expiry_seconds=60
    )
    kubectl("apply", "-f", "-", stdin=sample)
    kubectl("wait", "--for=condition=Ready", "doca/prod", "-n", NAMESPACE, "--timeout=60s")
    kubectl("get", "doca", "-n", NAMESPACE)
    _prove_secret(kubectl, bin_dir)
    if once:
        return
    _say(
        f"credentials live 60 s and are renewed ~20 s early; try it yourself with:\n"
        f"  {bin_dir / 'kubectl'} --kubeconfig {kubeconfig} get doca -n {NAMESPACE} -w\n"
        "press Ctrl-C to stop"
    )
    _follow_renewals(kubectl, bin_dir)


def _run_real(stack: contextlib.ExitStack, *, workdir: Path, cluster_id: str) -> None:
    """The same walk-through against a real cluster and the real DigitalOcean API."""
    token = os.environ.get("DIGITALOCEAN_ACCESS_TOKEN", "")
    kubeconfig = Path(os.environ.get("KUBECONFIG", ""))
    if not token or not kubeconfig.is_file():
        raise SystemExit("--cluster-id needs $DIGITALOCEAN_ACCESS_TOKEN and $KUBECONFIG (a file)")
    bin_dir = control_plane_bin_dir()
    kubectl = _kubectl(bin_dir, kubeconfig)
    kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/doclusteraccesses.doks-access.dev",
        "crd/doclusteraccesssets.doks-access.dev",
    )
    operator = _start_operator(kubeconfig, workdir / "operator.log", api={})
    stack.callback(operator.stop)
    _say(f"operator running; log: {workdir / 'operator.log'}")
    # An hour: every fetch mints a token DigitalOcean cannot revoke; do not pile them up.
    kubectl(
        "apply", "-f", "-", stdin=_sample(token=token, cluster_id=cluster_id, expiry_seconds=3600)
    )
    kubectl("wait", "--for=condition=Ready", "doca/prod", "-n", NAMESPACE, "--timeout=120s")
    kubectl("get", "doca", "-n", NAMESPACE)
    _prove_secret(kubectl, bin_dir)
    _say("press Ctrl-C to stop; the Secret and the DOClusterAccess stay in namespace demo")
    _follow_renewals(kubectl, bin_dir)


def _follow_renewals(kubectl: _Kubectl, bin_dir: Path) -> None:
    """Print each renewal as it happens, and prove the renewed Secret still works."""
    jsonpath = "jsonpath={.status.issuedAt} {.status.expiresAt}"
    seen = ""
    while True:
        current = kubectl("get", "doca", "prod", "-n", NAMESPACE, "-o", jsonpath, quiet=True)
        if current != seen:
            issued, _, expires = current.partition(" ")
            _say(f"credential issued at {issued}, valid until {expires}")
            _prove_secret(kubectl, bin_dir)
            seen = current
        time.sleep(2)


def _prove_secret(kubectl: _Kubectl, bin_dir: Path) -> None:
    encoded = kubectl(
        "get",
        "secret",
        "prod-kubeconfig",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.kubeconfig}",
        quiet=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        consumer = Path(scratch) / "consumer.kubeconfig"
        consumer.write_bytes(base64.b64decode(encoded))
        consumer.chmod(0o600)
        whoami = _kubectl(bin_dir, consumer)
        identity = whoami(
            "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", quiet=True
        )
    _say(f"the Secret's kubeconfig authenticates against the API server: {identity}")


class _Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary, self.kubeconfig = binary, kubeconfig

    def __call__(self, *args: str, stdin: str | None = None, quiet: bool = False) -> str:
        completed = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if completed.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{completed.stderr}")
        if not quiet:
            print(completed.stdout, end="", flush=True)
        return completed.stdout


def _kubectl(bin_dir: Path, kubeconfig: Path) -> _Kubectl:
    return _Kubectl(bin_dir / "kubectl", kubeconfig)


def _start_operator(kubeconfig: Path, log_path: Path, *, api: dict[str, str]) -> ManagedProcess:
    return ManagedProcess(
        name="doks-access",
        args=[sys.executable, "-m", "doks_access", "run", f"--kubeconfig={kubeconfig}"],
        log_path=log_path,
        env={**os.environ, **api},
    )


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
