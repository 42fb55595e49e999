"""``doks-access-controlplane``: run the local control plane by hand, for demos and debugging."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path

from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.controlplane import ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="doks-access-controlplane",
        description="Start etcd, kube-apiserver and kube-controller-manager on loopback "
        "and keep them running until interrupted.",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(".controlplane/admin.kubeconfig"),
        help="where to copy the admin kubeconfig (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    # SIGINT and SIGTERM both end the wait below (also when started from a shell that ignores
    # SIGINT in background jobs), so the context manager always stops the processes.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with ControlPlane(bin_dir=control_plane_bin_dir()) as plane:
        try:
            args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plane.admin_kubeconfig_path, args.kubeconfig)
            args.kubeconfig.chmod(0o600)
            described = {**plane.describe(), "kubeconfig": str(args.kubeconfig)}
            print(json.dumps(described), flush=True)
            print("control plane running; press Ctrl-C to stop", file=sys.stderr, flush=True)
            signal.pause()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
