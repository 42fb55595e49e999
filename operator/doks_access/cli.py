"""The ``doks-access`` command line.

Subcommands arrive with the features they start; the entry point, ``--version`` and ``--help`` are
stable so that images and charts can rely on them from the first release.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from doks_access import __version__

PROGRAM = "doks-access"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Keep DigitalOcean Kubernetes (DOKS) kubeconfigs fresh in Kubernetes Secrets.",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2
