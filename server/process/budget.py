"""How many task slots the bias table has: the resident budget, from the settings or memory.

A slot holds one task's bias row (fp32, every site of the backbone, plus LayerNorm gain
columns once a bitfit-ln set arrives); its head sits beside the table. The budget is a
number of slots (``BITFIT_MAX_RESIDENT_TASKS``), or bytes (``BITFIT_RESIDENT_BYTES``)
divided by a slot's estimated cost, or, with neither set, a quarter of the memory
available at start-up (cgroup limit included). The table is allocated once at that size;
on the CPU its untouched rows cost no memory, so a large budget costs only what is used.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from torch import nn

from engine import Backbone
from server.catalog.host_tier import HostTier
from server.process.settings import Settings

log = logging.getLogger(__name__)

MIN_SLOTS = 64  # room for a full batch of distinct tasks plus kept versions, for a budget in bytes
MAX_AUTO_SLOTS = 1_000_000
HEAD_ESTIMATE_LABELS = 16  # a head's size is estimated for this many labels
MEMORY_SHARE = 0.25


def slot_bytes(backbone: Backbone) -> int:
    """A task's estimated resident cost: its fp32 bias row with LayerNorm gain columns (at most
    every bias and every LayerNorm weight of the encoder), and its head for 16 labels."""
    row = sum(p.numel() for name, p in backbone.encoder.named_parameters() if name.endswith("bias"))
    row += sum(m.weight.numel() for m in backbone.encoder.modules() if isinstance(m, nn.LayerNorm))
    head = sum(math.prod(shape) for shape in backbone.spec.head_shapes(HEAD_ESTIMATE_LABELS).values())
    return 4 * (row + head)


def available_memory() -> int:
    """Bytes available to this process: MemAvailable, capped by a cgroup v2/v1 limit."""
    available = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < available:
            available = int(text)
    return available


def resident_slots(settings: Settings, backbone: Backbone) -> int:
    """The bias table's slot count for this backbone and these settings."""
    if settings.max_resident_tasks:
        return settings.max_resident_tasks  # as asked: below a batch's worth of tasks, requests may wait (503)
    per_slot = slot_bytes(backbone)
    if backbone.device.type == "cuda":  # the table lives in device memory there
        import torch

        available = torch.cuda.mem_get_info(backbone.device)[0]
    else:
        available = available_memory()
    budget = settings.resident_bytes or int(available * MEMORY_SHARE)
    slots = min(max(budget // per_slot, MIN_SLOTS), MAX_AUTO_SLOTS)
    log.info("resident budget %.1f MB / %d B a task (estimated) = %d task slots", budget / 1e6, per_slot, slots)
    return slots


def host_tier(settings: Settings, backbone: Backbone, slots: int) -> HostTier | None:
    """The host-memory tier under the slots: as large as the slots on a GPU, none on the CPU."""
    size = settings.host_tier_bytes
    if size is None:
        size = slots * slot_bytes(backbone) if backbone.device.type == "cuda" else 0
    return HostTier(size) if size > 0 else None
