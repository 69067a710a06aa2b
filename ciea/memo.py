"""A thread-safe memo: the one cache type of the search service.

The app answers several requests at once and warms up in a background thread, so every cache
is shared between threads. ``Memo.get(key, make)`` runs ``make`` once per key (a caller asking
for a key being made waits for it instead of making it again), never holds the table's lock
while making, and with ``maxsize`` drops the least recently used entry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Memo(Generic[V]):
    def __init__(self, maxsize: int | None = None) -> None:
        self.maxsize = maxsize
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._making: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value for ``key``, made by ``make()`` on first use (a failure is not cached)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                if key in self._values:  # another thread made it while this one waited
                    return self._values[key]
            try:
                value = make()
            except BaseException:
                with self._lock:
                    self._making.pop(key, None)
                raise
            with self._lock:  # stored and released together: no thread can start making it again
                self._values[key] = value
                self._making.pop(key, None)
                if self.maxsize is not None and len(self._values) > self.maxsize:
                    self._values.popitem(last=False)
            return value
