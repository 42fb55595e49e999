"""The installed distribution's version, read once from its metadata."""

from importlib import metadata

DISTRIBUTION = "doks-access-operator"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0+unknown"
