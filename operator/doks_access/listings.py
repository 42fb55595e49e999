"""The account's clusters, listed once per token and interval and shared by every set using it.

A set lists DigitalOcean on its ``resyncInterval``; several sets naming the same token (one per
environment, say) would each list the same account. Here they share: a listing younger than the
asking set's interval is reused, and while one is under way, the others wait for it instead of
sending their own. The pages go through the DigitalOcean client, so they share the token's rate
limit with the kubeconfig fetches. Tokens are keyed by their hash, never kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Callable

from doks_access import digitalocean

__all__ = ["ClusterListings", "Listing"]

# A listing no set has asked for in this long is dropped (the longest sensible interval is hours).
_FORGET_AFTER = datetime.timedelta(hours=6)
Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Listing:
    """Every cluster a token can see, and when DigitalOcean said so."""

    clusters: tuple[digitalocean.Cluster, ...]
    listed_at: datetime.datetime


class ClusterListings:
    """Listings by token, shared within each asker's interval."""

    def __init__(self, client: digitalocean.DigitalOceanClient, *, clock: Clock = _utc_now) -> None:
        self._client = client
        self._clock = clock
        self._listings: dict[str, Listing] = {}
        self._under_way: dict[str, asyncio.Task[Listing]] = {}

    async def get(self, *, token: str, max_age: datetime.timedelta) -> Listing:
        """A listing at most ``max_age`` old: the kept one, the one under way, or a new one."""
        key = digitalocean.token_key(token)
        now = self._clock()
        self._forget_old(now)
        kept = self._listings.get(key)
        if kept is not None and now - kept.listed_at < max_age:
            return kept
        task = self._under_way.get(key)
        if task is None:
            task = asyncio.create_task(self._list(key, token))
            self._under_way[key] = task
        # Shielded: a set deleted while waiting must not cancel the listing others wait for.
        return await asyncio.shield(task)

    def forget(self, token: str) -> None:
        """Drop the kept listing (a set saw a cluster it must not miss, such as a new one)."""
        self._listings.pop(digitalocean.token_key(token), None)

    async def _list(self, key: str, token: str) -> Listing:
        try:
            listed_at = self._clock()
            clusters = await self._client.list_clusters(token=token)
            listing = Listing(clusters=clusters, listed_at=listed_at)
            self._listings[key] = listing
            return listing
        finally:
            self._under_way.pop(key, None)

    def _forget_old(self, now: datetime.datetime) -> None:
        for key in [k for k, v in self._listings.items() if now - v.listed_at > _FORGET_AFTER]:
            del self._listings[key]
