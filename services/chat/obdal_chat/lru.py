"""A least-recently-used cache in a byte budget, shared fairly by its owners (apps).

When the budget is exceeded, the entry that goes is the least recently used one of the owner
holding the most bytes: a busy app fills the cache and then makes room out of its own entries,
and a quiet app keeps up to its share (the budget over the apps in use) however busy the others
are. Picking that owner scans the owners (~30 µs for 1,000 apps), once per entry evicted.
Sizes are the caller's estimates (:mod:`obdal_chat.query_cache` measured them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["FairLru"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FairLru(Generic[K, V]):
    """Values by owner and key, at most ``max_bytes`` of them (by their given sizes) in all."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: dict[str, OrderedDict[K, tuple[V, int]]] = {}
        self._owned: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._entries.values())

    def get(self, owner: str, key: K) -> V | None:
        """The value, now the owner's most recently used; ``None`` if there is none."""
        entries = self._entries.get(owner)
        found = None if entries is None else entries.get(key)
        if entries is None or found is None:
            return None
        entries.move_to_end(key)
        return found[0]

    def put(self, owner: str, key: K, value: V, *, size: int) -> None:
        """Keep ``value`` (replacing the key's), evicting what the budget no longer holds; a value
        larger than the whole budget is not kept."""
        self._remove(owner, key)
        if size > self.max_bytes:
            return
        self._entries.setdefault(owner, OrderedDict())[key] = (value, size)
        self._owned[owner] = self._owned.get(owner, 0) + size
        self.bytes += size
        while self.bytes > self.max_bytes:
            largest = max(self._owned, key=self._owned.__getitem__)
            self._remove(largest, next(iter(self._entries[largest])))

    def _remove(self, owner: str, key: K) -> None:
        entries = self._entries.get(owner)
        if entries is None or key not in entries:
            return
        _, size = entries.pop(key)
        self.bytes -= size
        self._owned[owner] -= size
        if not entries:
            del self._entries[owner], self._owned[owner]
