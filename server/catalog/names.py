"""The catalog's task names in order: pages by cursor and prefix in O(log n + page).

A listing never reads the store, sorts or copies the whole catalog: names sit in one
sorted list, a page is a bisect and a slice, and a change inserts or removes one name
(a memmove: ~1 ms at a million names).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class SortedNames:
    def __init__(self, names: Iterable[str] = ()) -> None:
        names = list(names)
        # Snapshots list tasks in name order, so this is usually one O(n) check, not a sort.
        if any(a > b for a, b in zip(names, names[1:])):
            names.sort()
        self._names = names

    def __len__(self) -> int:
        return len(self._names)

    def add(self, name: str) -> None:
        i = bisect.bisect_left(self._names, name)
        if i == len(self._names) or self._names[i] != name:
            self._names.insert(i, name)

    def discard(self, name: str) -> None:
        i = bisect.bisect_left(self._names, name)
        if i < len(self._names) and self._names[i] == name:
            del self._names[i]

    def page(self, limit: int, after: str | None = None, prefix: str = "") -> list[str]:
        """Up to ``limit`` names starting with ``prefix``, the first after ``after`` (exclusive)."""
        if after is not None and after >= prefix:
            i = bisect.bisect_right(self._names, after)
        else:
            i = bisect.bisect_left(self._names, prefix)
        out = []
        for name in self._names[i : i + limit]:
            if not name.startswith(prefix):
                break
            out.append(name)
        return out

    def near(self, name: str, count: int) -> list[str]:
        """Up to ``count`` names that share the longest prefix with ``name`` (a 404's hint)."""
        i = bisect.bisect_left(self._names, name)
        return self._names[max(0, i - count // 2) : max(0, i - count // 2) + count]
