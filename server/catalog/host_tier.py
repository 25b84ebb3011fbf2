"""The host-memory tier under the slots: recently loaded bias sets, kept validated in RAM.

On a GPU the bias table lives in device memory and its slots are few; an evicted task that
comes back should not pay for a store read, a sha256 and a validation again. This tier keeps
the validated sets (in pinned memory when CUDA is present, so the copy into a slot can be
asynchronous) keyed by task and sha256, least recently used out first, within a byte
budget (``BITFIT_HOST_TIER_BYTES``). A set is found only under the sha256 the catalog names,
so a replaced or deleted task's set is never served: it just ages out. On the CPU the table
itself is in host memory, so the tier is off unless asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from bias_store.format import BiasSet


class HostTier:
    def __init__(self, capacity_bytes: int, pin: bool | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self.pin = torch.cuda.is_available() if pin is None else pin
        self._sets: OrderedDict[tuple[str, str], BiasSet] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._sets)

    def get(self, name: str, sha256: str) -> BiasSet | None:
        with self._lock:
            found = self._sets.get((name, sha256))
            if found is not None:
                self._sets.move_to_end((name, sha256))
                self.hits += 1
            return found

    def put(self, name: str, sha256: str, bias_set: BiasSet) -> None:
        size = bias_set.num_bytes
        if size > self.capacity_bytes:
            return
        if self.pin:
            bias_set = BiasSet(bias_set.meta, {key: t.pin_memory() for key, t in bias_set.tensors.items()})
        with self._lock:
            old = self._sets.pop((name, sha256), None)
            self._bytes -= old.num_bytes if old is not None else 0
            self._sets[(name, sha256)] = bias_set
            self._bytes += size
            while self._bytes > self.capacity_bytes:
                _, evicted = self._sets.popitem(last=False)
                self._bytes -= evicted.num_bytes
