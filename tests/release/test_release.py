"""Releasing: one version everywhere, workflows that actionlint accepts, pins kept fresh."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RELEASE = REPO / "tools" / "release.py"
ACTIONLINT_ENV = "DOKS_ACCESS_ACTIONLINT"
ACTIONLINT_BUILD = REPO / "tools" / "actionlint" / "build.sh"


def _release(*args: str, root: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "tools" / "release.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_package_chart_manifests_and_changelog_name_one_version() -> None:
    completed = _release("check")
    assert completed.returncode == 0, completed.stderr
    version = completed.stdout.strip()
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version)
    assert _release("check", f"--tag=v{version}").returncode == 0
    wrong = _release("check", "--tag=v99.0.0")
    assert wrong.returncode == 1
    assert f"the tag 'v99.0.0' is not v{version}" in wrong.stderr


@pytest.mark.parametrize(
    ("path", "old", "new", "complaint"),
    [
        ("charts/doks-access-operator/Chart.yaml", "\nversion: ", "\nversion: 9.", "version is"),
        (
            "charts/doks-access-operator/Chart.yaml",
            'appVersion: "',
            'appVersion: "9.',
            "appVersion",
        ),
        (
            "manifests/doks-access-operator.yaml",
            "doks-access-operator:",
            "doks-access-operator:9.",
            "runs",
        ),
        ("CHANGELOG.md", "## [", "## [9.", "CHANGELOG.md has no section"),
    ],
)
def test_a_file_naming_another_version_stops_the_release(
    tmp_path: Path, path: str, old: str, new: str, complaint: str
) -> None:
    for name in ("pyproject.toml", "CHANGELOG.md", "tools/release.py", path):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    for source in [REPO / "charts/doks-access-operator/Chart.yaml", *REPO.glob("manifests/*")]:
        copy = tmp_path / source.relative_to(REPO)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy)
    changed = tmp_path / path
    assert old in changed.read_text()
    changed.write_text(changed.read_text().replace(old, new, 1))

    completed = _release("check", root=tmp_path)

    assert completed.returncode == 1
    assert complaint in completed.stderr


def test_the_release_notes_are_the_versions_changelog_section() -> None:
    notes = _release("notes")
    assert notes.returncode == 0
    assert notes.stdout.startswith("The first release.")
    assert "## [" not in notes.stdout


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """``$DOKS_ACCESS_ACTIONLINT``, else ``tools/actionlint/build.sh``'s binary (seconds to
    build from its pinned Go module, then cached)."""
    configured = os.environ.get(ACTIONLINT_ENV)
    if configured:
        return Path(configured)
    completed = subprocess.run(
        ["bash", str(ACTIONLINT_BUILD)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(completed.stdout.strip().splitlines()[-1])


def test_actionlint_accepts_every_workflow(actionlint: Path) -> None:
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"ci.yml", "release.yml"}
    completed = subprocess.run(
        [str(actionlint), "-no-color", *map(str, workflows)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_actionlint_is_a_real_linter(actionlint: Path, tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    steps = "    steps:\n      - run: echo ${{ github.nope }}\n"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n" + steps)
    completed = subprocess.run(
        [str(actionlint), "-no-color", str(broken)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 1
    assert "nope" in completed.stdout


def test_the_release_builds_signs_and_publishes_what_the_issue_names() -> None:
    workflow = (REPO / ".github" / "workflows" / "release.yml").read_text()
    for needed in (
        "platforms: linux/amd64,linux/arm64",
        "cosign sign --yes",
        "cosign attest --yes --type spdxjson",
        "helm push",
        "python tools/release.py check --tag",
        "python tools/release.py notes",
        "BASE_IMAGE=${{ steps.base.outputs.image }}",
        "id-token: write",
    ):
        assert needed in workflow, needed
    base = re.search(r"BASE_TAG: (\S+)", workflow)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert base is not None
    assert f"ARG BASE_IMAGE={base[1]}\n" in dockerfile, "the workflow and Dockerfile share a base"


def _files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return listed + [str(p.relative_to(REPO)) for p in (REPO / ".github").rglob("*") if p.is_file()]


def test_renovate_watches_every_kind_of_pin_and_each_pattern_finds_files() -> None:
    config = json.loads((REPO / "renovate.json").read_text())
    managers = {"dockerfile", "gomod", "github-actions", "pip-compile", "pep621"}
    assert managers <= set(config)
    files = _files()
    patterns = [(m, p) for m in managers for p in config[m]["managerFilePatterns"]]
    patterns += [
        ("custom", p) for custom in config["customManagers"] for p in custom["managerFilePatterns"]
    ]
    for manager, pattern in patterns:
        regex = re.compile(pattern.strip("/"))
        assert any(regex.search(f) for f in files), f"{manager}: {pattern} matches no file"
    gomods = [f for f in files if f.endswith("go.mod")]
    gomod = re.compile(config["gomod"]["managerFilePatterns"][0].strip("/"))
    assert all(gomod.search(f) for f in gomods), "every tool's go.mod is kept fresh"
