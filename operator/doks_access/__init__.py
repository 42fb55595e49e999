"""doks-access-operator: keeps DigitalOcean Kubernetes (DOKS) kubeconfigs fresh in Secrets.

The operator watches ``DOClusterAccess`` objects, fetches a kubeconfig for each through the
DigitalOcean API, writes it into a Secret, and fetches again before the credential expires.
"""

from doks_access._version import __version__

__all__ = ["__version__"]
