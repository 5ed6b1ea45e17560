"""What each probe asked to be handed back next run (log offsets, counters).

The store commits a result's memory in the result's own transaction; this book keeps the
latest memory given to the recorder so the next run sees it even before that commit. After
a crash the book starts again from the store, i.e. from the last committed result.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from probes.base import CheckResult

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ProbeMemory:
    def __init__(self, committed: Mapping[str, Mapping[str, Any]]) -> None:
        self._lock = threading.Lock()
        self._by_check: dict[str, Mapping[str, Any]] = {
            name: MappingProxyType(dict(data)) for name, data in committed.items()
        }

    def get(self, check: str) -> Mapping[str, Any]:
        with self._lock:
            return self._by_check.get(check, _EMPTY)

    def note(self, check: str, result: CheckResult) -> None:
        if result.memory is None:
            return
        with self._lock:
            self._by_check[check] = MappingProxyType(dict(result.memory))
