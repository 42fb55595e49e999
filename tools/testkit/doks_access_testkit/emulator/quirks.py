"""Realism quirks: small ways the real API has been seen to differ from its own description.

By default the emulator answers exactly as the OpenAPI description says, which is what most tests
want. A client must also survive the API as it behaves, so each quirk below turns one observed or
reported difference on; all are off unless named in the config (``quirks: [...]``), by
:meth:`~doks_access_testkit.emulator.server.Emulator.set_quirks`, or through the admin API:

- ``no_links_on_single_page``: a listing that fits on one page has no ``links`` key at all
  (instead of ``"links": {}``); the schema does not require it.
- ``no_request_id_in_errors``: error bodies are ``{"id", "message"}``; ``request_id`` is optional
  ("some endpoints may include a request ID").
- ``no_x_request_id``: answers carry no ``x-request-id`` header.
- ``zero_expiry_500``: an explicit ``expiry_seconds=0`` on the kubeconfig or credentials endpoint
  is a 500 ``server_error`` (reported of DigitalOcean for a generated client that always sent it);
  an absent ``expiry_seconds`` still means seven days.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from doks_access_testkit.emulator.state import InvalidInputError

Quirk = Literal[
    "no_links_on_single_page",
    "no_request_id_in_errors",
    "no_x_request_id",
    "zero_expiry_500",
]
QUIRKS: tuple[str, ...] = get_args(Quirk)


def parse_quirks(names: Iterable[str]) -> frozenset[str]:
    """The set of quirks named; an unknown name (a typo) is an error, never silently ignored."""
    if isinstance(names, str):  # a string is an iterable of letters: surely a mistake
        raise InvalidInputError(f"quirks must be a list of names, not {names!r}")
    chosen = list(names)
    if not all(isinstance(name, str) for name in chosen):
        raise InvalidInputError(f"quirks must be a list of names, not {chosen!r}")
    unknown = sorted(set(chosen) - set(QUIRKS))
    if unknown:
        raise InvalidInputError(
            f"unknown quirk(s): {', '.join(unknown)}; known: {', '.join(QUIRKS)}"
        )
    return frozenset(chosen)
