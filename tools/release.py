"""The release's one version, and the release notes, for the release workflow and the tests.

``pyproject.toml``'s ``version`` is the source of truth. Everything else that names the version
must agree with it: the chart's ``version`` and ``appVersion`` (chart and image are released
together), the image tag in every plain manifest, and a section of CHANGELOG.md. A tag ``vX.Y.Z``
releases exactly ``X.Y.Z``.

    python tools/release.py check [--tag vX.Y.Z]   exit 1 and say what disagrees
    python tools/release.py version                the version
    python tools/release.py notes                  the CHANGELOG section of the version

Standard library only, so that it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "ghcr.io/doks-access/doks-access-operator"
_CHART_FIELD = re.compile(r'^(version|appVersion):\s*"?([^"\s]+)"?\s*$', re.MULTILINE)
_IMAGE_TAG = re.compile(rf'image: "?{re.escape(IMAGE)}:([^"\s@]+)"?')
_SECTION = re.compile(r"^## \[(?P<version>[^\]]+)\][^\n]*\n(?P<body>.*?)(?=^## \[|\Z)", re.M | re.S)


def version(root: Path = ROOT) -> str:
    """The version in pyproject.toml."""
    with (root / "pyproject.toml").open("rb") as file:
        found: str = tomllib.load(file)["project"]["version"]
    return found


def disagreements(root: Path = ROOT, *, tag: str | None = None) -> list[str]:
    """What names another version than pyproject.toml, one sentence each."""
    expected = version(root)
    problems = []
    chart_yaml = (root / "charts/doks-access-operator/Chart.yaml").read_text()
    chart = dict(_CHART_FIELD.findall(chart_yaml))
    for field in ("version", "appVersion"):
        if chart.get(field) != expected:
            problems.append(f"Chart.yaml {field} is {chart.get(field)!r}, not {expected!r}")
    for manifest in sorted((root / "manifests").glob("*.yaml")):
        tags = sorted(set(_IMAGE_TAG.findall(manifest.read_text())))
        if tags != [expected]:
            problems.append(f"manifests/{manifest.name} runs {tags}, not {expected!r}")
    if notes(root, expected) is None:
        problems.append(f"CHANGELOG.md has no section '## [{expected}]'")
    if tag is not None and tag != f"v{expected}":
        problems.append(f"the tag {tag!r} is not v{expected}")
    return problems


def notes(root: Path, wanted: str) -> str | None:
    """The body of CHANGELOG.md's section for ``wanted``; None when there is none."""
    for section in _SECTION.finditer((root / "CHANGELOG.md").read_text()):
        if section["version"] == wanted:
            return section["body"].strip()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/release.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="exit 1 if anything names another version")
    check.add_argument("--tag", help="the git tag being released, e.g. v0.1.0")
    commands.add_parser("version", help="print the version")
    commands.add_parser("notes", help="print the version's CHANGELOG section")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(version())
        return 0
    if args.command == "notes":
        body = notes(ROOT, version())
        if body is None:
            print(f"CHANGELOG.md has no section for {version()}", file=sys.stderr)
            return 1
        print(body)
        return 0
    problems = disagreements(tag=args.tag)
    for problem in problems:
        print(f"release: {problem}", file=sys.stderr)
    if not problems:
        print(version())
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
