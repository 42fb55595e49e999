"""What a usable DigitalOcean API token looks like (pure).

The token comes from a Secret that people fill in by hand, so it may hold anything: a trailing
newline, a pasted kubeconfig, a sentence. Reading the Secret (``kube``) and sending the token
(``digitalocean``) must agree on what can go into a bearer header, so the rule lives here, once,
below both.
"""

from __future__ import annotations

import re

__all__ = ["is_usable_token"]

# What a header value can carry: visible ASCII. A token with anything else is a broken Secret.
_TOKEN = re.compile(r"[\x21-\x7e]+")


def is_usable_token(token: str) -> bool:
    """Whether ``token`` can go into a bearer header as it is: one word of printable ASCII."""
    return _TOKEN.fullmatch(token) is not None
