"""Peak training memory: the CUDA allocator's peak, or the process's resident high-water mark.

On CUDA, ``max_memory_allocated`` counts weights, gradients, optimizer state and
activations exactly. On the CPU, Linux keeps a resident-set high-water mark (VmHWM) that
writing "5" to /proc/self/clear_refs resets; the peak is read after each training phase,
so evaluation passes in between do not count. The process's RSS also holds the Python
runtime and memory freed while loading the model, so on the CPU the training footprint
is taken as weights + (peak RSS - RSS when training began), after ``malloc_trim`` has
returned freed memory to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Give memory that glibc keeps after frees back to the system, so RSS means live data."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then overstates a little
        pass


def rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


class PeakMemory:
    """Context manager entered around each training phase; ``peak_bytes`` is the max seen."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: int | None = None
        self.start_bytes: int | None = None  # memory in use when training began (weights included)
        self.method = "cuda_max_memory_allocated" if device.type == "cuda" else "cpu_vmhwm"

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            if self.start_bytes is None:
                self.start_bytes = torch.cuda.memory_allocated(self.device)
        else:
            # Every phase: evaluation in between leaves freed buffers in RSS, which would
            # otherwise raise the reset high-water mark of the next epoch.
            _malloc_trim()
            if self.start_bytes is None:
                self.start_bytes = rss_bytes()
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            except OSError:
                self.method = "cpu_vmhwm_since_start"  # cannot reset: the peak includes earlier work
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            kb = _status_kb("VmHWM")
            peak = kb * 1024 if kb is not None else None
        if peak is not None:
            self.peak_bytes = max(self.peak_bytes or 0, peak)

    def training_bytes(self, weight_bytes: int) -> int | None:
        """Peak memory training needed: weights + gradients + optimizer state + activations."""
        if self.peak_bytes is None:
            return None
        if self.device.type == "cuda":
            return self.peak_bytes  # the allocator holds the weights too
        if self.start_bytes is None:
            return None
        return weight_bytes + max(0, self.peak_bytes - self.start_bytes)
